"""Initialisation from a pretrained export (`config.init.from_path`), whole or in part.

The paper's teacher is fine-tuned from imported weights, and a student can start from another
run's export. Parameters (and batch-norm statistics) are copied by path wherever the export has a
leaf of the same shape; the rest keep their fresh initialisation and are listed (e.g. an 8-way
head replacing VGGFace2's 8631-way one). `config.init.frozen` names top-level modules whose
parameters then get no updates (cmemo_jax.train.optim) and whose statistics stay as loaded.
"""
from __future__ import annotations

import jax
import numpy as np
from flax import traverse_util


def _merge(fresh: dict, loaded: dict, what: str) -> tuple[dict, list[str], int]:
    flat_fresh = traverse_util.flatten_dict(fresh, sep="/")
    flat_loaded = traverse_util.flatten_dict(loaded or {}, sep="/")
    merged, kept_fresh, copied = {}, [], 0
    for name, value in flat_fresh.items():
        src = flat_loaded.get(name)
        if src is not None and tuple(np.shape(src)) == tuple(value.shape):
            merged[name] = np.asarray(src, dtype=value.dtype)
            copied += 1
        else:
            merged[name] = value
            reason = "not in the export" if src is None else f"shape {tuple(np.shape(src))} != {tuple(value.shape)}"
            kept_fresh.append(f"{what}/{name} ({reason})")
    return traverse_util.unflatten_dict(merged, sep="/"), kept_fresh, copied


def load_pretrained(path: str, kind: str, params: dict, batch_stats: dict):
    """-> (params, batch_stats, report) with every matching leaf taken from the export at `path`.

    `kind` is the model kind the phase trains; an export of another kind is an error naming both.
    """
    from cmemo_jax import export

    _, variables, meta = export.load(path)
    if meta.get("kind") != kind:
        raise ValueError(f"{path}: a {meta.get('kind')!r} model, but this phase trains a {kind!r} model")
    params = jax.device_get(params)
    batch_stats = jax.device_get(batch_stats)
    new_params, fresh_p, n_p = _merge(params, variables.get("params", {}), "params")
    new_stats, fresh_s, n_s = _merge(batch_stats, variables.get("batch_stats", {}), "batch_stats")
    if n_p == 0:
        raise ValueError(f"{path}: no parameter matches the configured {kind} model (check its width and depth)")
    report = {"copied": n_p + n_s, "kept_fresh": fresh_p + fresh_s}
    return new_params, new_stats, report
