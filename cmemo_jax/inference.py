"""Batched, jitted inference of an exported speech student on 16 kHz audio of any length.

`StudentRunner` feeds int16 audio `[batch, samples]` through exactly the training front-end
(`spectrogram_from_int16` with the export's DFT, no dither) into the student and returns its 8
pre-softmax outputs per row. Rows are placed on a 1-D mesh over this process's devices
(`train.sharding`), padded with `valid=False` rows to a whole batch, and gathered back with
`train.collect.iterate_outputs`, which drops the padding.

Why buckets, and why not zero-padding. One jitted executable is compiled per (batch rows, row
length), so feeding every clip at its own length would compile once per clip. Zero-padding clips up
to a common length is not the same forward: the front-end normalises each frequency bin by its mean
and std over time and the student averages fc6 over time, so silent frames change both. Instead:

* **Whole clips** (`embed_clips`, the probe's embedding, paper Table 5): a clip of L samples is cut
  into `ceil(L / B)` windows of B samples, B the longest rung of `bucket_ladder` with B <= L,
  placed at 0, B, 2B, ... with the last one aligned to the clip's end (so it may overlap its
  neighbour); the clip's outputs are the mean of its windows' outputs. Rungs are whole-frame lengths
  `400 + 160 (f - 1)` growing by ~1.25x from the student's minimum to `max_bucket_s` (30 s), so a
  clip of at most 30 s is covered by one or two windows that each hold about 80 % of it or more, and a clip
  whose length is a rung is computed exactly. tests/test_predict.py measures the error of this rule
  against the exact unbucketed forward (on its random tiny student, clips 1.05x and 1.2x a rung:
  correlation 0.996, mean |difference| 7 % of the outputs' std); longer clips are split into
  ~30 s windows.
* **Sliding windows** (`windows`, prediction over time): all windows have one length (4.024 s by
  default), so there is nothing to bucket.
* **Too short**: the student needs `min_samples` (10,640 at 16 kHz = 0.665 s: 65 frames for
  mpool5). A shorter clip is zero-padded at its end up to `min_samples` -- the one place where padding
  is used, because there is no other input the student accepts; the result is an approximation and
  callers flag it (`StudentRunner.is_padded`; predict prints a note).

Inference runs per process on `jax.local_devices()`: several hosts each embed their own files.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from cmemo_jax import constants
from cmemo_jax.audio.frontend import spectrogram_from_int16
from cmemo_jax.audio.io import int16_from_waveform
from cmemo_jax.errors import CmemoError
from cmemo_jax.train import collect
from cmemo_jax.train import sharding as sharding_lib

__all__ = ["InferenceError", "StudentRunner", "bucket_for", "bucket_ladder", "cover_starts",
           "frames_to_samples", "pad_to_minimum", "sliding_starts", "DEFAULT_HOP_S"]

DEFAULT_HOP_S = 2.0                        # seconds between sliding-window starts
BUCKET_GROWTH = 1.25                       # rung-to-rung length ratio of the whole-clip ladder
MAX_BUCKET_S = 30.0                        # longest whole-clip window; longer clips are split
DEFAULT_BATCH_SAMPLES = 32 * constants.CROP_SAMPLES   # samples per device call (32 windows of 4 s)


class InferenceError(CmemoError, ValueError):
    """A model or input the runner cannot use; the message names it."""


def frames_to_samples(frames: int) -> int:
    """Shortest sample count giving `frames` spectrogram frames: 400 + 160 (frames - 1)."""
    return constants.WINDOW_SAMPLES + constants.HOP_SAMPLES * (int(frames) - 1)


def bucket_ladder(min_samples: int, max_samples: int, growth: float = BUCKET_GROWTH) -> tuple[int, ...]:
    """Whole-clip window lengths in samples: whole-frame lengths from `min_samples` growing by `growth`.

    Every rung is `400 + 160 (f - 1)` (no sample is left out of a frame); the last rung is the
    longest one <= max(max_samples, min_samples).
    """
    frames = constants.num_spectrogram_frames(min_samples)
    if frames_to_samples(frames) < min_samples:
        frames += 1
    rungs = []
    while frames_to_samples(frames) <= max(max_samples, min_samples) or not rungs:
        rungs.append(frames_to_samples(frames))
        frames = max(frames + 1, math.ceil(frames * growth))
    return tuple(rungs)


def bucket_for(length: int, ladder: Sequence[int]) -> int:
    """The longest rung <= length (the shortest rung for a clip shorter than all of them)."""
    fitting = [b for b in ladder if b <= length]
    return fitting[-1] if fitting else ladder[0]


def cover_starts(length: int, window: int) -> np.ndarray:
    """Starts of the ceil(length / window) windows covering [0, length), the last one end-aligned.

    A clip no longer than the window gets the single start 0.
    """
    if length <= window:
        return np.zeros(1, np.int64)
    n = -(-length // window)
    starts = np.arange(n, dtype=np.int64) * window
    starts[-1] = length - window
    return starts


def sliding_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Starts 0, hop, 2 hop, ... of the windows that fit in [0, length), plus one end-aligned window
    when the last of them stops short of the end (so the tail of a file is never ignored).

    Needs length >= window.
    """
    if length < window or hop <= 0:
        raise ValueError(f"sliding_starts needs length >= window and hop > 0, got {length}, {window}, {hop}")
    starts = np.arange(0, length - window + 1, hop, dtype=np.int64)
    if starts[-1] + window < length:
        starts = np.append(starts, length - window)
    return starts


