"""The pipeline phase: teacher -> label -> student -> evaluate, each in WORKDIR/<phase>, wired together.

A phase whose export already exists (teacher.msgpack, student.msgpack) is not run again; the label
phase skips its completed splits itself; so rerunning the same command after a kill at any point
resumes where it stopped. Ends with the Table-5-shaped results and the heard/unheard AUCs.
"""
from __future__ import annotations

import os
import time

from cmemo_jax.phases import evaluate, label, student, teacher
from cmemo_jax.train import workdir as workdir_lib


def write_acted_sets(out_dir: str, n_speakers: int) -> tuple[str, str]:
    """The embedded corpus's held-out acted sets, `n_speakers` each (written once; a rerun finds them)
    -> (rml_dir, enterface_dir)."""
    from cmemo_jax.data.synthetic import acted

    rml, enterface = os.path.join(out_dir, "rml"), os.path.join(out_dir, "enterface")
    done = os.path.join(out_dir, "_COMPLETE")
    if not os.path.exists(done):
        acted.write_rml(rml, n_speakers=n_speakers)
        acted.write_enterface(enterface, n_subjects=n_speakers)
        with open(done, "w") as f:
            f.write("acted sets written\n")
    return rml, enterface


class _Stopped(Exception):
    """A phase stopped early (its stop_at_step test hook): the pipeline stops as a killed run would."""


def _stage(name: str, workdir: str, fn, timings: dict):
    print(f"\n=== pipeline: {name} ({workdir}) ===", flush=True)
    start = time.monotonic()
    result = fn()
    timings[name] = time.monotonic() - start
    if isinstance(result, dict) and "stopped_at_step" in result:
        raise _Stopped(f"{name} stopped at step {result['stopped_at_step']}")
    return result


def _train_once(name: str, run_phase, phase_config, workdir: str, timings: dict) -> str:
    """Runs a training phase unless its export exists (it is written last); -> the export's path."""
    path = os.path.join(workdir, phase_config.export_path)
    if os.path.exists(path):
        print(f"pipeline: {name} done ({path})", flush=True)
    else:
        _stage(name, workdir, lambda: run_phase(phase_config, workdir), timings)
    return path


def run(config, workdir: str) -> dict:
    try:
        return _run(config, workdir)
    except _Stopped as stop:
        print(f"pipeline: {stop}; run the same command again to resume", flush=True)
        return {"stopped": str(stop)}


def _run(config, workdir: str) -> dict:
    dirs = {name: os.path.join(workdir, name) for name in ("teacher", "label", "student", "evaluate")}
    timings: dict = {}
    with workdir_lib.exclusive_run(workdir, config):
        c = config.copy_and_resolve_references()
        teacher_model = _train_once("teacher", teacher.run, c.teacher, dirs["teacher"], timings)

        with c.label.unlocked():
            c.label.label.teacher_model = teacher_model
        records_dir = c.label.out_dir or os.path.join(dirs["label"], "records")
        _stage("label", dirs["label"], lambda: label.run(c.label, dirs["label"]), timings)

        with c.student.unlocked():
            c.student.data.source, c.student.data.records_dir = "records", records_dir
        student_model = _train_once("student", student.run, c.student, dirs["student"], timings)

        with c.evaluate.unlocked():
            e = c.evaluate.eval
            e.model, e.teacher_model = student_model, teacher_model
            c.evaluate.data.source, c.evaluate.data.records_dir = "records", records_dir
            if c.acted_sets and not (e.rml_dir or e.enterface_dir or e.manifest):
                e.rml_dir, e.enterface_dir = write_acted_sets(os.path.join(workdir, "acted"), c.acted_speakers)
        summary = _stage("evaluate", dirs["evaluate"], lambda: evaluate.run(c.evaluate, dirs["evaluate"]), timings)
    print("pipeline: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items())
          + f"; results in {os.path.join(dirs['evaluate'], 'results.md')}", flush=True)
    return {"timings_s": timings, "evaluate": summary}
