"""Audio: host-side waveform I/O (decode, check, mono, resample to 16 kHz) and the VGGVox spectrogram (jnp).

``load_audio`` / ``resample`` / ``int16_from_waveform`` run on the host with numpy; ``spectrogram`` is
jax.numpy (jit-able, batched). The rules for bad audio (truncated, NaN / inf, beyond full scale) are in
the docstring of cmemo_jax.audio.io. Nothing here imports tensorflow.
"""
from cmemo_jax.audio.frontend import (
    magnitude_spectrogram,
    normalize_spectrogram,
    num_frames,
    spectrogram,
    waveform_from_int16,
)
from cmemo_jax.audio.io import AudioCheck, AudioDecodeError, int16_from_waveform, load_audio, resample

__all__ = [
    "AudioCheck",
    "AudioDecodeError",
    "int16_from_waveform",
    "load_audio",
    "magnitude_spectrogram",
    "normalize_spectrogram",
    "num_frames",
    "resample",
    "spectrogram",
    "waveform_from_int16",
]
