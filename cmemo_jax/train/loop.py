"""The shared training loop: resume, sharded steps, periodic evaluation, checkpoints, best model.

`fit(task, config, workdir)` trains any `cmemo_jax.train.task.Task` and returns the selected state;
the phase exports it. Config fields used: seed, batch_size, num_train_steps, optim.*, init.*,
log_every_steps, eval_every_steps, checkpoint_every_steps, checkpoint_every_secs,
keep_checkpoints, nonfinite, stop_at_step, selection_metric / selection_mode (override the task's).

What survives what (README, "When things go wrong"): a checkpoint (state + data position) every
checkpoint_every_steps / checkpoint_every_secs and at every evaluation; SIGTERM/SIGINT save one
after the current step; kill -9 loses the steps since the last one, and the rerun replays them
bit-identically.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from cmemo_jax.errors import ConfigError
from cmemo_jax.train import collect, optim, preemption
from cmemo_jax.train import sharding as sharding_lib
from cmemo_jax.train import step as step_lib
from cmemo_jax.train import workdir as workdir_lib
from cmemo_jax.train.checkpoint import Checkpointer, abstract_like
from cmemo_jax.train.state import TrainState

NONFINITE_POLICIES = ("stop", "skip")


@dataclasses.dataclass
class FitResult:
    """state: the selected TrainState; summary: {'selected_step', 'selection_metric', 'results'}."""

    state: TrainState
    summary: dict


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Console progress: step, steps/s, examples/s and ETA, measured between reports."""

    def __init__(self, total_steps: int, batch_size: int, start_step: int):
        self.total, self.batch_size = total_steps, batch_size
        self.last_step, self.last_time = start_step, time.perf_counter()

    def report(self, step: int, scalars: dict) -> dict:
        now = time.perf_counter()
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        eta = (self.total - step) / rate if rate > 0 else float("inf")
        text = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
        line = (f"step {step}/{self.total} ({100.0 * step / self.total:.1f}%) {text} "
                f"| {rate:.2f} steps/s {rate * self.batch_size:.1f} examples/s | ETA {_format_eta(eta)}")
        if jax.process_index() == 0:
            print(line, flush=True)
        return {"steps_per_sec": rate, "examples_per_sec": rate * self.batch_size}


def evaluate(task, eval_step, state, mesh) -> dict:
    """Runs every eval dataset of the task once; returns {name: task.summarize(name, outputs)}."""
    results = {}
    for name, make_batches in task.eval_datasets().items():
        outputs = collect.collect_outputs(lambda batch: eval_step(state, batch), make_batches(), mesh)
        if not outputs:
            raise ValueError(f"eval dataset {name!r} is empty")
        results[name] = task.summarize(name, outputs)
    return results


def _scalars(results: dict) -> dict:
    return {f"{name}/{key}": float(value) for name, summary in results.items()
            for key, value in summary.items() if isinstance(value, (int, float, np.floating, np.integer))}


def _selection(task, config) -> tuple[str, str, str]:
    metric = config.get("selection_metric", "") or task.selection_metric
    mode = config.get("selection_mode", "") or getattr(task, "selection_mode", "min")
    if mode not in ("min", "max") or "/" not in metric:
        raise ConfigError(f"selection: metric {metric!r} must be 'dataset/metric' and mode {mode!r} 'min' or 'max'")
    name, key = metric.split("/", 1)
    return name, key, mode


def _better(value: float, best, mode: str) -> bool:
    if best is None:
        return math.isfinite(value)
    return value < best if mode == "min" else value > best


def _init_or_resume(task, config, workdir, tx, mesh, init_rng):
    """(state, progress, checkpointer): resumed from the workdir, else fresh (or from init.from_path)."""
    state = step_lib.init_state(task, tx, init_rng, task.example_batch(), mesh)
    ckpt = Checkpointer(workdir, max_to_keep=config.keep_checkpoints)
    restored = ckpt.restore_latest(abstract_like(state))
    if restored is not None:
        state, progress = restored
        if jax.process_index() == 0:
            print(f"resuming from step {progress['step']} (checkpoint in {workdir})", flush=True)
        if progress.get("best_step") == progress["step"] and progress["step"] not in ckpt.best.all_steps():
            ckpt.save_best(progress["step"], state, dict(progress))  # killed between the two saves
        return state, progress, ckpt
    init_path = config.get("init", {}).get("from_path", "")
    if init_path:
        from cmemo_jax.train.init_from import load_pretrained

        params, stats, report = load_pretrained(init_path, task.export_meta()["kind"], state.params,
                                                state.batch_stats)
        replicated = sharding_lib.replicated(mesh)
        params, stats = jax.device_put((params, stats), replicated)
        state = TrainState(step=state.step, params=params, batch_stats=stats,
                           opt_state=jax.jit(tx.init, out_shardings=replicated)(params))
        if jax.process_index() == 0:
            fresh = report["kept_fresh"]
            print(f"initialised {report['copied']} arrays from {init_path}"
                  + (f"; freshly initialised: {', '.join(fresh)}" if fresh else ""), flush=True)
    return state, {"step": 0, "best_metric": None, "best_step": None}, ckpt


