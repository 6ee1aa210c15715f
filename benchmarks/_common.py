"""Helpers shared by the benchmark scripts: machine info, interleaved timing, tables, JSON, configs.

Imports neither TensorFlow nor PyTorch (versions are read from the installed package metadata), so
the GPU machine, which has no TensorFlow, can run every benchmark that does not need it.
"""
from __future__ import annotations

import ast
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up logs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # so `python benchmarks/bench_x.py` finds cmemo_jax, benchmarks.* and tests.*
    sys.path.insert(0, REPO)

# Distribution names to report; the first installed name of each group is used.
_PACKAGES = {
    "jax": ("jax",), "jaxlib": ("jaxlib",), "flax": ("flax",), "optax": ("optax",), "numpy": ("numpy",),
    "scipy": ("scipy",), "torch": ("torch",), "tensorflow": ("tensorflow-cpu", "tensorflow"),
    "librosa": ("librosa",),
}


# ----------------------------------------------------------------------------------------- machine

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma")
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def package_versions() -> dict:
    out = {}
    for key, names in _PACKAGES.items():
        out[key] = None
        for name in names:
            try:
                out[key] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return out


def machine_info() -> dict:
    """CPU, cores, date, library versions and the JAX backend / devices of this process."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "python": sys.version.split()[0],
        "versions": package_versions(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }
    try:
        with open("/proc/loadavg") as fh:
            info["loadavg_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    try:
        import jax

        devices = jax.devices()
        info["jax_backend"] = jax.default_backend()
        info["jax_device_kind"] = devices[0].device_kind
        info["jax_device_count"] = len(devices)
    except Exception as e:  # noqa: BLE001 - report, do not fail the benchmark
        info["jax_backend"] = f"unavailable: {e}"
    return info


def print_machine(info: dict) -> None:
    v = info["versions"]
    print(f"# {info['date']}  {info['cpu_model']}  ({info['cpu_affinity']} of {info['cpu_count']} cores usable; "
          f"flags {','.join(info['cpu_flags']) or '-'}; load {' '.join(info.get('loadavg_at_start', []))})")
    print(f"# python {info['python']}  jax {v['jax']}  jaxlib {v['jaxlib']}  flax {v['flax']}  "
          f"torch {v['torch']}  tf {v['tensorflow']}  librosa {v['librosa']}")
    print(f"# jax backend {info.get('jax_backend')}  device {info.get('jax_device_kind')} "
          f"x{info.get('jax_device_count')}  XLA_FLAGS='{info['xla_flags']}'  "
          f"GLIBC_TUNABLES='{info['glibc_tunables']}'")


def restart_as_cli_does() -> None:
    """Re-executes the running benchmark script the way `python -m cmemo_jax.main` re-executes
    itself (glibc malloc with transparent huge pages, cmemo_jax.hostmem), so that benchmarks
    measure what the trainer runs. CMEMO_MALLOC_HUGEPAGES=0 measures without."""
    from cmemo_jax import hostmem

    hostmem.reexec_with_malloc_hugepages([os.path.abspath(sys.argv[0]), *sys.argv[1:]])


# ------------------------------------------------------------------------------------------ timing

def interleaved_times(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1,
                      verbose: bool = True, pause: float = 0.0, lead_in: int = 0) -> dict[str, list[float]]:
    """Runs each callable `warmup` times, then `repeats` rounds of one call of each, in turn.

    Every callable must do one unit of work and block until it is finished (block_until_ready,
    torch.cuda.synchronize, ...). Interleaving spreads slow drifts of the machine (other load, clock
    changes) over all candidates instead of penalising whichever ran during them.
    `pause` seconds of sleep before each timed call let the previous variant's thread pools (XLA's,
    TensorFlow's and OpenMP's workers spin-wait after work) go idle, so they do not steal cores from
    the next one on a small machine.
    `lead_in` untimed calls run right before each timed call (after the pause), so the timed call
    sees the steady state of back-to-back steps, as in training: after an idle pause XLA:CPU's
    first execution pays again for faulting in its freshly allocated buffers (measured 2.9 s vs
    2.4 s per full-size student step at batch 16 with huge-page malloc), which a caching
    allocator such as PyTorch's does not.
    Returns {name: [seconds per round]}.
    """
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
        if verbose:
            print(f"  warmed up {name}", flush=True)
    times = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            if pause > 0:
                time.sleep(pause)
            for _ in range(lead_in):
                fn()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if verbose:
            print(f"  round {r + 1}/{repeats}: " + ", ".join(f"{n} {t[-1]:.3f}s" for n, t in times.items()),
                  flush=True)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def summary(times: Sequence[float], work: float = 1.0) -> dict:
    """Median / min / max seconds and the median rate `work / median_s`."""
    med = median(times)
    return {"median_s": med, "min_s": float(min(times)), "max_s": float(max(times)),
            "rate_per_s": work / med if med > 0 else float("inf"), "times_s": [float(t) for t in times]}


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of num[r] / den[r] (e.g. peer time / our time = our speed-up)."""
    return median([a / b for a, b in zip(num, den)])


