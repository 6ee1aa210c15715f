"""Scaling of our whole student train step over devices (CPU) or batch sizes (GPU).

CPU: for each N in --devices (default 1,2,4,8), a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=N runs the jitted train step
(cmemo_jax.train.step.make_train_step + StudentObjective, batch sharded over a 1-D 'data' mesh,
state replicated) at the same global batch (default 16), device-resident inputs, and reports
steps/s and examples/s. The simulated devices share this machine's cores, so this measures the cost
of sharding (per-device programs, collectives for the gradient all-reduce, smaller per-device
matmuls), not a speed-up. Use --override for smaller widths so it finishes quickly.

GPU (jax.default_backend() == 'gpu'): a batch sweep (--sweep, default 32,64,128,256) of the same step
on all local GPUs, in this process.

No TensorFlow needed.

  python benchmarks/bench_scaling.py [--devices 1,2,4,8] [--batch_size 16] [--steps 3] [--repeats 3]
      [--override model.fc6_features=256 ...] [--sweep 32,64,128,256] [--out result.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

RESULT_TAG = "SCALING_RESULT_JSON:"


def measure(args, batch_size: int) -> dict:
    """Steps/s of the whole train step on all devices of this process at one global batch size."""
    import jax
    import numpy as np

    from cmemo_jax.train import sharding as sharding_lib
    from cmemo_jax.train import step as step_lib
    from cmemo_jax.train.optim import make_optimizer

    config = _common.load_config("student")
    _common.apply_overrides(config, args.override)
    config.batch_size = batch_size
    config.model.dtype = args.dtype
    objective = _common.make_objective(config)
    mesh = sharding_lib.make_mesh()
    sharding_lib.check_batch_size(batch_size, mesh)
    tx = make_optimizer(config.optim, total_steps=100_000)
    state = step_lib.init_state(objective, tx, jax.random.PRNGKey(1), objective.example_batch(batch_size), mesh)
    batch = sharding_lib.device_batch(objective.random_batch(np.random.default_rng(0), batch_size), mesh)
    rng = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    compiled = step_lib.make_train_step(objective, tx, mesh).lower(state, batch, rng).compile()
    compile_s = time.perf_counter() - t0
    flops = _common.cost_flops(compiled)
    box = {"state": state}

    def run(n):
        m = None
        for _ in range(n):
            box["state"], m = compiled(box["state"], batch, rng)
        jax.block_until_ready(m["loss"])

    run(args.warmup)
    rounds = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run(args.steps)
        rounds.append(time.perf_counter() - t0)
    rates = [args.steps / t for t in rounds]
    steps_per_s = _common.median(rates)
    return {"devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
            "batch_size": batch_size, "per_device_batch": batch_size // jax.device_count(),
            "steps_per_s": steps_per_s, "examples_per_s": steps_per_s * batch_size,
            "round_s": rounds, "compile_s": compile_s, "flops_per_step_xla": flops,
            "model": _common.model_description(objective)}


def child_argv(args, n: int) -> list[str]:
    argv = [sys.executable, os.path.abspath(__file__), "--_child", "--batch_size", str(args.batch_size),
            "--steps", str(args.steps), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
            "--dtype", args.dtype]
    for o in args.override:
        argv += ["--override", o]
    return argv


def run_child(args, n: int) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
    env["JAX_PLATFORMS"] = "cpu"
    print(f"  {n} device(s): XLA_FLAGS='{env['XLA_FLAGS']}' ...", flush=True)
    proc = subprocess.run(child_argv(args, n), env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
    return {"devices": n, "error": f"exit {proc.returncode}: {tail}"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default="1,2,4,8", help="simulated CPU device counts (default 1,2,4,8)")
    p.add_argument("--batch_size", type=int, default=16, help="global batch on CPU (default 16)")
    p.add_argument("--sweep", default="32,64,128,256", help="GPU: global batch sizes (default 32,64,128,256)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--steps", type=int, default=3, help="steps per timed round (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds, median reported (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="student config override (e.g. model.conv_features='(8,16,16,16,16)'); repeatable")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._child:
        print(RESULT_TAG + json.dumps(measure(args, args.batch_size)), flush=True)
        return

    import jax

    info = _common.machine_info()
    _common.print_machine(info)
    backend = jax.default_backend()
    results = []
    if backend == "cpu":
        counts = [int(s) for s in args.devices.split(",") if s.strip()]
        print(f"# CPU scaling: global batch {args.batch_size}, {args.dtype}, overrides {args.override}")
        for n in counts:
            if args.batch_size % n:
                results.append({"devices": n, "error": f"batch {args.batch_size} not divisible by {n}"})
                continue
            results.append(run_child(args, n))
        base = next((r for r in results if r.get("devices") == 1 and "error" not in r), None)
        rows = []
        for r in results:
            if "error" in r:
                rows.append([r["devices"], None, None, None, None, "error"])
                continue
            rel = r["steps_per_s"] / base["steps_per_s"] if base else None
            rows.append([r["devices"], r["per_device_batch"], r["steps_per_s"], r["examples_per_s"], rel,
                         f"{r['compile_s']:.1f}"])
        _common.print_table(["devices", "batch/device", "steps/s", "examples/s", "vs 1 device", "compile s"],
                            rows, title=f"Whole train step on N simulated CPU devices, global batch {args.batch_size} "
                                        f"(median of {args.repeats} rounds of {args.steps} steps)")
        for r in results:
            if "error" in r:
                print(f"devices={r['devices']}: {r['error']}")
    else:
        sizes = [int(s) for s in args.sweep.split(",") if s.strip()]
        print(f"# {backend} batch sweep on {jax.device_count()} device(s): {sizes}, {args.dtype}")
        for b in sizes:
            try:
                results.append(measure(args, b))
            except Exception as e:  # noqa: BLE001 - e.g. out of memory at the largest batch
                results.append({"batch_size": b, "error": f"{type(e).__name__}: {str(e)[:300]}"})
            print(f"  batch {b}: {results[-1].get('examples_per_s', results[-1].get('error'))}", flush=True)
        rows = [[r["batch_size"], r.get("steps_per_s"), r.get("examples_per_s"),
                 (r["flops_per_step_xla"] * r["steps_per_s"] / 1e12) if r.get("flops_per_step_xla") else None]
                for r in results]
        _common.print_table(["batch", "steps/s", "examples/s", "TFLOP/s (XLA count)"], rows,
                            title=f"Whole train step, batch sweep ({args.dtype})")
    _common.write_json(args.out, {"benchmark": "scaling", "machine": info, "args": vars(args),
                                  "backend": backend, "results": results})


if __name__ == "__main__":
    _common.restart_as_cli_does()
    main()
