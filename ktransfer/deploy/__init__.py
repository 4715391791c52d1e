"""Using a trained classifier: loading it (`saving`), predicting (`prediction`), the SavedModel
for TF Serving (`serving`) and its TFLite / ONNX copies (`conversion`)."""
