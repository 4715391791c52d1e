"""The PyTorch transfer-learning recipe users bring (torchvision's tutorial shape): ImageFolder,
a DataLoader with 2 workers, MobileNetV2 with its classifier replaced, the features frozen for
the first epochs, then everything fine-tuned at a low rate. Random weights and no augmentation,
as in the runs it is compared with. Writes its clock as JSON to $PEER_TIMING, in the format of
clock.py.

    python torch_recipe.py --data=DIR [--image_size=160] [--batch_size=32] [--epochs=3]
                           [--fine_tune_epochs=2]
"""

import argparse
import json
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, random_split
from torchvision import datasets, models, transforms

RECORD: dict = {"first_step": None, "fits": []}


def run_phase(model, loaders, optimizer, epochs: int) -> None:
    criterion = nn.CrossEntropyLoss()
    clock: list = []
    RECORD["fits"].append(clock)
    for _ in range(epochs):
        clock.append([time.time(), None, None, None])
        model.train()
        for inputs, labels in loaders["train"]:
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
            if RECORD["first_step"] is None:
                RECORD["first_step"] = time.time()
        clock[-1][2] = time.time()
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for inputs, labels in loaders["val"]:
                correct += (model(inputs).argmax(1) == labels).sum().item()
                total += len(labels)
        clock[-1][1] = clock[-1][3] = time.time()
        print(f"val accuracy {correct / total:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--image_size", type=int, default=160)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fine_tune_epochs", type=int, default=2)
    args = parser.parse_args()
    transform = transforms.Compose([
        transforms.Resize((args.image_size, args.image_size)), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    images = datasets.ImageFolder(args.data, transform)
    train, val = random_split(images, [0.8, 0.2], generator=torch.Generator().manual_seed(0))
    loaders = {"train": DataLoader(train, batch_size=args.batch_size, shuffle=True,
                                   num_workers=2),
               "val": DataLoader(val, batch_size=args.batch_size, num_workers=2)}
    model = models.mobilenet_v2(weights=None)
    model.classifier[1] = nn.Linear(model.last_channel, len(images.classes))
    for p in model.features.parameters():
        p.requires_grad = False
    run_phase(model, loaders, torch.optim.Adam(model.classifier.parameters(), 1e-3),
              args.epochs)
    for p in model.parameters():
        p.requires_grad = True
    run_phase(model, loaders, torch.optim.Adam(model.parameters(), 1e-5),
              args.fine_tune_epochs)
    torch.save(model.state_dict(), "torch_model.pt")
    RECORD["end"] = time.time()
    with open(os.environ["PEER_TIMING"], "w") as f:
        json.dump(RECORD, f)


if __name__ == "__main__":
    main()
