"""Emotion prediction on audio or video files of any length with an exported student.

    python -m cmemo_jax.predict --model=student.msgpack [--head=head.msgpack] [--hop=2.0] [--json]
        [--plot=out.png] FILE...

What comes out, per file:

* one row per sliding window: windows of 4.024 s (the training crop), `--hop` seconds apart (2 s by
  default), the last one aligned to the file's end so that the tail is never ignored
  (`inference.sliding_starts`). A file shorter than one window gives one row covering the whole
  file (its whole-clip embedding, `StudentRunner.embed_clips`); one shorter than the student's minimum
  of 0.665 s is zero-padded at its end up to it and flagged with a note (inference module docstring);
* a whole-file row: the mean of the window rows' raw outputs (every window weighs the same);
* each row's `embedding` is the student's 8 raw (pre-softmax) outputs, and its probabilities are
  `softmax(outputs)` at temperature 1 over the 8 emotions. Why temperature 1: distillation matched
  `softmax(student / 2)` to `softmax(teacher / 2)`, so the student's outputs estimate the teacher's
  logits, whose temperature-1 softmax is the face model's own emotion distribution. With `--head`,
  the probabilities are instead those of a probe head fitted by `python -m cmemo_jax.probe fit`
  (the user's labels), applied to the same embedding (the whole-file row: to the mean embedding).

Files are decoded block by block (`AudioStream`: soundfile blocks for wav/flac/ogg/aiff, PyAV's
decoding loop for containers, soxr's streaming resampler to 16 kHz), windows are cut from a buffer
of at most one window plus one block, and batched through one jitted function, so memory stays flat
from a second of audio to hours. The checks are those of `cmemo_jax.audio.load_audio` (its docstring
rules): missing / undecodable / no audio stream / empty / truncated / NaN or inf samples are one-line
errors naming the file; float audio beyond full scale is rescaled by 1 / peak (a second pass finds the
peak), with a note. Channels are averaged to mono, as `load_audio` does by default.

The CLI prints a table (default) or JSON lines (`--json`: one object per window and one whole-file
object with start_s 0 and end_s = duration); `--plot` draws probabilities over time (one PNG per
file). A bad file is one line on stderr and a non-zero exit status at the end; the other files are
still processed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Iterable, Iterator, Sequence

import numpy as np
from scipy.special import softmax

from cmemo_jax import constants
from cmemo_jax.audio.io import (SOUNDFILE_EXTENSIONS, AudioDecodeError, header_frames, int16_from_waveform,
                                resample)
from cmemo_jax.errors import CmemoError
from cmemo_jax.inference import DEFAULT_HOP_S, InferenceError, StudentRunner, seconds_to_samples

CHUNK_S = 10.0                 # seconds decoded per block (at the source rate)
PROGRESS_MIN_S = 60.0          # files at least this long get a progress line when stderr is a terminal


# --------------------------------------------------------------------------------------------------
# Streaming decode with load_audio's checks.
# --------------------------------------------------------------------------------------------------

class _BeyondFullScale(Exception):
    """Raised inside a first pass when float audio exceeds full scale: rescale needs the file's peak."""


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "no details"
    return f"{type(err).__name__}: {text}"


