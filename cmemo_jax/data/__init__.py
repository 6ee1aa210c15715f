"""Dataset formats and input pipelines. Modules import TensorFlow lazily, only where needed."""
