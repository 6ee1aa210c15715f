"""The knobs of the synthetic corpus: ``SyntheticConfig`` and its size presets.

Every field enters the cache-directory hash (``corpus.config_hash``), so adding, renaming or
re-defaulting a field renames every user's cached corpus: only do it together with a
``GENERATOR_VERSION`` bump.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the synthetic corpus. Every field enters the cache-directory hash."""

    seed: int = 0
    num_train_speakers: int = 100
    num_unheard_speakers: int = 30
    tracks_per_speaker: int = 30
    heard_val_fraction: float = 0.2      # of each training speaker's tracks, held out as heard-val
    min_track_seconds: float = 4.0
    max_track_seconds: float = 20.0
    face_size: int = 48
    # Frame logits: a * log(expression probs) + N(0, oracle_noise^2), rows centred to mean 0.
    oracle_noise: float = 0.6
    oracle_scale: float = 2.0
    # How sure the oracle is that a neutral (talking) face is neutral; the rest of the mass
    # spreads over the other emotions. Below ~0.7 a strong emotional frame out-scores the neutral
    # frames after max-pooling, as with a real teacher, so clips get non-neutral labels.
    neutral_confidence: float = 0.6
    # Emotion dynamics.
    emotional_fraction: tuple = (0.25, 0.6)   # per-speaker range of the share of time in an episode
    episode_seconds: tuple = (1.0, 4.0)
    min_intensity: float = 0.3
    prior_concentration: float = 1.0     # Dirichlet concentration of the speakers' emotion priors
    track_mood_prob: float = 0.7         # chance an episode repeats the track's dominant emotion
    transition_prob: float = 0.25        # share of episode frames whose face drifts back to neutral
    # Global emotion frequencies (non-neutral, EMOTIONS[1:] order) the speaker priors scatter around.
    emotion_weights: tuple = (0.26, 0.14, 0.15, 0.15, 0.10, 0.10, 0.10)
    # Recording conditions.
    snr_db: tuple = (10.0, 35.0)
    face_noise: float = 5.0              # std of the pixel noise (grey levels)

    @classmethod
    def tiny(cls, **kw) -> "SyntheticConfig":
        """Test size: 6 + 3 speakers, 4 short tracks each (a couple of seconds to generate)."""
        base = dict(num_train_speakers=6, num_unheard_speakers=3, tracks_per_speaker=4,
                    heard_val_fraction=0.25, min_track_seconds=4.0, max_track_seconds=8.0)
        base.update(kw)
        return cls(**base)

    @classmethod
    def demo(cls, **kw) -> "SyntheticConfig":
        """CPU demo size: 40 + 12 speakers, 25 tracks of 4-12 s each (about 3 h of audio)."""
        base = dict(num_train_speakers=40, num_unheard_speakers=12, tracks_per_speaker=25,
                    heard_val_fraction=0.2, min_track_seconds=4.0, max_track_seconds=12.0)
        base.update(kw)
        return cls(**base)

    @classmethod
    def default(cls, **kw) -> "SyntheticConfig":
        """The default corpus (100 + 30 speakers, 30 tracks of 4-20 s: about 13 h of audio)."""
        return cls(**kw)

    def to_dict(self) -> dict:
        """JSON-ready field dict (tuples as lists); the input of the cache hash and of ``from_dict``."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "SyntheticConfig":
        """Inverse of ``to_dict`` (lists back to tuples, so the frozen config stays hashable)."""
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


PRESETS = ("tiny", "demo", "default")


def preset(name: str, **overrides) -> SyntheticConfig:
    """The config of a preset by name ('tiny' | 'demo' | 'default'); ValueError for any other name."""
    if name not in PRESETS:
        raise ValueError(f"unknown synthetic preset {name!r}; expected one of {PRESETS}")
    return getattr(SyntheticConfig, name)(**overrides)
