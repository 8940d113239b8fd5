"""The numeric core around the layers: the model (a chain of layer plugins), the training loop, the
gradient check, learning-rate schedules. Imports neither tracking nor report."""
