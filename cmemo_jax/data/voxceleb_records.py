"""Joins EmoVoxCeleb teacher logits with VoxCeleb1 audio into record shards (records.py schema).

Batch-tool behaviour: every good track is written; a bad one is skipped, counted by kind and listed
(one line "<track_id>\t<reason>" in OUT_DIR/skipped.txt). A track is skipped when

* its logits are unusable (emovoxceleb.logits_problem: not [n >= 1, 8], NaN / inf), or its id repeats;
* its wav is missing, or cmemo_jax.audio.load_audio rejects it (undecodable, empty, truncated, NaN /
  inf samples: the rules in cmemo_jax/audio/io.py);
* its audio length disagrees with its logit rows: |seconds - rows * 0.24 s| > 0.32 s
  (emovoxceleb.duration_problem / DURATION_TOLERANCE_S; --duration_tolerance_s changes it).

Float audio beyond full scale is rescaled by load_audio and written; each such repair is listed in
OUT_DIR/repaired.txt ("<track_id>\t<note>"). Structural problems with the .mat file itself raise.

Output directory rule: OUT_DIR must be absent or empty, or `overwrite` (--overwrite) given; the whole
output is built in a staging folder beside it ('<out_dir>.tmp-<pid>') and swapped in only when complete,
so a rerun with other shard counts never leaves old shards beside new ones and a killed run leaves the
previous OUT_DIR untouched. dataset_info.json lists the shard files of each split (records.list_shards).
Used by data_prep/make_voxceleb_records.py.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import shutil
from typing import Iterator

import numpy as np

from cmemo_jax.audio.io import AudioDecodeError
from cmemo_jax.constants import SAMPLE_RATE, SPLIT_NAMES
from cmemo_jax.data import emovoxceleb, records, voxceleb
from cmemo_jax.data.tf_io import is_remote

SKIPPED_FILE = "skipped.txt"
REPAIRED_FILE = "repaired.txt"
DEFAULT_TRAIN_SHARDS = 64
DEFAULT_EVAL_SHARDS = 4


def split_name(code: int) -> str:
    """'train' / 'unheard_val' / 'heard_val' for the EmoVoxCeleb set codes; 'set<N>' otherwise."""
    return SPLIT_NAMES.get(int(code), f"set{int(code)}")


@dataclasses.dataclass
class _Loaded:
    """One .mat record after loading: a track to write, or why it is skipped; repairs made to it."""
    track: dict | None = None
    kind: str = ""             # skip category for the summary counts ('' when written)
    reason: str = ""           # one line for skipped.txt
    repairs: tuple[str, ...] = ()


def _load(rec: dict, wav_dir: str, tolerance_s: float = emovoxceleb.DURATION_TOLERANCE_S) -> _Loaded:
    """Decodes one track's wav (load_audio's rules) and checks it against its logits (module rules)."""
    problem = emovoxceleb.logits_problem(rec["logits"])
    if problem:
        return _Loaded(kind="unusable logits", reason=problem)
    path = os.path.join(wav_dir, rec["track_id"] + ".wav")
    if not os.path.exists(path):
        return _Loaded(kind="missing wav", reason=f"missing wav {path}")
    try:
        audio, check = voxceleb.read_wav_int16(path, return_info=True)
    except AudioDecodeError as e:
        return _Loaded(kind="rejected audio", reason=f"cannot read wav: {e}")
    problem = emovoxceleb.duration_problem(audio.shape[0], rec["logits"].shape[0], tolerance_s=tolerance_s)
    if problem:
        return _Loaded(kind="duration mismatch", reason=f"{path}: {problem}")
    track = {"track_id": rec["track_id"], "identity": rec["identity"], "split": int(rec["split"]),
             "audio": audio, "logits": np.ascontiguousarray(rec["logits"], dtype=np.float32)}
    return _Loaded(track=track, repairs=check.warnings)


def bounded_map(pool, fn, items, window: int):
    """Ordered pool.map that keeps at most `window` results in flight (Executor.map would decode
    every wav of a split up front and hold all of them in RAM)."""
    pending = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _check_out_dir(out_dir: str, overwrite: bool) -> None:
    """Refuses (FileExistsError, one line) an out_dir that is a file, or a non-empty directory without
    `overwrite`: a rerun must never mix its shards with an earlier run's."""
    if is_remote(out_dir):
        raise ValueError(f"{out_dir}: the records tool writes to a local directory; copy it to the bucket after")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a directory")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty ({len(os.listdir(out_dir))} entries); pass --overwrite "
                              f"(overwrite=True) to replace it")