def pad_to_minimum(audio_int16: np.ndarray, min_samples: int) -> np.ndarray:
    """int16 [L] -> int16 [max(L, min_samples)]: zeros appended at the end (module docstring)."""
    if len(audio_int16) >= min_samples:
        return audio_int16
    return np.concatenate([audio_int16, np.zeros(min_samples - len(audio_int16), np.int16)])


def _apply(variables, batch, *, model, dft: str, mesh):
    """One device call: int16 [b, L] -> {'logits': [b, 8] float32, 'valid': [b]}, replicated."""
    logits = model.apply(variables, spectrogram_from_int16(batch["audio"], dft=dft), train=False)
    out = {"logits": logits, "valid": batch["valid"]}
    # Gathered, as iterate_outputs expects: every process can then read every row.
    return jax.lax.with_sharding_constraint(out, NamedSharding(mesh, PartitionSpec()))


# One module-level jit, with the model as a static argument: runners built from equal exports
# (e.g. one per CLI call in a test session) share compiled executables, one per (rows, length).
_apply_jit = jax.jit(_apply, static_argnames=("model", "dft", "mesh"))


# Fewest frames per model: the student's geometry does not depend on its widths or weights.
_MIN_FRAMES: dict = {}


def min_frames(model, variables) -> int:
    """Fewest spectrogram frames `model` accepts (65 for the Student), by bisection over abstract
    evaluations (jax.eval_shape: tracing only, nothing is computed)."""
    if model in _MIN_FRAMES:
        return _MIN_FRAMES[model]
    shapes = jax.tree.map(lambda v: jax.ShapeDtypeStruct(np.shape(v), jnp.result_type(v)), variables)

    def fits(frames: int) -> bool:
        x = jax.ShapeDtypeStruct((1, constants.FFT_SIZE, frames), jnp.float32)
        try:
            jax.eval_shape(lambda v, s: model.apply(v, s, train=False), shapes, x)
        except (ValueError, TypeError):    # too short: a pool window or a conv does not fit
            return False
        return True

    lo, hi = 1, constants.num_spectrogram_frames(constants.CROP_SAMPLES)
    if not fits(hi):
        raise InferenceError(f"the model does not accept a {constants.CROP_SECONDS} s spectrogram")
    while lo < hi:                          # invariant: `hi` frames fit
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    _MIN_FRAMES[model] = hi
    return hi


def _check_meta(meta: dict) -> str:
    """-> the DFT variant of a student export's front-end; InferenceError for anything else."""
    kind = meta.get("kind")
    if kind != "student":
        raise InferenceError(f"a {kind!r} model, not a speech student (give a student export)")
    frontend = meta.get("frontend") or {}
    if frontend.get("name", "vggvox") != "vggvox" or frontend.get("sample_rate", constants.SAMPLE_RATE) \
            != constants.SAMPLE_RATE:
        raise InferenceError(f"front-end {frontend} is not the {constants.SAMPLE_RATE} Hz VGGVox one")
    return frontend.get("dft", "fft")


