"""Export trained models to a single msgpack file and load them back.

File layout (flax.serialization msgpack): {'format': 'cmemo_jax', 'version': 1,
'meta': JSON string, 'variables': {'params': ..., 'batch_stats': ...}} with NumPy leaves.
`meta['kind']` names the model (a kind of cmemo_jax.models.registry: 'student', 'teacher') and
`meta['model']` every constructor argument, so `load` rebuilds the module without any config file.
Every failure to save or load names the file in one line (`ExportError`).

CLI: python -m cmemo_jax.export --workdir=DIR --out=FILE.msgpack [--which=best|latest]
"""
from __future__ import annotations

import hashlib
import json
import os

import jax
import numpy as np
from flax import serialization

from cmemo_jax.errors import CmemoError

FORMAT_NAME, FORMAT_VERSION = "cmemo_jax", 1


class ExportError(CmemoError, ValueError):
    """A model file that cannot be written or read; the message names it."""


def file_sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MB blocks: names a model in results and head files."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(path: str, meta: dict, variables) -> str:
    """Writes `variables` (pytree of arrays) and `meta` (JSON-able dict with 'kind', 'model') to path."""
    if "kind" not in meta or "model" not in meta:
        raise ValueError("export meta needs 'kind' and 'model' entries")
    if os.path.isdir(path):
        raise ExportError(f"{path}: is a folder; give the model file's name, e.g. {os.path.join(path, 'model.msgpack')}")
    host = jax.tree.map(lambda x: np.asarray(jax.device_get(x)), variables)
    blob = serialization.msgpack_serialize({"format": FORMAT_NAME, "version": FORMAT_VERSION,
                                            "meta": json.dumps(meta), "variables": host})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)  # never leave a half-written model under the final name
    return path


def read_file(path: str, what: str = "model", error=None) -> dict:
    """The raw msgpack tree of a cmemo_jax file (models and probe heads), its format marker and
    version checked; `error` (default ExportError) is raised with one line naming the file."""
    error = error or ExportError
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise error(f"{path}: cannot read {what} file ({e.strerror})") from None
    try:
        tree = serialization.msgpack_restore(blob)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise error(f"{path}: not a cmemo_jax msgpack file ({type(e).__name__})") from None
    if not isinstance(tree, dict) or tree.get("format") != FORMAT_NAME:
        raise error(f"{path}: not a cmemo_jax msgpack file (missing format marker)")
    if tree.get("version") != FORMAT_VERSION:
        raise error(f"{path}: {what} format version {tree.get('version')!r}, this cmemo_jax reads "
                    f"version {FORMAT_VERSION} (a newer cmemo_jax wrote it?)")
    return tree


def load(path: str):
    """-> (model, variables, meta) for any exported cmemo_jax model. Errors name the file."""
    from cmemo_jax.models import registry  # lazily: light CLI tools import this module too

    tree = read_file(path)
    try:
        meta = json.loads(tree["meta"])
        kind, kwargs = meta["kind"], meta["model"]
        if not isinstance(kwargs, dict) or not isinstance(tree["variables"], dict):
            raise TypeError("model arguments or variables are not mappings")
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"{path}: damaged model description ({type(e).__name__}: {e})") from None
    try:
        model = registry.build(kind, kwargs)
    except (ValueError, TypeError) as e:
        raise ExportError(f"{path}: cannot rebuild the {kind!r} model ({e})") from None
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
    try:
        found = Checkpointer(args.workdir).restore_raw(args.which)  # no model or optimiser needed
        if found is None:
            raise SystemExit(f"{args.workdir}: no {args.which} checkpoint")
        state, _, step = found
        save(args.out, meta, {"params": state["params"], "batch_stats": state["batch_stats"]})
    except CmemoError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"exported step {step} ({args.which}) of {args.workdir} to {args.out}")


if __name__ == "__main__":
    main()
