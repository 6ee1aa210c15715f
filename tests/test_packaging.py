"""Every folder of modules under cmemo_jax/ is a package that `pip install .` (or a wheel) ships."""
import importlib.util
import os

import setuptools

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module_folders():
    root = os.path.join(REPO, "cmemo_jax")
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if any(f.endswith(".py") for f in files):
            yield os.path.relpath(folder, REPO).replace(os.sep, ".")


def test_every_module_folder_is_found_by_setuptools():
    found = set(setuptools.find_packages(where=REPO, include=["cmemo_jax*"]))
    missing = sorted(set(_module_folders()) - found)
    assert not missing, f"folders without __init__.py are left out of the wheel: {missing}"


def test_the_imported_package_holds_every_subpackage():
    # CI imports the installed (non-editable) package: each folder must be there too.
    for name in _module_folders():
        assert importlib.util.find_spec(name) is not None, f"{name} is not importable from the installed package"
