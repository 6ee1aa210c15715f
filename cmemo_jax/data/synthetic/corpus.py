"""The synthetic corpus on disk: cache naming, split iteration, and the record-shard writer.

``ensure_corpus(cache_dir, cfg)`` generates ``cache_dir/synthetic-v<GENERATOR_VERSION>-<hash>/``
once: per split, '<split>.tfrecord-*-of-*' shards of ``cmemo_jax.data.records``, then
'dataset_info.json', then the '_COMPLETE' marker. Later calls find the marker and return at once.
Every file is written under a '.tmp-<pid>' name and renamed into place when whole, so a killed run
leaves only temporaries (removed by the next run) and never a complete-looking corpus; shards of
another shard count left by an interrupted run are replaced by records.write_shards.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from typing import Iterator

import numpy as np

from cmemo_jax.constants import (EMOTIONS, FRAME_PERIOD_S, NUM_EMOTIONS, SAMPLE_RATE, SPLIT_NAMES,
                                 default_cache_dir)
from cmemo_jax.data import records
from cmemo_jax.data.synthetic.config import SyntheticConfig
from cmemo_jax.data.synthetic.speakers import generate_speakers, split_jobs
from cmemo_jax.data.synthetic.workers import generate_in_subprocesses, generate_job_tracks

# Bump whenever the generator's output changes for a given config: it is part of the cache name.
GENERATOR_VERSION = 2
COMPLETE_MARKER = "_COMPLETE"
CACHE_SUBDIR = "synthetic"      # corpora live in <cache dir>/synthetic/<corpus_name>/
SPLITS = tuple(SPLIT_NAMES.values())   # train, unheard_val, heard_val: the order they are written in

# '<final name>.tmp-<pid>': how records.write_shards, write_dataset_info and the marker name
# files in progress.
_TEMPORARY = re.compile(r"^(?P<final>.+)\.tmp-(?P<pid>\d+)$")


def config_hash(cfg: SyntheticConfig) -> str:
    """12 hex digits of sha256 over the generator version and every config field."""
    blob = json.dumps({"version": GENERATOR_VERSION, "config": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def corpus_name(cfg: SyntheticConfig) -> str:
    """Directory name of a config's corpus: 'synthetic-v<version>-<hash of the config>'."""
    return f"synthetic-v{GENERATOR_VERSION}-{config_hash(cfg)}"


def corpus_root(cache_dir: str | None = None) -> str:
    """Directory holding the corpora: <cache_dir or default_cache_dir()>/synthetic."""
    return os.path.join(cache_dir or default_cache_dir(), CACHE_SUBDIR)


def generate_tracks(cfg: SyntheticConfig, split_name: str, num_workers: int = 0) -> Iterator[dict]:
    """Tracks of one split ('train', 'unheard_val', 'heard_val') in a fixed order.

    Training speakers produce 'train' and 'heard_val' tracks, unheard speakers 'unheard_val' only.
    num_workers > 1 generates in that many worker processes (``workers``; only when the split has
    at least 2 jobs per worker); the output is identical to num_workers=0.
    """
    jobs = split_jobs(cfg, split_name)
    if num_workers <= 1 or len(jobs) < 2 * num_workers:
        yield from generate_job_tracks(cfg, jobs)
    else:
        yield from generate_in_subprocesses(cfg, split_name, len(jobs), num_workers)


# ------------------------------------------------------------------------------ leftovers
def _is_zombie(pid: int) -> bool:
    """Linux: whether `pid` has exited but is not reaped yet (it still answers kill(pid, 0))."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def _is_running(pid: int) -> bool:
    """Whether process `pid` is alive on this host (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _is_zombie(pid)


def remove_stale_temporaries(out_dir: str) -> list[str]:
    """Deletes '<file>.tmp-<pid>' files of writers that are gone; returns the deleted paths.

    A temporary is stale when its pid is not a running process here, or is this process's own pid
    (left by an earlier process that had the same pid: this one has nothing in flight yet). The
    temporaries of a live writer on this host are kept. A writer on another host sharing the
    directory cannot be told from a dead one: generate a corpus from one host at a time.
    """
    removed = []
    for name in sorted(os.listdir(out_dir)):
        m = _TEMPORARY.match(name)
        if not m:
            continue
        pid = int(m.group("pid"))
        if pid == os.getpid() or not _is_running(pid):
            path = os.path.join(out_dir, name)
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
            removed.append(path)
    return removed


# ------------------------------------------------------------------------------ writing
@dataclasses.dataclass
class _SplitStats:
    """Running totals over a split's tracks, for dataset_info.json."""

    n: int = 0
    hist: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(NUM_EMOTIONS, np.int64))
    argmax: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(NUM_EMOTIONS, np.int64))
    frames: int = 0
    samples: int = 0

    def add(self, track: dict) -> None:
        self.n += 1
        self.hist += np.bincount(track["frame_emotion"], minlength=NUM_EMOTIONS)
        self.argmax += np.bincount(track["logits"].argmax(axis=1), minlength=NUM_EMOTIONS)
        self.frames += track["logits"].shape[0]
        self.samples += track["audio"].shape[0]

    def counted(self, tracks: Iterator[dict]) -> Iterator[dict]:
        """Passes `tracks` through, adding each to the totals."""
        for track in tracks:
            self.add(track)
            yield track


