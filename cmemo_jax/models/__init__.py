"""Flax models: the speech student (VGG-M + BN) and the SE-ResNet-50 face teacher, and the registry
(`build(kind, kwargs)`) that configs, exports and benchmarks share."""
from cmemo_jax.models.registry import build, constructor_kwargs
from cmemo_jax.models.senet import SENet50
from cmemo_jax.models.student import Student

__all__ = ["SENet50", "Student", "build", "constructor_kwargs"]
