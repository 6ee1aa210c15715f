"""The evaluate phase (paper §5): Table 5 on RML / eNTERFACE'05 / a CSV manifest, the student's
confusion matrices (Fig. 5), and the heard / unheard-identity ROC AUC against the teacher.

What is measured lives in cmemo_jax.tasks.evaluate; this module checks the config, runs it, and writes
WORKDIR/results.json, WORKDIR/results.md and WORKDIR/figures/, each recording what produced it (config,
code version, seeds, model sha256).
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess

import jax
import numpy as np

from cmemo_jax import constants, export
from cmemo_jax.data import sources
from cmemo_jax.errors import ConfigError
from cmemo_jax.metrics import figures, probe
from cmemo_jax.metrics.auc import softmax, teacher_student_auc
from cmemo_jax.tasks import evaluate as task
from cmemo_jax.train import sharding
from cmemo_jax.train import workdir as workdir_lib

FIGURES_DIR = "figures"
PROTOCOL_TITLES = {
    "random_folds": "random {k}-fold cross-validation (seed {seed}; the paper's protocol)",
    "speaker_folds": "speaker-independent folds (each speaker's clips in one fold; not in the paper)",
}


# -------------------------------------------------------------------------------------- checks

def _check_path(field: str, path: str, want_dir: bool) -> None:
    ok = os.path.isdir(path) if want_dir else os.path.isfile(path)
    if not ok:
        raise ConfigError(f"config.{field}={path}: no such {'folder' if want_dir else 'file'}")


def check_eval_config(config) -> None:
    """One-line ConfigError naming the first field that cannot work, before any work is done."""
    e = config.eval
    if not e.model:
        raise ConfigError("config.eval.model is required: the student export (.msgpack) to evaluate")
    _check_path("eval.model", e.model, want_dir=False)
    if e.teacher_model:
        _check_path("eval.teacher_model", e.teacher_model, want_dir=False)
    for name, (field, _, _) in task.DATASETS.items():
        if e[field]:
            _check_path(f"eval.{field}", e[field], want_dir=name != "manifest")
    if not task.configured_datasets(e) and not e.auc:
        raise ConfigError("nothing to evaluate: set config.eval.rml_dir, eval.enterface_dir or eval.manifest, "
                          "or config.eval.auc=True")
    for field, value, least in (("eval.folds", e.folds, 2), ("batch_size", config.batch_size, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"config.{field}={value!r}: must be an integer >= {least}")
    if not 0 < float(e.teacher_crop_fraction) <= 1:
        raise ConfigError(f"config.eval.teacher_crop_fraction={e.teacher_crop_fraction}: use a fraction in (0, 1]")
    try:
        sharding.check_batch_size(int(config.batch_size), sharding.make_mesh())
    except ValueError as err:
        raise ConfigError(f"config.batch_size: {err}") from None
    if e.auc:
        sources.check_data_config(config.data)


# ---------------------------------------------------------------------------------- provenance

def code_version() -> dict:
    """{'git_commit', 'git_dirty'} when the package is the top of a git checkout's tree (the commit
    must be this code's, not that of a repository an installed copy happens to sit in), else
    {'package_version'}."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkout = os.path.dirname(package)

    def git(*args):
        return subprocess.run(["git", "-C", checkout, *args], capture_output=True, text=True, timeout=30)

    try:
        top, head = git("rev-parse", "--show-toplevel"), git("rev-parse", "HEAD")
        if top.returncode == 0 and head.returncode == 0 and os.path.samefile(top.stdout.strip(), checkout):
            dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip() != ""
            return {"git_commit": head.stdout.strip(), "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        pass                                       # no git: fall back to the installed version
    from importlib import metadata

    try:
        return {"package_version": metadata.version("cmemo_jax")}
    except metadata.PackageNotFoundError:
        return {"package_version": "unknown"}


def provenance(config) -> dict:
    """What produced the results: config, code version, seeds, model files and their sha256."""
    e = config.eval
    models = {"student": {"path": os.path.abspath(e.model), "sha256": export.file_sha256(e.model)}}
    if e.teacher_model:
        models["teacher"] = {"path": os.path.abspath(e.teacher_model), "sha256": export.file_sha256(e.teacher_model)}
    return {"created": datetime.datetime.now().isoformat(timespec="seconds"), "code": code_version(),
            "seeds": {"folds": int(e.seed), "random_forest": int(e.seed), "random_guess": int(e.seed)},
            "models": models, "config": json.loads(json.dumps(config.to_dict(), default=str))}


# ------------------------------------------------------------------------------------ datasets

def _method_record(result: dict) -> dict:
    """The JSON part of a cross_validate result (no per-clip predictions or scores)."""
    keep = ("accuracy_mean", "accuracy_std", "fold_accuracy", "confusion", "counts", "class_names", "chance")
    return {k: v for k, v in probe.jsonable(result).items() if k in keep}


def _save_confusions(name: str, protocol: str, results: dict, fig_dir: str) -> dict:
    """Fig. 5: row-normalised confusion of the student probe (and teacher (V) if run) -> {method: files}."""
    saved = {}
    for method, stem in ((task.STUDENT, "student"), (task.TEACHER, "teacher")):
        if method in results:
            r = results[method]
            title = f"{task.DATASETS[name][2]}: {method}, {protocol.replace('_', ' ')}"
            json_path, png_path = figures.save_confusion(
                r["confusion"], r["class_names"], os.path.join(fig_dir, f"{name}_{stem}_confusion_{protocol}"),
                title=title, counts=r["counts"])
            saved[method] = {"json": json_path, "png": png_path}
    return saved


def _dataset_record(ds: task.Dataset) -> dict:
    return {"path": os.path.abspath(ds.path), "clips_listed": ds.listed, "clips_read": len(ds.clips),
            "clips_skipped": ds.listed - len(ds.clips), "entries_skipped": len(ds.problems),
            "problems": ds.problems, "n_clips": len(ds.clips),
            "num_speakers": len(set(ds.speakers)), "class_names": task.class_order(ds.labels)}


def evaluate_dataset(name: str, path: str, config, runner, teacher, fig_dir: str) -> dict:
    """Reads, embeds and cross-validates one dataset under each fold protocol; its results.json entry."""
    e = config.eval
    ds = task.read_dataset(name, path, tuple(e.manifest_labels))
    for line in ds.problems:
        print(f"{name}: skipped {line}", flush=True)
    record = _dataset_record(ds)
    reason = task.skip_reason(ds, int(e.folds))
    if reason:
        print(f"{name}: dataset skipped: {reason}", flush=True)
        return {**record, "skipped": reason}
    features, record["notes"] = task.method_features(ds, runner, teacher, e)
    for note in record["notes"]:
        print(f"{name}: {note}", flush=True)
    record["protocols"], record["figures"] = {}, {}
    for protocol, folds in task.fold_protocols(ds.speakers, int(e.folds), int(e.seed),
                                               bool(e.speaker_independent)).items():
        if isinstance(folds, str):
            record["protocols"][protocol] = {"skipped": folds}
            continue
        results = task.cross_validate_methods(features, ds.labels, record["class_names"], folds, e)
        record["protocols"][protocol] = {"folds": len(folds), "fold_sizes": [len(f) for f in folds],
                                         "methods": {m: _method_record(r) for m, r in results.items()}}
        record["figures"][protocol] = _save_confusions(name, protocol, results, fig_dir)
    return record


# --------------------------------------------------------------------------------- heard / unheard

def _common_mean(splits: dict) -> dict:
    """Mean AUC per split over the emotions evaluated in every split (the paper's 0.71 vs 0.69)."""
    evaluated = [set(s["per_class"]) for s in splits.values() if "per_class" in s]
    common = [e for e in constants.EMOTIONS if evaluated and all(e in s for s in evaluated)]
    means = {split: (float(np.mean([s["per_class"][e] for e in common])) if common else float("nan"))
             for split, s in splits.items() if "per_class" in s}
    return {"emotions": common, "mean_auc": means}


def heard_unheard_auc(config, fig_dir: str) -> dict:
    """Per split: per-emotion ROC AUC of the student against the teacher, the mean, ROC figure."""
    data_dir = sources.resolve_records_dir(config.data)
    splits = {}
    for split, out in task.split_outputs(config.eval.model, config, data_dir).items():
        if not out or len(out["student_logits"]) == 0:
            splits[split] = {"skipped": f"no tracks in the {split} shards of {data_dir}"}
            continue
        auc = teacher_student_auc(out["teacher_logits"], out["student_logits"])
        curves = figures.roc_curves(softmax(out["student_logits"]), out["teacher_logits"].argmax(-1),
                                    constants.EMOTIONS)
        png = figures.roc_figure(curves, os.path.join(fig_dir, f"roc_{split}.png"),
                                 title=f"student vs teacher, {split} (mean AUC {auc['mean_auc']:.3f})")
        splits[split] = {**auc, "num_clips": int(len(out["student_logits"])), "figure": png}
    return {"records_dir": data_dir, "splits": splits, "common": _common_mean(splits)}


# ------------------------------------------------------------------------------------ markdown

def _cell(protocol_record: dict | None, method: str) -> str:
    """'mean ± std' in percent; 'chance c' added for the random row; '–' if the method did not run."""
    if protocol_record is None or "methods" not in protocol_record:
        return "–"
    r = protocol_record["methods"].get(method)
    if r is None:
        return "–"
    cell = f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}"
    return cell + (f" (chance {100 * r['chance']:.1f})" if "chance" in r else "")


