"""Fit a probe head on your own labelled clips (paper Table 5's affine + softmax on the student's outputs).

    python -m cmemo_jax.probe fit --model=student.msgpack --data=MANIFEST.csv|RML_DIR|ENTERFACE_DIR \
        [--folds=10] [--speaker-independent] [--seed=0] --out=head.msgpack

Steps: list the clips (`--data`: a .csv is a manifest `path,label[,speaker]`; a folder is read by
the RML and the eNTERFACE'05 readers and taken as the one whose layout it matches), decode them
(left channel at 16 kHz, `data.clips.load_all`; unreadable clips are reported by name and skipped),
embed each whole clip with the student (`StudentRunner.embed_clips`: its 8 raw outputs), report
k-fold cross-validated accuracy (mean +- sample std over folds; `metrics.probe.random_folds`, or
`speaker_folds` with --speaker-independent), then fit on all clips and save the head. Labels are
whatever the data names (any names, any number), in sorted order.

Head file: an `export.save` msgpack with meta {'kind': 'head', 'model': {'num_features',
'num_classes', 'l2'}, 'labels': [...], 'student': {'file': basename, 'sha256': ...}, 'cv': {...}}
and variables {'weights' [d, k], 'bias' [k], 'mean' [d], 'scale' [d]} (a `metrics.probe.Probe`).
`export.load` rebuilds registry models only, so `load_head` reads it here; it also refuses a head
used with a student other than the one it was fitted on (sha256 of the student file).
`python -m cmemo_jax.predict --model=student.msgpack --head=head.msgpack FILE` then prints the
head's labels.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from cmemo_jax import export
from cmemo_jax.constants import SAMPLE_RATE
from cmemo_jax.errors import CmemoError
from cmemo_jax.metrics.probe import (DEFAULT_L2, Probe, cross_validate, encode_labels, fit_probe,
                                     random_folds, speaker_folds)

HEAD_KIND = "head"
DATA_KINDS = ("auto", "manifest", "rml", "enterface")


class HeadError(CmemoError, ValueError):
    """A probe head file (or data set) that cannot be written, read or used; the message names it."""


def save_head(path: str, probe: Probe, labels, student_path: str, l2: float = DEFAULT_L2,
              extra_meta: dict | None = None) -> str:
    """Writes a head file (module docstring) for `probe` fitted on `student_path`'s embeddings."""

    d, k = probe.weights.shape
    if len(labels) != k:
        raise ValueError(f"{k} head classes but {len(labels)} labels")
    meta = {"kind": HEAD_KIND, "model": {"num_features": int(d), "num_classes": int(k), "l2": float(l2)},
            "labels": [str(v) for v in labels],
            "student": {"file": os.path.basename(student_path), "sha256": export.file_sha256(student_path)},
            **(extra_meta or {})}
    variables = {"weights": probe.weights, "bias": probe.bias, "mean": probe.mean, "scale": probe.scale}
    try:
        return export.save(path, meta, variables)
    except OSError as err:
        raise HeadError(f"{path}: cannot write head file ({err.strerror})") from None


def read_head(path: str) -> tuple[Probe, tuple[str, ...], dict]:
    """-> (Probe, labels, meta) of a head file; HeadError (one line naming the file) otherwise."""
    tree = export.read_file(path, what="head", error=HeadError)
    try:
        meta = json.loads(tree["meta"])
        kind = meta["kind"]
    except (KeyError, TypeError, ValueError) as err:
        raise HeadError(f"{path}: damaged description ({type(err).__name__}: {err})") from None
    if kind != HEAD_KIND:
        raise HeadError(f"{path}: a {kind!r} model file, not a probe head (make a head with "
                        "`python -m cmemo_jax.probe fit`; a student goes to --model)")
    try:
        v = tree["variables"]
        probe = Probe(**{name: np.asarray(v[name], np.float64) for name in ("weights", "bias", "mean", "scale")})
        labels = tuple(str(x) for x in meta["labels"])
    except (KeyError, TypeError, ValueError) as err:
        raise HeadError(f"{path}: damaged head ({type(err).__name__}: {err})") from None
    d, k = probe.weights.shape if probe.weights.ndim == 2 else (-1, -1)
    if probe.bias.shape != (k,) or probe.mean.shape != (d,) or probe.scale.shape != (d,) or len(labels) != k:
        raise HeadError(f"{path}: damaged head (weights {probe.weights.shape}, bias {probe.bias.shape}, "
                        f"mean {probe.mean.shape}, scale {probe.scale.shape}, {len(labels)} labels)")
    return probe, labels, meta


def load_head(path: str, *, student_path: str | None = None,
              num_features: int | None = None) -> tuple[Probe, tuple[str, ...]]:
    """-> (Probe, labels) of a head file. With student_path, the head must have been fitted on that
    very student file (sha256); with num_features, on embeddings of that width."""
    probe, labels, meta = read_head(path)
    if num_features is not None and probe.weights.shape[0] != num_features:
        raise HeadError(f"{path}: head over {probe.weights.shape[0]} features, the student gives {num_features}")
    if student_path is not None:
        fitted_on = (meta.get("student") or {})
        if fitted_on.get("sha256") != export.file_sha256(student_path):
            raise HeadError(f"{path}: fitted on the student {fitted_on.get('file')!r} "
                            f"(sha256 {str(fitted_on.get('sha256'))[:12]}...), not on {student_path}")
    return probe, labels


