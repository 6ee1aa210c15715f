"""The `:tiny` teacher config end to end on the synthetic FERPlus set (through the real FERPlus
reader): train, evaluate with the hard-label protocol, confusion matrix, export, resume, fine-tune."""
import json
import os

import jax
import numpy as np
import pytest

from cmemo_jax import export
from cmemo_jax.phases import teacher
from conftest import tiny_config


def tiny_teacher_config(cache_dir, **overrides):
    return tiny_config("teacher", cache_dir, **overrides)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_cache):
    workdir = str(tmp_path_factory.mktemp("teacher"))
    return workdir, teacher.run(tiny_teacher_config(synthetic_cache), workdir)


def test_tiny_teacher_trains_evaluates_and_exports(trained):
    workdir, summary = trained
    test = summary["results"]["test"]
    assert summary["selection_metric"] == "validation/accuracy"
    assert 0.0 <= test["accuracy"] <= 1.0 and test["num_images"] > 0
    counts = np.asarray(test["confusion"])
    assert counts.shape == (8, 8) and counts.sum() == test["num_images"]
    assert test["accuracy"] == pytest.approx(np.trace(counts) / counts.sum())
    with open(os.path.join(workdir, "confusion_test.json")) as f:
        rows = np.asarray(json.load(f)["confusion"])
    assert np.allclose(rows[counts.sum(axis=1) > 0].sum(axis=1), 1.0)
    assert os.path.getsize(os.path.join(workdir, "confusion_test.png")) > 0
    model, variables, meta = export.load(os.path.join(workdir, "teacher.msgpack"))
    assert meta["kind"] == "teacher" and meta["input"]["size"] == 48
    logits = model.apply(variables, np.full((2, 48, 48, 3), 128.0, np.float32), train=False)
    assert logits.shape == (2, 8) and np.all(np.isfinite(logits))


def test_teacher_resume_after_kill_gives_the_same_model(trained, tmp_path, synthetic_cache):
    full, _ = trained
    workdir = str(tmp_path / "killed")
    assert teacher.run(tiny_teacher_config(synthetic_cache, stop_at_step=4), workdir) == {"stopped_at_step": 4}
    teacher.run(tiny_teacher_config(synthetic_cache), workdir)
    a = export.load(os.path.join(full, "teacher.msgpack"))[1]
    b = export.load(os.path.join(workdir, "teacher.msgpack"))[1]
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def test_fine_tune_from_an_export_with_another_head(trained, tmp_path, synthetic_cache, capsys):
    """The paper's path: start from imported weights (here: a 5-class export, as VGGFace2's 8631-way
    head), the body copied, the 8-way head fresh; frozen stages keep their weights."""
    from cmemo_jax.models import build, constructor_kwargs

    workdir, _ = trained
    model, variables, meta = export.load(os.path.join(workdir, "teacher.msgpack"))
    other = build("teacher", {**constructor_kwargs(model), "num_classes": 5})
    params = jax.tree.map(np.asarray, dict(variables["params"]))
    params["classifier"] = {"kernel": np.zeros((params["classifier"]["kernel"].shape[0], 5), np.float32),
                            "bias": np.zeros((5,), np.float32)}
    src = str(tmp_path / "pretrained.msgpack")
    export.save(src, {**meta, "model": constructor_kwargs(other)}, {"params": params,
                                                                  "batch_stats": variables["batch_stats"]})
    frozen = ("conv1_7x7_s2",)
    cfg = tiny_teacher_config(synthetic_cache, **{"init.from_path": src, "init.frozen": frozen})
    out = str(tmp_path / "ft")
    teacher.run(cfg, out)
    out_text = capsys.readouterr().out
    assert "freshly initialised:" in out_text and "params/classifier/kernel (shape (256, 5) != (256, 8))" in out_text
    tuned = export.load(os.path.join(out, "teacher.msgpack"))[1]
    np.testing.assert_array_equal(tuned["params"]["conv1_7x7_s2"]["kernel"], params["conv1_7x7_s2"]["kernel"])
    assert not np.allclose(tuned["params"]["classifier"]["kernel"], 0.0)
