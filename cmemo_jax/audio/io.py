"""Waveform I/O on the host: decode, down-mix to mono, resample to 16 kHz (numpy only, no jax).

* wav / flac / ogg / aiff are decoded with soundfile (libsndfile);
* anything else (mp4, avi, mkv, m4a, mp3, webm, ...) through PyAV (FFmpeg), e.g. the audio tracks of
  the RML and eNTERFACE'05 videos. A file soundfile cannot read is also retried with PyAV.
* several channels are averaged to mono, or one is picked with ``channel`` (0 = left);
* resampling uses soxr at high quality ("HQ").

Every failure to get audio out of a file raises :class:`AudioDecodeError` (a ``ValueError``) with a
one-line message that names the file and what went wrong.
"""
from __future__ import annotations

import os

import numpy as np

from cmemo_jax.constants import SAMPLE_RATE

__all__ = ["AudioDecodeError", "load_audio", "resample"]

# Extensions libsndfile reads natively; everything else goes to PyAV first.
SOUNDFILE_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au"})


class AudioDecodeError(ValueError):
    """A file could not be decoded into audio samples (missing, unreadable, no audio, empty)."""


def _one_line(err: BaseException) -> str:
    """An exception as a single line: its type and its first message line."""
    text = " ".join(str(err).split()) or "no details"
    return f"{type(err).__name__}: {text}"


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample with soxr (high quality), along the first axis.

    Args:
      waveform: float array [num_samples] or [num_samples, channels].
      orig_sr: sample rate of `waveform` in Hz.
      target_sr: wanted sample rate in Hz (16 kHz by default).
    Returns:
      float32 array [round(num_samples * target_sr / orig_sr)(, channels)]; a copy of the input when
      the rates are equal.
    """
    if int(orig_sr) <= 0 or int(target_sr) <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sr={orig_sr}, target_sr={target_sr}")
    x = np.asarray(waveform, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return x.copy()
    if x.shape[0] == 0:
        return x.copy()
    import soxr  # imported here so that the module imports without it for callers that never resample

    return np.asarray(soxr.resample(x, int(orig_sr), int(target_sr), quality="HQ"), dtype=np.float32)


def _read_soundfile(path: str) -> tuple[np.ndarray, int]:
    """-> (float32 [num_samples, channels], sample rate) with libsndfile."""
    import soundfile as sf

    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data, int(sr)


def _read_pyav(path: str) -> tuple[np.ndarray, int]:
    """-> (float32 [num_samples, channels], sample rate) of the first audio stream, with PyAV."""
    import av

    with av.open(path) as container:
        if not container.streams.audio:
            raise AudioDecodeError(f"{path}: no audio stream in the file")
        stream = container.streams.audio[0]
        # Convert every decoded frame to planar float32 at the stream's own layout and rate, so that
        # to_ndarray() is always [channels, samples] whatever the codec's native sample format.
        converter = av.AudioResampler(format="fltp")
        chunks = []
        sample_rate = stream.rate or stream.codec_context.sample_rate
        for frame in container.decode(stream):
            sample_rate = frame.sample_rate or sample_rate
            for out in converter.resample(frame):
                chunks.append(out.to_ndarray())
        for out in converter.resample(None):          # flush
            chunks.append(out.to_ndarray())
    if not chunks:
        raise AudioDecodeError(f"{path}: the audio stream holds no samples")
    data = np.concatenate(chunks, axis=1).T            # [num_samples, channels]
    return np.ascontiguousarray(data, dtype=np.float32), int(sample_rate)


def load_audio(path, sample_rate: int = SAMPLE_RATE, channel: int | None = None) -> np.ndarray:
    """Decode an audio or video file into a mono float32 waveform at `sample_rate`.

    Args:
      path: file path (str or os.PathLike). wav/flac/ogg/aiff go through soundfile, any other
        container (mp4, avi, mkv, m4a, mp3, ...) through PyAV (its first audio stream).
      sample_rate: output rate in Hz (16 kHz, the front-end's rate, by default).
      channel: None averages all channels to mono; an int picks that channel (0 = left, as the
        RML / eNTERFACE'05 protocol uses).
    Returns:
      float32 numpy array [num_samples], nominally in [-1, 1] (resampling may overshoot slightly).
    Raises:
      AudioDecodeError: the file is missing, cannot be decoded, has no audio stream, holds no samples,
        or lacks the requested channel.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioDecodeError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext in SOUNDFILE_EXTENSIONS:
        try:
            data, sr = _read_soundfile(path)
        except Exception as sf_err:  # noqa: BLE001 - libsndfile raises several types; retry with FFmpeg
            try:
                data, sr = _read_pyav(path)
            except Exception:  # noqa: BLE001 - report libsndfile's reason: it is this format's reader
                raise AudioDecodeError(f"{path}: cannot decode audio ({_one_line(sf_err)})") from sf_err
    else:
        try:
            data, sr = _read_pyav(path)
        except AudioDecodeError:
            raise
        except Exception as av_err:  # noqa: BLE001 - av.error.* and OSError alike
            raise AudioDecodeError(f"{path}: cannot decode audio ({_one_line(av_err)})") from av_err

    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path}: the file holds no audio samples")
    n_channels = data.shape[1]
    if channel is None:
        mono = data.mean(axis=1) if n_channels > 1 else data[:, 0]
    else:
        if not -n_channels <= channel < n_channels:
            raise AudioDecodeError(f"{path}: channel {channel} requested but the audio has {n_channels} channel(s)")
        mono = data[:, channel]
    return resample(np.ascontiguousarray(mono, dtype=np.float32), sr, sample_rate)
