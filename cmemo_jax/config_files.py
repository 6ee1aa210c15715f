"""Load a phase config file (configs/*.py) the way `--config=path[:arg]` does, outside absl flags,
and set dotted fields the way `--config.a.b=value` does (tests, notebooks)."""
from __future__ import annotations

import importlib.util
import os


def load_config_file(path: str, arg: str | None = None):
    """`get_config(arg)` of the Python config file at `path` (an ml_collections.ConfigDict)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such config file")
    name = "cmemo_config_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: a config file must define get_config(arg)")
    return module.get_config(arg)


def apply_overrides(config, overrides: dict):
    """Sets dotted fields in place, `{"optim.lr_start": 0.1}` as `--config.optim.lr_start=0.1` would;
    returns `config`. A field that does not exist is a one-line KeyError naming it."""
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for name in parents:
            if name not in node:
                raise KeyError(f"config field {key!r}: no field {name!r}")
            node = node[name]
        if leaf not in node:
            raise KeyError(f"config field {key!r}: no field {leaf!r}")
        node[leaf] = value
    return config
