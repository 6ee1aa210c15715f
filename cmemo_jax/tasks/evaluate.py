"""The evaluation task of paper §5: what is measured; `cmemo_jax.phases.evaluate` runs it and writes it up.

Table 5 (docs/method.md §3): per dataset (RML, eNTERFACE'05, a CSV manifest) the clips are read with the
readers of cmemo_jax.data (problems reported, not raised), decoded (left channel, 16 kHz), and every
method is cross-validated on the SAME folds — a seeded random permutation cut into k folds (the
paper's protocol), plus speaker-disjoint folds as a variant:

  random            uniform guessing (chance 1 / k)                       metrics.handcrafted
  student (probe)   affine + softmax on the student's 8 outputs per clip  metrics.probe
  teacher (V)       the same probe on the teacher's logits, max-pooled over the clip's video frames
  handcrafted (RF)  random forest on 89 handcrafted audio features        metrics.handcrafted

The student's outputs come from `cmemo_jax.inference.StudentRunner` (whole clips, any length), the
one embedding path of evaluation, probe heads and prediction.

Heard / unheard ROC AUC (paper §5): the student export over the record shards' heard_val and
unheard_val splits, the same centred 4 s crops and jitted eval step as training's evaluation
(`StudentTask`), scored against the teacher's max-pooled logits (metrics.auc).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import ml_collections
import numpy as np

from cmemo_jax import constants
from cmemo_jax.data import clips as clips_lib
from cmemo_jax.data import enterface, manifest, rml
from cmemo_jax.errors import ConfigError
from cmemo_jax.metrics import handcrafted, probe

# name -> (config.eval field, reader, name in tables). Table order: the paper's RML, eNTERFACE first.
DATASETS = {
    "rml": ("rml_dir", rml.list_clips, "RML"),
    "enterface": ("enterface_dir", enterface.list_clips, "eNTERFACE"),
    "manifest": ("manifest", manifest.list_clips, "manifest"),
}

RANDOM, STUDENT, TEACHER, HANDCRAFTED = "random", "student (probe)", "teacher (V)", "handcrafted (RF)"
METHODS = (RANDOM, STUDENT, TEACHER, HANDCRAFTED)          # Table 5's row order
MODALITY = {RANDOM: "A", STUDENT: "A", TEACHER: "V", HANDCRAFTED: "A"}
PROTOCOLS = ("random_folds", "speaker_folds")              # paper protocol, speaker-independent variant


# ------------------------------------------------------------------------------------------ datasets

@dataclasses.dataclass
class Dataset:
    """One evaluation set as read: `clips[i]` decoded to `waveforms[i]` (float32 [samples] at 16 kHz).

    listed: clips the reader placed in the layout; problems: one line per skipped file, folder,
    manifest row or undecodable clip.
    """
    name: str
    path: str
    clips: list
    waveforms: list
    listed: int
    problems: list

    @property
    def labels(self) -> list[str]:
        return clips_lib.labels(self.clips)

    @property
    def speakers(self) -> list[str]:
        return clips_lib.speakers(self.clips)


def configured_datasets(eval_config) -> list[tuple[str, str]]:
    """[(dataset name, path)] of the datasets whose config.eval field is set, in table order."""
    return [(name, eval_config[field]) for name, (field, _, _) in DATASETS.items() if eval_config[field]]


def _filter_labels(clips, allowed, where: str) -> tuple[list, list[str]]:
    """Clips whose label is in `allowed` (lower case), and one problem line per other clip."""
    allowed = {a.strip().lower() for a in allowed}
    kept, problems = [], []
    for clip in clips:
        if clip.label in allowed:
            kept.append(clip)
        else:
            problems.append(f"{where}: {clip.path}: unknown label {clip.label!r} "
                            f"(config.eval.manifest_labels: {', '.join(sorted(allowed))})")
    return kept, problems


def read_dataset(name: str, path: str, allowed_labels=()) -> Dataset:
    """Lists a dataset's clips with its reader and decodes their audio; nothing raises per clip.

    `allowed_labels` (manifest only; empty = any) turns rows with other labels into problems.
    """
    _, reader, _ = DATASETS[name]
    listed, problems = reader(path)
    clips = listed
    if allowed_labels and name == "manifest":
        clips, bad = _filter_labels(clips, allowed_labels, path)
        problems = problems + bad
    waveforms, kept, load_problems = clips_lib.load_all(clips)
    return Dataset(name=name, path=path, clips=kept, waveforms=waveforms, listed=len(listed),
                   problems=list(problems) + load_problems)


def class_order(labels) -> list[str]:
    """The classes present: emotions in cmemo_jax.constants.EMOTIONS order, then any others sorted."""
    present = set(labels)
    return [e for e in constants.EMOTIONS if e in present] + sorted(present - set(constants.EMOTIONS))


def skip_reason(dataset: Dataset, folds: int) -> str | None:
    """Why a dataset cannot be cross-validated with `folds` folds (None if it can)."""
    n, classes = len(dataset.clips), class_order(dataset.labels)
    if n < folds:
        return f"{n} usable clip(s), fewer than the {folds} folds"
    if len(classes) < 2:
        return f"a single class ({classes[0]!r}): nothing to classify"
    return None


def fold_protocols(speakers, folds: int, seed: int, speaker_independent: bool) -> dict:
    """{'random_folds': [test indices] (the paper), 'speaker_folds': [test indices] or why not}.

    Speaker folds use min(folds, speakers) folds (metrics.probe.speaker_folds); a dataset with one
    speaker (or none named) gets a reason string instead.
    """
    out = {"random_folds": probe.random_folds(len(speakers), folds, seed)}
    if speaker_independent:
        distinct = sorted(set(speakers))
        if len(distinct) >= 2:
            out["speaker_folds"] = probe.speaker_folds(speakers, folds)
        else:
            who = f"speaker {distinct[0]!r}" if distinct and distinct[0] else "no speaker ids"
            out["speaker_folds"] = f"only one speaker group ({who}): no speaker-independent folds"
    return out


# ------------------------------------------------------------------------------------------ methods

def method_features(dataset: Dataset, runner, teacher, eval_config) -> tuple[dict, list[str]]:
    """Per-clip features of every method that can run: ({method: [n, d] array}, notes).

    student (probe): the student's 8 outputs [n, 8]; handcrafted (RF): [n, 89]; teacher (V):
    max-pooled teacher logits [n, 8] when a teacher is given and every clip has video frames.
    The random baseline needs no features.
    """
    features, notes = {STUDENT: np.asarray(runner.embed_clips(dataset.waveforms), np.float64)}, []
    padded = [c.path for c, w in zip(dataset.clips, dataset.waveforms) if runner.is_padded(len(w))]
    if padded:
        # The student needs ~0.67 s; shorter clips are zero-padded, an approximation worth knowing.
        notes.append(f"{len(padded)} clip(s) shorter than {runner.min_samples / constants.SAMPLE_RATE:.3f} s "
                     f"zero-padded for the student, e.g. {padded[0]}")
    if eval_config.handcrafted:
        features[HANDCRAFTED] = handcrafted.features_matrix(dataset.waveforms)
    if teacher is None:
        notes.append("teacher (V) not evaluated: no config.eval.teacher_model")
    else:
        logits, note = teacher.clip_logits(dataset.clips)
        if logits is None:
            notes.append(f"teacher (V) not evaluated: {note}")
        else:
            features[TEACHER] = logits
    return features, notes


def cross_validate_methods(features: dict, labels, class_names, folds, eval_config) -> dict:
    """{method: metrics.probe.cross_validate result} for the random baseline and each featured method,
    all on the same `folds`; the random baseline's result also has 'chance' = 1 / k."""
    probe_fit = functools.partial(probe.fit_probe, l2=float(eval_config.l2))
    forest_fit = functools.partial(handcrafted.fit_random_forest, seed=int(eval_config.seed),
                                   n_estimators=int(eval_config.forest_trees))
    fits = {STUDENT: probe_fit, TEACHER: probe_fit, HANDCRAFTED: forest_fit}
    results = {RANDOM: handcrafted.random_baseline(labels, folds, class_names=class_names,
                                                   seed=int(eval_config.seed))}
    for method in METHODS:
        if method in features:
            results[method] = probe.cross_validate(features[method], labels, folds, fits[method],
                                                   class_names=class_names)
    return results


