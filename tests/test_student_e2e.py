"""The `:tiny` student config end to end: train, evaluate, checkpoint, resume, export, multi-device."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from cmemo_jax import export
from cmemo_jax.audio.frontend import spectrogram_from_int16
from cmemo_jax.data import sources
from cmemo_jax.phases import student
from cmemo_jax.train.checkpoint import Checkpointer
import conftest
from conftest import REPO, load_config


def tiny_config(cache_dir, **overrides):
    return conftest.tiny_config("student", cache_dir, **overrides)


def _train_losses(workdir):
    losses = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "train/loss" in row:
                losses[row["step"]] = row["train/loss"]
    return losses


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_cache):
    workdir = str(tmp_path_factory.mktemp("tiny_full"))
    summary = student.run(tiny_config(synthetic_cache), workdir)
    return workdir, summary


def test_tiny_run_trains_evaluates_and_exports(trained, synthetic_cache):
    workdir, summary = trained
    from cmemo_jax.data import records

    data_dir = sources.resolve_records_dir(tiny_config(synthetic_cache).data)
    info = records.read_dataset_info(data_dir)
    results = summary["results"]
    for split in ("heard_val", "unheard_val"):
        assert np.isfinite(results[split]["loss"]) and results[split]["loss"] > 0
        # every validation track evaluated exactly once (padded last batch not counted)
        assert results[split]["num_clips"] == info["num_examples"][split]
        assert 0.0 <= results[split]["mean_auc"] <= 1.0 or np.isnan(results[split]["mean_auc"])
    losses = _train_losses(workdir)
    assert sorted(losses) == [1, 2, 4, 6] and all(np.isfinite(v) for v in losses.values())
    with open(os.path.join(workdir, "results_student.json")) as f:
        assert json.load(f)["selected_step"] == summary["selected_step"]

    model, variables, meta = export.load(os.path.join(workdir, "student.msgpack"))
    assert meta["kind"] == "student" and meta["emotions"][0] == "neutral"
    raw, _, _ = Checkpointer(workdir).restore_raw("best")
    np.testing.assert_array_equal(variables["params"]["fc8"]["kernel"], raw["params"]["fc8"]["kernel"])
    spec = spectrogram_from_int16(np.zeros((2, 64384), np.int16) + 7, dft=student_audio_cfg().dft)
    logits = model.apply(variables, spec, train=False)
    assert logits.shape == (2, 8) and np.all(np.isfinite(logits))


def student_audio_cfg():
    return load_config("student", "tiny").audio


def test_resume_after_kill_gives_the_same_result(trained, tmp_path, synthetic_cache):
    workdir_full, _ = trained
    workdir = str(tmp_path / "killed")
    stopped = student.run(tiny_config(synthetic_cache, stop_at_step=3), workdir)
    assert stopped == {"stopped_at_step": 3}
    assert not os.path.exists(os.path.join(workdir, "student.msgpack"))
    student.run(tiny_config(synthetic_cache), workdir)  # restarts from the step-3 checkpoint
    full, resumed = _train_losses(workdir_full), _train_losses(workdir)
    # step 6 logs the mean loss of steps 5-6, both after the restart
    assert resumed[6] == pytest.approx(full[6], rel=1e-5, abs=1e-6)
    _, v_full, _ = export.load(os.path.join(workdir_full, "student.msgpack"))
    _, v_resumed, _ = export.load(os.path.join(workdir, "student.msgpack"))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), v_full, v_resumed)


_RUN_SNIPPET = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import jax
    from conftest import load_config
    from cmemo_jax.phases import student
    cfg = load_config("student", "tiny")
    cfg.data.cache_dir = {cache!r}
    cfg.log_every_steps = 1
    cfg.num_train_steps = 4
    cfg.eval_every_steps = 4
    print("devices", jax.device_count())
    student.run(cfg, {workdir!r})
""")


def _run_with_devices(n_devices, workdir, cache):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}",
               JAX_PLATFORMS="cpu")
    code = _RUN_SNIPPET.format(tests=os.path.join(REPO, "tests"), cache=cache, workdir=workdir)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"devices {n_devices}" in out.stdout
    return _train_losses(workdir)


def test_same_loss_trajectory_on_1_and_8_devices(tmp_path, synthetic_cache):
    one = _run_with_devices(1, str(tmp_path / "one"), synthetic_cache)
    eight = _run_with_devices(8, str(tmp_path / "eight"), synthetic_cache)
    assert sorted(one) == [1, 2, 3, 4]
    for step in one:
        assert eight[step] == pytest.approx(one[step], rel=1e-4, abs=1e-5)
