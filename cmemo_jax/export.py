"""Export trained models to a single msgpack file and load them back.

File layout (flax.serialization msgpack): {'format': 'cmemo_jax', 'version': 1,
'meta': JSON string, 'variables': {'params': ..., 'batch_stats': ...}} with NumPy leaves.
`meta['kind']` names the model ('student'; the teacher registers itself the same way) and
`meta['model']` its constructor arguments, so `load` rebuilds the module without any config file.

CLI: python -m cmemo_jax.export --workdir=DIR --out=FILE.msgpack [--which=best|latest]
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
from flax import serialization

FORMAT_NAME, FORMAT_VERSION = "cmemo_jax", 1


def _model_builders():
    # Imported lazily: export is used by light CLI tools too.
    from cmemo_jax.models.student import Student, student_kwargs

    return {"student": lambda cfg: Student(**student_kwargs(cfg))}


def save(path: str, meta: dict, variables) -> str:
    """Writes `variables` (pytree of arrays) and `meta` (JSON-able dict with 'kind', 'model') to path."""
    if "kind" not in meta or "model" not in meta:
        raise ValueError("export meta needs 'kind' and 'model' entries")
    host = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), variables)
    blob = serialization.msgpack_serialize({"format": FORMAT_NAME, "version": FORMAT_VERSION,
                                            "meta": json.dumps(meta), "variables": host})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)  # never leave a half-written model under the final name
    return path


def load(path: str):
    """-> (model, variables, meta) for any exported cmemo_jax model. Errors name the file."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read model file ({e.strerror})") from None
    try:
        tree = serialization.msgpack_restore(blob)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"{path}: not a cmemo_jax msgpack model ({type(e).__name__})") from None
    if not isinstance(tree, dict) or tree.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a cmemo_jax msgpack model (missing format marker)")
    if tree.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported model format version {tree.get('version')}")
    meta = json.loads(tree["meta"])
    builders = _model_builders()
    if meta.get("kind") not in builders:
        raise ValueError(f"{path}: unknown model kind {meta.get('kind')!r}")
    model = builders[meta["kind"]](meta["model"])
    return model, tree["variables"], meta


def main(argv=None):
    import argparse

    from cmemo_jax.train.checkpoint import Checkpointer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--which", choices=("best", "latest"), default="best")
    args = parser.parse_args(argv)
    meta_path = os.path.join(args.workdir, "model_meta.json")
    if not os.path.exists(meta_path):
        raise SystemExit(f"{meta_path}: missing (written by training); is {args.workdir} a training workdir?")
    with open(meta_path) as f:
        meta = json.load(f)
    ckpt = Checkpointer(args.workdir)
    manager = ckpt.best if args.which == "best" else ckpt.latest
    step = manager.latest_step()
    if step is None:
        raise SystemExit(f"{args.workdir}: no {args.which} checkpoint")
    restored = manager.restore(step)  # raw pytree restore: no model or optimiser needed
    state = restored["state"]
    save(args.out, meta, {"params": state["params"], "batch_stats": state["batch_stats"]})
    print(f"exported step {step} ({args.which}) of {args.workdir} to {args.out}")


if __name__ == "__main__":
    main()