def _default_shards(n_tracks: int) -> int:
    """About 64 tracks a shard, 1 to 16 shards."""
    return max(1, min(16, n_tracks // 64))


def _default_workers(cfg: SyntheticConfig) -> int:
    """Two generator processes (at most one per CPU) once the corpus is big enough (200 tracks) to
    repay their start-up; none below."""
    n_total = (cfg.num_train_speakers + cfg.num_unheard_speakers) * cfg.tracks_per_speaker
    return min(2, os.cpu_count() or 1) if n_total >= 200 else 0


def _write_split(cfg: SyntheticConfig, out_dir: str, split_name: str, num_shards: int | None,
                 num_workers: int) -> _SplitStats:
    """Generates and writes one split's shards; returns its totals."""
    shards = num_shards or _default_shards(len(split_jobs(cfg, split_name)))
    stats = _SplitStats()
    records.write_shards(stats.counted(generate_tracks(cfg, split_name, num_workers)), out_dir,
                         split_name, shards)
    return stats


def _dataset_info(cfg: SyntheticConfig, stats: dict[str, _SplitStats]) -> dict:
    """The corpus's dataset_info.json content: sizes, timing, config, per-frame emotion histograms
    (hidden truth and the oracle's argmax), identities per split."""
    def per_emotion(counts):
        return {EMOTIONS[i]: int(c) for i, c in enumerate(counts)}

    speakers = generate_speakers(cfg)
    return {
        "source": "synthetic",
        "name": corpus_name(cfg),
        "generator_version": GENERATOR_VERSION,
        "num_examples": {s: st.n for s, st in stats.items()},
        "num_frames": {s: st.frames for s, st in stats.items()},
        "audio_seconds": {s: round(st.samples / SAMPLE_RATE, 2) for s, st in stats.items()},
        "sample_rate": SAMPLE_RATE,
        "frame_period_s": FRAME_PERIOD_S,
        "face_size": cfg.face_size,
        "emotions": list(EMOTIONS),
        "config": cfg.to_dict(),
        "emotion_histogram": {s: per_emotion(st.hist) for s, st in stats.items()},
        "logit_argmax_histogram": {s: per_emotion(st.argmax) for s, st in stats.items()},
        "identities": {
            "train": [s.identity for s in speakers if not s.unheard],
            "unheard_val": [s.identity for s in speakers if s.unheard],
        },
        "splits": {str(k): v for k, v in SPLIT_NAMES.items()},
    }


def mark_complete(out_dir: str, name: str) -> None:
    """Writes the '_COMPLETE' marker (holding `name`) atomically: the last file of a cached set."""
    marker = os.path.join(out_dir, COMPLETE_MARKER)
    tmp = f"{marker}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(name + "\n")
    os.replace(tmp, marker)


def ensure_corpus(cache_dir: str, cfg: SyntheticConfig | None = None, num_shards: int | None = None,
                  num_workers: int | None = None, verbose: bool = False) -> str:
    """Generates the corpus of `cfg` into ``cache_dir/<corpus_name(cfg)>/`` unless already complete.

    Writes '<split>.tfrecord-*' shards (cmemo_jax.data.records) for train / unheard_val / heard_val,
    'dataset_info.json', and finally the '_COMPLETE' marker; returns the directory. If the marker
    exists, returns at once. Temporaries left by a killed run are deleted first. num_shards: per
    split (default: about 64 tracks a shard, 1 to 16, chosen per split); num_workers: generator
    processes (default: min(2, cpus) when the corpus is large enough to pay for spawning them).
    The output is identical for any num_workers.
    """
    cfg = cfg or SyntheticConfig()
    out_dir = os.path.join(cache_dir, corpus_name(cfg))
    if os.path.isdir(out_dir):
        remove_stale_temporaries(out_dir)
    if os.path.exists(os.path.join(out_dir, COMPLETE_MARKER)):
        return out_dir
    os.makedirs(out_dir, exist_ok=True)
    if num_workers is None:
        num_workers = _default_workers(cfg)
    t0 = time.time()
    stats = {}
    for split_name in SPLITS:
        stats[split_name] = _write_split(cfg, out_dir, split_name, num_shards, num_workers)
        if verbose:
            print(f"synthetic corpus: {split_name}: {stats[split_name].n} tracks, {time.time() - t0:.1f} s")
    records.write_dataset_info(out_dir, _dataset_info(cfg, stats))
    mark_complete(out_dir, corpus_name(cfg))
    return out_dir
