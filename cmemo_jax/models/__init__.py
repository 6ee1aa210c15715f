"""Flax models: the speech student (VGG-M + BN) and, later, the SE-ResNet-50 face teacher."""
from cmemo_jax.models.student import Student

__all__ = ["Student"]
