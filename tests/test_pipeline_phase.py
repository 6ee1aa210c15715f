"""configs/pipeline.py:tiny end to end on the embedded corpus: teacher -> label -> student ->
evaluate (on the held-out acted RML / eNTERFACE sets), killed in the student phase and resumed."""
import json
import os

from cmemo_jax import export
from cmemo_jax.phases import pipeline
from conftest import load_config


def test_tiny_pipeline_runs_every_phase_and_resumes_after_a_kill(tmp_path, synthetic_cache, capsys):
    cfg = load_config("pipeline", "tiny")
    for name in ("teacher", "label", "student", "evaluate"):
        cfg[name].data.cache_dir = synthetic_cache
    cfg.student.stop_at_step = 3
    workdir = str(tmp_path / "pipe")
    assert "stopped" in pipeline.run(cfg, workdir)
    assert os.path.exists(os.path.join(workdir, "teacher", "teacher.msgpack"))
    assert not os.path.exists(os.path.join(workdir, "student", "student.msgpack"))
    capsys.readouterr()

    cfg.student.stop_at_step = -1
    summary = pipeline.run(cfg, workdir)
    out = capsys.readouterr().out
    assert "pipeline: teacher done" in out and "resuming from step 3" in out
    assert "nothing to do" in out  # the label phase's splits were complete
    with open(os.path.join(workdir, "evaluate", "results.json")) as f:
        results = json.load(f)
    assert set(results["datasets"]) == {"rml", "enterface"}
    for name in ("rml", "enterface"):
        assert results["datasets"][name]["n_clips"] > 0
    table = open(os.path.join(workdir, "evaluate", "results.md")).read()
    assert "| student (probe) | A |" in table and "| handcrafted (RF) | A |" in table
    # the student trained on the label phase's records, the teacher's logits
    meta = export.load(os.path.join(workdir, "student", "student.msgpack"))[2]
    assert meta["kind"] == "student"
    with open(os.path.join(workdir, "label", "records", "dataset_info.json")) as f:
        assert json.load(f)["source"] == "teacher"
    assert set(summary["timings_s"]) >= {"student", "evaluate"}
