"""The train state every phase trains: arrays only (no functions), so orbax saves and restores it
as a plain pytree and `jax.jit` can donate it."""
from __future__ import annotations

from typing import Any

import flax
import jax


@flax.struct.dataclass
class TrainState:
    """step: scalar int32; params / batch_stats: flax collections; opt_state: optax state."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
