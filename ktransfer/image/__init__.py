"""Images: reading folders, TFDS and built-in sets; decoding, resizing and augmentation; the
backbone registry (keras.applications, small_cnn, TF Hub, .keras files); the serving signatures
and the report's image gallery. `ktransfer.image.modality.IMAGE` is the modality that ties them
to the shared training, evaluation, export and tuning code."""
