"""Waveform I/O on the host: decode, check, down-mix to mono, resample to 16 kHz (numpy, no jax math).

* wav / flac / ogg / aiff are decoded with soundfile (libsndfile);
* anything else (mp4, avi, mkv, m4a, mp3, webm, ...) through PyAV (FFmpeg), e.g. the audio tracks of
  the RML and eNTERFACE'05 videos. A file soundfile cannot read is also retried with PyAV.
* several channels are averaged to mono, or one is picked with ``channel`` (0 = left);
* resampling uses soxr at high quality ("HQ").

Every failure to get audio out of a file raises :class:`AudioDecodeError` (a ``ValueError``) with a
one-line message that names the file and what went wrong.

Rules for bad audio (applied by ``load_audio`` in this order, whatever the reader; every entry point --
records tool, training data, labelling, evaluation, prediction -- decodes through it):

1. missing file, undecodable data, no audio stream, no samples, a channel the file lacks: rejected.
2. truncated file: the header promises more frames than the file holds -> rejected, naming both counts.
   The promise is read from the header by ``header_frames``: the WAV 'data' chunk size / block align
   (PCM, IEEE float, A-law, mu-law), the AIFF 'COMM' frame count, the FLAC STREAMINFO total. Our own
   parse because libsndfile silently returns the shorter data of a truncated WAV/AIFF and reports
   that shorter count as the file's length. Headers that declare an unknown length (0, or >= 0x7FFFF000
   bytes as streaming writers leave them), RF64, compressed WAV codecs, OGG and PyAV-only containers
   (whose headers carry only duration estimates) are not checked.
3. NaN or inf in the samples used (the chosen channel, or the mix): rejected with the count.
4. float audio beyond full scale (peak |x| > 1, e.g. float wavs at +-5; integer PCM cannot exceed 1):
   rescaled by 1 / peak so that the peak is 1, not clipped, and reported (``AudioCheck.warnings`` with
   ``return_info=True``, and a ``logging`` warning). Why rescale rather than reject: such files are
   unnormalised float exports whose content is fine, and the front-end normalises every frequency bin
   per utterance (mean and std over time), so a global gain does not change the spectrogram; clipping
   would distort it.
5. resampling may overshoot [-1, 1] slightly (filter ringing); ``int16_from_waveform`` clips those.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import struct

import numpy as np

from cmemo_jax.constants import INT16_SCALE, SAMPLE_RATE
from cmemo_jax.errors import CmemoError

__all__ = ["AudioCheck", "AudioDecodeError", "header_frames", "int16_from_waveform", "load_audio", "resample"]

logger = logging.getLogger(__name__)

# Extensions libsndfile reads natively; everything else goes to PyAV first.
SOUNDFILE_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".au"})

# WAV format tags whose data chunk is whole frames of block_align bytes (PCM, IEEE float, A-law, mu-law).
_FRAME_FORMAT_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007})
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# Streaming writers leave 0 or a huge placeholder as the data size: length unknown, nothing to check.
_UNKNOWN_SIZE = 0x7FFFF000
_MAX_CHUNKS = 256  # header chunks walked before giving up (a corrupt size field must not spin forever)


class AudioDecodeError(CmemoError, ValueError):
    """A file could not be decoded into usable audio (missing, unreadable, no audio, empty, truncated,
    non-finite samples)."""


@dataclasses.dataclass(frozen=True)
class AudioCheck:
    """What ``load_audio(..., return_info=True)`` found and repaired in one file.

    Attributes:
      path: the file.
      source_sample_rate: the file's rate in Hz (before resampling).
      channels: channels in the file.
      frames: frames decoded at the source rate.
      header_frames: frames the header promises (None where unknown / unchecked).
      peak: max |x| of the used samples before any repair (float, full scale = 1).
      gain: factor applied to the samples (1.0: untouched; 1 / peak after a rescale).
      warnings: one line per repair, each naming the file.
    """
    path: str
    source_sample_rate: int
    channels: int
    frames: int
    header_frames: int | None
    peak: float
    gain: float = 1.0
    warnings: tuple[str, ...] = ()

    @property
    def repaired(self) -> bool:
        return bool(self.warnings)


def _one_line(err: BaseException) -> str:
    """An exception as a single line: its type and its first message line."""
    text = " ".join(str(err).split()) or "no details"
    return f"{type(err).__name__}: {text}"


def int16_from_waveform(waveform) -> np.ndarray:
    """float waveform in [-1, 1] -> int16 PCM: ``round(x * 32768)`` clipped to [-32768, 32767].

    The inverse of ``frontend.waveform_from_int16`` (exact for int16 / 32768 inputs); the clip only
    touches resampling overshoot (rule 5 of the module docstring).
    Args:
      waveform: float array [..., num_samples].
    Returns:
      int16 numpy array of the same shape.
    """
    # float32 is exact here: scaling by 2**15 only shifts the exponent, and int16 fits in 24 mantissa bits.
    x = np.round(np.asarray(waveform, dtype=np.float32) * np.float32(INT16_SCALE))
    return np.clip(x, -INT16_SCALE, INT16_SCALE - 1).astype(np.int16)


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


def _wav_frames(fh) -> int | None:
    """Frames a RIFF/WAVE header promises (data size // block align), fh just past 'RIFF....WAVE'."""
    tag = block_align = None
    for _ in range(_MAX_CHUNKS):
        head = fh.read(8)
        if len(head) < 8:
            return None
        cid, size = head[:4], struct.unpack("<I", head[4:])[0]
        if cid == b"fmt ":
            body = fh.read(min(size, 1024))
            if len(body) < 14:
                return None
            tag, _, _, _, block_align = struct.unpack("<HHIIH", body[:14])
            if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the SubFormat GUID
            fh.seek(size + (size & 1) - len(body), 1)
        elif cid == b"data":
            if tag not in _FRAME_FORMAT_TAGS or not block_align or size == 0 or size >= _UNKNOWN_SIZE:
                return None
            return size // block_align
        else:
            fh.seek(size + (size & 1), 1)  # chunks are padded to even sizes
    return None


def _aiff_frames(fh) -> int | None:
    """numSampleFrames of the AIFF/AIFC 'COMM' chunk, fh just past 'FORM....AIFF'."""
    for _ in range(_MAX_CHUNKS):
        head = fh.read(8)
        if len(head) < 8:
            return None
        cid, size = head[:4], struct.unpack(">I", head[4:])[0]
        if cid == b"COMM":
            body = fh.read(6)
            return struct.unpack(">I", body[2:6])[0] if len(body) == 6 else None
        fh.seek(size + (size & 1), 1)
    return None


def _flac_frames(fh) -> int | None:
    """Total samples per channel of the FLAC STREAMINFO block (None when it says 0 = unknown)."""
    block = fh.read(4 + 34)  # block header, then STREAMINFO (always the first metadata block)
    if len(block) < 38 or block[0] & 0x7F != 0:
        return None
    # Bytes 10..17 of STREAMINFO: sample rate (20 bits), channels-1 (3), bits-1 (5), total samples (36).
    total = struct.unpack(">Q", block[4 + 10:4 + 18])[0] & ((1 << 36) - 1)
    return total or None


def header_frames(path: str) -> int | None:
    """Frames per channel the file's header promises (rule 2 of the module docstring), None if unknown."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(12)
            if magic[:4] == b"RIFF" and magic[8:12] == b"WAVE":
                return _wav_frames(fh)
            if magic[:4] == b"FORM" and magic[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_frames(fh)
            if magic[:4] == b"fLaC":
                fh.seek(4)
                return _flac_frames(fh)
    except (OSError, struct.error):
        return None
    return None


def _decode(path: str) -> tuple[np.ndarray, int]:
    """-> (float32 [num_samples, channels], sample rate) with the reader the extension calls for."""
    ext = os.path.splitext(path)[1].lower()
    if ext in SOUNDFILE_EXTENSIONS:
        try:
            return _read_soundfile(path)
        except Exception as sf_err:  # noqa: BLE001 - libsndfile raises several types; retry with FFmpeg
            try:
                return _read_pyav(path)
            except Exception:  # noqa: BLE001 - report libsndfile's reason: it is this format's reader
                raise AudioDecodeError(f"{path}: cannot decode audio ({_one_line(sf_err)})") from sf_err
    try:
        return _read_pyav(path)
    except AudioDecodeError:
        raise
    except Exception as av_err:  # noqa: BLE001 - av.error.* and OSError alike
        raise AudioDecodeError(f"{path}: cannot decode audio ({_one_line(av_err)})") from av_err


def _pick_channel(path: str, data: np.ndarray, channel: int | None) -> np.ndarray:
    """[num_samples, channels] -> float32 [num_samples]: the channel average, or one channel."""
    n_channels = data.shape[1]
    if channel is None:
        mono = data.mean(axis=1) if n_channels > 1 else data[:, 0]
    else:
        if not -n_channels <= channel < n_channels:
            raise AudioDecodeError(f"{path}: channel {channel} requested but the audio has {n_channels} channel(s)")
        mono = data[:, channel]
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_length(path: str, frames: int) -> int | None:
    """Rule 2: AudioDecodeError if the header promises more frames than were decoded; -> the promise."""
    promised = header_frames(path)
    if promised is not None and frames < promised:
        raise AudioDecodeError(f"{path}: truncated file: the header promises {promised} frames, "
                               f"the data holds {frames}")
    return promised


def _check_finite(path: str, mono: np.ndarray) -> None:
    """Rule 3: AudioDecodeError counting the NaN / inf samples (never hand them on)."""
    bad = int(np.count_nonzero(~np.isfinite(mono)))
    if bad:
        raise AudioDecodeError(f"{path}: {bad} of {mono.size} samples are not finite (NaN or inf)")


def _rescale_over_full_scale(path: str, mono: np.ndarray) -> tuple[np.ndarray, float, float, tuple[str, ...]]:
    """Rule 4: -> (samples, peak before, gain applied, warnings); peak > 1 is divided down to exactly 1."""
    peak = float(np.max(np.abs(mono)))
    if peak <= 1.0:
        return mono, peak, 1.0, ()
    note = (f"{path}: float audio peaks at {peak:.6g} (beyond full scale 1); "
            f"rescaled by {1.0 / peak:.6g} to peak 1")
    logger.warning(note)
    return mono / np.float32(peak), peak, 1.0 / peak, (note,)


def load_audio(path, sample_rate: int = SAMPLE_RATE, channel: int | None = None, *,
               return_info: bool = False):
    """Decode an audio or video file into a checked mono float32 waveform at `sample_rate`.

    Args:
      path: file path (str or os.PathLike). wav/flac/ogg/aiff go through soundfile, any other
        container (mp4, avi, mkv, m4a, mp3, ...) through PyAV (its first audio stream).
      sample_rate: output rate in Hz (16 kHz, the front-end's rate, by default).
      channel: None averages all channels to mono; an int picks that channel (0 = left, as the
        RML / eNTERFACE'05 protocol uses).
      return_info: also return the :class:`AudioCheck` (source rate, frame counts, peak, repairs), so
        batch tools can list the files that were repaired.
    Returns:
      float32 numpy array [num_samples] in [-1, 1] (resampling may overshoot slightly); with
      return_info, the tuple (waveform, AudioCheck).
    Raises:
      AudioDecodeError: the file is missing, cannot be decoded, has no audio stream, holds no samples,
        lacks the requested channel, is truncated, or holds NaN / inf samples (module docstring rules).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioDecodeError(f"{path}: no such file")
    data, sr = _decode(path)
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path}: the file holds no audio samples")
    promised = _check_length(path, data.shape[0])
    mono = _pick_channel(path, data, channel)
    _check_finite(path, mono)
    mono, peak, gain, notes = _rescale_over_full_scale(path, mono)
    out = resample(mono, sr, sample_rate)
    if not return_info:
        return out
    return out, AudioCheck(path=path, source_sample_rate=sr, channels=data.shape[1], frames=data.shape[0],
                           header_frames=promised, peak=peak, gain=gain, warnings=notes)