class AudioStream:
    """One file decoded block by block into mono float32 chunks at 16 kHz, with flat memory.

    Same readers as `load_audio` (soundfile for its extensions, falling back to PyAV; PyAV's first
    audio stream otherwise) and the same checks (module docstring). Opening checks the file can be
    read; `chunks()` may be iterated more than once (it reopens the file).

    Attributes:
      path; source_rate (Hz); channels; duration_s: the header's duration estimate (None if unknown).
    """

    def __init__(self, path, chunk_s: float = CHUNK_S):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise AudioDecodeError(f"{self.path}: no such file")
        self.chunk_s = float(chunk_s)
        self.peak = None                    # set by scan_peak(): the rule-4 rescale of float audio
        self._open()

    def _open(self) -> None:
        ext = os.path.splitext(self.path)[1].lower()
        if ext in SOUNDFILE_EXTENSIONS:
            try:
                self._probe_soundfile()
                return
            except Exception as sf_err:  # noqa: BLE001 - libsndfile raises several types; retry with FFmpeg
                try:
                    self._probe_pyav()
                    return
                except AudioDecodeError:
                    raise
                except Exception:  # noqa: BLE001 - report libsndfile's reason: it is this format's reader
                    raise AudioDecodeError(f"{self.path}: cannot decode audio ({_one_line(sf_err)})") from None
        try:
            self._probe_pyav()
        except AudioDecodeError:
            raise
        except Exception as av_err:  # noqa: BLE001 - av.error.* and OSError alike
            raise AudioDecodeError(f"{self.path}: cannot decode audio ({_one_line(av_err)})") from None

    def _probe_soundfile(self) -> None:
        import soundfile as sf

        info = sf.info(self.path)
        self.reader, self.source_rate, self.channels = "soundfile", int(info.samplerate), int(info.channels)
        self.duration_s = info.frames / info.samplerate if info.frames > 0 else None

    def _probe_pyav(self) -> None:
        import av

        with av.open(self.path) as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{self.path}: no audio stream in the file")
            stream = container.streams.audio[0]
            rate = stream.rate or stream.codec_context.sample_rate
            duration = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                        else (container.duration / 1e6 if container.duration else None))
        self.reader, self.source_rate, self.channels = "pyav", int(rate), int(stream.channels or 1)
        self.duration_s = duration

    def _source_blocks(self) -> Iterator[np.ndarray]:
        """float32 [frames, channels] blocks at the source rate, ~chunk_s each."""
        block = max(1, int(self.chunk_s * self.source_rate))
        try:
            if self.reader == "soundfile":
                import soundfile as sf

                with sf.SoundFile(self.path) as f:
                    yield from f.blocks(blocksize=block, dtype="float32", always_2d=True)
            else:
                yield from _rechunk(_pyav_blocks(self.path), block)
        except AudioDecodeError:
            raise
        except Exception as err:  # noqa: BLE001 - a decoder failing mid-file, whatever its type
            raise AudioDecodeError(f"{self.path}: cannot decode audio ({_one_line(err)})") from None

    def _mono(self, block: np.ndarray, done_frames: int) -> np.ndarray:
        """[frames, channels] -> checked mono float32 [frames] (load_audio's mix and finite check)."""
        mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
        bad = ~np.isfinite(mono)
        if bad.any():
            first = (done_frames + int(np.argmax(bad))) / self.source_rate
            raise AudioDecodeError(f"{self.path}: samples are not finite (NaN or inf), "
                                   f"{int(bad.sum())} in the block from {done_frames / self.source_rate:.3f} s, "
                                   f"the first at {first:.3f} s")
        return np.ascontiguousarray(mono, dtype=np.float32)

    def scan_peak(self) -> float:
        """A decode-only pass: the file's max |x| (mono, source rate); checks finiteness on the way."""
        peak, done = 0.0, 0
        for block in self._source_blocks():
            mono = self._mono(block, done)
            done += len(block)
            peak = max(peak, float(np.max(np.abs(mono), initial=0.0)))
        self.peak = peak
        return peak

    def chunks(self) -> Iterator[np.ndarray]:
        """Mono float32 chunks at 16 kHz. Raises _BeyondFullScale on float audio beyond full scale
        unless scan_peak() ran; AudioDecodeError (naming the file) for every load_audio fault."""
        import soxr

        resampler = (soxr.ResampleStream(self.source_rate, constants.SAMPLE_RATE, 1, dtype="float32",
                                         quality="HQ") if self.source_rate != constants.SAMPLE_RATE else None)
        done = 0
        for block in self._source_blocks():
            mono = self._mono(block, done)
            done += len(block)
            if self.peak is not None and self.peak > 1.0:
                mono = mono / np.float32(self.peak)   # exactly load_audio's rescale
            elif len(mono) and float(np.max(np.abs(mono))) > 1.0:
                raise _BeyondFullScale()
            yield resampler.resample_chunk(mono) if resampler is not None else mono
        if resampler is not None:
            yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        self._check_end(done)

    def _check_end(self, frames: int) -> None:
        if frames == 0:
            raise AudioDecodeError(f"{self.path}: the file holds no audio samples")
        promised = header_frames(self.path)
        if promised is not None and frames < promised:
            raise AudioDecodeError(f"{self.path}: truncated file: the header promises {promised} frames, "
                                   f"the data holds {frames}")


