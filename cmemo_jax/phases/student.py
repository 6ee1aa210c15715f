"""The student phase: train the speech student on record shards of teacher-labelled face-tracks,
select it on the unheard-identity validation loss, export it to msgpack."""
from __future__ import annotations

import jax

from cmemo_jax.data import sources
from cmemo_jax.phases.training import fit_and_export
from cmemo_jax.tasks.student import StudentTask
from cmemo_jax.train import checks
from cmemo_jax.train import workdir as workdir_lib


def run(config, workdir: str) -> dict:
    """Trains, evaluates and exports the student; returns the selected model's summary."""
    checks.check_training_config(config)
    sources.check_data_config(config.data)
    with workdir_lib.exclusive_run(workdir, config):
        data_dir = sources.resolve_records_dir(config.data)
        task = StudentTask(config, data_dir)
        return fit_and_export(task, config, workdir, lambda c: (
            f"student: {task.num_train_examples} training tracks in {data_dir}; {c.num_train_steps} steps of "
            f"batch {c.batch_size} on {jax.device_count()} device(s)"))
