"""What the Colab notebooks (colab/*.ipynb) share, so that their cells stay short and tested.

    in_colab()                          -> True inside a Google Colab runtime
    accelerator_summary()               -> one line: backend, device kind and count, process count
    accelerator_overrides()             -> config fields the accelerator wants ({} on CPU)
    phase_config(repo_dir, phase, arg, overrides, accelerator=False)
                                        -> configs/<phase>.py:arg with dotted overrides (and the above)
    read_metrics(workdir)               -> the rows of WORKDIR/metrics.jsonl (what the trainer logged)
    plot_metrics(workdir, path)         -> PNG of the training and validation curves

The notebooks also run top to bottom on a CPU (tests/test_notebooks.py executes them with the tiny
configs and the embedded corpus); here nothing imports TensorFlow or IPython.
"""
from __future__ import annotations

import json
import os
import sys

from cmemo_jax.config_files import apply_overrides, load_config_file

# What each backend runs best (README "Performance"): bfloat16 compute on GPU and TPU; on TPU also the
# DFT as a matmul (TPUs run FFTs poorly; the two front-ends agree within float tolerance, tested).
# Field names are those of the student config; teacher and label configs have model.dtype only.
_ACCELERATOR_FIELDS = {
    "gpu": {"model.dtype": "bfloat16"},
    "tpu": {"model.dtype": "bfloat16", "audio.dft": "matmul"},
}
METRICS_FILE = "metrics.jsonl"


def in_colab() -> bool:
    """True inside a Google Colab runtime (its `google.colab` package is imported by the kernel)."""
    return "google.colab" in sys.modules


def accelerator_summary() -> str:
    """E.g. 'tpu: 8 x TPU v2 (1 process)' or 'cpu: 1 x cpu (1 process)'."""
    import jax

    devices = jax.devices()
    return (f"{jax.default_backend()}: {len(devices)} x {devices[0].device_kind} "
            f"({jax.process_count()} process{'es' if jax.process_count() > 1 else ''})")


def accelerator_overrides(backend: str | None = None, config=None) -> dict:
    """Dotted config fields for `backend` (default: JAX's), limited to the fields `config` has."""
    if backend is None:
        import jax

        backend = jax.default_backend()
    fields = dict(_ACCELERATOR_FIELDS.get(backend, {}))
    if config is not None:
        fields = {k: v for k, v in fields.items() if _has_field(config, k)}
    return fields


def _has_field(config, dotted: str) -> bool:
    node = config
    for name in dotted.split("."):
        if name not in node:
            return False
        node = node[name]
    return True


def phase_config(repo_dir: str, phase: str, arg: str = "", overrides: dict | None = None, *,
                 accelerator: bool = False):
    """`configs/<phase>.py:<arg>` of the repository at `repo_dir`, with dotted `overrides` set, as
    `--config=configs/<phase>.py:<arg> --config.a.b=v` gives on the command line. accelerator=True
    first sets the fields of `accelerator_overrides` that this config has (`overrides` win)."""
    path = os.path.join(repo_dir, "configs", f"{phase}.py")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such config file; REPO_DIR must be a copy of the cmemo_jax "
                                "repository (its configs/ folder)")
    config = load_config_file(path, arg or None)
    fields = accelerator_overrides(config=config) if accelerator else {}
    return apply_overrides(config, {**fields, **(overrides or {})})


def read_metrics(workdir: str) -> list[dict]:
    """WORKDIR/metrics.jsonl -> one dict per logged step ('step' and the logged scalars), in file order."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no metrics yet (the trainer writes it at the first log step)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(workdir: str, path: str, metrics: tuple[str, ...] = ("loss", "mean_auc", "accuracy")) -> str:
    """Curves of the logged scalars over steps -> PNG at `path` (returned).

    One panel per metric name that was logged (the part after the split: 'loss' gathers 'train/loss',
    'heard_val/loss', 'unheard_val/loss'), one line per split, a point at each logged step."""
    from cmemo_jax.metrics.figures import new_figure, save_figure

    rows = read_metrics(workdir)
    logged = sorted({k for row in rows for k in row if k != "step"})
    panels = [(m, [k for k in logged if k.rsplit("/", 1)[-1] == m]) for m in metrics]
    panels = [(m, keys) for m, keys in panels if keys]
    if not panels:
        raise ValueError(f"{os.path.join(workdir, METRICS_FILE)}: none of {', '.join(metrics)} was logged "
                         f"(logged: {', '.join(logged) or 'nothing'})")
    fig = new_figure(3.6 * len(panels), 2.8)
    for i, (metric, keys) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for key in keys:
            points = [(row["step"], row[key]) for row in rows if key in row]
            ax.plot([s for s, _ in points], [v for _, v in points], label=key.rsplit("/", 1)[0],
                    marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
