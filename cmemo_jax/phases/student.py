"""The student phase: train the speech student on record shards of teacher-labelled face-tracks,
select it on the unheard-identity validation loss, export it to msgpack."""
from __future__ import annotations

import json
import os

import jax

from cmemo_jax import export
from cmemo_jax.data import sources
from cmemo_jax.tasks.student import StudentTask
from cmemo_jax.train import checks, loop, optim
from cmemo_jax.train import workdir as workdir_lib


def run(config, workdir: str) -> dict:
    """Trains, evaluates and exports the student; returns the selected model's summary."""
    checks.check_training_config(config)
    sources.check_data_config(config.data)
    with workdir_lib.exclusive_run(workdir, config):
        data_dir = sources.resolve_records_dir(config.data)
        task = StudentTask(config, data_dir)
        config = config.copy_and_resolve_references()
        with config.unlocked():
            config.num_train_steps = optim.num_train_steps(config, task.num_train_examples)
        if jax.process_index() == 0:
            print(f"student: {task.num_train_examples} training tracks in {data_dir}; "
                  f"{config.num_train_steps} steps of batch {config.batch_size} on {jax.device_count()} device(s)",
                  flush=True)
            with open(os.path.join(workdir, "model_meta.json"), "w") as f:
                json.dump(task.export_meta(), f, indent=2)
        result = loop.fit(task, config, workdir)
        if "stopped_at_step" not in result.summary and jax.process_index() == 0 and config.get("export_path"):
            path = os.path.join(workdir, config.export_path)
            export.save(path, task.export_meta(), {"params": result.state.params,
                                                   "batch_stats": result.state.batch_stats})
            print(f"exported the model of step {result.summary['selected_step']} to {path}", flush=True)
        return result.summary
