"""Run a jitted, sharded per-example function over host batches and gather the results to the host.

The one gather-and-mask loop behind evaluation, labelling, embedding and prediction: each batch is
placed on the mesh (`sharding.device_batch`), `fn` returns a dict of per-example arrays that
includes the batch's `valid` mask, and only the valid rows are kept.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import jax
import numpy as np

from cmemo_jax.train import sharding as sharding_lib


def _to_host(tree):
    return jax.tree.map(np.asarray, tree)


def iterate_outputs(fn: Callable[[dict], dict], batches: Iterable[dict], mesh) -> Iterator[dict]:
    """Per batch: `fn(device_batch)` on the host with padding rows (valid=False) dropped.

    `fn` must return replicated (gathered) arrays and a 'valid' entry; non-numeric batch entries
    (ids as bytes) are not sent to the device but are passed through, masked, under their names.
    """
    for batch in batches:
        out = _to_host(fn(sharding_lib.device_batch(batch, mesh)))
        keep = out.pop("valid").astype(bool)
        kept = {k: v[keep] for k, v in out.items()}
        for key, value in batch.items():
            value = np.asarray(value)
            if key not in kept and value.dtype.kind not in "biuf" and value.shape[:1] == keep.shape:
                kept[key] = value[keep]
        yield kept


def collect_outputs(fn: Callable[[dict], dict], batches: Iterable[dict], mesh) -> dict:
    """All of `iterate_outputs` concatenated: {name: array [num_valid_examples, ...]}; {} if no batch."""
    parts = list(iterate_outputs(fn, batches, mesh))
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
