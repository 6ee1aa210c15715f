"""Shared test helpers: load a configs/*.py file the way `--config=path:arg` does."""
import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str | None = None):
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """One cache directory for the synthetic corpora of the whole test session."""
    return str(tmp_path_factory.mktemp("cmemo_cache"))
