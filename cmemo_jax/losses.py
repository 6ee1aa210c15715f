"""Losses of the paper: distillation at temperature T, soft-label cross entropy, L2 on logits.

All functions return per-example losses `[batch]`; the trainer reduces them with `masked_mean`
so padded evaluation examples never count.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_cross_entropy(logits, target_probs):
    """`-sum_i p_i log softmax(logits)_i` per example. logits, target_probs: `[batch, classes]`."""
    return -jnp.sum(target_probs * jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)


def distillation_loss(student_logits, teacher_logits, temperature: float = 2.0):
    """Paper eq. (1)-(2) as used for the student (§3, §5): both sides softened by T, no T^2 factor.

    Args:
      student_logits: `[batch, classes]` raw student outputs.
      teacher_logits: `[batch, classes]` raw (max-pooled) teacher logits.
    Returns:
      `[batch]` cross entropy between softmax(teacher / T) and softmax(student / T).
    """
    target = jax.nn.softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    # The teacher is fixed: no gradient flows into the targets.
    target = jax.lax.stop_gradient(target)
    return soft_cross_entropy(student_logits / temperature, target)


def logit_l2_loss(student_logits, teacher_logits):
    """Ablation of §5 (Ba & Caruana): squared Euclidean distance between raw logits, `[batch]`."""
    diff = student_logits.astype(jnp.float32) - jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    return jnp.sum(diff * diff, axis=-1)


def masked_mean(values, mask):
    """Mean of `values [batch]` over the examples where `mask [batch]` is true (0 if none)."""
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def masked_max_pool(frame_logits, num_rows):
    """Max over the valid rows of a window of teacher frame logits (the paper's track aggregation).

    Args:
      frame_logits: `[batch, rows, classes]`, rows [0, num_rows) lie inside the audio crop.
      num_rows: `[batch]` int, >= 1 for real examples (0 only for padding; those give 0).
    Returns:
      `[batch, classes]` per-emotion maximum over the valid rows.
    """
    rows = jnp.arange(frame_logits.shape[1])
    valid = rows[None, :] < num_rows[:, None]
    pooled = jnp.max(jnp.where(valid[..., None], frame_logits, -jnp.inf), axis=1)
    return jnp.where(jnp.isfinite(pooled), pooled, 0.0)


LOSSES = {"distill": distillation_loss, "l2": lambda s, t, temperature=None: logit_l2_loss(s, t)}


def get_loss(name: str):
    """Per-example loss by config name: 'distill' (paper) or 'l2' (ablation)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
