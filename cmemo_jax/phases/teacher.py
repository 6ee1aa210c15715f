"""The teacher phase: train (or fine-tune) SE-ResNet-50 on FERPlus, select it on PublicTest accuracy,
report PrivateTest accuracy (hard-label protocol), per-class accuracy and the confusion matrix,
export it to msgpack."""
from __future__ import annotations

import os

import jax

from cmemo_jax import constants
from cmemo_jax.errors import ConfigError
from cmemo_jax.tasks.teacher import TeacherTask
from cmemo_jax.phases.training import fit_and_export
from cmemo_jax.train import checks
from cmemo_jax.train import workdir as workdir_lib


def resolve_ferplus_dir(data_config) -> str:
    """The folder holding fer2013.csv + fer2013new.csv: the user's, or the synthetic FERPlus set
    (rendered faces with simulated annotator votes, generated once into the cache)."""
    if data_config.source == "ferplus":
        if not data_config.ferplus_dir or not os.path.isdir(data_config.ferplus_dir):
            raise ConfigError(f"config.data.ferplus_dir={data_config.ferplus_dir!r}: no such folder "
                              f"(it must hold fer2013.csv and fer2013new.csv)")
        return data_config.ferplus_dir
    if data_config.source != "synthetic":
        raise ConfigError(f"config.data.source={data_config.source!r}: use 'ferplus' or 'synthetic'")
    from cmemo_jax.data.synthetic import ferplus as synthetic_ferplus

    from cmemo_jax.data.sources import synthetic_cache_dir

    return synthetic_ferplus.ensure_ferplus(synthetic_cache_dir(data_config), data_config.synthetic_preset)


def _write_confusion(workdir: str, name: str, summary: dict):
    from cmemo_jax.metrics.figures import save_confusion
    import numpy as np

    counts = np.asarray(summary["confusion"], np.float64)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    save_confusion(rows, list(constants.EMOTIONS), os.path.join(workdir, f"confusion_{name}"),
                   title=f"teacher, FERPlus {name}: accuracy {summary['accuracy']:.3f}", counts=counts)


def run(config, workdir: str) -> dict:
    """Trains, evaluates and exports the teacher; returns the selected model's summary."""
    from cmemo_jax.data.ferplus import load_ferplus

    checks.check_training_config(config)
    with workdir_lib.exclusive_run(workdir, config):
        ferplus_dir = resolve_ferplus_dir(config.data)
        task = TeacherTask(config, load_ferplus(ferplus_dir))
        sizes = {k: len(v["label"]) for k, v in task.splits.items()}

        def report(result):
            for name, summary in result.summary["results"].items():
                _write_confusion(workdir, name, summary)
            test = result.summary["results"]["test"]
            print(f"teacher: PrivateTest accuracy {test['accuracy']:.4f} (hard-label protocol, "
                  f"{test['num_images']} images)", flush=True)

        return fit_and_export(task, config, workdir, lambda c: (
            f"teacher: FERPlus in {ferplus_dir}: {sizes}; {c.num_train_steps} steps of batch {c.batch_size} "
            f"at {task.image_size}x{task.image_size} on {jax.device_count()} device(s)"), on_selected=report)
