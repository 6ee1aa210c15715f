"""The one home of the lazy TensorFlow import and of the local-vs-remote path rule of cmemo_jax.data.

Record shards may live on local disk or behind a URL (``gs://bucket/dir``): local paths go through
``os`` (no TensorFlow needed), URLs through ``tf.io.gfile``. TensorFlow is imported only when a
function needs it, so modules that import this one still run where TensorFlow is absent (docs/method.md §6).
"""
from __future__ import annotations

import os

__all__ = ["import_tf", "is_remote", "exists", "isdir", "listdir", "makedirs", "remove", "rename", "join"]


def import_tf():
    """The tensorflow module, imported on first use (only the input pipeline and the writers need it)."""
    import tensorflow as tf
    return tf


def is_remote(path) -> bool:
    """True for URLs such as gs://bucket/dir (handled through tf.io.gfile instead of os)."""
    return "://" in str(path)


def join(directory: str, name: str) -> str:
    """directory/name; URLs keep their '/' separators whatever the host OS."""
    if is_remote(directory):
        return f"{str(directory).rstrip('/')}/{name}"
    return os.path.join(directory, name)


def exists(path: str) -> bool:
    return import_tf().io.gfile.exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return import_tf().io.gfile.isdir(path) if is_remote(path) else os.path.isdir(path)


def listdir(path: str) -> list[str]:
    """Entry names (not paths) of a directory, sorted; sub-directory names without a trailing '/'."""
    if is_remote(path):
        return sorted(n.rstrip("/") for n in import_tf().io.gfile.listdir(path))
    return sorted(os.listdir(path))


def makedirs(path: str) -> None:
    if is_remote(path):
        import_tf().io.gfile.makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def remove(path: str) -> None:
    if is_remote(path):
        import_tf().io.gfile.remove(path)
    else:
        os.remove(path)


def rename(src: str, dst: str) -> None:
    """Moves src onto dst, replacing dst (atomic on one local filesystem)."""
    if is_remote(src):
        import_tf().io.gfile.rename(src, dst, overwrite=True)
    else:
        os.replace(src, dst)