def seconds_to_samples(seconds: float) -> int:
    """Seconds -> whole samples at 16 kHz (rounded)."""
    return int(round(float(seconds) * constants.SAMPLE_RATE))


def _batches(rows: Iterable[np.ndarray], length: int, batch_rows: int) -> Iterator[dict]:
    """Rows of int16 [length] -> host batches {'audio': [batch_rows, length], 'valid': [batch_rows]};
    the last batch is filled up with silent rows marked valid=False (dropped after the call)."""
    it = iter(rows)
    while True:
        chunk = list(itertools.islice(it, batch_rows))
        if not chunk:
            return
        audio = np.zeros((batch_rows, length), np.int16)
        for i, row in enumerate(chunk):
            if row.shape != (length,):
                raise ValueError(f"row of shape {row.shape} in a batch of rows of {length} samples")
            audio[i] = row
        yield {"audio": audio, "valid": np.arange(batch_rows) < len(chunk)}


class StudentRunner:
    """An exported student, ready to run on int16 or float audio at 16 kHz (module docstring).

    Attributes:
      output_names: names of the 8 outputs (the export's emotions, cmemo_jax.constants.EMOTIONS order).
      min_samples: shortest input the student accepts (10,640 samples = 0.665 s for the Student).
      ladder: whole-clip window lengths in samples (`bucket_ladder`).
      mesh: the 1-D mesh over this process's devices that batches are split over.
    """

    def __init__(self, model, variables, meta: dict, *, devices=None,
                 batch_samples: int = DEFAULT_BATCH_SAMPLES, max_bucket_s: float = MAX_BUCKET_S):
        """model, variables, meta: as `cmemo_jax.export.load` returns them (meta['kind'] == 'student').
        devices: default this process's devices. batch_samples: samples per device call (rows x
        length), which bounds device memory. max_bucket_s: longest whole-clip window (seconds)."""
        self.dft = _check_meta(meta)
        self.model, self.meta = model, meta
        self.output_names = tuple(meta.get("emotions") or constants.EMOTIONS)
        self.mesh = sharding_lib.make_mesh(jax.local_devices() if devices is None else devices)
        self.variables = jax.device_put(variables, sharding_lib.replicated(self.mesh))
        self.min_samples = frames_to_samples(min_frames(model, variables))
        self.ladder = bucket_ladder(self.min_samples, seconds_to_samples(max_bucket_s))
        self.batch_samples = int(batch_samples)

    @classmethod
    def load(cls, path: str, **kwargs) -> "StudentRunner":
        """From an export file; every failure is one line naming the file (ExportError/InferenceError)."""
        from cmemo_jax import export  # lazily: export pulls in the model registry

        model, variables, meta = export.load(path)
        try:
            return cls(model, variables, meta, **kwargs)
        except InferenceError as err:
            raise InferenceError(f"{path}: {err}") from None

    def is_padded(self, num_samples: int) -> bool:
        """True when a clip of num_samples (16 kHz) is zero-padded up to min_samples."""
        return num_samples < self.min_samples

    def batch_rows(self, length: int, num_rows: int | None = None) -> int:
        """Rows per device call for rows of `length` samples: ~batch_samples / length, capped at the
        next power of two >= num_rows (few distinct compiled shapes, little padding), rounded up to
        a multiple of the device count."""
        n_dev = self.mesh.devices.size
        rows = max(1, self.batch_samples // max(int(length), 1))
        if num_rows is not None:
            rows = min(rows, 1 << max(0, int(num_rows) - 1).bit_length())
        return -(-rows // n_dev) * n_dev

    def forward_rows(self, rows: Iterable[np.ndarray], length: int,
                     batch_rows: int | None = None) -> Iterator[np.ndarray]:
        """int16 rows [length] (pulled lazily, so a stream stays a stream) -> float32 outputs [k, 8],
        one array per device call, in row order. Exact: no padding of any row."""
        if length < self.min_samples:
            raise InferenceError(f"rows of {length} samples; the student needs >= {self.min_samples}")
        fn = functools.partial(_apply_jit, self.variables, model=self.model, dft=self.dft, mesh=self.mesh)
        batches = _batches(rows, int(length), batch_rows or self.batch_rows(length))
        for out in collect.iterate_outputs(fn, batches, self.mesh):
            yield out["logits"]

    def forward(self, audio_int16) -> np.ndarray:
        """The exact, unbucketed forward: int16 [n, L] (L >= min_samples) -> float32 [n, 8]."""
        audio = np.asarray(audio_int16)
        if audio.ndim != 2 or audio.dtype != np.int16:
            raise InferenceError(f"forward wants int16 [n, samples], got {audio.dtype} {audio.shape}")
        n, length = audio.shape
        outs = list(self.forward_rows(iter(audio), length, self.batch_rows(length, n)))
        return np.concatenate(outs) if outs else np.zeros((0, len(self.output_names)), np.float32)

    def embed_clips(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """Whole-clip embeddings: float32 [n, 8], the student's pre-softmax outputs per clip.

        waveforms: 1-D float32 in [-1, 1] (or int16) at 16 kHz, any lengths. Each clip is the mean
        of its bucket windows' outputs (module docstring); shorter than min_samples: zero-padded.
        """
        clips = [pad_to_minimum(self._int16(w), self.min_samples) for w in waveforms]
        plan: dict[int, list[tuple[int, int]]] = {}
        for i, clip in enumerate(clips):
            bucket = bucket_for(len(clip), self.ladder)
            plan.setdefault(bucket, []).extend((i, int(s)) for s in cover_starts(len(clip), bucket))
        sums = np.zeros((len(clips), len(self.output_names)))
        counts = np.zeros(len(clips))
        for bucket, items in sorted(plan.items()):
            rows = (clips[i][s:s + bucket] for i, s in items)
            outs = np.concatenate(list(self.forward_rows(rows, bucket, self.batch_rows(bucket, len(items)))))
            index = np.array([i for i, _ in items])
            np.add.at(sums, index, outs)
            np.add.at(counts, index, 1)
        return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)

    def window_starts(self, num_samples: int, window_s: float = constants.CROP_SECONDS,
                      hop_s: float = DEFAULT_HOP_S) -> np.ndarray:
        """Start samples of `windows`' rows for a clip of num_samples: `sliding_starts`, or [0] for a
        clip shorter than one window (it is then one whole-clip row)."""
        window, hop = self.window_hop(window_s, hop_s)
        return sliding_starts(num_samples, window, hop) if num_samples >= window else np.zeros(1, np.int64)

    def windows(self, waveform: np.ndarray, window_s: float = constants.CROP_SECONDS,
                hop_s: float = DEFAULT_HOP_S) -> np.ndarray:
        """Sliding-window outputs float32 [n_windows, 8] of one 16 kHz clip (rows at `window_starts`).

        Windows are window_s long (4.024 s = the training crop), hop_s apart, the last one aligned to
        the clip's end; a clip shorter than one window gives one row, its `embed_clips` embedding.
        """
        audio = self._int16(waveform)
        window, _ = self.window_hop(window_s, hop_s)
        if len(audio) < window:
            return self.embed_clips([audio])
        starts = self.window_starts(len(audio), window_s, hop_s)
        rows = (audio[s:s + window] for s in starts)
        return np.concatenate(list(self.forward_rows(rows, window, self.batch_rows(window, len(starts)))))

    def window_hop(self, window_s: float, hop_s: float) -> tuple[int, int]:
        """(window, hop) in samples; InferenceError for a window shorter than min_samples or no hop."""
        window, hop = seconds_to_samples(window_s), seconds_to_samples(hop_s)
        if window < self.min_samples or hop < 1:
            raise InferenceError(f"window {window_s} s / hop {hop_s} s: the window must be >= "
                                 f"{self.min_samples / constants.SAMPLE_RATE:.3f} s and the hop > 0")
        return window, hop

    @staticmethod
    def _int16(waveform) -> np.ndarray:
        """1-D float [-1, 1] or int16 audio at 16 kHz -> int16 [L] (as the training records store it)."""
        x = np.asarray(waveform)
        if x.ndim != 1 or x.size == 0:
            raise InferenceError(f"expected one non-empty 1-D waveform at 16 kHz, got shape {x.shape}")
        if x.dtype == np.int16:
            return x
        if not np.all(np.isfinite(x)):
            raise InferenceError(f"{int(np.count_nonzero(~np.isfinite(x)))} samples are not finite (NaN or inf)")
        return int16_from_waveform(x)
