"""Train state and optimiser shared by every phase (student now, teacher later).

The state holds arrays only (no functions), so orbax saves and restores it as a plain pytree and
`jax.jit` can donate it.
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax


@flax.struct.dataclass
class TrainState:
    """step: scalar int32; params / batch_stats: flax collections; opt_state: optax state."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def log_spaced_schedule(lr_start: float, lr_end: float, total_steps: int) -> optax.Schedule:
    """Learning rate decaying geometrically from lr_start (step 0) to lr_end (last step).

    The paper: "initially set to 1E-4, and decays logarithmically to 1E-5 over the full learning
    schedule" (MatConvNet's logspace over epochs; here per step, which is the smooth version).
    """
    span = max(int(total_steps) - 1, 1)
    log_ratio = float(np.log(lr_end) - np.log(lr_start))

    def schedule(step):
        frac = jnp.clip(jnp.asarray(step, jnp.float32) / span, 0.0, 1.0)
        return lr_start * jnp.exp(log_ratio * frac)

    return schedule


def _decay_mask(params):
    # Weight decay on conv / dense kernels only: biases and batch-norm scale/shift carry none,
    # as in the MatConvNet models the paper trains.
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: getattr(path[-1], "key", None) == "kernel", params)


def make_optimizer(optim_config, total_steps: int) -> optax.GradientTransformation:
    """SGD with momentum and L2 weight decay on kernels, log-spaced learning rate.

    optim_config fields: lr_start, lr_end, momentum, weight_decay, and optionally grad_clip_norm (0 = off).
    """
    schedule = log_spaced_schedule(optim_config.lr_start, optim_config.lr_end, total_steps)
    parts = []
    clip = float(optim_config.get("grad_clip_norm", 0.0) or 0.0)
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    parts += [
        optax.add_decayed_weights(optim_config.weight_decay, mask=_decay_mask),
        optax.sgd(schedule, momentum=optim_config.momentum),
    ]
    return optax.chain(*parts)
