"""What the training phases (teacher, student) share once their task is built: the run length,
the start-up line, model_meta.json, `fit`, and the export of the selected model."""
from __future__ import annotations

import json
import os
from typing import Callable

import jax

from cmemo_jax import export
from cmemo_jax.train import loop, optim


def fit_and_export(task, config, workdir: str, describe: Callable[[object], str],
                   on_selected: Callable[[loop.FitResult], None] | None = None) -> dict:
    """Trains `task`, exports the selected model to WORKDIR/config.export_path; -> fit's summary.

    describe(config) gives the start-up line (config has its resolved num_train_steps); on_selected
    (process 0, a finished run only) writes phase-specific reports before the export.
    """
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.num_train_steps = optim.num_train_steps(config, task.num_train_examples)
    if jax.process_index() == 0:
        print(describe(config), flush=True)
        with open(os.path.join(workdir, "model_meta.json"), "w") as f:
            json.dump(task.export_meta(), f, indent=2)
    result = loop.fit(task, config, workdir)
    if "stopped_at_step" in result.summary or jax.process_index() != 0:
        return result.summary
    if on_selected is not None:
        on_selected(result)
    if config.get("export_path"):
        path = os.path.join(workdir, config.export_path)
        export.save(path, task.export_meta(), {"params": result.state.params,
                                               "batch_stats": result.state.batch_stats})
        print(f"exported the {task.kind} of step {result.summary['selected_step']} to {path}", flush=True)
    return result.summary
