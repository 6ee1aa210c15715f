"""Config blocks every phase config shares (configs/*.py), written once.

`training_fields` are the fields the shared trainer (cmemo_jax.train.loop.fit) reads; each training
phase sets its own sizes and cadence on top. `distributed_block` is the multi-host start-up that
cmemo_jax.main reads (README, "Multi-device and multi-host").
"""
from __future__ import annotations

import ml_collections


def distributed_block() -> ml_collections.ConfigDict:
    """Multi-host: an explicit coordinator, or `auto=True` on TPU pod slices / SLURM."""
    d = ml_collections.ConfigDict()
    d.coordinator_address = ""
    d.num_processes = 0
    d.process_id = -1
    d.auto = False
    return d


def add_training_fields(c: ml_collections.ConfigDict, *, export_path: str, batch_size: int, num_epochs: float,
                        log_every_steps: int, eval_every_steps: int, checkpoint_every_steps: int) -> None:
    """The trainer's fields on config `c` (in place)."""
    # Start from a pretrained export; `frozen` lists top-level modules that then stay as loaded.
    c.init = ml_collections.ConfigDict()
    c.init.from_path = ""
    c.init.frozen = ()
    c.batch_size = batch_size             # global, split over all devices and processes
    c.num_epochs = num_epochs
    c.num_train_steps = -1                # > 0 overrides num_epochs
    c.log_every_steps = log_every_steps
    c.eval_every_steps = eval_every_steps
    c.checkpoint_every_steps = checkpoint_every_steps
    c.checkpoint_every_secs = 600         # also save at the first log step after this many seconds
    c.keep_checkpoints = 2
    c.export_path = export_path
    c.nonfinite = "stop"                  # a NaN/inf loss: 'stop' naming the step | 'skip' the step
    c.selection_metric = ""               # '' -> the task's; e.g. 'unheard_val/loss'
    c.selection_mode = ""                 # '' -> the task's; 'min' | 'max'
    c.allow_config_change = False         # resume a workdir whose config differs (README)
    c.stop_at_step = -1                   # tests: stop after this step as if killed
    c.distributed = distributed_block()
