"""Shared test helpers: load a configs/*.py file the way `--config=path:arg` does."""
import os

import pytest

from cmemo_jax.config_files import apply_overrides, load_config_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str | None = None):
    """configs/<name>.py get_config(arg), as `--config=configs/<name>.py:arg` loads it."""
    return load_config_file(os.path.join(REPO, "configs", f"{name}.py"), arg)


def tiny_config(name: str, cache_dir: str, **overrides):
    """configs/<name>.py:tiny with its data cache in `cache_dir` and dotted overrides
    (`tiny_config("student", cache, **{"optim.lr_start": 0.1})`)."""
    cfg = load_config(name, "tiny")
    cfg.data.cache_dir = cache_dir
    return apply_overrides(cfg, overrides)


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """One cache directory for the synthetic corpora of the whole test session."""
    return str(tmp_path_factory.mktemp("cmemo_cache"))
