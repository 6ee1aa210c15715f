"""Where a phase's record shards come from: the user's records_dir, or the embedded synthetic corpus.

Config fields (`config.data`): source ('synthetic' | 'records'), records_dir, synthetic_preset
('default' | 'demo' | 'tiny'), cache_dir ('' -> cmemo_jax.constants.default_cache_dir()).
"""
from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils

from cmemo_jax.constants import default_cache_dir
from cmemo_jax.data.tf_io import is_remote
from cmemo_jax.errors import ConfigError

SOURCES = ("synthetic", "records")


def check_data_config(data_config) -> None:
    """One-line errors for a data block that cannot work, before any work is done."""
    if data_config.source not in SOURCES:
        raise ConfigError(f"config.data.source={data_config.source!r}: use one of {', '.join(SOURCES)}")
    if data_config.source == "records":
        path = data_config.records_dir
        if not path:
            raise ConfigError("config.data.source='records' needs config.data.records_dir")
        if not is_remote(path) and not os.path.isdir(path):
            raise ConfigError(f"config.data.records_dir={path}: no such folder")


def synthetic_cache_dir(data_config) -> str:
    return os.path.join(data_config.get("cache_dir", "") or default_cache_dir(), "synthetic")


def synthetic_config(data_config):
    from cmemo_jax.data import synthetic

    preset = getattr(synthetic.SyntheticConfig, data_config.synthetic_preset, None)
    if preset is None:
        raise ConfigError(f"config.data.synthetic_preset={data_config.synthetic_preset!r}: use tiny, demo or default")
    return preset()


def resolve_records_dir(data_config) -> str:
    """Directory of record shards: the configured one, or the synthetic corpus (generated once).

    With several processes, process 0 generates the corpus and the others wait for it.
    """
    check_data_config(data_config)
    if data_config.source == "records":
        return data_config.records_dir
    from cmemo_jax.data import synthetic

    cache_dir, cfg = synthetic_cache_dir(data_config), synthetic_config(data_config)
    if jax.process_index() == 0:
        path = synthetic.ensure_corpus(cache_dir, cfg)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("synthetic corpus ready")
    if jax.process_index() != 0:
        path = synthetic.ensure_corpus(cache_dir, cfg)
    return path
