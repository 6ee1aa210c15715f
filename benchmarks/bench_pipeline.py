"""Input-pipeline throughput, and whether it keeps up with the student train step.

1. Builds record shards of 4-20 s training tracks (or reuses those under --data_dir):
   --source random (default): random int16 audio and random teacher logits, written with
     cmemo_jax.data.records.write_shards (seconds to build; the pipeline's cost does not depend on
     what the samples are);
   --source synthetic: the embedded synthetic corpus (cmemo_jax.data.synthetic.ensure_corpus) sized to
     about --num_tracks training tracks of 4-20 s (minutes to generate on 2 cores; cached).
2. Runs cmemo_jax.data.pipeline.train_batches(..., batch_size, cache=True) and reports 4.024 s
   training examples/s (and MB/s of int16 audio) in steady state: the first epoch (which reads,
   parses and fills the RAM cache) and a few more batches are skipped, then --batches are timed.
3. Runs our whole jitted student train step (full model by default; --override for smaller widths)
   fed (a) by the pipeline, as the trainer does (next(iterator) -> device_batch -> step), and (b) by
   one device-resident batch, in interleaved rounds. Each step is waited for, so the time blocked in
   next(iterator) is time the step would have idled for input; reports steps/s of both, the fraction
   of (a)'s time spent blocked in next() and in the host -> device copy.

This script needs TensorFlow (the pipeline is tf.data).

  python benchmarks/bench_pipeline.py [--data_dir DIR] [--source random|synthetic] [--num_tracks 400]
      [--batch_size 64] [--batches 50] [--steps 3] [--repeats 3] [--override model.fc6_features=16 ...]
      [--no_step] [--out result.json]
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

from cmemo_jax import constants  # noqa: E402


# ------------------------------------------------------------------------------------------ records

def random_tracks(num_tracks: int, min_s: float, max_s: float, seed: int = 0):
    """Training-split track dicts with random int16 audio and N(0, 1) teacher logits."""
    rng = np.random.default_rng(seed)
    for i in range(num_tracks):
        n = int(rng.uniform(min_s, max_s) * constants.SAMPLE_RATE)
        rows = constants.frame_row((n - 1) / constants.SAMPLE_RATE) + 1
        yield {"track_id": f"bench{i:06d}", "identity": f"id{i % 50:05d}", "split": constants.SPLIT_TRAIN,
               "audio": rng.integers(-8000, 8000, size=n, dtype=np.int16),
               "logits": rng.standard_normal((rows, constants.NUM_EMOTIONS)).astype(np.float32)}


def build_records(args) -> tuple[str, str, str | None]:
    """Returns (data_dir holding train shards, how they were obtained, temporary dir to remove or None)."""
    from cmemo_jax.data import records

    data_dir = args.data_dir
    if data_dir:
        try:
            records.list_shards(data_dir, "train")
            return data_dir, "reused", None
        except FileNotFoundError:
            pass
        tmp = None
    else:
        data_dir = tmp = tempfile.mkdtemp(prefix="cmemo_bench_pipeline_")
    t0 = time.perf_counter()
    if args.source == "random":
        records.write_shards(random_tracks(args.num_tracks, args.min_seconds, args.max_seconds), data_dir,
                             "train", args.num_shards)
        records.write_dataset_info(data_dir, {"source": "random", "num_examples": {"train": args.num_tracks}})
        how = f"random, built in {time.perf_counter() - t0:.1f} s"
    else:
        from cmemo_jax.data import synthetic

        per_speaker = 25
        heard = 0.2
        speakers = max(1, math.ceil(args.num_tracks / (per_speaker * (1 - heard))))
        cfg = synthetic.SyntheticConfig(num_train_speakers=speakers, num_unheard_speakers=1,
                                        tracks_per_speaker=per_speaker, heard_val_fraction=heard,
                                        min_track_seconds=args.min_seconds, max_track_seconds=args.max_seconds)
        data_dir = synthetic.ensure_corpus(data_dir, cfg, verbose=True)
        how = f"synthetic {synthetic.corpus_name(cfg)}, ready in {time.perf_counter() - t0:.1f} s"
    return data_dir, how, tmp


# ----------------------------------------------------------------------------------------- pipeline

def measure_pipeline(files, args):
    from cmemo_jax.data import pipeline

    n_tracks = pipeline.count_records(files)
    skip = args.skip_batches if args.skip_batches is not None else math.ceil(n_tracks / args.batch_size) + 3
    it = pipeline.train_batches(files, batch_size=args.batch_size, seed=0, cache=True)
    t0 = time.perf_counter()
    first = next(it)
    t_first = time.perf_counter() - t0
    for _ in range(skip - 1):
        next(it)
    t_skip = time.perf_counter() - t0
    times = []
    for _ in range(args.batches):
        t = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - t)
    total = sum(times)
    ex_per_s = args.batches * args.batch_size / total
    audio_bytes = first["audio"].nbytes
    res = {"num_tracks": n_tracks, "skipped_batches": skip, "first_batch_s": t_first,
           "warm_phase_s": t_skip, "warm_phase_examples_per_s": skip * args.batch_size / t_skip,
           "timed_batches": args.batches, "steady_examples_per_s": ex_per_s,
           "steady_audio_mb_per_s": ex_per_s * audio_bytes / args.batch_size / 1e6,
           "batch_ms_median": _common.median(times) * 1e3, "batch_ms_max": max(times) * 1e3}
    return it, res


# ----------------------------------------------------------------------------------------- the step

def measure_step(it, args):
    import jax

    from cmemo_jax.train import sharding as sharding_lib
    from cmemo_jax.train import step as step_lib
    from cmemo_jax.train.optim import make_optimizer

    config = _common.load_config("student")
    _common.apply_overrides(config, args.override)
    config.batch_size = args.batch_size
    objective = _common.make_objective(config)
    mesh = sharding_lib.make_mesh()
    tx = make_optimizer(config.optim, total_steps=100_000)
    state = step_lib.init_state(objective, tx, jax.random.PRNGKey(1), objective.example_batch(args.batch_size),
                                mesh)
    rng = jax.random.PRNGKey(0)
    resident = sharding_lib.device_batch(next(it), mesh)
    print("compiling the train step ...", flush=True)
    step = step_lib.make_train_step(objective, tx, mesh).lower(state, resident, rng).compile()
    box = {"state": state}

    def fed(n, stats):
        for _ in range(n):
            t0 = time.perf_counter()
            host = next(it)
            t1 = time.perf_counter()
            batch = sharding_lib.device_batch(host, mesh)
            jax.block_until_ready(batch)
            t2 = time.perf_counter()
            box["state"], m = step(box["state"], batch, rng)
            jax.block_until_ready(m["loss"])
            t3 = time.perf_counter()
            stats["wait"] += t1 - t0
            stats["copy"] += t2 - t1
            stats["step"] += t3 - t2

    def resident_steps(n):
        for _ in range(n):
            box["state"], m = step(box["state"], resident, rng)
            jax.block_until_ready(m["loss"])

    warm = {"wait": 0.0, "copy": 0.0, "step": 0.0}
    fed(args.step_warmup, warm)
    resident_steps(args.step_warmup)
    rounds = []
    for r in range(args.repeats):
        stats = {"wait": 0.0, "copy": 0.0, "step": 0.0}
        t0 = time.perf_counter()
        fed(args.steps, stats)
        t_fed = time.perf_counter() - t0
        t0 = time.perf_counter()
        resident_steps(args.steps)
        t_res = time.perf_counter() - t0
        rounds.append({"fed_s": t_fed, "resident_s": t_res, **stats})
        print(f"  round {r + 1}/{args.repeats}: pipeline-fed {args.steps / t_fed:.3f} steps/s "
              f"(blocked in next() {stats['wait'] / t_fed:.1%}), device-resident {args.steps / t_res:.3f} steps/s",
              flush=True)
    fed_rate = [args.steps / r["fed_s"] for r in rounds]
    res_rate = [args.steps / r["resident_s"] for r in rounds]
    return {
        "model": _common.model_description(objective), "batch_size": args.batch_size,
        "steps_per_round": args.steps, "rounds": rounds,
        "fed_steps_per_s": _common.median(fed_rate), "resident_steps_per_s": _common.median(res_rate),
        "fed_examples_per_s": _common.median(fed_rate) * args.batch_size,
        "resident_examples_per_s": _common.median(res_rate) * args.batch_size,
        "fed_over_resident": _common.median([a / b for a, b in zip(fed_rate, res_rate)]),
        "wait_fraction": _common.median([r["wait"] / r["fed_s"] for r in rounds]),
        "copy_fraction": _common.median([r["copy"] / r["fed_s"] for r in rounds]),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir", default=None,
                   help="reuse the train shards here, or build them here (default: a temporary directory, removed)")
    p.add_argument("--source", choices=("random", "synthetic"), default="random")
    p.add_argument("--num_tracks", type=int, default=400, help="training tracks to build (default 400)")
    p.add_argument("--min_seconds", type=float, default=4.0)
    p.add_argument("--max_seconds", type=float, default=20.0)
    p.add_argument("--num_shards", type=int, default=8, help="shards of the random records (default 8)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--skip_batches", type=int, default=None,
                   help="untimed batches first (default: one epoch + 3, so the RAM cache is full)")
    p.add_argument("--batches", type=int, default=50, help="timed pipeline batches (default 50)")
    p.add_argument("--no_step", action="store_true", help="measure the pipeline only")
    p.add_argument("--steps", type=int, default=3, help="train steps per round and feeding mode (default 3)")
    p.add_argument("--step_warmup", type=int, default=1, help="untimed steps of each mode first (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="student config override (e.g. model.fc6_features=16); repeatable")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)

    info = _common.machine_info()
    _common.print_machine(info)
    data_dir, how, tmp = build_records(args)
    try:
        from cmemo_jax.data import records

        files = records.list_shards(data_dir, "train")
        print(f"# records: {len(files)} train shard(s) in {data_dir} ({how})", flush=True)
        it, pipe = measure_pipeline(files, args)
        crop_mb = args.batch_size * constants.CROP_SAMPLES * 2 / 1e6
        _common.print_table(
            ["pipeline (cache=True)", "value"],
            [["training tracks", pipe["num_tracks"]],
             ["first batch (s)", pipe["first_batch_s"]],
             [f"warm-up: {pipe['skipped_batches']} batches, examples/s", pipe["warm_phase_examples_per_s"]],
             [f"steady: {args.batches} batches of {args.batch_size}, examples/s", pipe["steady_examples_per_s"]],
             ["steady: int16 audio MB/s", pipe["steady_audio_mb_per_s"]],
             ["batch ms median / max", f"{pipe['batch_ms_median']:.1f} / {pipe['batch_ms_max']:.1f}"],
             ["audio per batch (MB)", crop_mb]],
            title=f"Input pipeline, batch {args.batch_size} x 4.024 s crops")
        step = None
        if not args.no_step:
            step = measure_step(it, args)
            _common.print_table(
                ["train step, batch %d" % args.batch_size, "steps/s", "examples/s"],
                [["fed by the pipeline", step["fed_steps_per_s"], step["fed_examples_per_s"]],
                 ["device-resident batch", step["resident_steps_per_s"], step["resident_examples_per_s"]]],
                title=f"Does the pipeline keep up? model {step['model']}")
            print(f"pipeline-fed / resident speed: {step['fed_over_resident']:.3f}; time blocked in next(): "
                  f"{step['wait_fraction']:.1%}; host->device copy: {step['copy_fraction']:.1%} "
                  f"(median over {args.repeats} rounds of {args.steps} steps)")
            print(f"pipeline alone: {pipe['steady_examples_per_s']:,.0f} examples/s vs the step's "
                  f"{step['resident_examples_per_s']:,.1f}: headroom x{pipe['steady_examples_per_s'] / step['resident_examples_per_s']:,.1f}")
        _common.write_json(args.out, {"benchmark": "pipeline", "machine": info, "args": vars(args),
                                      "records": {"dir": data_dir, "how": how, "shards": len(files)},
                                      "pipeline": pipe, "step": step})
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    _common.restart_as_cli_does()
    main()
