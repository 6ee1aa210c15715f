"""The model kinds cmemo_jax builds, and the one way a module is made from (and described by)
plain JSON-able constructor arguments.

Config files (`config.model`), exports (`meta['model']`) and benchmarks all go through `build`, and
`constructor_kwargs` writes every dataclass field of a module back out, so an exported model is
rebuilt exactly as it was trained.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Mapping

import jax.numpy as jnp

from cmemo_jax.errors import ConfigError

# kind -> (module, class); imported on first use so that light tools need not import every model.
MODEL_CLASSES = {
    "student": ("cmemo_jax.models.student", "Student"),
    "teacher": ("cmemo_jax.models.senet", "SENet50"),
}

# flax.linen.Module's own dataclass fields, which are not constructor arguments of the model.
_MODULE_FIELDS = frozenset({"parent", "name"})


def model_class(kind: str):
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"unknown model kind {kind!r} (known: {', '.join(sorted(MODEL_CLASSES))})")
    module_name, class_name = MODEL_CLASSES[kind]
    return getattr(importlib.import_module(module_name), class_name)


def constructor_fields(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in _MODULE_FIELDS and f.init)


def _from_json(name: str, value: Any) -> Any:
    if name == "dtype" or name.endswith("_dtype"):
        return jnp.dtype(value)
    if isinstance(value, list):
        return tuple(_from_json("", v) for v in value)
    return value


def _to_json(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_to_json(v) for v in value]
    if isinstance(value, (jnp.dtype, type)) or hasattr(value, "dtype") and not hasattr(value, "shape"):
        return jnp.dtype(value).name
    return value


def build(kind: str, kwargs: Mapping[str, Any]):
    """A `kind` model from constructor arguments (a config's `model` block or an export's meta).

    Unknown argument names are an error naming them (a typo in `--config.model.x` would otherwise
    be silently ignored); missing ones take the class defaults.
    """
    cls = model_class(kind)
    fields = constructor_fields(cls)
    kwargs = dict(kwargs)
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ConfigError(f"{kind} model: unknown field(s) {', '.join(unknown)} (valid: {', '.join(fields)})")
    return cls(**{k: _from_json(k, v) for k, v in kwargs.items()})


def constructor_kwargs(module) -> dict:
    """Every constructor field of `module` as JSON-able values; `build(kind, ...)` inverts it."""
    return {name: _to_json(getattr(module, name)) for name in constructor_fields(type(module))}


def kind_of(module) -> str:
    for kind, (module_name, class_name) in MODEL_CLASSES.items():
        cls = type(module)
        if cls.__name__ == class_name and cls.__module__ == module_name:
            return kind
    raise ConfigError(f"{type(module).__name__} is not a registered cmemo_jax model")
