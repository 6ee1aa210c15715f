"""Where a phase's record shards come from: the user's records_dir, or the embedded synthetic corpus.

Config fields (`config.data`): source ('synthetic' | 'records'), records_dir, synthetic_preset
('default' | 'demo' | 'tiny'), cache_dir ('' -> cmemo_jax.constants.default_cache_dir()).
"""
from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils

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
    from cmemo_jax.data import synthetic

    return synthetic.corpus_root(data_config.get("cache_dir", "") or None)


def synthetic_config(data_config):
    from cmemo_jax.data import synthetic

    try:
        return synthetic.preset(data_config.synthetic_preset)
    except ValueError as err:
        raise ConfigError(f"config.data.synthetic_preset: {err}") from None


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
