"""Evaluation (`evaluation`: metrics, confusion matrix, mistakes), plots (`plotting`) and
report.html (`report`)."""