class _NonFiniteWatch:
    """Per-step `nonfinite` flags kept on the device until the next check (no per-step sync)."""

    def __init__(self, policy: str):
        if policy not in NONFINITE_POLICIES:
            raise ConfigError(f"config.nonfinite={policy!r}: use one of {', '.join(NONFINITE_POLICIES)}")
        self.policy, self.pending, self.skipped = policy, [], 0

    def add(self, step, flag):
        self.pending.append((step, flag))

    def check(self):
        """Raises FloatingPointError naming the first bad step ('stop'), or counts it ('skip')."""
        if not self.pending:
            return
        flags = np.asarray(jax.device_get([f for _, f in self.pending]))
        bad = [s for (s, _), f in zip(self.pending, flags) if f > 0]
        self.pending = []
        if not bad:
            return
        if self.policy == "stop":
            raise FloatingPointError(
                f"step {bad[0]}: the loss or gradient is not finite (NaN/inf); the weights were not "
                f"updated and no NaN was saved; lower the learning rate, check the data, or set "
                f"--config.nonfinite=skip")
        self.skipped += len(bad)
        if jax.process_index() == 0:
            print(f"warning: skipped {len(bad)} step(s) with a non-finite loss (first: step {bad[0]})", flush=True)


def fit(task, config, workdir: str) -> FitResult:
    """Train `task` as `config` says, resuming from `workdir` if it holds a checkpoint.

    Returns the selected state (best on the selection metric, or the last if never evaluated) and
    its evaluation, also written to workdir/results_<phase>.json.
    """
    # clu's metric writers import TensorFlow (its summary writer); imported here so that this
    # module, like the model and the step, imports on machines without TensorFlow.
    from clu import metric_writers

    mesh = sharding_lib.make_mesh()
    sharding_lib.check_batch_size(config.batch_size, mesh)
    total_steps = int(config.num_train_steps)
    frozen = tuple(config.get("init", {}).get("frozen", ()) or ())
    schedule = optim.make_schedule(config.optim, total_steps)
    tx = optim.make_optimizer(config.optim, total_steps, frozen=frozen)
    init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
    selection_name, selection_key, selection_mode = _selection(task, config)
    watch = _NonFiniteWatch(config.get("nonfinite", "stop"))

    state, progress, ckpt = _init_or_resume(task, config, workdir, tx, mesh, init_rng)
    start_step = int(progress["step"])
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    if jax.process_index() == 0:
        workdir_lib.trim_metrics_log(metrics_path, start_step)

    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    if start_step == 0:
        writer.write_hparams(_flatten_config(config))
    train_step = step_lib.make_train_step(task, tx, mesh, lr_schedule=schedule, frozen=frozen)
    eval_step = step_lib.make_eval_step(task, mesh)
    meter = Progress(total_steps, config.batch_size, start_step)

    batches = task.train_batches(start_step)
    metrics_sum, metrics_count = None, 0
    checkpoint_secs = float(config.get("checkpoint_every_secs", 0) or 0)
    last_save = time.monotonic()
    last_eval = None  # (step, results) of the latest evaluation
    try:
        with preemption.StopRequests() as stop:
            for step in range(start_step + 1, total_steps + 1):
                state, metrics = train_step(state, sharding_lib.device_batch(next(batches), mesh), step_rng)
                progress["step"] = step  # what a checkpoint of `state` taken now records
                watch.add(step, metrics["nonfinite"])
                metrics_sum = metrics if metrics_sum is None else jax.tree.map(lambda a, b: a + b, metrics_sum, metrics)
                metrics_count += 1
                # The first step (compilation included) is reported too, so slow machines show life at once.
                is_log = step % config.log_every_steps == 0 or step == total_steps or step == start_step + 1
                is_eval = step % config.eval_every_steps == 0 or step == total_steps
                stop_now = _agreed(stop.signum is not None) or step == config.get("stop_at_step", -1)
                due = is_log and checkpoint_secs > 0 and _agreed(time.monotonic() - last_save >= checkpoint_secs)
                is_save = is_eval or due or step % config.checkpoint_every_steps == 0 or stop_now
                if is_log or is_save:
                    watch.check()  # before any save: a NaN run stops here, with its weights intact
                if is_log:
                    _log_train(writer, metrics_path, meter, step, metrics_sum, metrics_count)
                    metrics_sum, metrics_count = None, 0
                is_best = False
                if is_eval:  # before the save, so that the checkpoint's progress knows the best
                    results = evaluate(task, eval_step, state, mesh)
                    last_eval = (step, results)
                    _log_eval(writer, metrics_path, step, results)
                    metric = float(results[selection_name][selection_key])
                    if _better(metric, progress["best_metric"], selection_mode):
                        progress.update(best_metric=metric, best_step=step)
                        is_best = True
                if is_save:
                    ckpt.save(step, state, dict(progress))
                    last_save = time.monotonic()
                if is_best:
                    ckpt.save_best(step, state, dict(progress))
                writer.flush()
                if stop_now:
                    ckpt.wait()
                    if stop.signum is not None:
                        raise preemption.Interrupted(stop.signum, step, workdir)
                    # Test hook (stop_at_step): leave as a killed run would (no final export).
                    return FitResult(state, {"stopped_at_step": step})
        ckpt.wait()
        return _select_and_report(task, config, workdir, state, ckpt, eval_step, mesh, last_eval, total_steps)
    finally:
        writer.close()
        ckpt.close()