def _staging_dir(out_dir: str) -> str:
    """A fresh empty folder beside out_dir (same filesystem, so the final swap is a rename)."""
    staging = f"{os.path.abspath(out_dir).rstrip(os.sep)}.tmp-{os.getpid()}"
    if os.path.exists(staging):  # left by a killed run that had our pid
        shutil.rmtree(staging)
    os.makedirs(staging)
    return staging


def _swap_in(staging: str, out_dir: str) -> None:
    """Replaces out_dir by the complete staging folder: readers see the old files or the new ones,
    never a mix (for an instant between the two renames there is no out_dir)."""
    if not os.path.exists(out_dir):
        os.rename(staging, out_dir)
        return
    old = f"{staging}.old"
    os.rename(out_dir, old)
    os.rename(staging, out_dir)
    shutil.rmtree(old)


def write_list(path: str, rows: list[tuple[str, str]]) -> None:
    with open(path, "w") as fh:
        for track_id, text in rows:
            fh.write(f"{track_id}\t{text}\n")


def build_records(emovox_mat: str, voxceleb_wav_dir: str, out_dir: str, *,
                  num_shards: dict[str, int] | None = None, limit: int | None = None,
                  workers: int = 8, overwrite: bool = False,
                  duration_tolerance_s: float = emovoxceleb.DURATION_TOLERANCE_S, log=print) -> dict:
    """Writes OUT_DIR/<split>.tfrecord-* shards, dataset_info.json, skipped.txt and repaired.txt.

    Args:
      emovox_mat: senet50-ferplus-logits.mat (v5 or v7.3).
      voxceleb_wav_dir: the VoxCeleb1 `wav` directory (idNNNNN/<video>/<utt>.wav, 16 kHz; other
        rates are resampled to 16 kHz).
      out_dir: output directory; must be absent or empty unless `overwrite`.
      num_shards: shards per split name; default 64 for train, 4 for the others.
      limit: keep only the first `limit` tracks of the .mat (for trials).
      workers: threads decoding wavs (libsndfile releases the GIL).
      overwrite: replace a non-empty out_dir (its whole content) once the new one is complete.
      duration_tolerance_s: seconds the audio may differ from rows * 0.24 s (emovoxceleb.duration_problem).
    Returns:
      {'num_examples': {split: n}, 'num_skipped': n, 'skipped': [(track_id, reason)],
       'skipped_by_kind': {kind: n}, 'num_repaired': n, 'repaired': [(track_id, note)], 'out_dir',
       'files': {split: [paths]}}.
    Raises:
      FileExistsError: out_dir is not empty and overwrite is False (nothing is read or written).
    """
    _check_out_dir(out_dir, overwrite)
    if not os.path.isdir(voxceleb_wav_dir):
        raise FileNotFoundError(f"VoxCeleb wav directory not found: {voxceleb_wav_dir}")
    tracks = emovoxceleb.read_emovox_logits(emovox_mat)
    if limit is not None:
        tracks = tracks[:limit]
    staging = _staging_dir(out_dir)
    try:
        summary = _build_into(tracks, voxceleb_wav_dir, staging, dict(num_shards or {}), workers,
                              duration_tolerance_s, log)
        records.write_dataset_info(staging, {
            "num_examples": summary["num_examples"],
            "num_shards": {k: len(v) for k, v in summary["shards"].items()},
            "shards": summary["shards"],
            "sample_rate": SAMPLE_RATE, "source": "EmoVoxCeleb (senet50-ferplus logits) + VoxCeleb1 audio",
            "emovox_mat": os.path.abspath(emovox_mat), "num_skipped": len(summary["skipped"]),
            "skipped_by_kind": summary["skipped_by_kind"], "num_repaired": len(summary["repaired"]),
            "duration_tolerance_s": duration_tolerance_s})
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    counts, skipped, repaired = summary["num_examples"], summary["skipped"], summary["repaired"]
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(summary["skipped_by_kind"].items()))
    log(f"wrote {sum(counts.values())} tracks ({', '.join(f'{k}: {v}' for k, v in counts.items())}) "
        f"to {out_dir}; repaired {len(repaired)} (see {REPAIRED_FILE}); skipped {len(skipped)}"
        f"{f' ({kinds})' if kinds else ''} (see {os.path.join(out_dir, SKIPPED_FILE)})")
    files = {k: [os.path.join(out_dir, n) for n in v] for k, v in summary["shards"].items()}
    return {"num_examples": counts, "num_skipped": len(skipped), "skipped": skipped,
            "skipped_by_kind": summary["skipped_by_kind"], "num_repaired": len(repaired),
            "repaired": repaired, "out_dir": out_dir, "files": files}


