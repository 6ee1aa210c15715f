"""Labelled evaluation clips (RML, eNTERFACE'05, a user's CSV manifest) and their audio.

Each dataset reader (`rml.py`, `enterface.py`, `manifest.py`) returns ``(clips, problems)``: the
clips it could place in its layout and one line per thing it could not (unexpected file, unknown
emotion code, folder not in the layout), so that a user sees every oddity of their copy at once
instead of the first one as an exception.

Audio is the LEFT channel of the file at 16 kHz, as the authors read the RML / eNTERFACE videos;
decoding is `cmemo_jax.audio.load_audio` (soundfile or PyAV), not repeated here.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from cmemo_jax.constants import EMOTIONS, SAMPLE_RATE

# The six acted emotions of RML and eNTERFACE'05, in the order of EMOTIONS (no neutral, no contempt).
ACTED_EMOTIONS = tuple(e for e in EMOTIONS if e in {"anger", "disgust", "fear", "happiness", "sadness", "surprise"})

# Containers the acted-emotion readers accept as clips (their audio track is read through PyAV).
MEDIA_EXTENSIONS = frozenset({".avi", ".mp4", ".wav"})

# The channel the authors took from the two-channel RML / eNTERFACE recordings (0 = left).
AUDIO_CHANNEL = 0


@dataclasses.dataclass(frozen=True)
class Clip:
    """One labelled clip of an evaluation set.

    path: media file (video or audio); label: emotion name, lower case (for RML / eNTERFACE one of
    ACTED_EMOTIONS; a manifest may use its own names); speaker: speaker id within the dataset ("" if
    unknown); dataset: 'rml', 'enterface' or 'manifest'.
    """
    path: str
    label: str
    speaker: str
    dataset: str


def is_media_file(name: str) -> bool:
    """True for a file name with one of MEDIA_EXTENSIONS (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in MEDIA_EXTENSIONS


def load_clip_audio(clip: Clip) -> np.ndarray:
    """The clip's left channel as float32 [num_samples] at 16 kHz (any input rate / channel count).

    Raises cmemo_jax.audio.AudioDecodeError (naming the file) when no audio can be read.
    """
    from cmemo_jax.audio import load_audio  # keeps the readers importable without the audio stack

    return load_audio(clip.path, sample_rate=SAMPLE_RATE, channel=AUDIO_CHANNEL)


def load_all(clips) -> tuple[list[np.ndarray], list[Clip], list[str]]:
    """Decodes every clip; a clip that cannot be decoded is reported and skipped.

    Returns:
      (waveforms, kept_clips, problems): waveforms[i] is float32 [samples_i] at 16 kHz for
      kept_clips[i]; problems holds one line per skipped clip, naming its file and the reason.
    """
    from cmemo_jax.audio import AudioDecodeError

    waveforms, kept, problems = [], [], []
    for clip in clips:
        try:
            waveforms.append(load_clip_audio(clip))
        except AudioDecodeError as err:
            # load_audio's messages start with the path, like the readers' problems.
            problems.append(f"{err} (skipped {clip.dataset} clip, label {clip.label!r})")
            continue
        kept.append(clip)
    return waveforms, kept, problems


def labels(clips) -> list[str]:
    """[clip.label for clip in clips]."""
    return [c.label for c in clips]


def speakers(clips) -> list[str]:
    """[clip.speaker for clip in clips]."""
    return [c.speaker for c in clips]