# --------------------------------------------------------------------------- teacher on video frames

def sample_video_frames(path: str) -> np.ndarray | None:
    """Grey frames uint8 [m, H, W] of the first video stream, one per EmoVoxCeleb frame period
    (0.24 s): the first decoded frame of each `constants.frame_row`; None without a video stream
    or without any frame.

    Raises ValueError (one line naming the file) when the container cannot be decoded.
    """
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            rate = float(stream.average_rate or constants.VIDEO_FPS)
            frames, last_row = [], -1
            for i, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else i / rate
                row = constants.frame_row(max(t, 0.0))
                if row > last_row:
                    frames.append(frame.to_ndarray(format="gray"))
                    last_row = row
    except (av.FFmpegError, OSError) as err:
        raise ValueError(f"{path}: cannot decode video ({type(err).__name__}: {' '.join(str(err).split())})") from None
    return np.stack(frames) if frames else None


def centre_squares(frames: np.ndarray) -> np.ndarray:
    """uint8 [m, H, W] -> uint8 [m, S, S], S = min(H, W): the centred square of each frame (a view).

    The RML / eNTERFACE videos are whole head-and-shoulder frames with the face near the centre; no
    face detector is run (the teacher saw detected face crops, paper §5.1), so the teacher gets the
    centred square, of which config.eval.teacher_crop_fraction is then cropped and resized.
    """
    h, w = frames.shape[1:3]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return frames[:, top:top + s, left:left + s]


