"""The shared parts of a classifier: the backbone input and compile (`classifier`), head and
pooling (`heads`), TF Hub modules as Keras 3 layers (`hub`), which layers train (`freezing`)
and the frozen-phase feature cache (`features`)."""
