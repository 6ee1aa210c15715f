"""Speakers of the synthetic corpus: persistent identities, their random streams, and the splits.

A speaker's voice (pitch, vocal-tract length, rate, loudness, breathiness, jitter, brightness), face
and personal emotion prior are drawn once from ``(seed, 1, speaker index)``; each track's stream is
``(seed, 2, speaker index, track index)`` and the heard-val draw ``(seed, 3, speaker index)``. So any
track can be generated alone, in any order, in any process, and come out the same.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from cmemo_jax.constants import SPLIT_HEARD_VAL, SPLIT_IDS, SPLIT_TRAIN, SPLIT_UNHEARD_VAL
from cmemo_jax.data.synthetic.config import SyntheticConfig
from cmemo_jax.data.synthetic.faces import draw_face_params

# Seed-sequence tags of the independent random streams (the second entry of every seed sequence),
# all here so that no two uses share a stream: corpus speakers, tracks, heard-val draws, then the
# other synthetic sets (their people are new identities because their streams differ).
_STREAM_SPEAKER, _STREAM_TRACK, _STREAM_SPLIT = 1, 2, 3
STREAM_FERPLUS, STREAM_ACTED = 4, 5


@dataclasses.dataclass(frozen=True)
class Speaker:
    index: int
    identity: str
    unheard: bool
    female: bool
    f0_hz: float            # habitual pitch
    vtl: float              # formant scale (1 = adult male vocal tract; shorter tract -> larger)
    rate_sps: float         # habitual syllables per second
    loudness_db: float
    breath: float           # baseline breathiness (added to the emotion's)
    jitter_st: float
    tilt_db: float          # habitual brightness
    emotion_prior: tuple    # 8 probabilities of an episode's emotion (neutral entry 0)
    expressiveness: float   # share of time spent in emotional episodes
    face: tuple             # face geometry / appearance parameters (see faces.FACE_KEYS)


def speaker_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream a speaker's identity is drawn from."""
    return np.random.default_rng([int(seed), _STREAM_SPEAKER, int(index)])


def track_rng(cfg: SyntheticConfig, speaker: Speaker, track_index: int) -> np.random.Generator:
    """The random stream of one track: a function of (seed, speaker index, track index) only."""
    return np.random.default_rng([int(cfg.seed), _STREAM_TRACK, int(speaker.index), int(track_index)])


def _draw_voice(rng: np.random.Generator) -> dict:
    """Sex and habitual voice of a new identity (Speaker fields, units as there)."""
    female = bool(rng.random() < 0.5)
    return dict(
        female=female,
        f0_hz=float((205.0 if female else 112.0) * math.exp(rng.normal(0.0, 0.13))),
        vtl=float((1.16 if female else 1.0) * math.exp(rng.normal(0.0, 0.045))),
        rate_sps=float(4.6 * math.exp(rng.normal(0.0, 0.13))),
        loudness_db=float(rng.normal(0.0, 2.5)),
        breath=float(rng.uniform(0.0, 0.12) + (0.05 if female else 0.0)),
        jitter_st=float(rng.uniform(0.0, 0.12)),
        tilt_db=float(rng.normal(0.0, 0.7)),
    )


def _draw_temperament(rng: np.random.Generator, cfg: SyntheticConfig) -> dict:
    """A speaker's emotion prior (Dirichlet around cfg.emotion_weights; neutral entry 0) and
    expressiveness (uniform in cfg.emotional_fraction)."""
    w = np.asarray(cfg.emotion_weights, dtype=np.float64)
    w = w / w.sum()
    prior = rng.dirichlet(np.maximum(cfg.prior_concentration * len(w) * w, 1e-3))
    prior = np.concatenate([[0.0], prior])
    lo, hi = cfg.emotional_fraction
    return dict(emotion_prior=tuple(float(p) for p in prior), expressiveness=float(rng.uniform(lo, hi)))


def draw_speaker(rng: np.random.Generator, cfg: SyntheticConfig, index: int, identity: str,
                 unheard: bool) -> Speaker:
    """A new identity from `rng`: voice, then temperament (cfg's emotion priors), then face.

    The draw order is part of the corpus definition: changing it changes every speaker (and needs
    a GENERATOR_VERSION bump). Other synthetic sets pass streams of their own to get new people.
    """
    voice = _draw_voice(rng)
    temperament = _draw_temperament(rng, cfg)
    face = draw_face_params(rng, voice["female"])
    return Speaker(index=index, identity=identity, unheard=unheard, face=face, **voice, **temperament)


def make_speaker(cfg: SyntheticConfig, index: int, unheard: bool) -> Speaker:
    """Corpus speaker `index` (identity 'syn%05d'), drawn from its own stream of cfg.seed."""
    return draw_speaker(speaker_rng(cfg.seed, index), cfg, index, f"syn{index:05d}", unheard)


def generate_speakers(cfg: SyntheticConfig) -> list[Speaker]:
    """All speakers: training identities first (syn00000...), then the unheard ones."""
    n_tr, n_un = cfg.num_train_speakers, cfg.num_unheard_speakers
    return ([make_speaker(cfg, i, False) for i in range(n_tr)]
            + [make_speaker(cfg, n_tr + i, True) for i in range(n_un)])


def split_assignment(cfg: SyntheticConfig, speaker: Speaker) -> np.ndarray:
    """[tracks_per_speaker] int64 split code of each of a speaker's tracks (unheard: all 2; a
    training speaker: 1, with round(heard_val_fraction x n) random ones, at least 1 and at most
    n - 1, set to 3)."""
    n = cfg.tracks_per_speaker
    if speaker.unheard:
        return np.full(n, SPLIT_UNHEARD_VAL, dtype=np.int64)
    n_hv = int(round(cfg.heard_val_fraction * n))
    if cfg.heard_val_fraction > 0 and n >= 2:
        n_hv = max(n_hv, 1)
    n_hv = min(n_hv, n - 1) if n >= 2 else 0
    codes = np.full(n, SPLIT_TRAIN, dtype=np.int64)
    perm = np.random.default_rng([int(cfg.seed), _STREAM_SPLIT, int(speaker.index)]).permutation(n)
    codes[perm[:n_hv]] = SPLIT_HEARD_VAL
    return codes


def split_jobs(cfg: SyntheticConfig, split_name: str) -> list[tuple[int, int, int]]:
    """(speaker index, track index, split code) of every track of a split, in corpus order.

    split_name: 'train' | 'unheard_val' | 'heard_val' (ValueError otherwise).
    """
    if split_name not in SPLIT_IDS:
        raise ValueError(f"unknown split {split_name!r}; expected one of {sorted(SPLIT_IDS)}")
    code = SPLIT_IDS[split_name]
    jobs = []
    for spk in generate_speakers(cfg):
        codes = split_assignment(cfg, spk)
        jobs.extend((spk.index, k, code) for k in range(cfg.tracks_per_speaker) if codes[k] == code)
    return jobs