def _select_and_report(task, config, workdir, state, ckpt, eval_step, mesh, last_eval, total_steps):
    """The model selected on the validation metric, its evaluation, results_<phase>.json."""
    best = ckpt.restore_best(abstract_like(state))
    final_step = total_steps
    if best is not None:
        state, best_progress = best
        final_step = int(best_progress["step"])
    if last_eval is not None and last_eval[0] == final_step:
        final = last_eval[1]  # the selected model is the one just evaluated: no second pass
    else:
        final = evaluate(task, eval_step, state, mesh)
    summary = {"selected_step": final_step, "selection_metric": task.selection_metric, "results": final}
    if jax.process_index() == 0:
        with open(os.path.join(workdir, f"results_{config.phase}.json"), "w") as f:
            json.dump(summary, f, indent=2, default=float)
    _print_eval(final_step, final, prefix="selected model")
    return FitResult(state, summary)


def _log_train(writer, metrics_path, meter, step, metrics_sum, metrics_count):
    host = {k: float(v) for k, v in jax.device_get(metrics_sum).items()}
    bad = host.pop("nonfinite", 0.0)
    good = max(metrics_count - bad, 1)
    means = {k: (v / good if k in ("loss", "grad_norm") else v / metrics_count) for k, v in host.items()}
    means.update(meter.report(step, means))
    scalars = {f"train/{k}": v for k, v in means.items()}
    writer.write_scalars(step, scalars)
    _append_jsonl(metrics_path, step, scalars)


def _log_eval(writer, metrics_path, step, results):
    scalars = _scalars(results)
    writer.write_scalars(step, scalars)
    _append_jsonl(metrics_path, step, scalars)
    _print_eval(step, results)


def _agreed(flag: bool) -> bool:
    """Process 0's decision, the same in every process (a save must be called by all of them)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def _append_jsonl(path: str, step: int, scalars: dict):
    """metrics.jsonl: one JSON line per logged step, easy to read back without TensorBoard."""
    if jax.process_index() == 0:
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")


def _print_eval(step: int, results: dict, prefix: str = "eval"):
    if jax.process_index() != 0:
        return
    for name, summary in results.items():
        parts = [f"{k}={v:.4f}" for k, v in summary.items() if isinstance(v, (int, float, np.floating))]
        note = f" {summary['note']}" if isinstance(summary.get("note"), str) and summary["note"] else ""
        print(f"{prefix} step {step} {name}: " + " ".join(parts) + note, flush=True)


def _flatten_config(config, prefix=""):
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            out.update(_flatten_config(value, name + "."))
        elif isinstance(value, (int, float, str, bool)):
            out[name] = value
        else:
            out[name] = str(value)
    return out
