"""The VGGVox spectrogram front-end in jax.numpy (docs/method.md §2).

Recipe (checked against the authors' MatConvNet code and the VGGVox code):

1. float waveform in [-1, 1], 16 kHz mono, scaled by 2**15 (int16 units, as MATLAB's VGGVox does);
2. DC removal ``y[n] = x[n] - x[n-1] + 0.99 y[n-1]`` (``scipy.signal.lfilter([1, -1], [1, -0.99], x)``,
   zero initial state); optional dither ``dither_scale * std(y) * (u1 + u2 - 1)``, u ~ U[0, 1);
3. pre-emphasis ``z[n] = y[n] - 0.97 y[n-1]`` (``z[0] = y[0]``); frames of 400 samples (25 ms), hop 160
   (10 ms), no padding: ``n_frames = floor((L - 400) / 160) + 1``; symmetric Hamming window;
4. ``abs(fft(frame, 512))``: all 512 bins (the upper half mirrors the lower), magnitude, not power, not log;
5. per frequency bin, subtract the mean over time and divide by the std (N - 1) over time.

4.024 s = 64,384 samples gives exactly [512, 400].

Everything is shape-static, so the functions jit, vmap and accept any leading batch dimensions.
The two sequential parts of the recipe are written so that accelerators run them well:

* the DC-removal IIR is a blocked recurrence (a Toeplitz matmul inside 128-sample blocks plus a
  short, float32-exact sum over the block carries) instead of a 64k-step ``lax.scan``;
* framing uses reshapes and slices (no gather), and the DFT is either ``jnp.fft`` (``dft="fft"``) or
  a single [400, 512] matmul (``dft="matmul"``, for TPUs, which run FFTs poorly).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cmemo_jax.constants import (FFT_SIZE, HOP_SAMPLES, INT16_SCALE, SAMPLE_RATE, WINDOW_SAMPLES,
                                 num_spectrogram_frames)

__all__ = [
    "spectrogram",
    "spectrogram_from_int16",
    "magnitude_spectrogram",
    "normalize_spectrogram",
    "waveform_from_int16",
    "num_frames",
    "DC_ALPHA",
    "PREEMPHASIS",
]

DC_ALPHA = 0.99          # pole of the DC-removal filter at 16 kHz (VGGVox rm_dc_n_dither).
PREEMPHASIS = 0.97       # pre-emphasis coefficient.
_IIR_BLOCK = 128         # block length of the blocked IIR; 0.99**128 = 0.28, carries stay well scaled.
_HALF = FFT_SIZE // 2    # 256: bins 0..256 are unique for a real frame, 257..511 mirror 255..1.
_DFTS = ("fft", "matmul")
# Epsilon added to the per-bin std (units: int16-scaled FFT magnitude). Real audio has per-bin stds of
# order 1..1e5 in these units, so it changes nothing there; it only keeps silence finite (0 / eps = 0).
DEFAULT_EPS = 1e-5


def waveform_from_int16(audio_int16) -> jnp.ndarray:
    """int16 PCM (as stored in our records) -> float32 waveform in [-1, 1).

    Args:
      audio_int16: integer array [..., num_samples] in int16 units.
    Returns:
      float32 jnp array of the same shape, ``audio_int16 / 32768``.
    """
    return jnp.asarray(audio_int16).astype(jnp.float32) / jnp.float32(INT16_SCALE)


def num_frames(num_samples: int) -> int:
    """Frames of the no-padding framing: ``floor((L - 400) / 160) + 1``; needs L >= 400."""
    if num_samples < WINDOW_SAMPLES:
        raise ValueError(
            f"the spectrogram needs at least {WINDOW_SAMPLES} samples (25 ms at 16 kHz), got {num_samples}")
    return num_spectrogram_frames(num_samples)


# ----------------------------------------------------------------------------------------------------
# Constant matrices, built once in float64 with numpy and then cast to float32.
# ----------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _iir_matrices(block: int, alpha: float):
    """Matrices of the blocked first-order IIR ``y[n] = d[n] + alpha y[n-1]``.

    Returns (toeplitz_t [B, B], carry_gain [B], block_gain scalar):
      * ``toeplitz_t[j, i] = alpha**(i - j)`` for i >= j else 0, so ``d_block @ toeplitz_t`` is the
        zero-initial-state response inside the block;
      * ``carry_gain[i] = alpha**(i + 1)``: how the previous block's last output leaks into sample i;
      * ``block_gain = alpha**B``: how a block's carry decays across one whole block.
    """
    i = np.arange(block)
    lag = i[None, :] - i[:, None]                     # [j, i] -> i - j
    toeplitz_t = np.where(lag >= 0, alpha ** np.maximum(lag, 0), 0.0)
    carry_gain = alpha ** (i + 1.0)
    return (toeplitz_t.astype(np.float32), carry_gain.astype(np.float32), float(alpha ** block))


def _carry_terms(block_gain: float, rel_tol: float = 2.0 ** -40) -> int:
    """Number of terms m = 0..M-1 of ``sum_m block_gain**m e_{k-m}`` whose tail is below rel_tol."""
    return max(1, int(np.ceil(np.log(rel_tol) / np.log(block_gain))))


@functools.lru_cache(maxsize=None)
def _hamming() -> np.ndarray:
    """Symmetric Hamming window ``0.54 - 0.46 cos(2 pi n / (N - 1))`` (MATLAB ``hamming``), float64 [400]."""
    n = np.arange(WINDOW_SAMPLES)
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * n / (WINDOW_SAMPLES - 1))


@functools.lru_cache(maxsize=None)
def _dft_matrix() -> np.ndarray:
    """Windowed real-DFT matrix [400, 512] float32 for the zero-padded 512-point DFT.

    Columns 0..256 are ``w[n] cos(2 pi k n / 512)`` for k = 0..256 (real parts); columns 257..511 are
    ``w[n] sin(2 pi k n / 512)`` for k = 1..255 (minus the imaginary parts). The sines of k = 0 and
    k = 256 vanish at every integer n, so exactly 512 columns hold the whole half spectrum: one
    MXU-friendly [400, 512] matmul per frame. The window is folded in, so frames go in unwindowed.
    Zero padding 400 -> 512 needs no rows: the padded samples multiply nothing.
    """
    n = np.arange(WINDOW_SAMPLES, dtype=np.float64)[:, None]
    k_cos = np.arange(_HALF + 1, dtype=np.float64)[None, :]
    k_sin = np.arange(1, _HALF, dtype=np.float64)[None, :]
    w = _hamming()[:, None]
    cos = w * np.cos(2.0 * np.pi * n * k_cos / FFT_SIZE)
    sin = w * np.sin(2.0 * np.pi * n * k_sin / FFT_SIZE)
    return np.concatenate([cos, sin], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Steps of the recipe.
# ----------------------------------------------------------------------------------------------------

def _remove_dc(x: jnp.ndarray, alpha: float = DC_ALPHA) -> jnp.ndarray:
    """DC removal ``y[n] = x[n] - x[n-1] + alpha y[n-1]`` with x[-1] = y[-1] = 0, along the last axis.

    Equal to ``scipy.signal.lfilter([1, -1], [1, -alpha], x)``. A plain ``lax.scan`` would be 64k
    sequential steps per 4 s clip, so the recurrence is split into 128-sample blocks:
      1. inside each block, the zero-state response is a [128, 128] lower-triangular Toeplitz matmul;
      2. the state carried out of block k, ``c_k = e_k + alpha**128 c_{k-1}`` (e_k: the block's last
         zero-state output), is itself a first-order recurrence over L/128 blocks; its gain
         0.99**128 = 0.28 decays so fast that ~22 terms of ``sum_m 0.28**m e_{k-m}`` are exact to
         float32 (the neglected tail weighs < 2**-40);
      3. each sample then adds its decayed share ``alpha**(i+1) c_{k-1}`` of the previous carry.
    Each output sums at most 128 terms plus one carry, so float32 keeps ~1e-6 relative accuracy.
    """
    *lead, length = x.shape
    d = x - jnp.pad(x, [(0, 0)] * len(lead) + [(1, 0)])[..., :length]   # x[n] - x[n-1], x[-1] = 0
    n_blocks = -(-length // _IIR_BLOCK)
    # Zero padding at the end is harmless: the filter is causal, the extra outputs are dropped.
    d = jnp.pad(d, [(0, 0)] * len(lead) + [(0, n_blocks * _IIR_BLOCK - length)])
    d = d.reshape(*lead, n_blocks, _IIR_BLOCK)
    toeplitz_t, carry_gain, block_gain = _iir_matrices(_IIR_BLOCK, alpha)
    # HIGHEST: accelerators would otherwise run float32 matmuls in bf16/tf32 (~1e-3 relative error).
    y_local = jnp.matmul(d, jnp.asarray(toeplitz_t), precision=jax.lax.Precision.HIGHEST)
    ends = y_local[..., -1]                                              # [..., n_blocks]
    # c_k = sum_m block_gain**m e_{k-m}. block_gain = 0.99**128 = 0.28, so the terms with m >= 22
    # weigh < 2**-40, far below float32 resolution: a short sum of shifted copies is the exact
    # recurrence to float32 precision, 22 cheap fused elementwise ops on [..., L / 128] (it compiles
    # ~4x faster than lax.associative_scan and needs no sequential loop).
    n_terms = min(_carry_terms(block_gain), n_blocks)
    carries = ends
    for m in range(1, n_terms):
        shifted = jnp.pad(ends, [(0, 0)] * len(lead) + [(m, 0)])[..., :n_blocks]
        carries = carries + (block_gain ** m) * shifted
    # Block k starts from the carry of block k - 1 (zero before the first block).
    prev = jnp.pad(carries, [(0, 0)] * len(lead) + [(1, 0)])[..., :n_blocks]
    y = y_local + prev[..., None] * jnp.asarray(carry_gain)
    return y.reshape(*lead, n_blocks * _IIR_BLOCK)[..., :length]


def _preemphasis(y: jnp.ndarray, coef: float = PREEMPHASIS) -> jnp.ndarray:
    """``z[n] = y[n] - coef y[n-1]`` with ``z[0] = y[0]`` (MATLAB ``filter([1 -coef], 1, y)``)."""
    return jnp.concatenate([y[..., :1], y[..., 1:] - coef * y[..., :-1]], axis=-1)


def _frames(z: jnp.ndarray) -> jnp.ndarray:
    """[..., L] -> [..., n_frames, 400] frames, hop 160, no padding.

    A window of 400 = 160 + 160 + 80 samples starting at f * 160 is hop-block f, block f + 1 and the
    first half of block f + 2. Slicing a [n_blocks, 160] reshape avoids a gather (slow on TPU).
    """
    *lead, length = z.shape
    n = num_frames(length)
    n_blocks = n + 2
    pad = n_blocks * HOP_SAMPLES - length
    if pad > 0:   # only ever read by the unused tail of the last block pair; zeros are fine.
        z = jnp.pad(z, [(0, 0)] * len(lead) + [(0, pad)])
    else:
        z = z[..., : n_blocks * HOP_SAMPLES]
    blocks = z.reshape(*lead, n_blocks, HOP_SAMPLES)
    tail = WINDOW_SAMPLES - 2 * HOP_SAMPLES                             # 80
    return jnp.concatenate(
        [blocks[..., :n, :], blocks[..., 1:n + 1, :], blocks[..., 2:n + 2, :tail]], axis=-1)


def _half_spectrum_fft(frames: jnp.ndarray) -> jnp.ndarray:
    """|DFT_512| bins 0..256 of windowed, zero-padded frames via ``jnp.fft.rfft``: [..., T, 257]."""
    windowed = frames * jnp.asarray(_hamming(), dtype=frames.dtype)
    return jnp.abs(jnp.fft.rfft(windowed, n=FFT_SIZE, axis=-1))


def _half_spectrum_matmul(frames: jnp.ndarray) -> jnp.ndarray:
    """|DFT_512| bins 0..256 as one [400, 512] matmul (see ``_dft_matrix``): [..., T, 257]."""
    out = jnp.matmul(frames, jnp.asarray(_dft_matrix()), precision=jax.lax.Precision.HIGHEST)
    re = out[..., : _HALF + 1]
    im = out[..., _HALF + 1:]
    # Imaginary parts of bins 0 and 256 are exactly zero for a real frame.
    im = jnp.pad(im, [(0, 0)] * (im.ndim - 1) + [(1, 1)])
    return jnp.sqrt(re * re + im * im)


def _check_input(waveform, sample_rate: int, dft: str) -> jnp.ndarray:
    if sample_rate != SAMPLE_RATE:
        raise ValueError(
            f"the VGGVox front-end runs at {SAMPLE_RATE} Hz, got sample_rate={sample_rate}: resample on "
            "the host first (cmemo_jax.audio.load_audio(path) or cmemo_jax.audio.resample(x, sr, 16000))")
    if dft not in _DFTS:
        raise ValueError(f"dft must be one of {_DFTS}, got {dft!r}")
    waveform = jnp.asarray(waveform)
    if not jnp.issubdtype(waveform.dtype, jnp.floating):
        raise TypeError(
            f"expected a float waveform in [-1, 1], got dtype {waveform.dtype}; for int16 PCM use "
            "cmemo_jax.audio.waveform_from_int16 first")
    if waveform.ndim < 1 or waveform.shape[-1] < WINDOW_SAMPLES:
        raise ValueError(
            f"the spectrogram needs at least {WINDOW_SAMPLES} samples (25 ms at 16 kHz) on the last axis, "
            f"got shape {tuple(waveform.shape)}")
    return waveform.astype(jnp.float32)


# The public functions are jitted internally: called eagerly (e.g. in predict), op-by-op dispatch of
# the blocked IIR and the framing would be several times slower. Inside a caller's jit this is simply
# inlined. Input checks run before it, on static shapes and dtypes.
@functools.partial(jax.jit, static_argnames=("dither_scale", "dft", "normalize", "eps"))
def _core(x, dither_key, *, dither_scale: float, dft: str, normalize: bool, eps: float) -> jnp.ndarray:
    """Checked float32 waveform [..., L] -> [..., 512, n_frames] (normalised when `normalize`)."""
    y = _remove_dc(x * INT16_SCALE)
    if dither_key is not None:
        # VGGVox dithers after DC removal, scaled by the std of the filtered signal; u1 + u2 - 1 is
        # triangular on (-1, 1). The std is per example: over the sample axis only.
        k1, k2 = jax.random.split(dither_key)
        tri = (jax.random.uniform(k1, y.shape, y.dtype) + jax.random.uniform(k2, y.shape, y.dtype) - 1.0)
        y = y + dither_scale * jnp.std(y, axis=-1, keepdims=True) * tri
    z = _preemphasis(y)
    frames = _frames(z)                                                  # [..., T, 400]
    half = _half_spectrum_fft(frames) if dft == "fft" else _half_spectrum_matmul(frames)  # [..., T, 257]
    # Transpose the unique half (not the mirrored whole) to bins-first: the mirror is then a copy of
    # whole rows, and the one transpose moves half the data (-5 ms of ~57 for 64 clips on CPU).
    half = jnp.swapaxes(half, -1, -2)                                     # [..., 257, T]
    if normalize:
        # Normalising per bin commutes with mirroring (a mirrored bin holds the same values), so
        # normalise the unique half over time and mirror last.
        half = _normalize(half, -1, eps)
    return _mirror_bins(half)


def _mirror_bins(half: jnp.ndarray) -> jnp.ndarray:
    """[..., 257, T] -> [..., 512, T].

    A real frame's spectrum is conjugate-symmetric, |X[512 - k]| = |X[k]|, so bins 257..511 are bins
    255..1 reversed: computing (and normalising) only half and mirroring at the end halves that work.
    """
    return jnp.concatenate([half, half[..., _HALF - 1:0:-1, :]], axis=-2)


def magnitude_spectrogram(waveform, *, sample_rate: int = SAMPLE_RATE, dither_key=None,
                          dither_scale: float = 1e-6, dft: str = "fft") -> jnp.ndarray:
    """Un-normalised VGGVox magnitude spectrogram (steps 1-4 of the recipe).

    Args:
      waveform: float array [..., num_samples] in [-1, 1] at 16 kHz; num_samples >= 400.
      sample_rate: must be 16000 (resample on the host otherwise).
      dither_key: a ``jax.random`` key to add dither (training); None (default) adds none, so the
        output is deterministic (evaluation).
      dither_scale: dither amplitude relative to the std of the DC-removed signal.
      dft: "fft" (``jnp.fft``) or "matmul" (a [400, 512] DFT matmul; for TPUs).
    Returns:
      float32 [..., 512, n_frames], ``|FFT_512|`` of Hamming-windowed frames of the int16-scaled,
      DC-removed, pre-emphasised signal; ``n_frames = floor((num_samples - 400) / 160) + 1``;
      bin k is frequency ``k * 16000 / 512`` Hz (k > 256 mirror 512 - k); frame t starts at ``t * 10`` ms.
    """
    x = _check_input(waveform, sample_rate, dft)
    return _core(x, dither_key, dither_scale=float(dither_scale), dft=dft, normalize=False, eps=0.0)


def _normalize(spec: jnp.ndarray, axis: int, eps: float) -> jnp.ndarray:
    """Subtract the mean and divide by the (N - 1) std + eps along the time axis `axis`."""
    n = spec.shape[axis]
    mean = jnp.mean(spec, axis=axis, keepdims=True)
    centred = spec - mean
    # One frame has no (N - 1) std: clamp the divisor to 1; the centred frame is all zeros anyway.
    var = jnp.sum(centred * centred, axis=axis, keepdims=True) / max(n - 1, 1)
    return centred / (jnp.sqrt(var) + eps)


def normalize_spectrogram(spec: jnp.ndarray, eps: float = DEFAULT_EPS) -> jnp.ndarray:
    """Per frequency bin, subtract the mean over time and divide by the std (N - 1) over time.

    Args:
      spec: [..., freq, n_frames].
      eps: added to the std so silent bins give 0 instead of NaN.
    Returns:
      float32 [..., freq, n_frames]. With a single frame the (N - 1) std is undefined; the
      denominator is clamped to 1 there, and the output is all zeros (the frame minus itself).
    """
    return _normalize(jnp.asarray(spec, jnp.float32), -1, eps)


def spectrogram(waveform, *, sample_rate: int = SAMPLE_RATE, dither_key=None, dither_scale: float = 1e-6,
                dft: str = "fft", eps: float = DEFAULT_EPS) -> jnp.ndarray:
    """The VGGVox spectrogram: the student network's input (docs/method.md §2).

    Args:
      waveform: float array [..., num_samples] in [-1, 1], mono, 16 kHz; num_samples >= 400. Leading
        dimensions are batch dimensions; each example is normalised on its own.
      sample_rate: must be 16000; other rates raise ValueError (resample on the host with
        ``cmemo_jax.audio.load_audio`` / ``resample``).
      dither_key: ``jax.random`` key to add VGGVox dither (training); None = no dither (deterministic).
      dither_scale: dither amplitude relative to the std of the DC-removed signal (1e-6 in VGGVox).
      dft: "fft" or "matmul" (DFT as a [400, 512] matmul, for TPUs); they agree within float tolerance.
      eps: added to the per-bin std so silence gives zeros rather than NaN.
    Returns:
      float32 jnp array [..., 512, n_frames], ``n_frames = floor((num_samples - 400) / 160) + 1``
      (64,384 samples = 4.024 s -> [512, 400]); per-bin zero mean and unit (N - 1) std over time.
    """
    x = _check_input(waveform, sample_rate, dft)
    return _core(x, dither_key, dither_scale=float(dither_scale), dft=dft, normalize=True, eps=float(eps))


def spectrogram_from_int16(audio_int16, *, dft: str = "fft", dither_key=None) -> jnp.ndarray:
    """`[batch, samples]` int16 PCM at 16 kHz -> `[batch, 512, frames]` normalised spectrogram.

    The one front-end path of training, evaluation, embedding and prediction: what the records
    store (int16) goes in, what the Student takes comes out.
    """
    return spectrogram(waveform_from_int16(audio_int16), sample_rate=SAMPLE_RATE, dither_key=dither_key, dft=dft)
