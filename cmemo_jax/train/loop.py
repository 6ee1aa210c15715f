"""The shared training loop: resume, sharded steps, periodic eval, checkpoints, best model, export.

Phases plug in a task (see `cmemo_jax.train.step`) that additionally provides:

  example_batch()               a host batch with the training shapes (for init)
  train_batches(start_step)     iterator of this process's host batches, resumable at a step
  eval_datasets()               {name: callable returning an iterator of padded host batches}
  summarize(name, outputs)      host-side metrics from concatenated eval outputs -> dict
  selection_metric              'name/metric' to minimise for the best checkpoint, e.g. 'unheard_val/loss'
  export_meta()                 JSON-able description of the model for cmemo_jax.export
"""
from __future__ import annotations

import json
import math
import os
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from cmemo_jax import export as export_lib
from cmemo_jax.train import sharding as sharding_lib
from cmemo_jax.train import state as state_lib
from cmemo_jax.train import step as step_lib
from cmemo_jax.train.checkpoint import Checkpointer, abstract_like


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


def _to_host(tree):
    return jax.tree.map(lambda x: np.asarray(x), tree)


def evaluate(task, eval_step, state, mesh) -> dict:
    """Runs every eval dataset of the task once; returns {name: summary dict}.

    Eval iterators pad their last batch (valid=False) and, with several processes, yield the same
    number of batches in every process (cmemo_jax.data.pipeline.eval_batches tops them up with
    empty batches), so the collective steps stay in lockstep. Batches are streamed: only the
    per-example outputs are kept on the host.
    """
    results = {}
    for name, make_batches in task.eval_datasets().items():
        outputs = []
        for batch in make_batches():
            out = _to_host(eval_step(state, sharding_lib.device_batch(batch, mesh)))
            keep = out.pop("valid").astype(bool)
            outputs.append({k: v[keep] for k, v in out.items()})
        if not outputs:
            raise ValueError(f"eval dataset {name!r} is empty")
        merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
        results[name] = task.summarize(name, merged)
    return results


def _scalars(results: dict) -> dict:
    flat = {}
    for name, summary in results.items():
        for key, value in summary.items():
            if isinstance(value, (int, float, np.floating, np.integer)):
                flat[f"{name}/{key}"] = float(value)
    return flat


