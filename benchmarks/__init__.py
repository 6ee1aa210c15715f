"""Benchmarks of cmemo_jax against librosa / TensorFlow / PyTorch peers (see benchmarks/README.md).

Not part of the installed package; run the scripts from the repository root.
"""
