"""The trainer's failure rules (issue: preemption-safe training, checkpoint fallback, one workdir
one run, bad configuration): each test makes the failure for real (killed runs, damaged
checkpoints written by the test, signals to a real subprocess, two processes on one workdir)."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cmemo_jax import export
from cmemo_jax.errors import CmemoError, ConfigError
from cmemo_jax.phases import student
from cmemo_jax.train.checkpoint import Checkpointer, CheckpointError
from cmemo_jax.train.workdir import WorkdirError, config_differences
from conftest import REPO
from test_student_e2e import tiny_config


def _export(workdir):
    return export.load(os.path.join(workdir, "student.msgpack"))[1]


def _assert_same_model(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def _logged_steps(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [(row["step"], tuple(sorted(k for k in row if k != "step"))) for row in map(json.loads, f)]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, synthetic_cache):
    """The uninterrupted tiny run (6 steps, eval and checkpoint every 3) every failure must reproduce."""
    workdir = str(tmp_path_factory.mktemp("full"))
    student.run(tiny_config(synthetic_cache, checkpoint_every_steps=1), workdir)
    return workdir


def test_best_without_checkpoints_resumes(full_run, tmp_path, synthetic_cache):
    """Killed at an eval step with best/ ahead of checkpoints/ (or checkpoints/ deleted by hand):
    the rerun no longer dies on an existing step, and reproduces the uninterrupted run."""
    workdir = str(tmp_path / "w")
    student.run(tiny_config(synthetic_cache, checkpoint_every_steps=1, stop_at_step=3), workdir)
    ckpt = Checkpointer(workdir)
    assert ckpt.best.all_steps() == [3] and 3 in ckpt.latest.all_steps()
    ckpt.close()
    import shutil
    shutil.rmtree(os.path.join(workdir, "checkpoints", "3"))  # as if killed between the two saves
    student.run(tiny_config(synthetic_cache, checkpoint_every_steps=1), workdir)
    _assert_same_model(_export(full_run), _export(workdir))
    # metrics.jsonl: the replayed step 3 is logged once, not twice (the resumed run also logs its
    # first step, step 3, as every run does)
    steps = _logged_steps(workdir)
    assert len(steps) == len(set(steps)) and set(_logged_steps(full_run)) <= set(steps)


def _damage(step_dir, how):
    files = sorted(p for p in glob.glob(os.path.join(step_dir, "**", "*"), recursive=True) if os.path.isfile(p))
    if how == "truncate":
        for path in files:
            if os.path.getsize(path) > 100 and "state" in path:
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
    elif how == "no_metadata":
        for path in files:
            if os.path.basename(path) in ("_METADATA", "metadata"):
                os.remove(path)
    elif how == "empty":
        import shutil
        for entry in os.listdir(step_dir):
            full = os.path.join(step_dir, entry)
            shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)


@pytest.mark.parametrize("how", ["truncate", "no_metadata", "empty"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(full_run, tmp_path, synthetic_cache, capsys, how):
    workdir = str(tmp_path / "w")
    student.run(tiny_config(synthetic_cache, checkpoint_every_steps=1, stop_at_step=5), workdir)
    _damage(os.path.join(workdir, "checkpoints", "5"), how)
    student.run(tiny_config(synthetic_cache, checkpoint_every_steps=1), workdir)
    out = capsys.readouterr().out
    assert "skipping damaged checkpoint" in out and "checkpoints/5" in out and "resuming from step 4" in out
    _assert_same_model(_export(full_run), _export(workdir))


def test_no_loadable_checkpoint_is_one_line(tmp_path, synthetic_cache):
    workdir = str(tmp_path / "w")
    student.run(tiny_config(synthetic_cache, checkpoint_every_steps=1, stop_at_step=2), workdir)
    for step_dir in glob.glob(os.path.join(workdir, "checkpoints", "*")):
        _damage(step_dir, "empty")
    with pytest.raises(CheckpointError) as err:
        student.run(tiny_config(synthetic_cache, checkpoint_every_steps=1), workdir)
    assert "\n" not in str(err.value) and "no checkpoint loads" in str(err.value)


def test_export_latest_falls_back_too(tmp_path, synthetic_cache):
    workdir = str(tmp_path / "w")
    student.run(tiny_config(synthetic_cache, checkpoint_every_steps=1, stop_at_step=2), workdir)
    _damage(os.path.join(workdir, "checkpoints", "2"), "truncate")
    export.main(["--workdir", workdir, "--out", str(tmp_path / "m.msgpack"), "--which", "latest"])
    assert export.load(str(tmp_path / "m.msgpack"))[2]["kind"] == "student"


def test_config_changes_that_change_the_result_stop_a_resume(tmp_path, synthetic_cache):
    workdir = str(tmp_path / "w")
    student.run(tiny_config(synthetic_cache, stop_at_step=2), workdir)
    cfg = tiny_config(synthetic_cache)
    cfg.optim.lr_start = 0.5
    with pytest.raises(WorkdirError, match=r"optim\.lr_start \(0\.01 -> 0\.5\)"):
        student.run(cfg, workdir)
    cfg.allow_config_change = True
    assert "selected_step" in student.run(cfg, workdir)
    # logging and checkpoint cadence may change between resumes
    assert config_differences({"log_every_steps": 1, "model": {"fc6_features": 4}},
                              {"log_every_steps": 7, "model": {"fc6_features": 5}}) == ["model.fc6_features"]


@pytest.mark.parametrize("field,value", [("batch_size", 0), ("log_every_steps", 0), ("eval_every_steps", 0),
                                         ("checkpoint_every_steps", 0), ("keep_checkpoints", 0)])
def test_bad_config_fails_before_any_work_naming_the_field(tmp_path, synthetic_cache, field, value):
    with pytest.raises(ConfigError, match=f"config.{field}="):
        student.run(tiny_config(synthetic_cache, **{field: value}), str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w")


def test_bad_data_dir_and_workdir(tmp_path, synthetic_cache):
    cfg = tiny_config(synthetic_cache)
    cfg.data.source, cfg.data.records_dir = "records", str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="nowhere: no such folder"):
        student.run(cfg, str(tmp_path / "w"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(WorkdirError, match="is a file"):
        student.run(tiny_config(synthetic_cache), str(tmp_path / "afile"))
    # A bucket URL would become a local folder named 'gs:' (the lock and logs are local files).
    with pytest.raises(WorkdirError, match=r"gs://bucket/run is a URL: use a local or mounted folder"):
        student.run(tiny_config(synthetic_cache), "gs://bucket/run")
    assert not os.path.exists("gs:")


def test_nonfinite_loss_stops_naming_the_step_and_saves_no_nan(tmp_path, synthetic_cache):
    workdir = str(tmp_path / "w")
    cfg = tiny_config(synthetic_cache, checkpoint_every_steps=1)
    cfg.optim.lr_start = cfg.optim.lr_end = 1e30  # the first update overflows the weights
    with pytest.raises(FloatingPointError, match=r"^step \d+: the loss or gradient is not finite") as err:
        student.run(cfg, workdir)
    assert isinstance(err.value, FloatingPointError) and "\n" not in str(err.value)
    for step in Checkpointer(workdir).latest.all_steps():
        state, _, _ = Checkpointer(workdir).restore_raw("latest")
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["params"]))
    cfg.nonfinite = "skip"
    summary = student.run(cfg, str(tmp_path / "skip"))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(_export(str(tmp_path / "skip"))))
    assert summary["selected_step"] >= 1


def test_export_errors_name_the_file(tmp_path):
    from flax import serialization

    with pytest.raises(CmemoError, match="is a folder"):
        export.save(str(tmp_path), {"kind": "student", "model": {}}, {"params": {}})
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(serialization.msgpack_serialize({"format": "cmemo_jax", "version": 1, "meta": "{oops",
                                                     "variables": {}}))
    with pytest.raises(CmemoError, match=f"{bad}: damaged model description"):
        export.load(str(bad))
    newer = tmp_path / "newer.msgpack"
    newer.write_bytes(serialization.msgpack_serialize({"format": "cmemo_jax", "version": 99, "meta": "{}",
                                                       "variables": {}}))
    with pytest.raises(CmemoError, match="version 99"):
        export.load(str(newer))


# ---------------------------------------------------------------------------------- real processes

def _start(workdir, cache, *extra):
    cmd = [sys.executable, "-m", "cmemo_jax.main", f"--config={REPO}/configs/student.py:tiny",
           f"--workdir={workdir}", f"--config.data.cache_dir={cache}", "--config.num_train_steps=100000",
           "--config.log_every_steps=1", "--config.eval_every_steps=100000", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"))


def _wait_for_line(proc, text, timeout=300):
    deadline = time.time() + timeout
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if text in line:
            return lines
    proc.kill()
    raise AssertionError(f"never printed {text!r}: {''.join(lines)[-2000:]} {proc.stderr.read()[-2000:]}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_exits_cleanly(tmp_path, synthetic_cache, sig):
    workdir = str(tmp_path / "w")
    proc = _start(workdir, synthetic_cache)
    _wait_for_line(proc, "step 2/")
    if sig == signal.SIGTERM:  # one workdir, one run: a second run is refused while the first holds it
        other = _start(workdir, synthetic_cache)
        _, err = other.communicate(timeout=300)
        assert other.returncode == 2 and f"is in use by pid {proc.pid}" in err and "Traceback" not in err
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "saved a checkpoint" in err and "Traceback" not in err
    steps = Checkpointer(workdir).latest.all_steps()
    assert steps and max(steps) >= 2
    # the rerun resumes where the signal stopped the first one
    proc = _start(workdir, synthetic_cache)
    _wait_for_line(proc, f"resuming from step {max(steps)}")
    proc.kill()
    proc.communicate()


def test_typo_in_a_config_field_is_one_line(tmp_path, synthetic_cache):
    out = subprocess.run([sys.executable, "-m", "cmemo_jax.main", f"--config={REPO}/configs/student.py:tiny",
                          f"--workdir={tmp_path / 'w'}", "--config.batch_sise=3"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "batch_sise" in out.stderr and 'Did you mean "batch_size"' in out.stderr
