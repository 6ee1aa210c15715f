"""Per-layer cost of the student's convolutions under each lowering (cmemo_jax.models.conv).

For every conv layer of the full-size student at its 4-second input size, times the jitted forward
and forward+backward (kernel gradient always; input gradient for all layers but conv1, whose input
is the spectrogram) for every lowering in CONV_IMPLS, and prints GFLOP/s from the layer's
FLOPs. Each timed call follows one untimed call (steady state of back-to-back steps).
This is the measurement behind `CPU_CONV_IMPLS` in cmemo_jax/models/student.py.

    python benchmarks/bench_conv_lowering.py --batch_size 16 [--repeats 5] [--out conv.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import _common  # noqa: E402
from cmemo_jax.models.conv import CONV_IMPLS, conv2d  # noqa: E402

# name, input [h, w, cin], kernel [kh, kw, cin, cout], strides, padding, needs input gradient
LAYERS = [
    ("conv1", (512, 400, 1), (7, 7, 1, 96), (2, 2), ((1, 1), (1, 1)), False),
    ("conv2", (126, 98, 96), (5, 5, 96, 256), (2, 2), ((1, 1), (1, 1)), True),
    ("conv3", (30, 23, 256), (3, 3, 256, 256), (1, 1), ((1, 1), (1, 1)), True),
    ("fc6", (9, 11, 256), (9, 1, 256, 4096), (1, 1), ((0, 0), (0, 0)), True),
]
IMPLS = CONV_IMPLS


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for name, in_shape, k_shape, strides, padding, need_dx in LAYERS:
        x = jnp.asarray(rng.standard_normal((args.batch_size, *in_shape), np.float32))
        k = jnp.asarray(rng.standard_normal(k_shape, np.float32) * 0.05)
        oh = (in_shape[0] + sum(padding[0]) - k_shape[0]) // strides[0] + 1
        ow = (in_shape[1] + sum(padding[1]) - k_shape[1]) // strides[1] + 1
        fwd_flops = 2.0 * args.batch_size * oh * ow * np.prod(k_shape)
        train_flops = fwd_flops * (3 if need_dx else 2)
        fns = {}
        for impl in IMPLS:
            def loss(x, k, impl=impl):
                return jnp.sum(conv2d(x, k, strides, padding, impl) ** 2) * 1e-6
            fns[(impl, "fwd")] = jax.jit(lambda x, k, impl=impl: conv2d(x, k, strides, padding, impl))
            fns[(impl, "train")] = jax.jit(jax.grad(loss, argnums=(0, 1) if need_dx else 1))
        calls = {f"{impl}/{kind}": (lambda f=f: jax.block_until_ready(f(x, k)))
                 for (impl, kind), f in fns.items()}
        times = _common.interleaved_times(calls, repeats=args.repeats, warmup=1, verbose=False, lead_in=1)
        for impl in IMPLS:
            t_f, t_t = _common.median(times[f"{impl}/fwd"]), _common.median(times[f"{impl}/train"])
            rows.append({"layer": name, "impl": impl, "fwd_s": t_f, "fwd_gflops": fwd_flops / t_f / 1e9,
                         "train_s": t_t, "train_gflops": train_flops / t_t / 1e9})
            print(f"{name:6s} {impl:8s} fwd {t_f * 1e3:8.1f} ms {fwd_flops / t_f / 1e9:7.1f} GFLOP/s | "
                  f"fwd+bwd {t_t * 1e3:8.1f} ms {train_flops / t_t / 1e9:7.1f} GFLOP/s", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": _common.machine_info(), "batch_size": args.batch_size, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    _common.restart_as_cli_does()
    main()
