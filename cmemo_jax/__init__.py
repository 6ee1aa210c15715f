"""cmemo_jax: cross-modal (face -> voice) emotion distillation in JAX/Flax (Albanie et al., ACM MM 2018)."""
from cmemo_jax.constants import EMOTIONS, NUM_EMOTIONS, SAMPLE_RATE

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "NUM_EMOTIONS", "SAMPLE_RATE", "__version__"]
