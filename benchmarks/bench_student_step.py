"""Student train-step throughput: our jitted JAX step vs PyTorch (eager NCHW, channels_last, compile).

Full-size student (configs/student.py), 4.024 s crops -> [B, 512, 400] spectrograms. Measured with
device-resident inputs, interleaved rounds (every variant once per round), median over rounds:

  jax:step        our whole jitted train step (cmemo_jax.train.step.make_train_step + StudentObjective):
                  int16 audio -> dithered spectrogram -> Student -> masked max-pool of teacher logits ->
                  distillation loss -> SGD momentum + weight decay (optax); state donated
  jax:model-step  model-only train step on a precomputed float32 spectrogram and precomputed teacher
                  targets (same model, loss and optimizer), jitted, donated
  jax:forward     forward only (eval mode, jitted) on precomputed spectrograms
  torch:*         tests/torch_student.py TorchStudent on the same precomputed spectrograms:
                  train = forward + distillation_loss_torch + backward + torch.optim.SGD(momentum 0.9,
                  weight_decay 5e-4); fwd = eval + torch.inference_mode; variants eager NCHW, eager
                  channels_last, torch.compile (NCHW). --dtype bfloat16 runs them under torch.autocast.
                  By default they live in a worker process of their own (--torch_process separate), as
                  a user runs one framework per process: the two runtimes' allocators and thread pools
                  then do not compete inside one process. Rounds still interleave every variant, and
                  only one variant runs at a time.
  matmul:*        dense fp32 (or --dtype) square matmul rate of this machine in the same run
                  (jnp.dot jitted, and torch.mm for reference)

Also reports XLA's FLOP count per step (compiled.cost_analysis() of the same variants under XLA's own
conv and pool lowerings, so the count does not depend on the lowering), the achieved GFLOP/s and its share
of the measured matmul rate; on a GPU, MFU against --peak_tflops (default 989 = H100/H200 bf16
dense), an optional --sweep of batch sizes (JAX variants only) and the time of the paper's
50-epoch run on 118.5k tracks at the measured rate.

This script imports no TensorFlow (the GPU machine has none).

  python benchmarks/bench_student_step.py [--batch_size 16] [--dtype float32|bfloat16]
      [--override model.pool_impl=reduce_window ...] [--repeats 5] [--warmup 2] [--lead_in 1] [--no_compile]
      [--no_torch] [--torch_process separate|same] [--sweep 64,128,256] [--peak_tflops 989]
      [--pause 0.5] [--out result.json]
"""
from __future__ import annotations

import argparse
import os
import sys

# Without preallocation JAX and PyTorch can share one GPU; no effect on CPU.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

PAPER_EPOCHS, PAPER_TRACKS = 50, 118_500
H100_BF16_DENSE_TFLOPS = 989.0


# ---------------------------------------------------------------------------------------------- jax

def build_config(args, batch_size: int):
    config = _common.load_config("student")
    _common.apply_overrides(config, args.override)
    config.batch_size = int(batch_size)
    config.model.dtype = args.dtype
    return config


