"""The labelling phase (paper §3.1 "From frames to face-tracks", §4): the face teacher over every face
frame of every speaking face-track -> record shards whose `logits` are the teacher's frame logits.

    python -m cmemo_jax.main --config=configs/label.py --workdir=DIR --config.label.teacher_model=T.msgpack

Per frame (one per 0.24 s, cmemo_jax.constants.FRAME_PERIOD_S): uint8 face -> float, centre crop of
`crop_fraction` of the side, bilinear resize to the teacher's input size, grey copied to 3 channels
(cmemo_jax.faces.teacher_inputs: the one path the teacher was also trained through) -> SENet50 ->
8 logits. The frames of consecutive tracks are packed into batches of a fixed shape
[batch_size, H, W(, 3)] (the last one padded with valid=False rows), split over all devices and run
through one jitted function by cmemo_jax.train.collect.iterate_outputs (a new face size compiles it
once more; the synthetic corpus and the face-frame reader give one size).

Outputs:
  OUT/<split>.tfrecord-*   the input's tracks (ids, identities, splits, audio untouched; grey faces
                           and frame_emotion kept when the input has them) with `logits` = the
                           teacher's float32 [n_frames, 8]; per split as many shards as the input
                           records (face frames: 64 train / 4 others, at most one per track).
  OUT/dataset_info.json    source 'teacher', the teacher file's name and sha256, the shard lists, the
                           input's identities and splits.
  WORKDIR/emotion_histogram.{png,json,md}  dominant emotion per split: per track the argmax of its
                           MAX-POOLED frame logits (the aggregation the student is trained on, paper
                           §3.1 / §5), and per frame the argmax of each frame (what the paper's Fig. 4
                           plots); log-scale counts, as Fig. 4.
  WORKDIR/results.json     counts, teacher, crop, frames/s; WORKDIR/skipped.txt: '<track>\t<reason>'.

Resume: each split's shards are written under temporary names and renamed when all are complete
(records.write_shards); a marker WORKDIR/label_state/<split>.json then records them. A rerun skips the
splits whose marker matches the teacher (sha256) and output folder and whose shards exist, and
relabels the rest; a rerun after completion does nothing. The workdir lock and config check come from
cmemo_jax.train.workdir.exclusive_run.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import time
from typing import Callable, Iterable, Iterator

import jax
import numpy as np

from cmemo_jax.constants import EMOTIONS, FRAME_PERIOD_S, NUM_EMOTIONS, SAMPLE_RATE, SPLIT_IDS, SPLIT_NAMES
from cmemo_jax.data import face_frames, pipeline, records, sources, tf_io, voxceleb_records
from cmemo_jax.errors import CmemoError, ConfigError
from cmemo_jax.tasks.label import Teacher, label_tracks, load_teacher, local_rows, make_label_fn
from cmemo_jax.train import sharding as sharding_lib
from cmemo_jax.train import workdir as workdir_lib

SOURCES = (*sources.SOURCES, "face_frames")
RELEASE_CROP_FRACTION = 1 / 1.6      # the VoxCeleb face-frame release's crops are 1.6x the face box
STATE_DIR = "label_state"
RESULTS_FILE = "results.json"
HISTOGRAM_STEM = "emotion_histogram"
SKIPPED_FILE = voxceleb_records.SKIPPED_FILE
DECODE_WORKERS = min(8, os.cpu_count() or 1)   # JPEG / wav decoding threads (face_frames)
PROGRESS_EVERY_S = 10.0


# ---------------------------------------------------------------------------------------- config

def resolve_crop_fraction(config) -> float:
    """config.label.crop_fraction, with 0 -> 1 / 1.6 for 'face_frames', 1.0 otherwise; in (0, 1]."""
    f = float(config.label.crop_fraction)
    if f == 0:
        f = RELEASE_CROP_FRACTION if config.data.source == "face_frames" else 1.0
    if not 0 < f <= 1:
        raise ConfigError(f"config.label.crop_fraction={config.label.crop_fraction}: use a fraction in (0, 1] "
                          f"(or 0 for the input source's default)")
    return f


def _check_path(field: str, value: str, required: bool, folder: bool) -> None:
    if not value:
        if required:
            raise ConfigError(f"config.{field} is required with config.data.source='face_frames'")
        return
    if not (os.path.isdir(value) if folder else os.path.isfile(value)):
        raise ConfigError(f"config.{field}={value}: no such {'folder' if folder else 'file'}")


def check_config(config) -> None:
    """One-line ConfigErrors for a label config that cannot work, before any work is done."""
    path = config.label.teacher_model
    if not path:
        raise ConfigError("config.label.teacher_model is required: the teacher's msgpack export (cmemo_jax.export)")
    if not os.path.isfile(path):
        raise ConfigError(f"config.label.teacher_model={path}: no such file")
    if int(config.label.batch_size) < 1:
        raise ConfigError(f"config.label.batch_size={config.label.batch_size}: must be >= 1")
    data = config.data
    if data.source not in SOURCES:
        raise ConfigError(f"config.data.source={data.source!r}: use one of {', '.join(SOURCES)}")
    if data.source == "face_frames":
        _check_path("data.frames_dir", data.frames_dir, True, True)
        _check_path("data.voxceleb_wav_dir", data.voxceleb_wav_dir, True, True)
        _check_path("data.meta_csv", data.meta_csv, False, False)
        _check_path("data.emovox_mat", data.emovox_mat, False, False)
    else:
        sources.check_data_config(data)
    resolve_crop_fraction(config)


# ---------------------------------------------------------------------------------------- inputs

@dataclasses.dataclass
class Skip:
    """A track left out, with one line naming the file and the fault."""
    track_id: str
    reason: str


@dataclasses.dataclass
class SplitInput:
    """One split of the input: its shard count in the output and a fresh iterator over its tracks
    (track dicts with 'faces' uint8 [n, H, W] or [n, H, W, 3], or Skip)."""
    name: str
    num_shards: int
    num_tracks: int
    items: Callable[[], Iterator[dict | Skip]]


def _read_interleaved(paths: list[str]) -> Iterator[bytes]:
    """The records of shards read round robin (one from each in turn): the inverse of
    records.write_shards' round robin, so tracks come back in their written order and rewriting them
    with write_shards puts every track into the shard index it came from."""
    tf = tf_io.import_tf()
    iters = [iter(tf.data.TFRecordDataset(p).as_numpy_iterator()) for p in paths]
    while iters:
        for it in list(iters):
            try:
                yield next(it)
            except StopIteration:
                iters.remove(it)


def _record_items(paths: list[str], data_dir: str) -> Iterator[dict | Skip]:
    for serialized in _read_interleaved(paths):
        track = records.decode_track(serialized)
        if "faces" not in track:
            yield Skip(track["track_id"], f"{data_dir}: the record of track {track['track_id']} stores no face frames")
        else:
            yield track


def records_inputs(data_dir: str) -> tuple[list[SplitInput], dict]:
    """The splits of a records folder (as its dataset_info lists them) and its dataset_info."""
    has_info = tf_io.exists(tf_io.join(data_dir, records.DATASET_INFO_FILE))
    info = records.read_dataset_info(data_dir) if has_info else {}
    names = list(info.get(records.SHARDS_KEY) or {}) or list(SPLIT_NAMES.values())
    names.sort(key=lambda n: (SPLIT_IDS.get(n, len(SPLIT_IDS) + 1), n))  # train, unheard_val, heard_val, others
    splits = []
    for name in names:
        try:
            paths = records.list_shards(data_dir, name)
        except FileNotFoundError:
            continue  # a standard split this folder does not have
        splits.append(SplitInput(name, len(paths), pipeline.count_records(paths),
                                 functools.partial(_record_items, paths, data_dir)))
    if not splits:
        raise ConfigError(f"{data_dir}: no record shards to label")
    return splits, info


def _face_items(tracks: list, frame_size: int) -> Iterator[dict | Skip]:
    for track, loaded, problem in face_frames.load_tracks(tracks, frame_size, DECODE_WORKERS):
        yield Skip(track.track_id, problem) if loaded is None else loaded


def face_frame_inputs(data, frame_size: int) -> tuple[list[SplitInput], dict, list[Skip]]:
    """The splits of a face-frames tree (frames resized to frame_size on the host), an info dict with
    the identities per split, and the tracks left out while listing."""
    meta = face_frames.read_vox1_meta(data.meta_csv) if data.meta_csv else None
    splits_map = face_frames.emovox_splits(data.emovox_mat) if data.emovox_mat else None
    tracks, problems = face_frames.list_tracks(data.frames_dir, data.voxceleb_wav_dir, meta=meta, splits=splits_map)
    if not splits_map and jax.process_index() == 0:
        print("label: no config.data.emovox_mat: splits from vox1_meta 'Set' (test -> unheard_val, "
              "else train), not the paper's", flush=True)
    groups: dict[int, list] = collections.defaultdict(list)
    for track in tracks:
        groups[track.split].append(track)
    splits, identities = [], {}
    for code in sorted(groups):
        name, group = voxceleb_records.split_name(code), groups[code]
        default = voxceleb_records.DEFAULT_TRAIN_SHARDS if name == "train" else voxceleb_records.DEFAULT_EVAL_SHARDS
        splits.append(SplitInput(name, max(1, min(default, len(group))), len(group),
                                 functools.partial(_face_items, group, frame_size)))
        identities[name] = sorted({t.identity for t in group})
    info = {"source": "face_frames", "frames_dir": os.path.abspath(data.frames_dir),
            "voxceleb_wav_dir": os.path.abspath(data.voxceleb_wav_dir), "identities": identities}
    return splits, info, [Skip(where, reason) for where, reason in problems]


def resolve_inputs(config, teacher_size: int, crop_fraction: float) -> tuple[list[SplitInput], dict, list[Skip], str]:
    """(splits, input info, listing skips, input folder) of config.data."""
    if config.data.source == "face_frames":
        # Host-side resize to the size whose centre crop is the teacher's input: the device crop +
        # resize then hardly resamples, and every batch has one shape.
        frame_size = int(round(teacher_size / crop_fraction))
        splits, info, skips = face_frame_inputs(config.data, frame_size)
        return splits, info, skips, config.data.frames_dir
    data_dir = sources.resolve_records_dir(config.data)
    splits, info = records_inputs(data_dir)
    return splits, info, [], data_dir


# ------------------------------------------------------------------------------------ one split

class Progress:
    """Progress lines on stdout (process 0) and the run's frame rate.

    `steady` excludes the time to the first labelled track (the compile and the first batch)."""

    def __init__(self):
        self.frames, self.t0 = 0, time.perf_counter()
        self.first: tuple[float, int] | None = None
        self._last_print = 0.0

    def track(self, split: str, done: int, total: int, frames: int) -> None:
        self.frames += frames
        now = time.perf_counter()
        if frames and self.first is None:
            self.first = (now, self.frames)
        if done == total or now - self._last_print >= PROGRESS_EVERY_S:
            self._last_print = now
            if jax.process_index() == 0:
                print(f"label: {split}: {done}/{total} tracks, {self.frames} frames in {now - self.t0:.1f} s",
                      flush=True)

    def summary(self) -> dict:
        seconds = time.perf_counter() - self.t0
        out = {"frames_labelled": self.frames, "seconds": round(seconds, 3),
               "frames_per_second": round(self.frames / seconds, 2) if self.frames else None}
        if self.first and self.frames > self.first[1]:
            steady_s = time.perf_counter() - self.first[0]
            out["steady_frames_per_second"] = round((self.frames - self.first[1]) / steady_s, 2)
        return out


@dataclasses.dataclass
class SplitStats:
    """What a split's marker keeps: counts, dominant-emotion histograms, identities, skips."""
    num_tracks: int = 0
    num_frames: int = 0
    track_histogram: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(NUM_EMOTIONS, np.int64))
    frame_histogram: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(NUM_EMOTIONS, np.int64))
    identities: set = dataclasses.field(default_factory=set)
    skipped: list = dataclasses.field(default_factory=list)

    def add(self, track: dict) -> None:
        logits = track["logits"]
        self.num_tracks += 1
        self.num_frames += logits.shape[0]
        self.track_histogram[int(np.argmax(logits.max(axis=0)))] += 1   # max-pooled over frames
        self.frame_histogram += np.bincount(logits.argmax(axis=1), minlength=NUM_EMOTIONS)
        self.identities.add(track["identity"])


