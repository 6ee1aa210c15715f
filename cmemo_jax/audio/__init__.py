"""Audio: host-side waveform I/O (decode, mono, resample to 16 kHz) and the VGGVox spectrogram (jnp).

``load_audio`` / ``resample`` run on the host with numpy; ``spectrogram`` is jax.numpy (jit-able,
batched). Nothing here imports tensorflow.
"""
from cmemo_jax.audio.frontend import (
    magnitude_spectrogram,
    normalize_spectrogram,
    num_frames,
    spectrogram,
    waveform_from_int16,
)
from cmemo_jax.audio.io import AudioDecodeError, load_audio, resample

__all__ = [
    "AudioDecodeError",
    "load_audio",
    "magnitude_spectrogram",
    "normalize_spectrogram",
    "num_frames",
    "resample",
    "spectrogram",
    "waveform_from_int16",
]
