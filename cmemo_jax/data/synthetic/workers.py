"""Generating a split's tracks in worker processes, and the pickle-free protocol they speak.

Worker w of n is ``python -m cmemo_jax.data.synthetic --worker CONFIG_JSON SPLIT w n``: a fresh
interpreter (no fork of a parent holding TF / JAX threads, no re-import of the caller's __main__)
that generates jobs w, w + n, w + 2n, ... of the split and writes one frame per track to stdout.
The parent reads the workers round-robin, so tracks come back in corpus order.

Frame (all integers little-endian)::

    u64 header length | header: UTF-8 JSON {"track_id": str, "identity": str, "split": int,
                                            "arrays": [[name, shape], ...]}
                      | the arrays' raw C-order bytes, in header order

Array names and dtypes are fixed by the track schema (``TRACK_ARRAYS``); nothing in a frame is
executed or unpickled, so a corrupt or hostile stream can at worst fail to parse.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import BinaryIO, Iterable, Iterator

import numpy as np

import cmemo_jax
from cmemo_jax.data.synthetic.config import SyntheticConfig
from cmemo_jax.data.synthetic.speakers import generate_speakers, split_jobs, track_rng
from cmemo_jax.data.synthetic.tracks import generate_track

# Array fields of a track dict and their on-the-wire dtypes (cmemo_jax.data.records schema).
TRACK_ARRAYS = {"audio": "<i2", "logits": "<f4", "faces": "|u1", "frame_emotion": "|i1"}
_LEN_BYTES = 8


def generate_job_tracks(cfg: SyntheticConfig, jobs: Iterable[tuple[int, int, int]]) -> Iterator[dict]:
    """Track dicts of (speaker index, track index, split code) jobs, each from its own stream."""
    speakers = {s.index: s for s in generate_speakers(cfg)}
    for si, k, code in jobs:
        spk = speakers[si]
        yield generate_track(spk, k, code, track_rng(cfg, spk, k), cfg)


def encode_frame(track: dict) -> bytes:
    """A track dict -> one protocol frame (see the module docstring)."""
    arrays = [(name, np.ascontiguousarray(track[name], dtype=dt))
              for name, dt in TRACK_ARRAYS.items() if track.get(name) is not None]
    header = json.dumps({"track_id": track["track_id"], "identity": track["identity"],
                         "split": int(track["split"]),
                         "arrays": [[name, list(a.shape)] for name, a in arrays]}).encode("utf-8")
    return b"".join([len(header).to_bytes(_LEN_BYTES, "little"), header] + [a.tobytes() for _, a in arrays])


def _read_exact(stream: BinaryIO, n: int) -> bytearray | None:
    """Exactly n bytes from `stream`, or None at a clean end of stream before the first byte.

    Raises EOFError when the stream ends part-way (a worker died mid-frame).
    """
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            if got == 0:
                return None
            raise EOFError(f"stream ended after {got} of {n} bytes")
        got += k
    return buf


def read_frame(stream: BinaryIO) -> dict | None:
    """The next track dict from `stream` (arrays writable, native dtypes), or None at end of stream.

    Raises EOFError for a truncated frame and ValueError for a malformed header.
    """
    head = _read_exact(stream, _LEN_BYTES)
    if head is None:
        return None
    raw_header = _read_exact(stream, int.from_bytes(head, "little"))
    if raw_header is None:
        raise EOFError("stream ended after a frame's length field")
    header = json.loads(raw_header)
    track = {"track_id": str(header["track_id"]), "identity": str(header["identity"]),
             "split": int(header["split"])}
    for name, shape in header["arrays"]:
        if name not in TRACK_ARRAYS:
            raise ValueError(f"unexpected array {name!r} in a worker frame")
        dtype = np.dtype(TRACK_ARRAYS[name])
        shape = tuple(int(d) for d in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = _read_exact(stream, nbytes) if nbytes else bytearray()
        if raw is None:
            raise EOFError(f"stream ended before array {name!r} of track {track['track_id']!r}")
        track[name] = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)
    return track


def worker_main(cfg_json: str, split_name: str, worker: int, num_workers: int,
                out: BinaryIO | None = None) -> None:
    """Worker process body: frames of jobs[worker::num_workers] of the split, to `out` (stdout)."""
    cfg = SyntheticConfig.from_dict(json.loads(cfg_json))
    out = out or sys.stdout.buffer
    for track in generate_job_tracks(cfg, split_jobs(cfg, split_name)[worker::num_workers]):
        out.write(encode_frame(track))
        out.flush()


def _worker_env() -> dict:
    """Environment of a worker: this checkout importable first, one BLAS / OpenMP thread each
    (the workers already use the cores; nested threads would oversubscribe them)."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(cmemo_jax.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def _start_workers(cfg: SyntheticConfig, split_name: str, num_workers: int) -> list[subprocess.Popen]:
    cfg_json = json.dumps(cfg.to_dict())
    env = _worker_env()
    return [subprocess.Popen([sys.executable, "-m", "cmemo_jax.data.synthetic", "--worker", cfg_json,
                              split_name, str(w), str(num_workers)], stdout=subprocess.PIPE, env=env)
            for w in range(num_workers)]


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    """Kills workers still running (the consumer stopped early or failed) and closes their pipes."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout and not proc.stdout.closed:
            proc.stdout.close()


def generate_in_subprocesses(cfg: SyntheticConfig, split_name: str, n_jobs: int,
                             num_workers: int) -> Iterator[dict]:
    """The split's `n_jobs` tracks, generated by `num_workers` worker processes, in corpus order.

    RuntimeError names the worker and track if a worker dies or exits with an error.
    """
    procs = _start_workers(cfg, split_name, num_workers)
    try:
        for j in range(n_jobs):
            proc = procs[j % num_workers]
            try:
                track = read_frame(proc.stdout)
            except (EOFError, ValueError):
                track = None
            if track is None:
                proc.wait()
                raise RuntimeError(f"synthetic corpus worker {j % num_workers} died (exit code "
                                   f"{proc.returncode}) at track {j} of split {split_name!r}")
            yield track
        for proc in procs:
            proc.stdout.close()
            if proc.wait() != 0:
                raise RuntimeError(f"synthetic corpus worker exited with code {proc.returncode}")
    finally:
        _stop_workers(procs)