def _build_into(tracks: list[dict], wav_dir: str, out_dir: str, num_shards: dict[str, int], workers: int,
                tolerance_s: float, log) -> dict:
    """Writes the shards, skipped.txt and repaired.txt of `tracks` into out_dir (the staging folder).

    Returns {'num_examples', 'shards': {split: [file names]}, 'skipped', 'skipped_by_kind', 'repaired'}.
    """
    skipped: list[tuple[str, str]] = []
    kinds: collections.Counter = collections.Counter()
    repaired: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    shards: dict[str, list[str]] = {}
    seen: set[str] = set()
    by_split: dict[int, list[dict]] = {}
    for rec in tracks:
        if rec["track_id"] in seen:
            skipped.append((rec["track_id"], "duplicate track id in the .mat file"))
            kinds["duplicate"] += 1
            continue
        seen.add(rec["track_id"])
        by_split.setdefault(int(rec["split"]), []).append(rec)

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for code in sorted(by_split):
            name = split_name(code)
            recs = by_split[code]
            counts[name] = 0

            def good(recs=recs, name=name) -> Iterator[dict]:
                loaded = bounded_map(pool, lambda r: _load(r, wav_dir, tolerance_s), recs, 4 * workers + 4)
                for rec, item in zip(recs, loaded):
                    repaired.extend((rec["track_id"], note) for note in item.repairs)
                    if item.track is None:
                        skipped.append((rec["track_id"], item.reason))
                        kinds[item.kind] += 1
                        continue
                    counts[name] += 1
                    if counts[name] % 10_000 == 0:
                        log(f"{name}: {counts[name]} tracks written")
                    yield item.track

            default = DEFAULT_TRAIN_SHARDS if code == 1 else DEFAULT_EVAL_SHARDS
            n_shards = max(1, min(num_shards.get(name, default), len(recs)))
            paths = records.write_shards(good(), out_dir, name, n_shards)
            if counts[name] == 0:  # every track of the split skipped: leave no empty shards behind
                for p in paths:
                    os.remove(p)
                continue
            shards[name] = [os.path.basename(p) for p in paths]

    write_list(os.path.join(out_dir, SKIPPED_FILE), skipped)
    write_list(os.path.join(out_dir, REPAIRED_FILE), repaired)
    return {"num_examples": counts, "shards": shards, "skipped": skipped, "skipped_by_kind": dict(kinds),
            "repaired": repaired}
