"""`--batch_size=auto`: the largest batch whose training step fits in memory, found by trying,
with gradient accumulation making up `--effective_batch_size` (Hugging Face's
`auto_find_batch_size`, and Lightning's batch-size finder, do the same by halving).

The candidates are the divisors of `--effective_batch_size`, largest first, so that batch x
`--accumulate` is exactly the effective batch. Each try is one optimizer step of the
fine-tuning phase's network (the `--unfreeze` layers training, `--remat` on; without LoRA's
savings, so it errs small) on real training examples; the weights are put back afterwards.
Out of memory is TensorFlow's `ResourceExhaustedError` (an accelerator's allocator) or Python's
`MemoryError`; on a CPU the operating system usually ends the process before either, so the
search is for accelerators. A resumed run keeps the batch its flags.cfg recorded.
"""

from __future__ import annotations

import dataclasses
import logging

import tensorflow as tf

from ktransfer.config import AUTO_BATCH, RunConfig
from ktransfer.data.examples import Splits
from ktransfer.errors import TrainingError
from ktransfer.modality import Modality, Network
from ktransfer.network import remat
from ktransfer.network.classifier import compile_classifier
from ktransfer.network.freezing import freeze, select, set_trainable
from ktransfer.runs import rundir

log = logging.getLogger("ktransfer.training")


def candidates(effective: int) -> list[int]:
    """The divisors of `effective`, largest first."""
    return [d for d in range(effective, 0, -1) if effective % d == 0]


def fits(cfg: RunConfig, modality: Modality, splits: Splits, network: Network,
         batch: int) -> bool:
    """Whether one training step of the fine-tuning network on `batch` examples runs without
    running out of memory (the weights are restored afterwards)."""
    backbone, model = network.backbone, network.model
    if cfg.train.fine_tune_epochs:
        set_trainable(backbone, select(backbone, cfg.train.unfreeze), cfg.model.bn_trainable)
        remat.enable(backbone, cfg.train.remat)
    weights = model.get_weights()
    sized = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=batch))
    try:
        compile_classifier(model, sized, 1e-12)
        inputs, targets = next(iter(modality.feed(sized, network).dataset(
            splits.train, batch_size=batch, training=True, seed=cfg.train.seed, repeat=True)))
        model.train_on_batch(inputs, targets)
        return True
    except (tf.errors.ResourceExhaustedError, MemoryError):
        return False
    finally:
        model.set_weights(weights)
        freeze(backbone)


def resolve(cfg: RunConfig, modality: Modality, splits: Splits, network: Network) -> RunConfig:
    """`cfg` with `--batch_size=auto` replaced by the batch found (a resumed run's own) and
    `--accumulate` by what makes up `--effective_batch_size`."""
    if cfg.data.batch_size != AUTO_BATCH:
        return cfg
    effective = cfg.data.effective_batch_size
    saved = rundir.resumed_flags(cfg)
    if saved is not None:
        batch = int(saved["batch_size"])
    else:
        tried = []
        for batch in candidates(effective):
            if fits(cfg, modality, splits, network, batch):
                break
            tried.append(batch)
        else:
            raise TrainingError("--batch_size=auto: a training step of one example runs out "
                                "of memory; try --remat, --lora_rank, a smaller --image_size "
                                "or --max_length, or a smaller backbone")
        log.info("--batch_size=auto: %d%s; --accumulate=%d makes the effective batch %d",
                 batch, f" (out of memory at {', '.join(map(str, tried))})" if tried else
                 " (fits)", effective // batch, effective)
    return dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, batch_size=batch),
        train=dataclasses.replace(cfg.train, accumulate=effective // batch))