def load_student(path: str, **runner_kwargs):
    """StudentRunner.load(path), with a clear message when the file is a head given as the model."""
    from cmemo_jax.export import ExportError
    from cmemo_jax.inference import StudentRunner

    try:
        return StudentRunner.load(path, **runner_kwargs)
    except ExportError:
        try:
            read_head(path)
        except HeadError:
            pass   # neither a student nor a head: export's own message says what is wrong
        else:
            raise HeadError(f"{path}: a probe head, not a student model (a head goes to --head)") from None
        raise


def read_data(path: str, kind: str = "auto"):
    """-> (kind, clips, problems) of a manifest CSV, an RML folder or an eNTERFACE'05 folder.

    kind 'auto': a file is a manifest; a folder goes to whichever of the RML and eNTERFACE readers
    finds clips in it (their layouts exclude each other: sN speaker folders vs `subject N` folders).
    """
    from cmemo_jax.data import enterface, manifest, rml

    readers = {"manifest": manifest.list_clips, "rml": rml.list_clips, "enterface": enterface.list_clips}
    try:
        if kind != "auto":
            return (kind, *readers[kind](path))
        if os.path.isfile(path):
            return ("manifest", *manifest.list_clips(path))
        if not os.path.isdir(path):
            raise HeadError(f"{path}: no such file or folder")
        found = {name: readers[name](path) for name in ("rml", "enterface")}
    except (OSError, ValueError) as err:
        raise HeadError(str(err) if str(err).startswith(path) else f"{path}: {err}") from None
    best = max(found, key=lambda name: len(found[name][0]))
    if not found[best][0]:
        raise HeadError(f"{path}: no clips found: expected a .csv manifest (path,label[,speaker]), an RML "
                        "folder (rml-1/rml-2 or s1..s8) or an eNTERFACE'05 folder (subject N/<emotion>/...)")
    return (best, *found[best])


def _folds(clips, args) -> tuple[list, str]:
    """The test folds and their description."""
    from cmemo_jax.data.clips import speakers

    if args.speaker_independent:
        return speaker_folds(speakers(clips), args.folds), "speaker-independent"
    return random_folds(len(clips), args.folds, args.seed), f"random (seed {args.seed})"


def _embed(runner, data_path: str, kind: str) -> tuple[np.ndarray, list]:
    """Decodes and embeds every clip the data lists -> (embeddings [n, 8], kept clips); reports skips."""
    from cmemo_jax.data.clips import load_all

    kind, clips, problems = read_data(data_path, kind)
    waveforms, kept, load_problems = load_all(clips)
    for problem in problems + load_problems:
        print(f"skipped: {problem}", file=sys.stderr)
    padded = sum(runner.is_padded(len(w)) for w in waveforms)
    if padded:
        print(f"note: {padded} clip(s) shorter than {runner.min_samples / SAMPLE_RATE:.3f} s were zero-padded",
              file=sys.stderr)
    print(f"{data_path}: {kind}, {len(kept)} clips ({len(problems) + len(load_problems)} skipped)", file=sys.stderr)
    return runner.embed_clips(waveforms), kept


def fit_command(args) -> int:
    """`probe fit`: cross-validate, fit on all clips, save the head. Returns the exit status."""
    from cmemo_jax.data.clips import labels as clip_labels

    runner = load_student(args.model)
    x, kept = _embed(runner, args.data, args.kind)
    y, names = encode_labels(clip_labels(kept))
    if len(names) < 2:
        raise HeadError(f"{args.data}: a head needs clips of >= 2 labels, found {list(names)}")
    try:
        folds, scheme = _folds(kept, args)
    except ValueError as err:
        raise HeadError(f"{args.data}: {err}") from None
    cv = cross_validate(x, y, folds, fit_fn=lambda a, b, k: fit_probe(a, b, k, l2=args.l2),
                        class_names=names)
    print(f"{len(folds)}-fold {scheme} cross-validated accuracy: {cv['accuracy_mean']:.3f} "
          f"± {cv['accuracy_std']:.3f} ({len(kept)} clips, labels {', '.join(names)})")
    probe = fit_probe(x, y, len(names), l2=args.l2)
    summary = {"folds": len(folds), "scheme": scheme, "accuracy_mean": cv["accuracy_mean"],
               "accuracy_std": cv["accuracy_std"], "num_clips": len(kept)}
    save_head(args.out, probe, names, args.model, l2=args.l2,
              extra_meta={"cv": summary, "data": os.path.abspath(args.data)})
    print(f"wrote {args.out}")
    return 0


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m cmemo_jax.probe",
                                     description="Fit a probe head on a student's whole-clip embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="cross-validate and fit a head on labelled clips")
    fit.add_argument("--model", required=True, help="student export (.msgpack)")
    fit.add_argument("--data", required=True, help="manifest .csv (path,label[,speaker]), RML or eNTERFACE folder")
    fit.add_argument("--kind", choices=DATA_KINDS, default="auto", help="data layout (default: detect)")
    fit.add_argument("--folds", type=int, default=10, help="cross-validation folds")
    fit.add_argument("--speaker-independent", action="store_true", help="folds by speaker")
    fit.add_argument("--seed", type=int, default=0, help="seed of the random folds")
    fit.add_argument("--l2", type=float, default=DEFAULT_L2, help="L2 penalty (metrics.probe)")
    fit.add_argument("--out", required=True, help="head file to write (.msgpack)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """CLI entry point; one-line errors on stderr, exit status 0 on success, 2 on an error."""
    args = _parse_args(argv)
    try:
        return fit_command(args)
    except CmemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