def jax_variants(config, batch_size: int, which=("step", "model-step", "forward")) -> tuple[dict, dict, dict]:
    """Compiled JAX variants at one batch size.

    Returns (runners {name: fn()}, flops {name: per call or None}, extras) where extras holds the
    precomputed spectrogram and teacher targets as NumPy (the PyTorch peers use the same inputs).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from cmemo_jax import losses
    from cmemo_jax.train import sharding as sharding_lib
    from cmemo_jax.train import step as step_lib
    from cmemo_jax.train.optim import make_optimizer

    objective = _common.make_objective(config)
    mesh = sharding_lib.make_mesh()
    sharding_lib.check_batch_size(batch_size, mesh)
    tx = make_optimizer(config.optim, total_steps=100_000)
    host = objective.random_batch(np.random.default_rng(0), batch_size)
    batch = sharding_lib.device_batch(host, mesh)
    base_rng = jax.random.PRNGKey(0)
    state = step_lib.init_state(objective, tx, jax.random.PRNGKey(1), objective.example_batch(batch_size), mesh)

    # Precomputed inputs of the model-only variants: the dither-free spectrogram and pooled targets.
    spec = jax.jit(lambda b: objective.model_inputs(b, None, train=False))(batch)
    targets = jax.jit(objective.teacher_targets)(batch)
    spec, targets = jax.block_until_ready((spec, targets))
    model, temperature = objective.model, float(config.loss.temperature)
    loss_fn = losses.get_loss(config.loss.name)

    runners, flops = {}, {}
    # Copies for the model-only variants: the whole step donates (consumes) `state`.
    carry = jax.tree.map(jnp.copy, (state.params, state.batch_stats, state.opt_state))
    fwd_vars = jax.tree.map(jnp.copy, {"params": state.params, "batch_stats": state.batch_stats})

    if "step" in which:
        train_step = step_lib.make_train_step(objective, tx, mesh)
        compiled = train_step.lower(state, batch, base_rng).compile()
        flops["jax:step"] = _common.cost_flops(compiled)
        box = {"state": state}

        def run_step():
            box["state"], metrics = compiled(box["state"], batch, base_rng)
            jax.block_until_ready(metrics["loss"])

        runners["jax:step"] = run_step

    if "model-step" in which:
        def model_step(carry, x, t):
            params, stats, opt_state = carry

            def loss_of(p):
                out, upd = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                       mutable=["batch_stats"])
                return jnp.mean(loss_fn(out, t, temperature=temperature)), upd["batch_stats"]

            (loss, new_stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), new_stats, opt_state), loss

        compiled_m = jax.jit(model_step, donate_argnums=(0,)).lower(carry, spec, targets).compile()
        flops["jax:model-step"] = _common.cost_flops(compiled_m)
        mbox = {"carry": carry}

        def run_model_step():
            mbox["carry"], loss = compiled_m(mbox["carry"], spec, targets)
            jax.block_until_ready(loss)

        runners["jax:model-step"] = run_model_step

    if "forward" in which:
        compiled_f = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(fwd_vars, spec).compile()
        flops["jax:forward"] = _common.cost_flops(compiled_f)
        runners["jax:forward"] = lambda: jax.block_until_ready(compiled_f(fwd_vars, spec))

    extras = {"spectrogram": np.asarray(spec), "targets": np.asarray(targets), "objective": objective}
    return runners, flops, extras


def reference_flops(config, batch_size: int) -> dict:
    """FLOPs per call of each JAX variant as XLA's cost analysis counts them for the model's maths
    under XLA's own lowerings (conv_impl='xla', pool_impl='reduce_window').

    The count is then the same whichever lowering runs: XLA counts a `lax.scan` body once, not
    per iteration, and a gather as no FLOPs, so the chunked and im2col lowerings would otherwise
    report less work than they do.
    """
    ref = config.copy_and_resolve_references()
    ref.model.conv_impl = "xla"
    ref.model.pool_impl = "reduce_window"
    _, flops, _ = jax_variants(ref, batch_size)
    return flops


def count_params(config) -> int:
    import jax

    objective = _common.make_objective(config)
    shapes = jax.eval_shape(lambda: objective.model.init(
        jax.random.PRNGKey(0), jax.numpy.zeros((1, 512, 400), jax.numpy.float32), train=False))
    return int(sum(np.prod(s.shape) for s in jax.tree.leaves(shapes["params"])))


# -------------------------------------------------------------------------------------------- torch

def torch_variants(model_kwargs: dict, temperature: float, spectrogram, targets, dtype: str, no_compile: bool,
                   use_cuda: bool) -> tuple[dict, dict]:
    """PyTorch train / forward variants on the same inputs. Returns (runners, skipped {name: why})."""
    import contextlib

    import torch

    from tests.torch_student import TorchStudent, distillation_loss_torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    device = torch.device("cuda" if use_cuda else "cpu")
    sync = torch.cuda.synchronize if use_cuda else (lambda: None)
    kwargs = dict(model_kwargs)
    x = torch.from_numpy(np.array(spectrogram, dtype=np.float32)).to(device)
    t = torch.from_numpy(np.array(targets, dtype=np.float32)).to(device)

    def autocast():
        if dtype == "bfloat16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    layouts = {"eager": None, "channels_last": torch.channels_last}
    if not no_compile:
        layouts["compile"] = None

    runners, skipped = {}, {}
    for layout, fmt in layouts.items():
        # Train variant: its own model and optimizer.
        model = TorchStudent(**kwargs).to(device)
        if fmt is not None:
            model = model.to(memory_format=fmt)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
        net = torch.compile(model) if layout == "compile" else model

        def train(net=net, opt=opt):
            opt.zero_grad(set_to_none=True)
            with autocast():
                out = net(x)
            loss = distillation_loss_torch(out, t, T=temperature)
            loss.backward()
            opt.step()
            sync()

        # Forward variant: a separate model in eval mode.
        fmodel = TorchStudent(**kwargs).to(device)
        if fmt is not None:
            fmodel = fmodel.to(memory_format=fmt)
        fmodel.eval()
        fnet = torch.compile(fmodel) if layout == "compile" else fmodel

        def forward(fnet=fnet):
            with torch.inference_mode(), autocast():
                fnet(x)
            sync()

        for kind, fn in (("train", train), ("fwd", forward)):
            name = f"torch:{kind}:{layout}"
            try:
                fn()  # compiles torch.compile variants; any failure is reported, not fatal
                runners[name] = fn
            except Exception as e:  # noqa: BLE001
                skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                print(f"skipped: {name}: {skipped[name]}", flush=True)
    return runners, skipped


# ------------------------------------------------------------------------------------------- matmul

def _matmul_operands(n: int):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)


def jax_matmul_variants(n: int, dtypes, inner: int) -> tuple[dict, float]:
    """Square n x n x n jnp.dot runners per dtype ('matmul:jax:<dtype>', each call runs `inner`
    matmuls). Returns (runners, flops per call)."""
    import jax
    import jax.numpy as jnp

    a_np, b_np = _matmul_operands(n)
    dot = jax.jit(jnp.dot)
    runners = {}
    for dtype in dtypes:
        jdt = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
        a, b = jax.device_put(jnp.asarray(a_np, jdt)), jax.device_put(jnp.asarray(b_np, jdt))

        def run_jax(a=a, b=b):
            out = None
            for _ in range(inner):
                out = dot(a, b)
            out.block_until_ready()

        runners[f"matmul:jax:{dtype}"] = run_jax
    return runners, 2.0 * n ** 3 * inner


def torch_matmul_variants(n: int, dtypes, use_cuda: bool, inner: int) -> dict:
    """The same matmuls with torch.mm ('matmul:torch:<dtype>')."""
    import torch

    a_np, b_np = _matmul_operands(n)
    device = torch.device("cuda" if use_cuda else "cpu")
    sync = torch.cuda.synchronize if use_cuda else (lambda: None)
    runners = {}
    for dtype in dtypes:
        tdt = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        ta = torch.from_numpy(a_np).to(device=device, dtype=tdt)
        tb = torch.from_numpy(b_np).to(device=device, dtype=tdt)

        def run_torch(ta=ta, tb=tb):
            for _ in range(inner):
                torch.mm(ta, tb)
            sync()

        runners[f"matmul:torch:{dtype}"] = run_torch
    return runners


# ------------------------------------------------------------------------------ PyTorch in a process

def build_torch_runners(spec: dict):
    """In the PyTorch worker process (_common.TorchProcess): the variants and matmuls of `spec`."""
    runners, skipped = torch_variants(spec["model_kwargs"], spec["temperature"], spec["spectrogram"],
                                      spec["targets"], spec["dtype"], spec["no_compile"], spec["use_cuda"])
    runners.update(torch_matmul_variants(spec["mm_n"], spec["mm_dtypes"], spec["use_cuda"], spec["mm_inner"]))
    return runners, skipped


# --------------------------------------------------------------------------------------------- main

def default_peak_tflops(device_kind: str) -> float | None:
    kind = device_kind.upper()
    if "H100" in kind or "H200" in kind:   # GH100: 989 TFLOP/s bf16 dense (SXM)
        return H100_BF16_DENSE_TFLOPS
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch_size", type=int, default=None, help="default 16 on CPU, 64 on GPU")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype of the model (parameters stay float32)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. model.pool_impl=reduce_window or "
                        "model.conv_features='(8,16,16,16,16)'; repeatable")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each variant first (default 2)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of idle before each timed call, so the other runtime's spinning threads settle "
                        "(default 0.5)")
    p.add_argument("--lead_in", type=int, default=1,
                   help="untimed calls right before each timed call, so every variant is timed in the steady state "
                        "of back-to-back steps (default 1)")
    p.add_argument("--no_torch", action="store_true", help="skip the PyTorch peers")
    p.add_argument("--no_compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--torch_process", choices=("separate", "same"), default="separate",
                   help="run the PyTorch peers in their own worker process (default: as users run one framework "
                        "per process; rounds still interleave) or in this process next to XLA")
    p.add_argument("--matmul_size", type=int, default=None, help="square matmul size (default 2048 CPU, 8192 GPU)")
    p.add_argument("--sweep", default="", help="comma list of batch sizes for a JAX-only batch sweep, e.g. 64,128,256")
    p.add_argument("--peak_tflops", type=float, default=None,
                   help="accelerator peak TFLOP/s for MFU (default on GPU: 989 on H100/H200 = bf16 dense, required "
                        "on other GPUs; optional on CPU)")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)

    import jax

    info = _common.machine_info()
    _common.print_machine(info)
    backend = jax.default_backend()
    on_gpu = backend == "gpu"
    batch_size = args.batch_size or (64 if on_gpu else 16)
    peak = args.peak_tflops
    if on_gpu and peak is None:
        peak = default_peak_tflops(info["jax_device_kind"])
        if peak is None:
            p.error(f"unknown GPU {info['jax_device_kind']!r}: pass --peak_tflops")
    use_cuda = False
    if on_gpu and not args.no_torch:
        try:
            import torch

            use_cuda = torch.cuda.is_available()
        except ImportError:
            pass

    config = build_config(args, batch_size)
    n_params = count_params(config)
    print(f"# student {config.model.to_dict()}  params {n_params / 1e6:.2f} M  batch {batch_size}  "
          f"dtype {args.dtype}  overrides {args.override}")

    print("compiling JAX variants ...", flush=True)
    runners, lowered_flops, extras = jax_variants(config, batch_size)
    flops = reference_flops(config, batch_size)
    objective = extras["objective"]
    print(f"  model: {_common.model_description(objective)}")
    mm_n = args.matmul_size or (8192 if on_gpu else 2048)
    mm_dtypes = ("float32",) if args.dtype == "float32" else ("float32", args.dtype)
    mm_inner = 10 if on_gpu else 1
    mm_runners, mm_flops = jax_matmul_variants(mm_n, mm_dtypes, inner=mm_inner)
    runners.update(mm_runners)
    skipped, torch_process = {}, None
    if not args.no_torch:
        m = objective.model
        model_kwargs = dict(conv_features=tuple(m.conv_features), fc6_features=m.fc6_features,
                            fc7_features=m.fc7_features, num_classes=m.num_classes)
        temperature = float(objective.config.loss.temperature)
        try:
            if args.torch_process == "separate":
                print("starting the PyTorch worker process ...", flush=True)
                torch_process = _common.TorchProcess(build_torch_runners, dict(
                    model_kwargs=model_kwargs, temperature=temperature, spectrogram=extras["spectrogram"],
                    targets=extras["targets"], dtype=args.dtype, no_compile=args.no_compile, use_cuda=use_cuda,
                    mm_n=mm_n, mm_dtypes=mm_dtypes, mm_inner=mm_inner))
                runners.update(torch_process.runners)
                skipped = dict(torch_process.skipped)
            else:
                t_run, skipped = torch_variants(model_kwargs, temperature, extras["spectrogram"], extras["targets"],
                                                args.dtype, args.no_compile, use_cuda)
                runners.update(t_run)
                runners.update(torch_matmul_variants(mm_n, mm_dtypes, use_cuda, mm_inner))
        except (ImportError, RuntimeError) as e:
            skipped["torch"] = f"{type(e).__name__}: {e}"
            print(f"skipped: torch: {e}")

    try:
        times = _common.interleaved_times(runners, args.repeats, args.warmup, pause=args.pause,
                                          lead_in=args.lead_in)
    finally:
        if torch_process is not None:
            torch_process.close()

    model_flops = flops.get("jax:model-step")
    fwd_flops = flops.get("jax:forward")
    # Shares are of the jnp.dot rate in the run's compute dtype.
    mm_rates = {n: mm_flops / _common.median(t) for n, t in times.items() if n.startswith("matmul:")}
    mm_rate = mm_rates[f"matmul:jax:{args.dtype}"]
    results = {}
    rows = []
    for name, ts in times.items():
        med = _common.median(ts)
        if name.startswith("matmul:"):
            f, clips = mm_flops, None
        else:
            clips = batch_size / med
            if name.startswith("jax:"):
                f = flops.get(name)
            else:   # PyTorch: the same model, counted by XLA for our model-only step / forward
                f = model_flops if ":train:" in name else fwd_flops
        gflops = f / med / 1e9 if f else None
        r = _common.summary(ts)
        r.update({"clips_per_s": clips, "flops_per_call": f, "achieved_gflops": gflops,
                  "share_of_jax_matmul": (f / med) / mm_rate if f else None})
        if peak and f:
            r["mfu"] = f / med / (peak * 1e12)
        results[name] = r
        rows.append([name, clips, med * 1e3, r["min_s"] * 1e3, f / 1e9 if f else None, gflops,
                     r["share_of_jax_matmul"]] + ([r.get("mfu")] if peak else []))
    headers = ["variant", "clips/s", "median ms", "min ms", "GFLOP/call", "GFLOP/s", "of matmul"]
    if peak:
        headers.append(f"MFU@{peak:g}T")
    _common.print_table(headers, rows, title=(
        f"Student, batch {batch_size}, {args.dtype}, median of {args.repeats} interleaved rounds "
        f"(matmul {mm_n}^3; 'of matmul' = achieved FLOP/s / {args.dtype} jnp.dot FLOP/s; torch FLOPs = XLA's count "
        f"of the same model)"))

    # Ratios against the fastest PyTorch variants (by median time): {ours: {peer, speed_ratio}}.
    ratios = {}
    torch_train = {n: t for n, t in times.items() if n.startswith("torch:train:")}
    torch_fwd = {n: t for n, t in times.items() if n.startswith("torch:fwd:")}
    if torch_train:
        best = min(torch_train, key=lambda n: _common.median(torch_train[n]))
        for ours in ("jax:step", "jax:model-step"):
            ratios[ours] = {"peer": best, "speed_ratio": _common.median_ratio(torch_train[best], times[ours])}
    if torch_fwd:
        best_f = min(torch_fwd, key=lambda n: _common.median(torch_fwd[n]))
        ratios["jax:forward"] = {"peer": best_f,
                                 "speed_ratio": _common.median_ratio(torch_fwd[best_f], times["jax:forward"])}
    if ratios:
        _common.print_table(["ours", "fastest PyTorch peer", "speed ratio (ours / peer)"],
                            [[k, v["peer"], v["speed_ratio"]] for k, v in ratios.items()],
                            title="Ours relative to the fastest PyTorch variant (median over rounds of t_peer / t_ours; "
                                  "> 1: ours faster)")

    step_rate = batch_size / _common.median(times["jax:step"])
    paper_s = PAPER_EPOCHS * PAPER_TRACKS / step_rate
    print(f"\nFLOPs per clip (whole train step, XLA): "
          f"{(flops['jax:step'] or float('nan')) / batch_size / 1e9:.2f} G; "
          f"matmul {mm_n}^3: " + ", ".join(f"{n[7:]} {r / 1e9:,.0f} GFLOP/s" for n, r in mm_rates.items()))
    print(f"Paper run ({PAPER_EPOCHS} epochs x {PAPER_TRACKS:,} tracks) at {step_rate:,.1f} clips/s "
          f"(jax:step): {paper_s / 3600:,.2f} h")

    sweep = []
    if args.sweep:
        sizes = [int(s) for s in args.sweep.split(",") if s.strip()]
        print(f"\nbatch sweep {sizes} (JAX variants only) ...", flush=True)
        for b in sizes:
            cfg_b = build_config(args, b)
            s_runners, s_flops, _ = jax_variants(cfg_b, b)
            s_times = _common.interleaved_times(s_runners, args.repeats, args.warmup, verbose=False,
                                                  pause=args.pause, lead_in=args.lead_in)
            entry = {"batch_size": b}
            for name, ts in s_times.items():
                med = _common.median(ts)
                f = s_flops.get(name)
                entry[name] = {**_common.summary(ts, work=b), "flops_per_call": f,
                               "achieved_tflops": f / med / 1e12 if f else None,
                               "mfu": f / med / (peak * 1e12) if (f and peak) else None}
            entry["paper_run_hours"] = PAPER_EPOCHS * PAPER_TRACKS / entry["jax:step"]["rate_per_s"] / 3600
            sweep.append(entry)
            del s_runners
        srows = []
        for e in sweep:
            srows.append([e["batch_size"]] + [x for n in ("jax:step", "jax:model-step", "jax:forward")
                                               for x in (e[n]["rate_per_s"], e[n]["achieved_tflops"], e[n]["mfu"])]
                         + [e["paper_run_hours"]])
        _common.print_table(
            ["batch", "step clips/s", "TFLOP/s", "MFU", "model clips/s", "TFLOP/s", "MFU", "fwd clips/s",
             "TFLOP/s", "MFU", "paper run h"], srows,
            title=f"Batch sweep, {args.dtype}, MFU against {peak} TFLOP/s" if peak else "Batch sweep")

    _common.write_json(args.out, {
        "benchmark": "student_step", "machine": info, "args": vars(args), "batch_size": batch_size,
        "model": _common.model_description(objective), "num_params": n_params,
        "config_model": config.model.to_dict(), "peak_tflops": peak,
        "matmul": {"n": mm_n, "gflops": {n: r / 1e9 for n, r in mm_rates.items()},
                   "share_reference": f"matmul:jax:{args.dtype}"},
        "flops_per_clip_step": flops["jax:step"] / batch_size if flops.get("jax:step") else None,
        "flops_counted_with": "XLA cost analysis of the same variants with conv_impl='xla', pool_impl='reduce_window'",
        "flops_of_run_lowering": lowered_flops,
        "results": results, "ratios_vs_fastest_torch": ratios, "skipped": skipped,
        "paper_run": {"epochs": PAPER_EPOCHS, "tracks": PAPER_TRACKS, "clips_per_s": step_rate,
                      "hours": paper_s / 3600},
        "sweep": sweep,
    })


if __name__ == "__main__":
    _common.restart_as_cli_does()
    main()
