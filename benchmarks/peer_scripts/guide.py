"""The keras.io "Transfer learning & fine-tuning" guide's end-to-end recipe, as a user copies it:
image_dataset_from_directory, a frozen MobileNetV2 called with training=False, a new Dense head,
then the whole base unfrozen and fine-tuned at a low rate. Random weights (nothing to download
here; speed does not depend on them) and no augmentation, as in ktransfer's run it is compared
with.

    python guide.py --data=DIR [--image_size=160] [--batch_size=32] [--epochs=3]
                    [--fine_tune_epochs=2]
"""

import argparse

import keras
import tensorflow as tf

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--image_size", type=int, default=160)
parser.add_argument("--batch_size", type=int, default=32)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--fine_tune_epochs", type=int, default=2)
args = parser.parse_args()
size = (args.image_size, args.image_size)

train_ds, validation_ds = keras.utils.image_dataset_from_directory(
    args.data, validation_split=0.2, subset="both", seed=1337, image_size=size,
    batch_size=args.batch_size)
num_classes = len(train_ds.class_names)
train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
validation_ds = validation_ds.prefetch(tf.data.AUTOTUNE)

base_model = keras.applications.MobileNetV2(weights=None, input_shape=(*size, 3),
                                            include_top=False)
base_model.trainable = False
inputs = keras.Input(shape=(*size, 3))
x = keras.layers.Rescaling(scale=1 / 127.5, offset=-1)(inputs)
x = base_model(x, training=False)
x = keras.layers.GlobalAveragePooling2D()(x)
x = keras.layers.Dropout(0.2)(x)
outputs = keras.layers.Dense(num_classes)(x)
model = keras.Model(inputs, outputs)

model.compile(optimizer=keras.optimizers.Adam(),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=[keras.metrics.SparseCategoricalAccuracy()])
model.fit(train_ds, epochs=args.epochs, validation_data=validation_ds, verbose=2)

base_model.trainable = True
model.compile(optimizer=keras.optimizers.Adam(1e-5),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=[keras.metrics.SparseCategoricalAccuracy()])
model.fit(train_ds, epochs=args.fine_tune_epochs, validation_data=validation_ds, verbose=2)
model.save("guide_model.keras")