def _remove_stale_temps(out_dir: str, split: str) -> None:
    """Temporary shards of this split left by a killed run (write_shards' '<name>.tmp-<pid>')."""
    if tf_io.isdir(out_dir):
        for name in tf_io.listdir(out_dir):
            if name.startswith(f"{split}.tfrecord-") and ".tmp-" in name:
                tf_io.remove(tf_io.join(out_dir, name))


def label_split(split: SplitInput, fn, mesh, batch_size: int, out_dir: str, progress: Progress) -> dict:
    """Labels one split and (process 0) writes its shards; returns its marker (see _marker)."""
    stats, done = SplitStats(), 0

    def good() -> Iterator[dict]:
        nonlocal done
        for item in split.items():
            if not isinstance(item, Skip) and len(item["faces"]) == 0:
                item = Skip(item["track_id"], f"track {item['track_id']}: no face frames")
            if isinstance(item, Skip):
                stats.skipped.append([item.track_id, item.reason])
                if jax.process_index() == 0:
                    print(f"label: skipped {item.track_id}: {item.reason}", flush=True)
                done += 1
                progress.track(split.name, done, split.num_tracks, 0)
                continue
            yield item

    def counted(tracks: Iterable[dict]) -> Iterator[dict]:
        nonlocal done
        for track in tracks:
            stats.add(track)
            done += 1
            progress.track(split.name, done, split.num_tracks, track["logits"].shape[0])
            yield track

    stream = counted(label_tracks(fn, good(), mesh, batch_size))
    names: list[str] = []
    if jax.process_index() == 0:
        _remove_stale_temps(out_dir, split.name)
        paths = records.write_shards(stream, out_dir, split.name, split.num_shards)
        if stats.num_tracks:
            names = [os.path.basename(p) for p in paths]
        else:  # every track skipped: leave no empty shards behind
            for p in paths:
                tf_io.remove(p)
    else:
        for _ in stream:
            pass
    return _marker(split.name, out_dir, names, stats)