def fit(task, config, workdir: str) -> dict:
    """Train `task` as `config` says, resuming from `workdir` if it holds a checkpoint.

    Config fields used: seed, batch_size, num_train_steps, optim.*, log_every_steps,
    eval_every_steps, checkpoint_every_steps, checkpoint_every_secs, keep_checkpoints, export_path.
    Returns the final evaluation of the best model (and writes it to workdir/results_<phase>.json).
    """
    # clu's metric writers import TensorFlow (its summary writer); imported here so that this
    # module, like the model and the step, imports on machines without TensorFlow.
    from clu import metric_writers

    os.makedirs(workdir, exist_ok=True)
    mesh = sharding_lib.make_mesh()
    sharding_lib.check_batch_size(config.batch_size, mesh)
    total_steps = int(config.num_train_steps)
    schedule = state_lib.log_spaced_schedule(config.optim.lr_start, config.optim.lr_end, total_steps)
    tx = state_lib.make_optimizer(config.optim, total_steps)
    init_rng, step_rng = jax.random.split(jax.random.key(config.seed))

    state = step_lib.init_state(task, tx, init_rng, task.example_batch(), mesh)
    ckpt = Checkpointer(workdir, max_to_keep=config.keep_checkpoints)
    progress = {"step": 0, "best_metric": None, "best_step": None}
    restored = ckpt.restore_latest(abstract_like(state))
    if restored is not None:
        state, progress = restored
        logging.info("resumed from step %d of %s", progress["step"], workdir)
        if jax.process_index() == 0:
            print(f"resuming from step {progress['step']} (checkpoint in {workdir})", flush=True)
    start_step = int(progress["step"])

    writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
    writer.write_hparams(_flatten_config(config))
    train_step = step_lib.make_train_step(task, tx, mesh, lr_schedule=schedule)
    eval_step = step_lib.make_eval_step(task, mesh)
    meter = Progress(total_steps, config.batch_size, start_step)
    selection_name, selection_key = task.selection_metric.split("/")

    batches = task.train_batches(start_step)
    metrics_sum, metrics_count = None, 0
    checkpoint_secs = float(config.get("checkpoint_every_secs", 0) or 0)
    last_save = time.monotonic()
    last_eval = None  # (step, results) of the latest evaluation
    for step in range(start_step + 1, total_steps + 1):
        state, metrics = train_step(state, sharding_lib.device_batch(next(batches), mesh), step_rng)
        progress["step"] = step  # what a checkpoint of `state` taken now records
        metrics_sum = metrics if metrics_sum is None else jax.tree.map(lambda a, b: a + b, metrics_sum, metrics)
        metrics_count += 1
        # The first step (compilation included) is reported too, so slow machines show life at once.
        is_log = step % config.log_every_steps == 0 or step == total_steps or step == start_step + 1
        if is_log:
            means = {k: float(v) / metrics_count for k, v in _to_host(metrics_sum).items()}
            if not all(math.isfinite(v) for v in means.values()):
                raise FloatingPointError(f"non-finite training metrics at step {step}: {means}")
            means.update(meter.report(step, means))
            scalars = {f"train/{k}": v for k, v in means.items()}
            writer.write_scalars(step, scalars)
            _append_jsonl(workdir, step, scalars)
            metrics_sum, metrics_count = None, 0
        is_eval = step % config.eval_every_steps == 0 or step == total_steps
        if is_eval:
            results = evaluate(task, eval_step, state, mesh)
            last_eval = (step, results)
            scalars = _scalars(results)
            writer.write_scalars(step, scalars)
            _append_jsonl(workdir, step, scalars)
            _print_eval(step, results)
            metric = float(results[selection_name][selection_key])
            if progress["best_metric"] is None or metric < progress["best_metric"]:
                progress.update(best_metric=metric, best_step=step)
                ckpt.save_best(step, state, dict(progress))
        due = is_log and checkpoint_secs > 0 and _agreed(time.monotonic() - last_save >= checkpoint_secs)
        if is_eval or due or step % config.checkpoint_every_steps == 0:
            ckpt.save(step, state, dict(progress))
            last_save = time.monotonic()
        writer.flush()
        if step == config.get("stop_at_step", -1):
            # Test hook: leave as a killed run would (checkpoints stay, no final export).
            ckpt.wait()
            ckpt.close()
            writer.close()
            return {"stopped_at_step": step}
    ckpt.wait()

    # Final report and export use the model selected on the validation metric.
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
        if config.get("export_path"):
            path = os.path.join(workdir, config.export_path)
            export_lib.save(path, task.export_meta(), {"params": state.params, "batch_stats": state.batch_stats})
            print(f"exported the model of step {final_step} to {path}", flush=True)
    _print_eval(final_step, final, prefix="selected model")
    writer.close()
    ckpt.close()
    return summary


def _agreed(flag: bool) -> bool:
    """Process 0's decision, the same in every process (a save must be called by all of them)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


def _append_jsonl(workdir: str, step: int, scalars: dict):
    """metrics.jsonl: one JSON line per logged step, easy to read back without TensorBoard."""
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")


def _print_eval(step: int, results: dict, prefix: str = "eval"):
    if jax.process_index() != 0:
        return
    for name, summary in results.items():
        parts = [f"{k}={v:.4f}" for k, v in summary.items() if isinstance(v, (int, float, np.floating))]
        extra = f" left_out={summary['left_out']}" if summary.get("left_out") else ""
        print(f"{prefix} step {step} {name}: " + " ".join(parts) + extra, flush=True)


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
