"""Training-config checks that run before any work: one line naming the field that cannot work."""
from __future__ import annotations

from cmemo_jax.errors import ConfigError

POSITIVE_INT_FIELDS = ("batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps")


def check_training_config(config) -> None:
    """Raises ValueError naming the first field whose value cannot work (e.g. batch_size=0)."""
    for name in POSITIVE_INT_FIELDS:
        value = config.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"config.{name}={value!r}: must be a positive integer")
    if int(config.get("keep_checkpoints", 1)) < 1:
        raise ConfigError(f"config.keep_checkpoints={config.keep_checkpoints!r}: keep at least 1 to be able to resume")
    if not (int(config.get("num_train_steps", -1)) > 0 or float(config.get("num_epochs", 0)) > 0):
        raise ConfigError("config.num_train_steps or config.num_epochs must be positive")
    if float(config.get("checkpoint_every_secs", 0) or 0) < 0:
        raise ConfigError(f"config.checkpoint_every_secs={config.checkpoint_every_secs!r}: must be >= 0 (0 = off)")
    if config.get("nonfinite", "stop") not in ("stop", "skip"):
        raise ConfigError(f"config.nonfinite={config.nonfinite!r}: use 'stop' or 'skip'")
    optim = config.get("optim")
    if optim is not None and not (float(optim.lr_start) > 0 and float(optim.lr_end) > 0):
        raise ConfigError(f"config.optim.lr_start / lr_end must be positive (got {optim.lr_start}, {optim.lr_end})")
