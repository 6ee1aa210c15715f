"""Joins EmoVoxCeleb teacher logits with VoxCeleb1 audio into record shards (records.py schema).

Batch-tool behaviour: a track whose wav is missing or unreadable, or whose logits are unusable, is
skipped and reported (one line per item in OUT_DIR/skipped.txt, plus counts in the summary); every
other track is written. Structural problems with the .mat file itself still raise.
Used by data_prep/make_voxceleb_records.py.
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import Iterator

import numpy as np

from cmemo_jax.constants import SAMPLE_RATE, SPLIT_NAMES
from cmemo_jax.data import emovoxceleb, records, voxceleb

SKIPPED_FILE = "skipped.txt"
DEFAULT_TRAIN_SHARDS = 64
DEFAULT_EVAL_SHARDS = 4


def split_name(code: int) -> str:
    """'train' / 'unheard_val' / 'heard_val' for the EmoVoxCeleb set codes; 'set<N>' otherwise."""
    return SPLIT_NAMES.get(int(code), f"set{int(code)}")


def _load(rec: dict, wav_dir: str):
    """(track dict, None) or (None, reason)."""
    problem = emovoxceleb.logits_problem(rec["logits"])
    if problem:
        return None, problem
    path = os.path.join(wav_dir, rec["track_id"] + ".wav")
    if not os.path.exists(path):
        return None, f"missing wav {path}"
    try:
        audio = voxceleb.read_wav_int16(path)
    except RuntimeError as e:
        return None, str(e)
    return {"track_id": rec["track_id"], "identity": rec["identity"], "split": int(rec["split"]),
            "audio": audio, "logits": np.ascontiguousarray(rec["logits"], dtype=np.float32)}, None


def _bounded_map(pool, fn, items, window: int):
    """Ordered pool.map that keeps at most `window` results in flight (Executor.map would decode
    every wav of a split up front and hold all of them in RAM)."""
    import collections
    pending = collections.deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def build_records(emovox_mat: str, voxceleb_wav_dir: str, out_dir: str, *,
                  num_shards: dict[str, int] | None = None, limit: int | None = None,
                  workers: int = 8, log=print) -> dict:
    """Writes OUT_DIR/<split>.tfrecord-* shards, dataset_info.json and skipped.txt.

    Args:
      emovox_mat: senet50-ferplus-logits.mat (v5 or v7.3).
      voxceleb_wav_dir: the VoxCeleb1 `wav` directory (idNNNNN/<video>/<utt>.wav, 16 kHz; other
        rates are resampled to 16 kHz).
      out_dir: output directory.
      num_shards: shards per split name; default 64 for train, 4 for the others.
      limit: keep only the first `limit` tracks of the .mat (for trials).
      workers: threads decoding wavs (libsndfile releases the GIL).
    Returns:
      {'num_examples': {split: n}, 'num_skipped': n, 'skipped': [(track_id, reason)], 'out_dir',
       'files': {split: [paths]}}.
    """
    if not os.path.isdir(voxceleb_wav_dir):
        raise FileNotFoundError(f"VoxCeleb wav directory not found: {voxceleb_wav_dir}")
    tracks = emovoxceleb.read_emovox_logits(emovox_mat)
    if limit is not None:
        tracks = tracks[:limit]
    num_shards = dict(num_shards or {})
    os.makedirs(out_dir, exist_ok=True)

    skipped: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    files: dict[str, list[str]] = {}
    seen: set[str] = set()
    by_split: dict[int, list[dict]] = {}
    for rec in tracks:
        if rec["track_id"] in seen:
            skipped.append((rec["track_id"], "duplicate track id in the .mat file"))
            continue
        seen.add(rec["track_id"])
        by_split.setdefault(int(rec["split"]), []).append(rec)

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for code in sorted(by_split):
            name = split_name(code)
            recs = by_split[code]
            counts[name] = 0

            def good(recs=recs, name=name) -> Iterator[dict]:
                loaded = _bounded_map(pool, lambda r: _load(r, voxceleb_wav_dir), recs, 4 * workers + 4)
                for i, (track, reason) in enumerate(loaded):
                    if track is None:
                        skipped.append((recs[i]["track_id"], reason))
                        continue
                    counts[name] += 1
                    if counts[name] % 10_000 == 0:
                        log(f"{name}: {counts[name]} tracks written")
                    yield track

            default = DEFAULT_TRAIN_SHARDS if code == 1 else DEFAULT_EVAL_SHARDS
            n_shards = max(1, min(num_shards.get(name, default), len(recs)))
            files[name] = records.write_shards(good(), out_dir, name, n_shards)
            if counts[name] == 0:  # every track of the split skipped: leave no empty shards behind
                for p in files.pop(name):
                    os.remove(p)

    with open(os.path.join(out_dir, SKIPPED_FILE), "w") as fh:
        for track_id, reason in skipped:
            fh.write(f"{track_id}\t{reason}\n")
    records.write_dataset_info(out_dir, {
        "num_examples": counts, "num_shards": {k: len(v) for k, v in files.items()},
        "sample_rate": SAMPLE_RATE, "source": "EmoVoxCeleb (senet50-ferplus logits) + VoxCeleb1 audio",
        "emovox_mat": os.path.abspath(emovox_mat), "num_skipped": len(skipped)})
    log(f"wrote {sum(counts.values())} tracks ({', '.join(f'{k}: {v}' for k, v in counts.items())}) "
        f"to {out_dir}; skipped {len(skipped)} (see {os.path.join(out_dir, SKIPPED_FILE)})")
    return {"num_examples": counts, "num_skipped": len(skipped), "skipped": skipped,
            "out_dir": out_dir, "files": files}