def _dataset_header(name: str, record: dict, protocol: str) -> str:
    proto = record.get("protocols", {}).get(protocol, {})
    folds = f", {proto['folds']} folds" if "folds" in proto else ""
    return f"{task.DATASETS[name][2]} (n={record['n_clips']}{folds})"


def table5_markdown(datasets: dict, protocol: str) -> str:
    """Table 5's shape: method rows, dataset columns, 'mean ± std' accuracy (%) cells."""
    names = list(datasets)
    lines = ["| Method | Modality | " + " | ".join(_dataset_header(n, datasets[n], protocol) for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for method in task.METHODS:
        cells = []
        for n in names:
            rec = datasets[n]
            proto = rec.get("protocols", {}).get(protocol)
            if "skipped" in rec:
                cells.append("skipped")
            elif proto is not None and "skipped" in proto:
                cells.append("n/a")
            else:
                cells.append(_cell(proto, method))
        lines.append(f"| {method} | {task.MODALITY[method]} | " + " | ".join(cells) + " |")
    notes = [f"- {task.DATASETS[n][2]}: {r.get('skipped') or r['protocols'][protocol]['skipped']}"
             for n, r in datasets.items()
             if "skipped" in r or "skipped" in r.get("protocols", {}).get(protocol, {})]
    return "\n".join(lines + ([""] + notes if notes else []))


def auc_markdown(auc: dict) -> str:
    """Emotions as columns, heard / unheard as rows, the mean over evaluated emotions and over the common ones."""
    common = auc["common"]["emotions"]
    head = ["split", "n", *constants.EMOTIONS, "mean", f"mean (common: {', '.join(common) or 'none'})"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for split, s in auc["splits"].items():
        if "skipped" in s:
            lines.append(f"| {split} | 0 | " + " | ".join(["–"] * (len(head) - 2)) + " |")
            continue
        cells = [f"{s['per_class'][e]:.3f}" if e in s["per_class"] else "–" for e in constants.EMOTIONS]
        common_mean = auc["common"]["mean_auc"].get(split, float("nan"))
        lines.append(f"| {split} | {s['num_clips']} | " + " | ".join(cells)
                     + f" | {s['mean_auc']:.3f} | {common_mean:.3f} |")
    return "\n".join(lines)


def results_markdown(results: dict) -> str:
    """The whole results.md: Table 5 (both fold protocols), the AUC table, notes and provenance."""
    p, e = results["produced_by"], results["produced_by"]["config"]["eval"]
    parts = ["# Evaluation (paper §5)", ""]
    if results["datasets"]:
        for protocol in task.PROTOCOLS:
            if any(protocol in r.get("protocols", {}) or "skipped" in r for r in results["datasets"].values()):
                title = PROTOCOL_TITLES[protocol].format(k=e["folds"], seed=e["seed"])
                parts += [f"## Table 5: accuracy (%), mean ± std over folds — {title}", "",
                          table5_markdown(results["datasets"], protocol), ""]
    if results.get("auc"):
        parts += ["## ROC AUC of the student against the teacher's max-pooled logits (paper §5)", "",
                  auc_markdown(results["auc"]), ""]
    skipped = {n: r["entries_skipped"] for n, r in results["datasets"].items() if r["entries_skipped"]}
    if skipped:
        parts += ["Skipped entries (listed in results.json): "
                  + ", ".join(f"{task.DATASETS[n][2]} {k}" for n, k in skipped.items()), ""]
    code = p["code"].get("git_commit") or p["code"].get("package_version")
    dirty = " (uncommitted changes)" if p["code"].get("git_dirty") else ""
    models = "; ".join(f"{k} {m['path']} sha256 {m['sha256']}" for k, m in p["models"].items())
    parts += ["## Produced by", "", f"- cmemo_jax {code}{dirty}, {p['created']}", f"- models: {models}",
              f"- seeds: {json.dumps(p['seeds'])}", f"- config: `{json.dumps(p['config'], sort_keys=True)}`", ""]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------ run

def _summary(results: dict, workdir: str) -> dict:
    datasets = {}
    for name, r in results["datasets"].items():
        proto = r.get("protocols", {}).get("random_folds", {})
        datasets[name] = ({"skipped": r["skipped"]} if "skipped" in r else
                          {m: v["accuracy_mean"] for m, v in proto.get("methods", {}).items()})
    auc = {s: v.get("mean_auc") for s, v in (results.get("auc") or {}).get("splits", {}).items()}
    return {"datasets": datasets, "mean_auc": auc, "results_json": os.path.join(workdir, "results.json"),
            "results_md": os.path.join(workdir, "results.md")}


def _json_safe(value):
    """NaN / inf -> None, recursively: results.json stays strict JSON (a mean over no emotion is nan)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _stamp_figure_records(results: dict) -> None:
    """Adds results['produced_by'] to every confusion-matrix JSON, so each file says what produced it."""
    for record in results["datasets"].values():
        for saved in record.get("figures", {}).values():
            for files in saved.values():
                with open(files["json"]) as fh:
                    data = json.load(fh)
                data["produced_by"] = results["produced_by"]
                with open(files["json"], "w") as fh:
                    json.dump(data, fh, indent=1)


def _write(workdir: str, results: dict) -> str:
    """Writes results.json and results.md (atomically); returns the markdown."""
    markdown = results_markdown(results)
    for name, text in (("results.json", json.dumps(_json_safe(results), indent=1, allow_nan=False)),
                       ("results.md", markdown)):
        path = os.path.join(workdir, name)
        with open(path + ".tmp", "w") as fh:
            fh.write(text)
        os.replace(path + ".tmp", path)
    return markdown


def run(config, workdir: str) -> dict:
    """Evaluates the student export of config.eval.model; returns a summary dict (accuracies, AUCs, files)."""
    check_eval_config(config)
    with workdir_lib.exclusive_run(workdir, config):
        fig_dir = os.path.join(workdir, FIGURES_DIR)
        results = {"produced_by": provenance(config), "datasets": {}, "auc": None}
        datasets = task.configured_datasets(config.eval)
        if datasets:
            from cmemo_jax.inference import StudentRunner

            runner = StudentRunner.load(config.eval.model)
            teacher = (task.TeacherFaces(config.eval.teacher_model, int(config.batch_size),
                                         float(config.eval.teacher_crop_fraction))
                       if config.eval.teacher_model else None)
            for name, path in datasets:
                print(f"{name}: evaluating {path}", flush=True)
                results["datasets"][name] = evaluate_dataset(name, path, config, runner, teacher, fig_dir)
        if config.eval.auc:
            results["auc"] = heard_unheard_auc(config, fig_dir)
        if jax.process_index() == 0:
            _stamp_figure_records(results)
            print(_write(workdir, results), flush=True)
        return _summary(results, workdir)
