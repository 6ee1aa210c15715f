"""cmemo_jax.notebook: what the Colab notebooks share (configs with overrides, accelerator, curves)."""
import json
import os

import pytest

from cmemo_jax import notebook
from cmemo_jax.config_files import apply_overrides
from conftest import REPO, load_config


def test_phase_config_is_the_command_lines_config_with_overrides():
    config = notebook.phase_config(REPO, "student", "tiny", {"optim.lr_start": 0.05, "batch_size": 4})
    expected = load_config("student", "tiny")
    expected.optim.lr_start, expected.batch_size = 0.05, 4
    assert config.to_dict() == expected.to_dict()
    assert notebook.phase_config(REPO, "student").to_dict() == load_config("student").to_dict()


def test_unknown_field_and_missing_repository_are_one_line_errors(tmp_path):
    with pytest.raises(KeyError, match=r"config field 'optim.lr_strat': no field 'lr_strat'"):
        notebook.phase_config(REPO, "student", "tiny", {"optim.lr_strat": 0.1})
    with pytest.raises(KeyError, match=r"config field 'optimiser.lr': no field 'optimiser'"):
        apply_overrides(load_config("teacher", "tiny"), {"optimiser.lr": 0.1})
    with pytest.raises(FileNotFoundError, match="REPO_DIR must be a copy of the cmemo_jax repository"):
        notebook.phase_config(str(tmp_path), "student")


def test_accelerator_fields_per_backend_and_config():
    student, teacher = load_config("student", "tiny"), load_config("teacher", "tiny")
    assert notebook.accelerator_overrides("cpu", student) == {}
    assert notebook.accelerator_overrides("gpu", student) == {"model.dtype": "bfloat16"}
    assert notebook.accelerator_overrides("tpu", student) == {"model.dtype": "bfloat16", "audio.dft": "matmul"}
    assert notebook.accelerator_overrides("tpu", teacher) == {"model.dtype": "bfloat16"}   # no audio front-end
    # The tests run on the CPU: accelerator=True changes nothing there, and the user's overrides win.
    assert notebook.accelerator_overrides() == {}
    config = notebook.phase_config(REPO, "student", "tiny", {"model.dtype": "float32"}, accelerator=True)
    assert config.model.dtype == "float32"
    assert notebook.accelerator_summary().startswith("cpu: ") and not notebook.in_colab()


def test_plot_metrics_draws_the_logged_curves(tmp_path):
    rows = [{"step": 1, "train/loss": 2.1, "train/learning_rate": 0.01},
            {"step": 2, "train/loss": 2.0},
            {"step": 2, "heard_val/loss": 4.0, "heard_val/mean_auc": 0.6, "unheard_val/loss": 4.1}]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    assert notebook.read_metrics(str(tmp_path)) == rows
    path = notebook.plot_metrics(str(tmp_path), str(tmp_path / "curves.png"))
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"none of accuracy was logged \(logged: heard_val/loss"):
        notebook.plot_metrics(str(tmp_path), str(tmp_path / "x.png"), metrics=("accuracy",))
    with pytest.raises(FileNotFoundError, match="no metrics yet"):
        notebook.read_metrics(str(tmp_path / "elsewhere"))