class _NoFrames(Exception):
    """A clip whose video gives no frames; its message names the file."""


class TeacherFaces:
    """The face teacher on a clip's video: per clip, the per-emotion max of its frame logits [8] (the
    pooling of EmoVoxCeleb's segment labels), frames every 0.24 s, centred squares.

    Runs through the labelling phase's engine (cmemo_jax.phases.label: load_teacher, make_label_fn,
    label_tracks), i.e. the one teacher preprocessing path (cmemo_jax.faces.teacher_inputs: crop,
    bilinear resize to the teacher's input size, grey copied to 3 channels, 0-255).
    """

    def __init__(self, path: str, batch_size: int, crop_fraction: float = 1.0):
        from cmemo_jax.tasks import label
        from cmemo_jax.train import sharding

        self._label = label
        try:
            self.teacher = label.load_teacher(path)
        except ConfigError as err:
            # load_teacher names the label phase's field; here the file came from config.eval.
            raise ConfigError(str(err).replace("config.label.teacher_model", "config.eval.teacher_model")) from None
        self.mesh = sharding.make_mesh()
        self.batch_size = batch_size
        self._fn = label.make_label_fn(self.teacher, crop_fraction, self.mesh)

    @staticmethod
    def _tracks(clips):
        """The clips as the label engine's track dicts (faces = centred squares); _NoFrames on a clip
        without video. Lazy: only the frames of the clips being batched are in memory."""
        for clip in clips:
            try:
                frames = sample_video_frames(clip.path)
            except ValueError as err:
                raise _NoFrames(str(err)) from None
            if frames is None:
                raise _NoFrames(f"{clip.path} has no video frames (teacher (V) needs video for every clip)")
            yield {"track_id": clip.path, "identity": clip.speaker, "split": 0,
                   "audio": np.zeros(0, np.int16), "faces": centre_squares(frames)}

    def clip_logits(self, clips) -> tuple[np.ndarray | None, str]:
        """(float64 [n, 8] max-pooled teacher logits, '') or (None, why not: a clip without frames)."""
        try:
            pooled = [out["logits"].max(axis=0) for out in
                      self._label.label_tracks(self._fn, self._tracks(clips), self.mesh, self.batch_size)]
        except _NoFrames as err:
            return None, str(err)
        return np.asarray(pooled, np.float64), ""


# ------------------------------------------------------------------------------ heard / unheard AUC

def student_task_config(meta: dict, config) -> ml_collections.ConfigDict:
    """The StudentTask config of an exported student: model and loss from its meta, the eval crop of
    its training, dither off (evaluation), and the evaluate config's batch size and data block."""
    return ml_collections.ConfigDict({
        "model": dict(meta["model"]),
        "loss": dict(meta.get("loss") or {"name": "distill", "temperature": 2.0}),
        "audio": {"crop_samples": int(meta.get("train_crop_samples", constants.CROP_SAMPLES)),
                  "dft": meta.get("frontend", {}).get("dft", "fft"), "dither": False},
        "batch_size": int(config.batch_size), "seed": int(config.eval.seed),
        "data": {"shuffle_buffer": 1, "cache_in_ram": False},
    })


def split_outputs(model_path: str, config, data_dir: str) -> dict:
    """{split: {'student_logits' [n, 8], 'teacher_logits' [n, 8]}} over heard_val / unheard_val.

    The student export runs through training's eval step on the centred 4 s crop of each track.
    """
    from cmemo_jax import export
    from cmemo_jax.tasks.student import StudentTask
    from cmemo_jax.train import collect, sharding, step
    from cmemo_jax.train.state import TrainState

    _, variables, meta = export.load(model_path)
    if meta.get("kind") != "student":
        raise ConfigError(f"config.eval.model={model_path}: a {meta.get('kind')!r} export, not a student")
    task = StudentTask(student_task_config(meta, config), data_dir)
    mesh = sharding.make_mesh()
    state = jax.device_put(TrainState(step=np.zeros((), np.int32), params=variables["params"],
                                      batch_stats=variables.get("batch_stats", {}), opt_state=None),
                           sharding.replicated(mesh))
    eval_step = step.make_eval_step(task, mesh)
    out = {}
    for split, make_batches in task.eval_datasets().items():
        outputs = collect.collect_outputs(lambda batch: eval_step(state, batch), make_batches(), mesh)
        out[split] = {k: outputs[k] for k in ("student_logits", "teacher_logits")} if outputs else {}
    return out