def _pyav_blocks(path: str) -> Iterator[np.ndarray]:
    """float32 [frames, channels] per decoded frame of the first audio stream (load_audio's decoding)."""
    import av

    with av.open(path) as container:
        stream = container.streams.audio[0]
        converter = av.AudioResampler(format="fltp")   # planar float at the stream's own layout and rate
        for frame in container.decode(stream):
            for out in converter.resample(frame):
                yield out.to_ndarray().T
        for out in converter.resample(None):
            yield out.to_ndarray().T


def _rechunk(blocks: Iterable[np.ndarray], frames: int) -> Iterator[np.ndarray]:
    """Regroups [n_i, channels] blocks into blocks of `frames` rows (the last one shorter)."""
    pending, size = [], 0
    for block in blocks:
        pending.append(block)
        size += len(block)
        if size >= frames:
            joined = np.concatenate(pending)
            for start in range(0, len(joined) - frames + 1, frames):
                yield joined[start:start + frames]
            rest = joined[len(joined) - len(joined) % frames:]
            pending, size = [rest], len(rest)
    if size:
        yield np.concatenate(pending)


# --------------------------------------------------------------------------------------------------
# Windows over a stream.
# --------------------------------------------------------------------------------------------------

class WindowCutter:
    """Cuts the windows of `inference.sliding_starts` out of a stream of int16 chunks.

    Memory: at most one window + one chunk of samples. After a push only what a later window can
    still need is kept, never more than one window: the next regular window starts past
    `total - window`, and the end-aligned tail needs exactly the last `window` samples. `push`
    returns the windows a chunk completes; `finish` the end-aligned last window (if the regular ones
    stop short of the end). `clip` is the whole stream when it was shorter than one window.
    """

    def __init__(self, window: int, hop: int):
        self.window, self.hop = int(window), int(hop)
        self.buffer = np.zeros(0, np.int16)
        self.buffer_start = self.total = self.next_start = self.last_end = 0

    def push(self, chunk: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """int16 [n] -> [(start sample, int16 [window])] of the windows now complete."""
        self.buffer = np.concatenate([self.buffer, chunk])
        self.total += len(chunk)
        out = []
        while self.next_start + self.window <= self.total:
            offset = self.next_start - self.buffer_start
            out.append((self.next_start, self.buffer[offset:offset + self.window].copy()))
            self.last_end = self.next_start + self.window
            self.next_start += self.hop
        # Later windows start at next_start; the end-aligned tail needs the last `window` samples.
        keep_from = max(self.buffer_start, min(self.next_start, self.total - self.window))
        self.buffer = self.buffer[keep_from - self.buffer_start:]
        self.buffer_start = keep_from
        return out

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """[(start, window)] of the end-aligned last window, or [] (none needed, or a short stream)."""
        if self.total < self.window or self.last_end >= self.total:
            return []
        start = self.total - self.window
        offset = start - self.buffer_start
        return [(start, self.buffer[offset:offset + self.window].copy())]

    @property
    def clip(self) -> np.ndarray:
        """The whole stream (int16), valid only when it was shorter than one window."""
        if self.total >= self.window:
            raise ValueError("the stream holds at least one window; it was not kept whole")
        return self.buffer


# --------------------------------------------------------------------------------------------------
# Results.
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Segment:
    """One row of a prediction: [start_s, end_s) in seconds of the file, the probabilities by label,
    and the student's 8 raw outputs (`embedding`, float32 [8])."""
    start_s: float
    end_s: float
    probabilities: dict
    embedding: np.ndarray

    @property
    def top(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Everything predicted for one file or waveform.

    source: the path (or '<waveform>'); duration_s: seconds of audio at 16 kHz; labels: the
    probability names (8 emotions, or a head's labels); windows: the sliding-window rows; whole:
    the whole-file row (start 0, end duration, mean of the window outputs); notes: one line per
    repair or approximation (rescaled, zero-padded).
    """
    source: str
    duration_s: float
    labels: tuple
    windows: tuple
    whole: Segment
    notes: tuple = ()

    def probabilities(self) -> np.ndarray:
        """[n_windows, n_labels] float64."""
        return np.array([[w.probabilities[k] for k in self.labels] for w in self.windows])

    def embeddings(self) -> np.ndarray:
        """[n_windows, 8] float32 raw outputs."""
        return np.stack([w.embedding for w in self.windows])

    def records(self) -> list[dict]:
        """JSON-able dicts: one per window, then the whole-file one ('whole_file': true)."""
        def record(seg: Segment, whole: bool) -> dict:
            return {"file": self.source, "start_s": round(seg.start_s, 6), "end_s": round(seg.end_s, 6),
                    "whole_file": whole, "probabilities": {k: float(v) for k, v in seg.probabilities.items()},
                    "embedding": [float(v) for v in seg.embedding]}
        return [record(w, False) for w in self.windows] + [record(self.whole, True)]


# --------------------------------------------------------------------------------------------------
# The predictor.
# --------------------------------------------------------------------------------------------------

class _Progress:
    """A one-line progress indicator on stderr ('\\r' updates, at most twice a second); no-op if off."""

    def __init__(self, label: str, total_s: float | None, enabled: bool, stream=None):
        self.label, self.total_s, self.enabled = label, total_s, enabled
        self.stream = stream or sys.stderr
        self._last = 0.0

    def update(self, done_s: float, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.5):
            return
        self._last = now
        if self.total_s:
            pct = min(100.0, 100.0 * done_s / self.total_s)
            bar = "#" * int(pct / 5)
            text = f"{self.label} [{bar:<20}] {pct:5.1f}% {_clock(done_s)} / {_clock(self.total_s)}"
        else:
            text = f"{self.label} {_clock(done_s)}"
        self.stream.write("\r" + text)
        self.stream.flush()

    def close(self, done_s: float) -> None:
        if self.enabled:
            self.update(done_s, force=True)
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{sec:02d}"


class Predictor:
    """Emotion (or head-label) probabilities over time for files or waveforms (module docstring).

    `Predictor.load(model_path, head=None)`; then `predictor(path)` or
    `predictor(waveform, sample_rate=...)` -> Prediction.
    """

    def __init__(self, runner: StudentRunner, head=None, head_labels: Sequence[str] | None = None, *,
                 window_s: float = constants.CROP_SECONDS, hop_s: float = DEFAULT_HOP_S,
                 chunk_s: float = CHUNK_S):
        """runner: a StudentRunner; head: a metrics.probe.Probe over the runner's outputs, with its
        head_labels; window_s, hop_s: sliding windows (seconds); chunk_s: decode block (seconds)."""
        if head is not None and (head_labels is None or len(head_labels) != head.weights.shape[1]):
            raise ValueError("a head needs one label per class")
        self.runner, self.head = runner, head
        self.labels = tuple(head_labels) if head is not None else tuple(runner.output_names)
        self.window_s, self.hop_s, self.chunk_s = float(window_s), float(hop_s), float(chunk_s)
        runner.window_hop(self.window_s, self.hop_s)   # one-line error for unusable settings now

    @classmethod
    def load(cls, path: str, head: str | None = None, **kwargs) -> "Predictor":
        """From a student export (and a probe head file fitted on that student). Errors: one line."""
        from cmemo_jax import probe as probe_lib  # the head format lives with its writer

        runner = probe_lib.load_student(path)
        if head is None:
            return cls(runner, **kwargs)
        probe, labels = probe_lib.load_head(head, student_path=path, num_features=len(runner.output_names))
        return cls(runner, probe, labels, **kwargs)

    def __call__(self, source, sample_rate: int | None = None, *, progress: bool = False) -> Prediction:
        """A file path (audio or video), or a float waveform [samples] / [samples, channels] with its
        sample_rate -> Prediction. Raises CmemoError subclasses with one-line messages."""
        if isinstance(source, (str, os.PathLike)):
            return self._predict_file(os.fspath(source), progress)
        if sample_rate is None:
            raise InferenceError("a waveform needs its sample_rate (Hz)")
        chunk, notes = _checked_waveform(np.asarray(source), int(sample_rate))
        return self._predict_chunks([chunk], "<waveform>", len(chunk) / constants.SAMPLE_RATE, progress, notes)

    def _predict_file(self, path: str, progress: bool) -> Prediction:
        stream = AudioStream(path, chunk_s=self.chunk_s)
        try:
            return self._predict_chunks(stream.chunks(), path, stream.duration_s, progress, ())
        except _BeyondFullScale:
            peak = stream.scan_peak()
            note = (f"{path}: float audio peaks at {peak:.6g} (beyond full scale 1); "
                    f"rescaled by {1.0 / peak:.6g} to peak 1")
            return self._predict_chunks(stream.chunks(), path, stream.duration_s, progress, (note,))

    def _predict_chunks(self, chunks: Iterable[np.ndarray], source: str, duration_s: float | None,
                        progress: bool, notes: tuple) -> Prediction:
        """float32 16 kHz chunks -> Prediction: windows batched through the runner as they complete."""
        window, hop = seconds_to_samples(self.window_s), seconds_to_samples(self.hop_s)
        cutter, starts = WindowCutter(window, hop), []
        bar = _Progress(os.path.basename(source), duration_s,
                        enabled=progress and (duration_s or 0) >= PROGRESS_MIN_S)

        def rows() -> Iterator[np.ndarray]:
            for chunk in chunks:
                for start, row in cutter.push(int16_from_waveform(chunk)):
                    starts.append(start)
                    yield row
                bar.update(cutter.total / constants.SAMPLE_RATE)
            for start, row in cutter.finish():
                starts.append(start)
                yield row

        expected = None if duration_s is None else max(1, int((duration_s - self.window_s) // self.hop_s) + 2)
        outs = list(self.runner.forward_rows(rows(), window, self.runner.batch_rows(window, expected)))
        bar.close(cutter.total / constants.SAMPLE_RATE)
        if starts:
            outputs, ends = np.concatenate(outs), np.asarray(starts) + window
        else:                                   # shorter than one window: one whole-clip row
            outputs, starts, ends = self.runner.embed_clips([cutter.clip]), [0], [cutter.total]
            if self.runner.is_padded(cutter.total):
                notes = notes + (self._padding_note(source, cutter.total),)
        return self._prediction(source, cutter.total, outputs, starts, ends, notes)

    def _padding_note(self, source: str, samples: int) -> str:
        sr = constants.SAMPLE_RATE
        return (f"{source}: {samples / sr:.3f} s of audio is shorter than the student's minimum "
                f"{self.runner.min_samples / sr:.3f} s; zero-padded at the end (approximate result)")

    def _probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """[n, 8] raw outputs -> [n, k] probabilities: softmax at temperature 1, or the head's."""
        if self.head is not None:
            return self.head.predict_proba(outputs)
        return softmax(np.asarray(outputs, np.float64), axis=-1)

    def _prediction(self, source, total, outputs, starts, ends, notes) -> Prediction:
        sr = constants.SAMPLE_RATE
        whole_out = outputs.astype(np.float64).mean(axis=0).astype(np.float32)
        probs = self._probabilities(np.concatenate([outputs, whole_out[None]]))

        def segment(i, start, end, out) -> Segment:
            return Segment(start / sr, end / sr, dict(zip(self.labels, probs[i].tolist())), out)

        rows = tuple(segment(i, s, e, outputs[i]) for i, (s, e) in enumerate(zip(starts, ends)))
        whole = segment(len(rows), 0, total, whole_out)
        return Prediction(source, total / sr, self.labels, rows, whole, tuple(notes))


def _checked_waveform(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, tuple]:
    """An in-memory waveform through load_audio's rules -> (mono float32 at 16 kHz, notes)."""
    if x.dtype == np.int16:
        x = x.astype(np.float32) / np.float32(constants.INT16_SCALE)
    if x.ndim not in (1, 2) or x.shape[0] == 0 or not np.issubdtype(x.dtype, np.floating):
        raise InferenceError(f"<waveform>: expected float samples [n] or [n, channels], got {x.dtype} {x.shape}")
    mono = np.asarray(x.mean(axis=1) if x.ndim == 2 else x, np.float32)
    bad = int(np.count_nonzero(~np.isfinite(mono)))
    if bad:
        raise InferenceError(f"<waveform>: {bad} of {mono.size} samples are not finite (NaN or inf)")
    peak, notes = float(np.max(np.abs(mono))), ()
    if peak > 1.0:
        mono = mono / np.float32(peak)
        notes = (f"<waveform>: float audio peaks at {peak:.6g} (beyond full scale 1); "
                 f"rescaled by {1.0 / peak:.6g} to peak 1",)
    return resample(mono, sample_rate, constants.SAMPLE_RATE), notes


# --------------------------------------------------------------------------------------------------
# Output: table, JSON lines, plot.
# --------------------------------------------------------------------------------------------------

def format_table(prediction: Prediction, window_s: float, hop_s: float) -> str:
    """A readable table: one line per window, then the whole-file line; probabilities in columns."""
    widths = [max(6, len(name)) for name in prediction.labels]
    head = f"{'start_s':>9} {'end_s':>9}  " + " ".join(f"{n:>{w}}" for n, w in zip(prediction.labels, widths)) + "  top"

    def line(first: str, seg: Segment) -> str:
        cells = " ".join(f"{seg.probabilities[n]:>{w}.3f}" for n, w in zip(prediction.labels, widths))
        return f"{first}  {cells}  {seg.top}"

    if prediction.duration_s < window_s:
        what = f"shorter than one {window_s:.3f} s window: one whole-file row"
    else:
        what = f"{len(prediction.windows)} window(s) of {window_s:.3f} s every {hop_s:g} s"
    lines = [f"{prediction.source}: {prediction.duration_s:.2f} s, {what}", head]
    lines += [line(f"{w.start_s:>9.2f} {w.end_s:>9.2f}", w) for w in prediction.windows]
    lines.append(line(f"{'whole file':>19}", prediction.whole))
    return "\n".join(lines)


def plot_path_for(plot: str, source: str, several: bool) -> str:
    """--plot out.png -> out.png for one file, out_<file stem>.png when several files are given."""
    if not several:
        return plot
    root, ext = os.path.splitext(plot)
    stem = os.path.splitext(os.path.basename(source))[0]
    return f"{root}_{stem}{ext or '.png'}"


def plot_prediction(prediction: Prediction, path: str, spans: Sequence[tuple] = ()) -> str:
    """Probabilities over time (one line per label at the window centres) -> image file; returns path.

    spans: optional (start_s, end_s, name) stretches of the file to mark (e.g. what was acted there),
    drawn as shaded bands labelled with the name."""
    from cmemo_jax.metrics.figures import new_figure, save_figure  # matplotlib only when a plot is asked for

    fig = new_figure(8.0, 3.5)
    ax = fig.add_subplot()
    for k, (start, end, name) in enumerate(spans):
        ax.axvspan(start, end, color="0.85" if k % 2 == 0 else "0.92", zorder=0)
        ax.text((start + end) / 2, 0.97, str(name), ha="center", va="top", fontsize=8)
    centres = [(w.start_s + w.end_s) / 2 for w in prediction.windows]
    probs = prediction.probabilities()
    marker = "o" if len(centres) < 30 else None
    for k, name in enumerate(prediction.labels):
        ax.plot(centres, probs[:, k], marker=marker, markersize=3, label=name)
    ax.set_xlim(0, max(prediction.duration_s, 1e-3))
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("probability")
    ax.set_title(os.path.basename(prediction.source))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return save_figure(fig, path)


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m cmemo_jax.predict",
                                     description="Emotion probabilities over time for audio or video files.")
    parser.add_argument("--model", required=True, help="student export (.msgpack)")
    parser.add_argument("--head", default=None, help="probe head from `python -m cmemo_jax.probe fit`")
    parser.add_argument("--hop", type=float, default=DEFAULT_HOP_S, help="seconds between window starts")
    parser.add_argument("--window", type=float, default=constants.CROP_SECONDS, help="window length (s)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument("--plot", default=None, help="PNG of probabilities over time (suffixed per file)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress line on stderr for long files (default: when stderr is a terminal)")
    parser.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args(argv)
    if not args.hop > 0:
        parser.error(f"--hop must be > 0, got {args.hop}")
    return args


def _report(prediction: Prediction, args, several: bool, out) -> None:
    for note in prediction.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        for record in prediction.records():
            out.write(json.dumps(record) + "\n")
    else:
        out.write(format_table(prediction, args.window, args.hop) + "\n\n")
    out.flush()
    if args.plot:
        written = plot_prediction(prediction, plot_path_for(args.plot, prediction.source, several))
        print(f"wrote {written}", file=sys.stderr)


def main(argv=None) -> int:
    """CLI entry point (module docstring); returns the exit status: 0 all files done, 1 some file
    failed, 2 the model or head could not be used."""
    args = _parse_args(argv)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    try:
        predictor = Predictor.load(args.model, head=args.head, window_s=args.window, hop_s=args.hop)
    except CmemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    status = 0
    for path in args.files:
        try:
            prediction = predictor(path, progress=progress)
        except CmemoError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        _report(prediction, args, len(args.files) > 1, sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
