"""Face-teacher throughput: SE-ResNet-50 train step and labelling forward, our JAX vs PyTorch.

SENet50 (cmemo_jax.models.senet) at 224x224 RGB, measured with device-resident inputs, interleaved
rounds (every variant once per round), median over rounds, images/s:

  jax:train      jitted train step, state donated: SENet50 (train mode: batch statistics, dropout
                 0.5) -> soft-label cross entropy against vote distributions (the FERPlus recipe,
                 cmemo_jax.losses.soft_cross_entropy) -> SGD momentum 0.9 + weight decay 5e-4 (optax)
  jax:label      jitted eval forward (running BN statistics, no dropout): the labelling pass over
                 VoxCeleb face frames
  torch:*        tests/torch_senet.py TorchSENet50 (the authors' layer names and Caffe strides) on the
                 same images: train = forward + dropout 0.5 + soft-label cross entropy + backward +
                 torch.optim.SGD(momentum 0.9, weight_decay 5e-4); label = eval + torch.inference_mode;
                 each in eager NCHW, eager channels_last and torch.compile (NCHW). Both sides subtract
                 the mean RGB inside the timed call. --dtype bfloat16 runs them under torch.autocast.
                 They live in a worker process of their own by default (as a user runs one framework
                 per process); rounds still interleave.
  matmul:*       dense square matmul rate of this machine in the same run (jnp.dot, torch.mm)

Also reports XLA's FLOP count per call (compiled.cost_analysis(); the PyTorch variants are credited
with the same count), achieved GFLOP/s, share of the measured matmul rate and, on a GPU, MFU
against --peak_tflops (default 989 = H100/H200 bf16 dense), plus an optional JAX-only --sweep of
batch sizes. Imports no TensorFlow (the GPU machine has none).

  python benchmarks/bench_teacher.py --repeats 5 --warmup 2 --out benchmarks/results/teacher_cpu.json
  python benchmarks/bench_teacher.py --dtype bfloat16 --sweep 128,256,512 --out teacher_gpu.json   (GPU)
  python benchmarks/bench_teacher.py --batch_size 2 --width 8 --stage_sizes 1,1,1,1 --image_size 64 \\
      --repeats 1 --warmup 1 --no_compile                                                   (smoke test)
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
from benchmarks.bench_student_step import (default_peak_tflops, jax_matmul_variants,  # noqa: E402
                                           torch_matmul_variants)

LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 1e-3, 0.9, 5e-4
NUM_CLASSES = 8


# --------------------------------------------------------------------------------------------- inputs

def make_inputs(batch_size: int, image_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 RGB faces `[b, s, s, 3]` and soft targets `[b, 8]` (vote distributions: softmax
    of random logits). uint8 keeps the transfer to the PyTorch worker small."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch_size, image_size, image_size, 3), dtype=np.uint8)
    logits = rng.standard_normal((batch_size, NUM_CLASSES)) * 2.0
    targets = np.exp(logits - logits.max(-1, keepdims=True))
    return images, (targets / targets.sum(-1, keepdims=True)).astype(np.float32)


def final_map_size(image_size: int, num_stages: int) -> int:
    """Side of the last feature map: 7x7 s2 p3 stem, ceil-mode 3x3 s2 pool, stride 2 per later stage
    (the PyTorch twin's average pool must cover exactly this)."""
    from cmemo_jax.models.senet import ceil_pool_padding

    s = (image_size + 6 - 7) // 2 + 1
    s = (s + ceil_pool_padding(s, 3, 2) - 3) // 2 + 1
    for _ in range(num_stages - 1):
        s = (s - 1) // 2 + 1
    return s


# ------------------------------------------------------------------------------------------------ jax

def host_init(model, image_size: int, seed: int = 0) -> dict:
    """Variables with SENet50's initialisers' distributions, drawn by NumPy: a jitted `model.init`
    compiles a threefry for each of the ~300 parameters (tens of seconds on a small CPU), and the
    values do not change the timing. Kernels He normal, biases 0, BN scale 1, mean 0, var 1."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                            jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32))

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.standard_normal(leaf.shape, np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        return (np.ones if name in ("scale", "var") else np.zeros)(leaf.shape, np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def jax_variants(model, images_u8: np.ndarray, targets: np.ndarray) -> tuple[dict, dict]:
    """Compiled 'jax:train' and 'jax:label' runners. Returns (runners, XLA FLOPs per call)."""
    import jax
    import jax.numpy as jnp
    import optax

    from cmemo_jax import losses

    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
    variables = jax.device_put(host_init(model, images_u8.shape[1]))
    images = jax.device_put(jnp.asarray(images_u8, jnp.float32))  # the model's input: float RGB 0-255
    soft = jax.device_put(jnp.asarray(targets))

    def train_step(carry, x, t, rng):
        params, stats, opt_state = carry

        def loss_of(p):
            logits, upd = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": rng})
            return jnp.mean(losses.soft_cross_entropy(logits, t)), upd["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_stats, opt_state), loss

    carry = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
    label_vars = jax.tree.map(jnp.copy, variables)  # the train step donates (consumes) its carry
    rng = jax.random.PRNGKey(0)
    compiled_train = jax.jit(train_step, donate_argnums=(0,)).lower(carry, images, soft, rng).compile()
    compiled_label = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(label_vars, images).compile()
    box = {"carry": carry}

    def run_train():
        box["carry"], loss = compiled_train(box["carry"], images, soft, rng)
        jax.block_until_ready(loss)

    runners = {"jax:train": run_train,
               "jax:label": lambda: jax.block_until_ready(compiled_label(label_vars, images))}
    flops = {"jax:train": _common.cost_flops(compiled_train), "jax:label": _common.cost_flops(compiled_label)}
    return runners, flops


# ---------------------------------------------------------------------------------------------- torch

def torch_variants(model_kwargs: dict, images_u8, targets, dtype: str, no_compile: bool,
                   use_cuda: bool) -> tuple[dict, dict]:
    """PyTorch train / label variants on the same inputs. Returns (runners, skipped {name: why})."""
    import contextlib

    import torch
    import torch.nn.functional as F

    from cmemo_jax.models.senet import MEAN_RGB
    from tests.torch_senet import TorchSENet50

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    device = torch.device("cuda" if use_cuda else "cpu")
    sync = torch.cuda.synchronize if use_cuda else (lambda: None)
    # NCHW float 0-255 on the device, as our JAX side gets NHWC float 0-255.
    x = torch.from_numpy(np.ascontiguousarray(images_u8.transpose(0, 3, 1, 2))).to(device).float()
    t = torch.from_numpy(np.asarray(targets)).to(device)
    mean = torch.tensor(MEAN_RGB, device=device).view(1, 3, 1, 1)

    def autocast():
        if dtype == "bfloat16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def make(fmt, train: bool):
        model = TorchSENet50(head="linear", **model_kwargs).to(device)
        if fmt is not None:
            model = model.to(memory_format=fmt)
        return model.train(train)

    def inputs(fmt):
        return x.contiguous(memory_format=fmt) if fmt is not None else x

    class TrainNet(torch.nn.Module):
        """Twin + the dropout 0.5 before the classifier that SENet50 has in training."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, images):
            features = self.net.features(images - mean)
            return self.net.classifier(F.dropout(features, 0.5, training=True))

    layouts = {"eager": None, "channels_last": torch.channels_last}
    if not no_compile:
        layouts["compile"] = None
    runners, skipped = {}, {}
    for layout, fmt in layouts.items():
        train_net = TrainNet(make(fmt, True))
        opt = torch.optim.SGD(train_net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        train_fn = torch.compile(train_net) if layout == "compile" else train_net
        label_net = make(fmt, False)
        label_fn = torch.compile(label_net) if layout == "compile" else label_net
        xi = inputs(fmt)

        def train(train_fn=train_fn, opt=opt, xi=xi):
            opt.zero_grad(set_to_none=True)
            with autocast():
                logits = train_fn(xi)
            loss = -(t * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()
            loss.backward()
            opt.step()
            sync()

        def label(label_fn=label_fn, xi=xi):
            with torch.inference_mode(), autocast():
                label_fn(xi - mean)
            sync()

        for kind, fn in (("train", train), ("label", label)):
            name = f"torch:{kind}:{layout}"
            try:
                fn()  # compiles torch.compile variants; any failure is reported, not fatal
                runners[name] = fn
            except Exception as e:  # noqa: BLE001
                skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                print(f"skipped: {name}: {skipped[name]}", flush=True)
    return runners, skipped


def build_torch_runners(spec: dict):
    """In the PyTorch worker process (_common.TorchProcess): the variants and matmuls of `spec`."""
    runners, skipped = torch_variants(spec["model_kwargs"], spec["images"], spec["targets"], spec["dtype"],
                                      spec["no_compile"], spec["use_cuda"])
    runners.update(torch_matmul_variants(spec["mm_n"], spec["mm_dtypes"], spec["use_cuda"], spec["mm_inner"]))
    return runners, skipped


# ----------------------------------------------------------------------------------------------- main

def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch_size", type=int, default=None, help="default 16 on CPU, 256 on GPU")
    p.add_argument("--image_size", type=int, default=224, help="square input side in pixels (default 224)")
    p.add_argument("--width", type=int, default=64, help="SENet50 width (default 64 = SE-ResNet-50)")
    p.add_argument("--stage_sizes", default="3,4,6,3", help="blocks per stage (default 3,4,6,3)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype of the model (parameters stay float32)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each variant first (default 2)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of idle before each timed call, so the other runtime's spinning threads settle")
    p.add_argument("--lead_in", type=int, default=1,
                   help="untimed calls right before each timed call: the steady state of back-to-back steps")
    p.add_argument("--no_torch", action="store_true", help="skip the PyTorch peers")
    p.add_argument("--no_compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--torch_process", choices=("separate", "same"), default="separate",
                   help="run the PyTorch peers in their own worker process (default) or in this process")
    p.add_argument("--matmul_size", type=int, default=None, help="square matmul size (default 2048 CPU, 8192 GPU)")
    p.add_argument("--sweep", default="", help="comma list of batch sizes for a JAX-only sweep, e.g. 128,256,512")
    p.add_argument("--peak_tflops", type=float, default=None,
                   help="accelerator peak TFLOP/s for MFU (default on H100/H200: 989 = bf16 dense)")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    return p, p.parse_args(argv)


def _result_rows(times, flops, mm_flops, mm_rate, batch_size, peak):
    """Per-variant summaries and table rows; PyTorch variants are credited with XLA's FLOP count."""
    results, rows = {}, []
    for name, ts in times.items():
        med = _common.median(ts)
        if name.startswith("matmul:"):
            f, imgs = mm_flops, None
        else:
            imgs = batch_size / med
            f = flops["jax:train"] if ":train" in name else flops["jax:label"]
        r = _common.summary(ts)
        r.update({"images_per_s": imgs, "flops_per_call": f, "achieved_gflops": f / med / 1e9 if f else None,
                  "share_of_jax_matmul": (f / med) / mm_rate if f else None})
        if peak and f:
            r["mfu"] = f / med / (peak * 1e12)
        results[name] = r
        rows.append([name, imgs, med * 1e3, r["min_s"] * 1e3, f / 1e9 if f else None, r["achieved_gflops"],
                     r["share_of_jax_matmul"]] + ([r.get("mfu")] if peak else []))
    return results, rows


def _ratios(times) -> dict:
    """Ours vs the fastest PyTorch variant of each kind: median over rounds of t_peer / t_ours."""
    out = {}
    for kind in ("train", "label"):
        peers = {n: t for n, t in times.items() if n.startswith(f"torch:{kind}:")}
        if peers:
            best = min(peers, key=lambda n: _common.median(peers[n]))
            out[f"jax:{kind}"] = {"peer": best, "speed_ratio": _common.median_ratio(peers[best], times[f"jax:{kind}"])}
    return out


def _sweep(model, sizes, args, peak) -> list[dict]:
    entries = []
    for b in sizes:
        images, targets = make_inputs(b, args.image_size)
        runners, flops = jax_variants(model, images, targets)
        times = _common.interleaved_times(runners, args.repeats, args.warmup, verbose=False, pause=args.pause,
                                          lead_in=args.lead_in)
        entry = {"batch_size": b}
        for name, ts in times.items():
            med, f = _common.median(ts), flops.get(name)
            entry[name] = {**_common.summary(ts, work=b), "flops_per_call": f,
                           "achieved_tflops": f / med / 1e12 if f else None,
                           "mfu": f / med / (peak * 1e12) if (f and peak) else None}
        entries.append(entry)
        del runners
    _common.print_table(
        ["batch", "train img/s", "TFLOP/s", "MFU", "label img/s", "TFLOP/s", "MFU"],
        [[e["batch_size"]] + [x for n in ("jax:train", "jax:label")
                              for x in (e[n]["rate_per_s"], e[n]["achieved_tflops"], e[n]["mfu"])] for e in entries],
        title=f"Batch sweep, {args.dtype}" + (f", MFU against {peak} TFLOP/s" if peak else ""))
    return entries


def main(argv=None):
    parser, args = _parse_args(argv)
    import jax
    import jax.numpy as jnp

    from cmemo_jax.models import registry
    from cmemo_jax.models.senet import SENet50

    info = _common.machine_info()
    _common.print_machine(info)
    on_gpu = jax.default_backend() == "gpu"
    batch_size = args.batch_size or (256 if on_gpu else 16)
    peak = args.peak_tflops
    if on_gpu and peak is None:
        peak = default_peak_tflops(info["jax_device_kind"])
        if peak is None:
            parser.error(f"unknown GPU {info['jax_device_kind']!r}: pass --peak_tflops")
    use_cuda = False
    if on_gpu and not args.no_torch:
        try:
            import torch

            use_cuda = torch.cuda.is_available()
        except ImportError:
            pass

    stage_sizes = tuple(int(s) for s in args.stage_sizes.split(","))
    model = SENet50(num_classes=NUM_CLASSES, stage_sizes=stage_sizes, width=args.width, dtype=jnp.dtype(args.dtype))
    shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, train=False),
                            jax.ShapeDtypeStruct((1, args.image_size, args.image_size, 3), jnp.float32))
    n_params = int(sum(np.prod(s.shape) for s in jax.tree.leaves(shapes["params"])))
    print(f"# teacher {registry.constructor_kwargs(model)}  params {n_params / 1e6:.2f} M  batch {batch_size}  "
          f"{args.image_size}x{args.image_size}", flush=True)

    images, targets = make_inputs(batch_size, args.image_size)
    print("compiling JAX variants ...", flush=True)
    runners, flops = jax_variants(model, images, targets)
    mm_n = args.matmul_size or (8192 if on_gpu else 2048)
    mm_dtypes = ("float32",) if args.dtype == "float32" else ("float32", args.dtype)
    mm_inner = 10 if on_gpu else 1
    mm_runners, mm_flops = jax_matmul_variants(mm_n, mm_dtypes, inner=mm_inner)
    runners.update(mm_runners)

    skipped, torch_process = {}, None
    if not args.no_torch:
        model_kwargs = dict(width=args.width, stage_sizes=stage_sizes, num_classes=NUM_CLASSES,
                            pool_size=final_map_size(args.image_size, len(stage_sizes)))
        try:
            if args.torch_process == "separate":
                print("starting the PyTorch worker process ...", flush=True)
                torch_process = _common.TorchProcess(build_torch_runners, dict(
                    model_kwargs=model_kwargs, images=images, targets=targets, dtype=args.dtype,
                    no_compile=args.no_compile, use_cuda=use_cuda, mm_n=mm_n, mm_dtypes=mm_dtypes,
                    mm_inner=mm_inner))
                runners.update(torch_process.runners)
                skipped = dict(torch_process.skipped)
            else:
                t_run, skipped = torch_variants(model_kwargs, images, targets, args.dtype, args.no_compile, use_cuda)
                runners.update(t_run)
                runners.update(torch_matmul_variants(mm_n, mm_dtypes, use_cuda, mm_inner))
        except (ImportError, RuntimeError) as e:
            skipped["torch"] = f"{type(e).__name__}: {e}"
            print(f"skipped: torch: {e}")

    try:
        times = _common.interleaved_times(runners, args.repeats, args.warmup, pause=args.pause, lead_in=args.lead_in)
    finally:
        if torch_process is not None:
            torch_process.close()

    mm_rates = {n: mm_flops / _common.median(t) for n, t in times.items() if n.startswith("matmul:")}
    mm_rate = mm_rates[f"matmul:jax:{args.dtype}"]
    results, rows = _result_rows(times, flops, mm_flops, mm_rate, batch_size, peak)
    headers = ["variant", "img/s", "median ms", "min ms", "GFLOP/call", "GFLOP/s", "of matmul"]
    if peak:
        headers.append(f"MFU@{peak:g}T")
    _common.print_table(headers, rows, title=(
        f"SE-ResNet-50 teacher, batch {batch_size}, {args.image_size}x{args.image_size}, {args.dtype}, median of "
        f"{args.repeats} interleaved rounds (matmul {mm_n}^3; 'of matmul' = achieved FLOP/s / {args.dtype} jnp.dot "
        f"FLOP/s; torch FLOPs = XLA's count of the same model)"))
    ratios = _ratios(times)
    if ratios:
        _common.print_table(["ours", "fastest PyTorch peer", "speed ratio (ours / peer)"],
                            [[k, v["peer"], v["speed_ratio"]] for k, v in ratios.items()],
                            title="Ours relative to the fastest PyTorch variant (> 1: ours faster)")
    if flops.get("jax:train"):
        print(f"\nFLOPs per image: train step {flops['jax:train'] / batch_size / 1e9:.3g} G, "
              f"label forward {(flops['jax:label'] or float('nan')) / batch_size / 1e9:.3g} G (XLA); matmul {mm_n}^3: "
              + ", ".join(f"{n[7:]} {r / 1e9:,.0f} GFLOP/s" for n, r in mm_rates.items()))

    sweep = _sweep(model, [int(s) for s in args.sweep.split(",") if s.strip()], args, peak) if args.sweep else []

    _common.write_json(args.out, {
        "benchmark": "teacher", "machine": info, "args": vars(args), "batch_size": batch_size,
        "image_size": args.image_size, "model": registry.constructor_kwargs(model), "num_params": n_params,
        "peak_tflops": peak,
        "matmul": {"n": mm_n, "gflops": {n: r / 1e9 for n, r in mm_rates.items()},
                   "share_reference": f"matmul:jax:{args.dtype}"},
        "flops_per_image": {k: (v / batch_size if v else None) for k, v in flops.items()},
        "flops_counted_with": "XLA cost analysis of the compiled JAX variants",
        "results": results, "ratios_vs_fastest_torch": ratios, "skipped": skipped, "sweep": sweep,
    })


if __name__ == "__main__":
    _common.restart_as_cli_does()
    main()
