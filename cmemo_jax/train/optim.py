"""The optimiser, its learning-rate schedule and the length of a run, built from config in one place.

Config fields (`config.optim`):
  name           'sgd' (the paper: SGD with momentum) | 'adamw'
  lr_start, lr_end   the schedule's first and last learning rate
  schedule       'log' (geometric decay lr_start -> lr_end over the run, the paper's "decays
                 logarithmically") | 'cosine' (cosine from lr_start to lr_end) | 'constant' (lr_start)
  momentum       SGD momentum (or AdamW's b1)
  weight_decay   L2 weight decay on conv / dense kernels only
  grad_clip_norm global-norm clipping, 0 = off
`frozen` (a list of top-level parameter names, e.g. from `config.init.frozen`) get no updates.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

SCHEDULES = ("log", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")


def num_train_steps(config, num_train_examples: int) -> int:
    """config.num_train_steps if > 0, else config.num_epochs passes over the training examples."""
    if config.num_train_steps and config.num_train_steps > 0:
        return int(config.num_train_steps)
    return max(1, math.ceil(config.num_epochs * num_train_examples / config.batch_size))


def make_schedule(optim_config, total_steps: int) -> optax.Schedule:
    """Learning rate at each step (0-based) from lr_start to lr_end over total_steps.

    'log' is the paper's: "initially set to 1E-4, and decays logarithmically to 1E-5 over the full
    learning schedule" (MatConvNet's logspace over epochs; here per step, the smooth version).
    """
    lr_start, lr_end = float(optim_config.lr_start), float(optim_config.lr_end)
    kind = optim_config.get("schedule", "log")
    span = max(int(total_steps) - 1, 1)
    if kind == "constant":
        return optax.constant_schedule(lr_start)
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr_start, span, alpha=lr_end / lr_start)
    if kind != "log":
        raise ValueError(f"config.optim.schedule={kind!r}: use one of {', '.join(SCHEDULES)}")
    log_ratio = float(np.log(lr_end) - np.log(lr_start))

    def schedule(step):
        frac = jnp.clip(jnp.asarray(step, jnp.float32) / span, 0.0, 1.0)
        return lr_start * jnp.exp(log_ratio * frac)

    return schedule


def _is_kernel(path) -> bool:
    return getattr(path[-1], "key", None) == "kernel"


def trainable_mask(params, frozen=()) -> dict:
    """Pytree of bools over params: False under any top-level name in `frozen`."""
    frozen = set(frozen)
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[0], "key", None) not in frozen, params)


def make_optimizer(optim_config, total_steps: int, frozen=()) -> optax.GradientTransformation:
    """The configured optimiser with kernel-only weight decay and the schedule of `make_schedule`.

    Weight decay applies to conv / dense kernels only: biases and batch-norm scale/shift carry
    none, as in the MatConvNet models the paper trains. Parameters under `frozen` top-level names
    receive zero updates (their optimiser state is never created).
    """
    schedule = make_schedule(optim_config, total_steps)
    name = optim_config.get("name", "sgd")
    decay = lambda params: jax.tree_util.tree_map_with_path(lambda p, _: _is_kernel(p), params)
    parts = []
    clip = float(optim_config.get("grad_clip_norm", 0.0) or 0.0)
    if clip > 0:
        parts.append(optax.clip_by_global_norm(clip))
    if name == "sgd":
        parts += [optax.add_decayed_weights(optim_config.weight_decay, mask=decay),
                  optax.sgd(schedule, momentum=optim_config.momentum)]
    elif name == "adamw":
        parts.append(optax.adamw(schedule, b1=optim_config.momentum, weight_decay=optim_config.weight_decay,
                                 mask=decay))
    else:
        raise ValueError(f"config.optim.name={name!r}: use one of {', '.join(OPTIMIZERS)}")
    tx = optax.chain(*parts)
    if not frozen:
        return tx
    labels = lambda params: jax.tree.map(lambda t: "train" if t else "frozen", trainable_mask(params, frozen))
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