# ------------------------------------------------------------------------------------------ output

def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    def fmt(x):
        if isinstance(x, float):
            if x != x:
                return "nan"
            if abs(x) >= 100:
                return f"{x:,.0f}"
            if abs(x) >= 1:
                return f"{x:.2f}"
            return f"{x:.3g}"
        return "-" if x is None else str(x)

    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def write_json(path: str | None, result: dict) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    print(f"\nwrote {path}")


# ----------------------------------------------------------------------------------------- configs

def load_config(name: str = "student", arg: str | None = None):
    """configs/<name>.py get_config(arg), as `--config=configs/<name>.py:arg` loads it."""
    from cmemo_jax.config_files import load_config_file

    return load_config_file(os.path.join(REPO, "configs", f"{name}.py"), arg)


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config, overrides: Sequence[str]):
    """Applies 'a.b.c=value' strings (value parsed as a Python literal, else kept as a string).

    New keys may be added (e.g. model.bn_momentum, a Student field the config does not list).
    """
    for item in overrides or ():
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        *parents, leaf = key.strip().split(".")
        node = config
        for p in parents:
            node = node[p]
        value = _parse_value(text.strip())
        if isinstance(value, list):
            value = tuple(value)
        node[leaf] = value
    return config


def make_objective(config):
    """StudentObjective(config): every Student field set in config.model (--override model.X=...,
    e.g. pool_impl or bn_momentum) reaches the model through cmemo_jax.models.registry.build."""
    from cmemo_jax.tasks.student import StudentObjective

    return StudentObjective(config)


def model_description(objective) -> dict:
    from cmemo_jax.models import constructor_kwargs

    return constructor_kwargs(objective.model)
def cost_flops(compiled) -> float | None:
    """FLOPs from XLA's cost analysis of a compiled executable (a dict, or a list of dicts in older jax)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost:
        return None
    flops = cost.get("flops")
    return float(flops) if flops is not None and flops >= 0 else None

# ------------------------------------------------------------------------------ PyTorch worker process

def _torch_worker(conn, build, spec: dict) -> None:
    """Child process: `build(spec) -> (runners {name: callable}, skipped {name: why})`, then runs
    one runner per request.

    Protocol on `conn`: sends ('ready', names, skipped) or ('error', text); then for each received
    name runs that variant once and sends 'done'; None ends the loop.
    """
    try:
        runners, skipped = build(spec)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which carries on without torch
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", list(runners), skipped))
    while True:
        name = conn.recv()
        if name is None:
            break
        runners[name]()
        conn.send("done")


class TorchProcess:
    """PyTorch variants in their own process, as a user would run PyTorch: no shared allocator or
    thread pools with XLA. `build` is a module-level function (it is sent to a spawned process);
    `runners` are proxies that run one call in the child and wait for it (a pipe round trip, well
    under a millisecond, is inside the timed interval)."""

    def __init__(self, build, spec: dict):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_torch_worker, args=(child, build, spec), daemon=True)
        self._proc.start()
        reply = self._conn.recv()
        if reply[0] == "error":
            self.close()
            raise RuntimeError(f"PyTorch worker failed: {reply[1]}")
        _, names, self.skipped = reply
        self.runners = {name: (lambda name=name: self._run(name)) for name in names}

    def _run(self, name: str) -> None:
        self._conn.send(name)
        if self._conn.recv() != "done":
            raise RuntimeError(f"PyTorch worker: unexpected reply running {name}")

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.terminate()
