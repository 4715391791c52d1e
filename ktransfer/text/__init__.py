"""Text: reading class folders of .txt files, CSV / TSV / JSON-lines tables, TFDS text sets and
the built-in human-rated sentiment sentences; tokenisation with the encoder's own tokenizer
(length-bucketed batches); keras-hub and TF Hub encoders; the raw-string serving signature and
the report's table of sentences. `ktransfer.text.modality.TEXT` ties them to the shared
training, evaluation, export and tuning code."""
