"""Before training: rank backbones from frozen features (LogME, a cross-validated linear probe,
a learning curve) and audit the labels (confident learning, near-duplicates, confused classes).
`ktransfer.probe` is its command; `probing.probe.probe` the library call."""