# ------------------------------------------------------------------------------- resume markers

def _abs(path: str) -> str:
    return path if tf_io.is_remote(path) else os.path.abspath(path)


def _marker(split: str, out_dir: str, shards: list[str], stats: SplitStats) -> dict:
    """A finished split: its shard names in out_dir, counts, histograms (EMOTIONS order), skips."""
    return {"split": split, "out_dir": _abs(out_dir), "shards": shards, "num_tracks": stats.num_tracks,
            "num_frames": stats.num_frames, "track_histogram": stats.track_histogram.tolist(),
            "frame_histogram": stats.frame_histogram.tolist(), "identities": sorted(stats.identities),
            "skipped": stats.skipped}


def _marker_path(workdir: str, split: str) -> str:
    return os.path.join(workdir, STATE_DIR, f"{split}.json")


def write_marker(workdir: str, marker: dict) -> None:
    path = _marker_path(workdir, marker["split"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(marker, fh, indent=1)
    os.replace(path + ".tmp", path)


def completed_split(workdir: str, split: str, out_dir: str, teacher_sha256: str) -> dict | None:
    """The split's marker when it is done for this teacher and out_dir and its shards exist; else None."""
    path = _marker_path(workdir, split)
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        marker = json.load(fh)
    if marker.get("teacher_sha256") != teacher_sha256 or marker.get("out_dir") != _abs(out_dir):
        return None
    if not all(tf_io.exists(tf_io.join(out_dir, n)) for n in marker["shards"]):
        return None
    return marker


def check_out_dir(out_dir: str, input_dir: str) -> None:
    """Refuses to write over the input corpus or over a dataset that this phase did not make."""
    if not tf_io.is_remote(out_dir) and os.path.realpath(out_dir) == os.path.realpath(input_dir):
        raise ConfigError(f"config.out_dir={out_dir} is the input folder; give another folder")
    info_path = tf_io.join(out_dir, records.DATASET_INFO_FILE)
    if tf_io.exists(info_path) and records.read_dataset_info(out_dir).get("source") != "teacher":
        raise ConfigError(f"config.out_dir={out_dir} holds another dataset (its {records.DATASET_INFO_FILE} is "
                          f"not the label phase's); give an empty or new folder")


# --------------------------------------------------------------------------------------- outputs

TRACK_RULE = "argmax of the track's max-pooled frame logits (the student's target aggregation)"
FRAME_RULE = "argmax of each frame's logits (paper Fig. 4)"


def histogram_table(markers: list[dict]) -> dict:
    """{'tracks' | 'frames': {split: {emotion: count}}} plus the rules, from the split markers."""
    def per_split(key):
        return {m["split"]: dict(zip(EMOTIONS, m[key])) for m in markers}
    return {"emotions": list(EMOTIONS), "track_rule": TRACK_RULE, "frame_rule": FRAME_RULE,
            "tracks": per_split("track_histogram"), "frames": per_split("frame_histogram")}


def _markdown(table: dict, teacher_file: str) -> str:
    lines = [f"# Dominant emotion per split (teacher {teacher_file})", ""]
    for level, rule in (("tracks", TRACK_RULE), ("frames", FRAME_RULE)):
        splits = list(table[level])
        totals = {s: max(sum(table[level][s].values()), 1) for s in splits}
        lines += [f"## {level}: {rule}", "", "| emotion | " + " | ".join(splits) + " |",
                  "|---|" + "---:|" * len(splits)]
        for e in EMOTIONS:
            cells = [f"{table[level][s][e]} ({100 * table[level][s][e] / totals[s]:.1f} %)" for s in splits]
            lines.append(f"| {e} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def histogram_figure(table: dict, path: str) -> str:
    """Grouped bars per split, log-scale counts as the paper's Fig. 4: tracks (left), frames (right)."""
    from cmemo_jax.metrics.figures import new_figure, save_figure  # house style: own Agg canvas

    fig = new_figure(11.0, 3.8)
    fig.subplots_adjust(wspace=0.3)
    for i, level in enumerate(("tracks", "frames")):
        ax = fig.add_subplot(1, 2, i + 1)
        splits = list(table[level])
        width = 0.8 / max(len(splits), 1)
        for j, split in enumerate(splits):
            counts = [table[level][split][e] for e in EMOTIONS]
            ax.bar(np.arange(NUM_EMOTIONS) + (j - (len(splits) - 1) / 2) * width, counts, width, label=split)
        ax.set_yscale("log")
        top = max([max(table[level][s].values()) for s in splits] + [1])
        ax.set_ylim(0.5, 2.0 * top)  # a count of 1 still shows as a bar; headroom above the tallest
        ax.set_xticks(range(NUM_EMOTIONS), labels=EMOTIONS, rotation=45, ha="right")
        ax.set_ylabel(f"{level} (log scale)")
        ax.set_title(f"dominant emotion per {level[:-1]}" + (" (max-pooled logits)" if level == "tracks"
                                                             else " (paper Fig. 4)"))
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_histogram(workdir: str, markers: list[dict], teacher_file: str) -> dict:
    """WORKDIR/emotion_histogram.{json,md,png}; returns {'json', 'md', 'png'} paths."""
    table = histogram_table(markers)
    stem = os.path.join(workdir, HISTOGRAM_STEM)
    with open(stem + ".json", "w") as fh:
        json.dump(table, fh, indent=1)
    with open(stem + ".md", "w") as fh:
        fh.write(_markdown(table, teacher_file))
    return {"json": stem + ".json", "md": stem + ".md", "png": histogram_figure(table, stem + ".png")}


def output_info(markers: list[dict], teacher: Teacher, crop_fraction: float, in_info: dict,
                source: str, in_dir: str) -> dict:
    """The output's dataset_info: teacher, input, counts, shard lists, the input's identities/splits."""
    done = [m for m in markers if m["shards"]]
    shards = {m["split"]: m["shards"] for m in done}
    return {"source": "teacher", "teacher": {**teacher.describe(), "crop_fraction": crop_fraction},
            "input": {"source": source, "dir": _abs(in_dir), "name": in_info.get("name")},
            "num_examples": {m["split"]: m["num_tracks"] for m in done},
            "num_frames": {m["split"]: m["num_frames"] for m in done},
            "num_shards": {k: len(v) for k, v in shards.items()}, "shards": shards,
            "identities": in_info.get("identities") or {m["split"]: m["identities"] for m in done},
            "splits": in_info.get("splits") or {str(SPLIT_IDS[k]): k for k in shards if k in SPLIT_IDS},
            "num_skipped": sum(len(m["skipped"]) for m in markers),
            "emotions": list(EMOTIONS), "frame_period_s": FRAME_PERIOD_S, "sample_rate": SAMPLE_RATE}


def finish(workdir: str, out_dir: str, markers: list[dict], listing_skips: list[Skip], teacher: Teacher,
           info: dict, run_summary: dict) -> dict:
    """Writes skipped.txt, dataset_info.json, the histogram and results.json; returns the results."""
    skipped = [(s.track_id, s.reason) for s in listing_skips] + [tuple(r) for m in markers for r in m["skipped"]]
    voxceleb_records.write_list(os.path.join(workdir, SKIPPED_FILE), skipped)
    if not any(m["num_tracks"] for m in markers):
        raise CmemoError(f"no track could be labelled ({len(skipped)} skipped: see "
                         f"{os.path.join(workdir, SKIPPED_FILE)})")
    records.write_dataset_info(out_dir, info)
    results = {"out_dir": _abs(out_dir), "teacher": info["teacher"], "input": info["input"],
               "num_tracks": info["num_examples"], "num_frames": info["num_frames"],
               "num_skipped": len(skipped), **run_summary,
               "histogram": write_histogram(workdir, markers, teacher.describe()["file"])}
    with open(os.path.join(workdir, RESULTS_FILE), "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"label: {sum(results['num_tracks'].values())} tracks ({sum(results['num_frames'].values())} frames) "
          f"in {out_dir}; skipped {len(skipped)} (see {SKIPPED_FILE}); this run labelled "
          f"{run_summary['frames_labelled']} frames at {run_summary['frames_per_second']} frames/s", flush=True)
    return results


# ------------------------------------------------------------------------------------------- run

def _label_todo(todo: list[SplitInput], teacher: Teacher, crop_fraction: float, config, workdir: str,
                out_dir: str, progress: Progress) -> dict[str, dict]:
    """Labels the splits in `todo`; writes each one's marker when its shards are in place."""
    mesh = sharding_lib.make_mesh()
    batch_size = int(config.label.batch_size)
    local_rows(batch_size, mesh)  # fail before any work
    fn = make_label_fn(teacher, crop_fraction, mesh)
    if jax.process_index() == 0:
        print(f"label: {sum(s.num_tracks for s in todo)} tracks in {', '.join(s.name for s in todo)}; teacher "
              f"{os.path.basename(teacher.path)} at {teacher.size}x{teacher.size}, crop {crop_fraction:.4f}; "
              f"batch {batch_size} frames on {jax.device_count()} device(s) -> {out_dir}", flush=True)
    markers = {}
    for split in todo:
        marker = label_split(split, fn, mesh, batch_size, out_dir, progress)
        marker["teacher_sha256"] = teacher.sha256
        if jax.process_index() == 0:
            write_marker(workdir, marker)
        markers[split.name] = marker
    return markers


def run(config, workdir: str) -> dict:
    """Labels every face frame of the input with the teacher; returns results.json's content."""
    check_config(config)
    crop_fraction = resolve_crop_fraction(config)
    with workdir_lib.exclusive_run(workdir, config):
        teacher = load_teacher(config.label.teacher_model)
        out_dir = config.out_dir or os.path.join(workdir, "records")
        splits, in_info, listing_skips, in_dir = resolve_inputs(config, teacher.size, crop_fraction)
        check_out_dir(out_dir, in_dir)
        markers = {s.name: completed_split(workdir, s.name, out_dir, teacher.sha256) for s in splits}
        todo = [s for s in splits if markers[s.name] is None]
        results_path = os.path.join(workdir, RESULTS_FILE)
        if not todo and os.path.exists(results_path):
            print(f"label: every split is already labelled in {out_dir}; nothing to do", flush=True)
            with open(results_path) as fh:
                return json.load(fh)
        progress = Progress()
        if todo:
            markers.update(_label_todo(todo, teacher, crop_fraction, config, workdir, out_dir, progress))
        labelled = [s.name for s in todo]
        summary = {**progress.summary(), "labelled_splits": labelled,
                   "resumed_splits": [s.name for s in splits if s.name not in labelled]}
        if jax.process_index() != 0:
            return summary
        info = output_info(list(markers.values()), teacher, crop_fraction, in_info, config.data.source, in_dir)
        return finish(workdir, out_dir, list(markers.values()), listing_skips, teacher, info, summary)
