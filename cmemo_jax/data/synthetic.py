"""Embedded synthetic audio-visual emotion corpus: the package's offline default dataset.

One hidden emotion trajectory per track drives both modalities:

* a rendered 48x48 grey face per 0.24 s frame (EmoVoxCeleb frame rate), whose expression follows the
  hidden emotion and intensity, with "neutral transition frames", pose / illumination jitter and a
  mouth that opens with the speech envelope;
* a synthesised 16 kHz voice (source-filter: Rosenberg glottal pulses with time-varying f0, aspiration
  and fricative noise, moving formants applied by short-time Fourier filtering, spectral tilt,
  background noise), whose prosody (pitch level and range, rate, loudness, brightness, jitter,
  breathiness, pauses, contour shape) follows the same hidden emotion;
* frame logits from a noisy *oracle* on the rendered expression (a stand-in until a real face teacher
  has labelled the faces): ``a * log(expression_probs) + noise``.

Speakers have a persistent identity (pitch, vocal-tract length, rate, loudness, face geometry) and a
personal emotion prior, so identity is a usable shortcut; the heard / unheard validation splits
measure how much a student leans on it.

Everything is numpy/scipy and deterministic: each track's random stream is seeded from
``(seed, speaker index, track index)``, so the same config gives byte-identical tracks in any order and
in any number of worker processes. ``ensure_corpus`` writes the record shards of
``cmemo_jax.data.records`` (TensorFlow is imported only there, lazily).

Public API::

    SyntheticConfig (.tiny(), .demo(), .default())   Speaker   generate_speakers(cfg)
    generate_track(speaker, track_index, split, rng, cfg) -> track dict
    generate_track_with_latents(...) -> (track dict, latents dict)   (face intensity, transition flags...)
    track_rng(cfg, speaker, track_index)   split_assignment(cfg, speaker)   track_index_from_id(track_id)
    render_faces(face, expr, talk, rng, size, noise_std, pose_jitter)
    generate_tracks(cfg, split_name, num_workers=0) -> Iterator[track dict]
    corpus_name(cfg)   ensure_corpus(cache_dir, cfg, num_shards=None, num_workers=None) -> directory
    python -m cmemo_jax.data.synthetic CACHE_DIR [tiny|demo|default]
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Iterator

import numpy as np
import scipy.fft

from cmemo_jax.constants import (EMOTIONS, FRAME_PERIOD_S, FRAME_STRIDE, NUM_EMOTIONS, SAMPLE_RATE,
                                 SPLIT_HEARD_VAL, SPLIT_IDS, SPLIT_NAMES, SPLIT_TRAIN,
                                 SPLIT_UNHEARD_VAL, VIDEO_FPS, frame_row)

# Bump whenever the generator's output changes for a given config: it is part of the cache name.
GENERATOR_VERSION = 2
COMPLETE_MARKER = "_COMPLETE"
TRACKS_PER_VIDEO = 4       # track k of a speaker is utterance k % 4 + 1 of video k // 4

NEUTRAL, HAPPINESS, SURPRISE, SADNESS, ANGER, DISGUST, FEAR, CONTEMPT = range(NUM_EMOTIONS)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
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
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


# --------------------------------------------------------------------------------------------------
# Emotion -> voice and face parameters
# --------------------------------------------------------------------------------------------------
#                      neu   hap   sur   sad   ang   dis   fea   con
_VOICE = {
    # f0 level shift (semitones) and pitch-accent range multiplier.
    "f0_shift_st":  np.array([0.0, 4.5, 7.0, -3.0, 2.5, -1.5, 5.5, -1.5]),
    "range_mul":    np.array([1.0, 2.2, 2.8, 0.3, 1.6, 0.8, 0.6, 1.4]),
    # Speaking rate multiplier (syllables / s) and loudness (dB).
    "rate_mul":     np.array([1.0, 1.12, 1.05, 0.65, 1.2, 0.85, 1.35, 0.85]),
    "loud_db":      np.array([0.0, 3.0, 3.5, -6.0, 8.0, -1.0, -1.5, -2.0]),
    # Spectral tilt change (dB / octave, + brighter) and glottal closing-phase factor (< 1 tenser).
    "tilt_db":      np.array([0.0, 2.0, 1.0, -5.0, 5.0, 0.5, 0.0, -1.0]),
    "closing_mul":  np.array([1.0, 0.85, 0.9, 1.7, 0.4, 1.0, 1.1, 1.2]),
    # Jitter (semitone std of cycle-scale f0 noise), breathiness (aspiration mix), tremor (st, 6 Hz).
    "jitter_st":    np.array([0.10, 0.12, 0.12, 0.15, 0.25, 0.35, 0.45, 0.15]),
    "breath":       np.array([0.06, 0.06, 0.10, 0.40, 0.05, 0.15, 0.40, 0.20]),
    "tremor_st":    np.array([0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 1.0, 0.0]),
    # Pause probability after a syllable; contour slope within a syllable (st, + rising).
    "pause_p":      np.array([0.12, 0.08, 0.12, 0.30, 0.06, 0.22, 0.20, 0.18]),
    "slope_st":     np.array([0.0, 0.5, 5.0, -0.8, -1.0, -2.5, 1.0, -3.0]),
    # Formant scale (smiling raises F2/F3; sadness / disgust lower them).
    "formant_mul":  np.array([1.0, 1.08, 1.03, 0.96, 1.02, 0.95, 1.02, 0.99]),
}
_VOICE_DELTA = {k: v - v[NEUTRAL] for k, v in _VOICE.items()}

_FACE = {
    "eye_open":     np.array([0.0, -0.35, 0.65, -0.3, -0.3, -0.5, 0.55, -0.15]),
    "brow_raise":   np.array([0.0, 0.01, 0.10, -0.01, -0.07, -0.05, 0.06, 0.0]),
    "brow_inner":   np.array([0.0, 0.0, 0.02, 0.08, -0.08, -0.03, 0.07, 0.0]),
    "mouth_curve":  np.array([0.0, 1.0, 0.0, -0.9, -0.45, -0.5, -0.35, 0.1]),
    "mouth_asym":   np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
    "mouth_open":   np.array([0.0, 0.35, 1.1, 0.0, 0.25, 0.15, 0.55, 0.0]),
    "mouth_width":  np.array([0.0, 0.3, -0.35, -0.08, -0.12, 0.0, 0.22, 0.05]),
    "nose_wrinkle": np.array([0.0, 0.0, 0.0, 0.0, 0.25, 1.0, 0.0, 0.15]),
    "lip_raise":    np.array([0.0, 0.0, 0.0, 0.0, 0.2, 1.0, 0.0, 0.2]),
    "cheek":        np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.35]),
}

# Oracle confusions: row e = distribution the oracle "sees" for a full-intensity face of emotion e.
_CONFUSION = np.array([
    #  neu   hap   sur   sad   ang   dis   fea   con
    [1.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],  # neutral
    [0.04, 0.88, 0.06, 0.00, 0.00, 0.00, 0.00, 0.02],  # happiness
    [0.04, 0.06, 0.76, 0.00, 0.00, 0.00, 0.14, 0.00],  # surprise
    [0.12, 0.00, 0.00, 0.76, 0.02, 0.02, 0.06, 0.02],  # sadness
    [0.06, 0.00, 0.00, 0.02, 0.72, 0.14, 0.00, 0.06],  # anger
    [0.04, 0.00, 0.00, 0.04, 0.18, 0.66, 0.00, 0.08],  # disgust
    [0.04, 0.00, 0.20, 0.08, 0.00, 0.00, 0.68, 0.00],  # fear
    [0.16, 0.04, 0.00, 0.00, 0.04, 0.08, 0.00, 0.68],  # contempt
])

# Vowels: (F1, F2, F3) of an adult male in Hz, and jaw openness (0-1) for the talking mouth.
_VOWELS = np.array([
    [730, 1090, 2440, 1.0],   # a
    [530, 1840, 2480, 0.6],   # e
    [270, 2290, 3010, 0.2],   # i
    [570, 840, 2410, 0.7],    # o
    [300, 870, 2240, 0.3],    # u
    [660, 1720, 2410, 0.8],   # ae
    [520, 1190, 2390, 0.5],   # schwa
])
_F4_HZ = 3500.0
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])

# Short-time Fourier filter geometry (samples).
_HOP = 128                 # also the control-grid step (8 ms)
_WIN = 256
_NFFT = 512


# --------------------------------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------------------------------
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
    face: tuple             # face geometry / appearance parameters (see _FACE_KEYS)


_FACE_KEYS = ("head_w", "head_h", "skin", "bg", "hair", "hair_y", "eye_x", "eye_y", "eye_size",
              "brow_thick", "mouth_y", "mouth_w", "nose_len", "beard")


def _speaker_rng(cfg: SyntheticConfig, index: int) -> np.random.Generator:
    return np.random.default_rng([int(cfg.seed), 1, int(index)])


def track_rng(cfg: SyntheticConfig, speaker: Speaker, track_index: int) -> np.random.Generator:
    """The random stream of one track: a function of (seed, speaker index, track index) only."""
    return np.random.default_rng([int(cfg.seed), 2, int(speaker.index), int(track_index)])


def _make_speaker(cfg: SyntheticConfig, index: int, unheard: bool) -> Speaker:
    rng = _speaker_rng(cfg, index)
    female = bool(rng.random() < 0.5)
    f0 = (205.0 if female else 112.0) * math.exp(rng.normal(0.0, 0.13))
    vtl = (1.16 if female else 1.0) * math.exp(rng.normal(0.0, 0.045))
    rate = 4.6 * math.exp(rng.normal(0.0, 0.13))
    loud = float(rng.normal(0.0, 2.5))
    breath = float(rng.uniform(0.0, 0.12) + (0.05 if female else 0.0))
    jitter = float(rng.uniform(0.0, 0.12))
    tilt = float(rng.normal(0.0, 0.7))
    w = np.asarray(cfg.emotion_weights, dtype=np.float64)
    w = w / w.sum()
    prior = rng.dirichlet(np.maximum(cfg.prior_concentration * len(w) * w, 1e-3))
    prior = np.concatenate([[0.0], prior])
    lo, hi = cfg.emotional_fraction
    expressiveness = float(rng.uniform(lo, hi))
    face = (
        rng.uniform(0.60, 0.74),                  # head_w
        rng.uniform(0.80, 0.92),                  # head_h
        rng.uniform(135, 205),                    # skin grey level
        rng.uniform(30, 230),                     # background
        rng.uniform(15, 90) if rng.random() < 0.85 else rng.uniform(170, 230),  # hair
        rng.uniform(-0.62, -0.45),                # hair line
        rng.uniform(0.25, 0.33),                  # eye_x
        rng.uniform(-0.22, -0.12),                # eye_y
        rng.uniform(0.9, 1.15),                   # eye_size
        rng.uniform(0.035, 0.06),                 # brow thickness
        rng.uniform(0.40, 0.50),                  # mouth_y
        rng.uniform(0.20, 0.27),                  # mouth half width
        rng.uniform(0.9, 1.1),                    # nose length
        float((not female) and rng.random() < 0.3) * rng.uniform(0.15, 0.4),  # beard darkness
    )
    return Speaker(index=index, identity=f"syn{index:05d}", unheard=unheard, female=female,
                   f0_hz=float(f0), vtl=float(vtl), rate_sps=float(rate), loudness_db=loud,
                   breath=breath, jitter_st=jitter, tilt_db=tilt,
                   emotion_prior=tuple(float(p) for p in prior), expressiveness=expressiveness,
                   face=tuple(float(v) for v in face))


def generate_speakers(cfg: SyntheticConfig) -> list[Speaker]:
    """All speakers: training identities first (syn00000...), then the unheard ones."""
    n_tr, n_un = cfg.num_train_speakers, cfg.num_unheard_speakers
    return ([_make_speaker(cfg, i, False) for i in range(n_tr)]
            + [_make_speaker(cfg, n_tr + i, True) for i in range(n_un)])


def split_assignment(cfg: SyntheticConfig, speaker: Speaker) -> np.ndarray:
    """Split code of each of a speaker's tracks (unheard speakers: all 2; train: 1 or 3)."""
    n = cfg.tracks_per_speaker
    if speaker.unheard:
        return np.full(n, SPLIT_UNHEARD_VAL, dtype=np.int64)
    n_hv = int(round(cfg.heard_val_fraction * n))
    if cfg.heard_val_fraction > 0 and n >= 2:
        n_hv = max(n_hv, 1)
    n_hv = min(n_hv, n - 1) if n >= 2 else 0
    codes = np.full(n, SPLIT_TRAIN, dtype=np.int64)
    perm = np.random.default_rng([int(cfg.seed), 3, int(speaker.index)]).permutation(n)
    codes[perm[:n_hv]] = SPLIT_HEARD_VAL
    return codes


# --------------------------------------------------------------------------------------------------
# Emotion trajectory
# --------------------------------------------------------------------------------------------------
def _episodes(speaker: Speaker, duration: float, rng: np.random.Generator, cfg: SyntheticConfig):
    """Non-overlapping emotional episodes: list of (start, end, emotion, peak intensity, ramp)."""
    prior = np.asarray(speaker.emotion_prior)
    mood = int(rng.choice(NUM_EMOTIONS, p=prior))
    lo, hi = cfg.episode_seconds
    mean_ep = 0.5 * (lo + hi)
    frac = speaker.expressiveness
    mean_gap = mean_ep * (1.0 - frac) / max(frac, 1e-3)
    eps = []
    t = float(rng.exponential(mean_gap * 0.6))
    while t < duration - 0.5:
        dur = float(rng.uniform(lo, hi))
        emo = mood if rng.random() < cfg.track_mood_prob else int(rng.choice(NUM_EMOTIONS, p=prior))
        peak = cfg.min_intensity + (1.0 - cfg.min_intensity) * float(rng.beta(2.0, 1.3))
        ramp = float(rng.uniform(0.15, 0.45))
        end = min(t + dur, duration)
        eps.append((t, end, emo, peak, ramp))
        t = end + float(rng.exponential(mean_gap)) + 0.3
    return eps


def _emotion_weights(eps, times: np.ndarray) -> np.ndarray:
    """[T, 8] intensity of each emotion at `times` (neutral column = 1 - sum of the others)."""
    w = np.zeros((times.shape[0], NUM_EMOTIONS))
    for start, end, emo, peak, ramp in eps:
        r = min(ramp, 0.5 * (end - start))
        env = np.clip(np.minimum(times - start, end - times) / max(r, 1e-3), 0.0, 1.0)
        w[:, emo] += peak * env * ((times >= start) & (times < end))
    w[:, NEUTRAL] = 1.0 - w[:, 1:].sum(axis=1)
    return w


# --------------------------------------------------------------------------------------------------
# Voice
# --------------------------------------------------------------------------------------------------
def _moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average along axis 0 with edge padding (n >= 1)."""
    if n <= 1:
        return x
    pad = n // 2
    xp = np.pad(x, [(pad, n - 1 - pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), xp], axis=0), axis=0)
    return (c[n:] - c[:-n]) / n


def _voice_params(weights: np.ndarray) -> dict:
    """Per-control-step prosodic parameters: neutral value + emotion intensity x delta."""
    return {k: _VOICE[k][NEUTRAL] + weights[:, 1:] @ _VOICE_DELTA[k][1:] for k in _VOICE}


def _synth_voice(speaker: Speaker, num_samples: int, eps, rng: np.random.Generator):
    """Returns (float waveform ~ [-1, 1] scale, control dict) for one track."""
    sr = SAMPLE_RATE
    n_ctrl = num_samples // _HOP + 2
    t_ctrl = np.arange(n_ctrl) * (_HOP / sr)
    weights = _moving_average(_emotion_weights(eps, t_ctrl), int(0.12 * sr / _HOP))
    vp = _voice_params(weights)

    voiced = np.zeros(n_ctrl)          # voiced amplitude envelope
    fric = np.zeros(n_ctrl)            # fricative / burst noise amplitude
    fric_fc = np.full(n_ctrl, 4000.0)  # fricative centre frequency
    accent = np.zeros(n_ctrl)          # f0 accent (semitones, before range scaling)
    slope = np.zeros(n_ctrl)           # within-syllable glide (semitones, before emotion scaling)
    decl = np.zeros(n_ctrl)            # phrase declination (semitones)
    formants = np.tile(_VOWELS[6, :3], (n_ctrl, 1)).astype(np.float64)
    jaw = np.zeros(n_ctrl)

    step = _HOP / sr
    t = float(rng.uniform(0.05, 0.35))
    phrase_start = t
    after_pause = True
    duration = num_samples / sr
    while t < duration - 0.1:
        c = min(int(t / step), n_ctrl - 1)
        rate = speaker.rate_sps * vp["rate_mul"][c]
        if not after_pause and rng.random() < vp["pause_p"][c]:
            t += float(rng.uniform(0.12, 0.5)) / vp["rate_mul"][c]
            phrase_start = t
            after_pause = True
            continue
        after_pause = False
        syl = float(np.clip(rng.lognormal(0.0, 0.28), 0.5, 2.0)) / rate
        a, b = int(t / step), min(int((t + syl) / step), n_ctrl)
        if b - a < 4:
            break
        n = b - a
        ph = np.linspace(0.0, 1.0, n, endpoint=False)
        onset = int(n * rng.uniform(0.2, 0.4)) if rng.random() < 0.7 else 0
        kind = rng.random()
        if onset:
            if kind < 0.45:      # unvoiced fricative
                pon = (np.arange(onset) + 0.5) / onset
                fric[a:a + onset] = rng.uniform(0.25, 0.5) * np.sin(np.pi * pon) ** 0.5
                fric_fc[a:a + onset] = rng.uniform(2500, 6500) * speaker.vtl
            elif kind < 0.75:    # plosive: closure then a short burst
                cl = max(onset - 3, 1)
                fric[a + cl:a + onset] = rng.uniform(0.3, 0.6)
                fric_fc[a + cl:a + onset] = rng.uniform(1500, 4000) * speaker.vtl
            else:                # voiced consonant (nasal-ish): weak voicing, low F1
                voiced[a:a + onset] = 0.3
                formants[a:a + onset] = (280.0, 1300.0, 2500.0)
        v = _VOWELS[rng.integers(len(_VOWELS))]
        nuc = slice(a + onset, b)
        m = b - (a + onset)
        pn = np.linspace(0.0, 1.0, m, endpoint=False) + 0.5 / m
        voiced[nuc] = np.sin(np.pi * pn) ** 0.6 * rng.uniform(0.75, 1.0)
        formants[nuc] = v[:3] * np.exp(rng.normal(0.0, 0.04, 3))
        jaw[nuc] = v[3] * np.sin(np.pi * pn) ** 0.5
        acc = float(rng.uniform(0.0, 1.0) ** 1.5) * (2.5 if rng.random() < 0.35 else 1.0)
        accent[a:b] = acc * np.sin(np.pi * ph) ** 1.2
        slope[a:b] = ph - 0.5
        decl[a:b] = -1.8 * (t + syl * ph - phrase_start)
        t += syl
        if rng.random() < 0.25:
            t += float(rng.uniform(0.02, 0.08))   # short closure gap between words

    # Coarticulation: smooth the targets over ~30 ms (voicing over ~12 ms, avoids clicks).
    voiced = _moving_average(voiced, 2)
    fric = _moving_average(fric, 2)
    formants = _moving_average(formants, 4)
    decl = np.maximum(decl, -6.0)

    # Pitch (semitones relative to the speaker's habitual f0).
    jitter = rng.normal(0.0, 1.0, n_ctrl) * (vp["jitter_st"] + speaker.jitter_st)
    drift = _moving_average(rng.normal(0.0, 1.0, n_ctrl), 50) * 6.0   # slow wander (~0.4 s), ~0.8 st
    tremor = vp["tremor_st"] * np.sin(2 * np.pi * 6.0 * t_ctrl + rng.uniform(0, 2 * np.pi))
    st = (vp["f0_shift_st"] + 3.0 * accent * vp["range_mul"] + vp["slope_st"] * slope
          + decl * np.sqrt(vp["range_mul"]) + jitter + drift + tremor)
    f0_ctrl = speaker.f0_hz * 2.0 ** (st / 12.0)

    # Per-sample source.
    ts = np.arange(num_samples, dtype=np.float64) / _HOP
    f0 = np.interp(ts, np.arange(n_ctrl), f0_ctrl)
    phase = np.cumsum(f0 / sr) + rng.random()
    frac = phase - np.floor(phase)
    tp = 0.42
    tn = np.clip(0.17 * np.interp(ts, np.arange(n_ctrl), vp["closing_mul"]), 0.05, 0.5)
    flow = np.where(frac < tp, 0.5 * (1.0 - np.cos(np.pi * frac / tp)),
                    np.where(frac < tp + tn, np.cos(0.5 * np.pi * np.minimum((frac - tp) / tn, 1.0)), 0.0))
    exc = np.diff(flow, prepend=flow[0]) * (sr / f0) ** 0.5 * 0.12
    amp_db = vp["loud_db"]
    amp_ctrl = voiced * 10.0 ** (amp_db / 20.0)
    amp = np.interp(ts, np.arange(n_ctrl), amp_ctrl)
    breath = np.interp(ts, np.arange(n_ctrl), np.clip(vp["breath"] + speaker.breath, 0.0, 0.8))
    noise = rng.normal(0.0, 1.0, num_samples)
    src_v = amp * ((1.0 - breath) * exc + breath * 0.025 * noise * (0.4 + flow))
    fric_amp = np.interp(ts, np.arange(n_ctrl), fric * 10.0 ** (amp_db / 40.0))
    src_n = fric_amp * 0.05 * rng.normal(0.0, 1.0, num_samples)

    # Short-time Fourier filtering: vocal tract (formants + tilt) for the voiced source, a band-pass
    # for the fricative noise. Frames of 256 (Hann), hop 128, zero-padded 512-point FFT, overlap-add.
    # Only frames that overlap some voicing (or frication) are transformed.
    fmul = vp["formant_mul"]
    tilt_ctrl = vp["tilt_db"] + speaker.tilt_db
    pad = _WIN
    n_frames = (num_samples + 2 * pad - _WIN) // _HOP + 1
    cidx = np.clip(np.arange(n_frames) - (pad - _WIN // 2) // _HOP, 0, n_ctrl - 1)

    def active(ctrl_amp):
        on = np.convolve((ctrl_amp > 0).astype(np.float64), np.ones(5), mode="same") > 0
        return np.flatnonzero(on[cidx])

    freqs = np.fft.rfftfreq(_NFFT, 1.0 / sr)[None, :]
    f2 = freqs ** 2
    octs = np.log2(np.maximum(freqs, 250.0) / 500.0) * (math.log(10.0) / 20.0)
    rolloff = np.where(freqs > 7000.0, np.exp(-(freqs - 7000.0) / 400.0), 1.0)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_WIN) / _WIN)

    def frames(x, rows):
        xp = np.pad(x, (pad, pad + _HOP))
        idx = rows[:, None] * _HOP + np.arange(_WIN)[None, :]
        return scipy.fft.rfft(xp[idx] * win, n=_NFFT, axis=1)

    spec = np.zeros((n_frames, _NFFT // 2 + 1), dtype=np.complex128)
    rv = active(amp_ctrl)
    if rv.size:
        c = cidx[rv]
        fmts = np.concatenate([formants[c] * fmul[c, None], np.full((rv.size, 1), _F4_HZ)], axis=1)
        fmts = fmts * speaker.vtl
        num, den = np.ones((rv.size, 1)), np.ones((rv.size, f2.shape[1]))
        for k in range(4):
            fk2 = fmts[:, k:k + 1] ** 2
            bk = _BANDWIDTHS[k] * (1.0 + 0.3 * (speaker.vtl - 1.0))
            num = num * fk2
            den *= (fk2 - f2) ** 2 + bk * bk * f2
        env_v = num / np.sqrt(den) * np.exp(tilt_ctrl[c, None] * octs) * rolloff
        spec[rv] = frames(src_v, rv) * env_v
    rn = active(fric)
    if rn.size:
        c = cidx[rn]
        env_n = np.exp(-0.5 * (np.log2(np.maximum(freqs, 50.0) / fric_fc[c, None]) / 0.55) ** 2
                       + 0.5 * tilt_ctrl[c, None] * octs)
        spec[rn] += frames(src_n, rn) * env_n
    y_frames = scipy.fft.irfft(spec, n=_NFFT, axis=1)
    per = _NFFT // _HOP
    blocks = np.zeros((n_frames + per, _HOP))
    yb = y_frames.reshape(n_frames, per, _HOP)
    for k in range(per):
        blocks[k:k + n_frames] += yb[:, k, :]
    y = blocks.reshape(-1)[pad:pad + num_samples] * (_HOP * 2.0 / _WIN)   # Hann OLA gain

    ctrl = dict(t=t_ctrl, voiced=voiced, jaw=jaw, f0=f0_ctrl, weights=weights)
    return y, ctrl


def _background_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Coloured stationary noise (spectral slope between white and brown) plus a faint hum."""
    n_fft = scipy.fft.next_fast_len(num_samples, real=True)
    white = rng.normal(0.0, 1.0, n_fft)
    spec = scipy.fft.rfft(white)
    f = np.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE)
    slope = rng.uniform(0.0, 1.6)
    spec *= 1.0 / np.maximum(f, 50.0) ** (slope / 2.0)
    n = scipy.fft.irfft(spec, n=n_fft)[:num_samples]
    n /= np.std(n) + 1e-12
    if rng.random() < 0.3:
        hz = 50.0 if rng.random() < 0.5 else 60.0
        tt = np.arange(num_samples) / SAMPLE_RATE
        n += rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * hz * tt) * math.sqrt(2.0)
        n /= np.std(n) + 1e-12
    return n


# --------------------------------------------------------------------------------------------------
# Face
# --------------------------------------------------------------------------------------------------
def _soft(d: np.ndarray, w: float) -> np.ndarray:
    """Anti-aliased inside mask from a signed distance-like value (negative inside)."""
    return np.clip(0.5 - d / w, 0.0, 1.0)


def _ar1(rng: np.random.Generator, n: int, rho: float, std: float) -> np.ndarray:
    """Stationary AR(1) sequence (smooth jitter); a short Python loop over frames only."""
    e = rng.normal(0.0, std * math.sqrt(1.0 - rho ** 2), n)
    out = np.empty(n)
    prev = rng.normal(0.0, std)
    for i in range(n):
        prev = rho * prev + e[i]
        out[i] = prev
    return out


def _face_expression(face_w: np.ndarray) -> dict:
    """[F, 8] face emotion intensities -> dict of [F] expression parameters."""
    return {k: face_w[:, 1:] @ v[1:] for k, v in _FACE.items()}


def render_faces(face: tuple, expr: dict, talk: np.ndarray, rng: np.random.Generator,
                 size: int = 48, noise_std: float = 5.0, pose_jitter: float = 1.0) -> np.ndarray:
    """Renders [F, size, size] uint8 grey faces, vectorised over frames and pixels.

    face: speaker appearance (see _FACE_KEYS); expr: [F] arrays (see _FACE keys); talk: [F] extra
    mouth opening from the speech at each frame's instant. pose_jitter scales the random head pose
    (0: frontal, centred, unit scale). Pixel (i, j) samples face coordinates x = (2 (j + 0.5) / size - 1)
    * 0.9, y likewise from i (y points down; the head ellipse is centred near (0, 0.02)).
    """
    p = dict(zip(_FACE_KEYS, face))
    nf = talk.shape[0]
    px = 2.0 / size
    g = ((np.arange(size) + 0.5) * px - 1.0) * 0.9   # zoom: the head fills most of the crop
    gy, gx = np.meshgrid(g, g, indexing="ij")

    def col(v):
        return np.asarray(v, dtype=np.float64).reshape(-1, 1, 1)

    # Pose: smooth random shift / rotation / scale per frame.
    pj = float(pose_jitter)
    dx = col(pj * (_ar1(rng, nf, 0.8, 0.04) + rng.normal(0, 0.03)))
    dy = col(pj * (_ar1(rng, nf, 0.8, 0.035) + rng.normal(0, 0.03)))
    rot = col(pj * np.deg2rad(_ar1(rng, nf, 0.8, 4.0) + rng.normal(0, 2.0)))
    scale = col(np.exp(pj * (_ar1(rng, nf, 0.8, 0.03) + rng.normal(0, 0.04))))
    cr, sr_ = np.cos(rot), np.sin(rot)
    x0, y0 = gx[None] - dx, gy[None] - dy
    x = (cr * x0 + sr_ * y0) / scale
    y = (-sr_ * x0 + cr * y0) / scale
    w = px / scale[..., 0:1, 0:1] * 1.2

    e = {k: col(v) for k, v in expr.items()}
    skin = p["skin"]

    # Background (vertical gradient) and head.
    img = np.broadcast_to(p["bg"] + 25.0 * gy[None] * (1 if p["bg"] < 128 else -1), (nf, size, size)).copy()
    hw, hh = p["head_w"], p["head_h"]
    rr = np.sqrt((x / hw) ** 2 + ((y - 0.02) / hh) ** 2)
    head = _soft((rr - 1.0) * min(hw, hh), w)
    # Jaw drops a little when the mouth opens: stretch the lower ellipse.
    img = img * (1 - head) + skin * head
    # Hair: inside a slightly larger ellipse, above the hair line.
    rr_h = np.sqrt((x / (hw * 1.06)) ** 2 + ((y + 0.02) / (hh * 1.04)) ** 2)
    hair = _soft((rr_h - 1.0) * hw, w) * _soft(y - (p["hair_y"] + 0.08 * (x / hw) ** 2), w)
    img = img * (1 - hair) + p["hair"] * hair
    if p["beard"] > 0:
        beard = head * _soft(0.30 - y, w * 2) * (1 - _soft(np.abs(x) - 0.5 * hw, w))
        img = img * (1 - p["beard"] * beard)

    # Cheek shading (raised cheeks for smiles / contempt, one-sided for contempt).
    ex, ey = p["eye_x"], p["eye_y"]
    for s in (-1.0, 1.0):
        ch_w = e["cheek"] * (1.0 if s > 0 else (1.0 - 0.7 * np.clip(e["mouth_asym"], 0, 1)))
        cheek = np.exp(-(((x - s * (ex + 0.02)) / 0.12) ** 2 + ((y - (ey + 0.22)) / 0.07) ** 2))
        img = img * (1 - 0.10 * ch_w * cheek)

    # Eyes.
    eye_open = np.clip(1.0 + e["eye_open"], 0.08, 2.0)
    ew, eh = 0.105 * p["eye_size"], 0.05 * p["eye_size"] * eye_open
    for s in (-1.0, 1.0):
        ux, uy = x - s * ex, y - ey
        r_e = np.sqrt((ux / ew) ** 2 + (uy / eh) ** 2)
        sclera = _soft((r_e - 1.0) * eh, w)
        img = img * (1 - sclera) + 235.0 * sclera
        pupil = _soft(np.sqrt(ux ** 2 + uy ** 2) - 0.042 * p["eye_size"], w) * sclera
        img = img * (1 - pupil) + 25.0 * pupil
        lid = _soft(np.abs(r_e - 1.0) * eh - 0.012, w) * (uy < 0.2 * eh)
        img = img * (1 - 0.7 * lid)

        # Brow: arched band; raise lifts it, inner raise tilts its inner end.
        u = (x - s * ex) * s                      # + towards the face's outside
        tb = np.clip((u + 0.13) / 0.26, 0.0, 1.0)  # 0 inner end, 1 outer end
        yb = (ey - 0.12 * p["eye_size"] - 0.03 - e["brow_raise"] - e["brow_inner"] * (1.0 - tb)
              - 0.025 * (1.0 - (2.0 * tb - 1.0) ** 2))
        brow = _soft(np.maximum(np.abs(y - yb) - 0.5 * p["brow_thick"], np.abs(u) - 0.13), w)
        img = img * (1 - 0.75 * brow) + 0.75 * brow * 40.0

    # Nose: shaded ridge, nostrils, disgust wrinkles.
    nose_bot = 0.22 * p["nose_len"]
    ridge = _soft(np.maximum(np.abs(x - 0.03) - 0.012, np.abs(y - 0.5 * (ey + nose_bot)) - 0.5 * (nose_bot - ey)), w)
    img = img * (1 - 0.12 * ridge)
    for s in (-1.0, 1.0):
        nos = _soft(np.sqrt(((x - s * 0.055) / 1.4) ** 2 + (y - nose_bot - 0.01 - 0.02 * e["lip_raise"]) ** 2) - 0.022, w)
        img = img * (1 - 0.55 * nos)
    for k in range(3):
        wy = ey + 0.06 + 0.035 * k
        wr = _soft(np.maximum(np.abs(y - wy) - 0.009, np.abs(x) - 0.075), w)
        img = img * (1 - 0.55 * np.clip(e["nose_wrinkle"], 0, 1) * wr)

    # Nasolabial smile lines.
    my = p["mouth_y"]
    mw = p["mouth_w"] * np.clip(1.0 + e["mouth_width"], 0.5, 1.6)
    for s in (-1.0, 1.0):
        frac = np.clip((y - nose_bot) / (my - nose_bot), 0.0, 1.0)
        xl = s * (0.10 + (mw + 0.03 - 0.10) * frac)
        line = _soft(np.maximum(np.abs(x - xl) - 0.012, np.abs(y - 0.5 * (nose_bot + my)) - 0.5 * (my - nose_bot)), w)
        img = img * (1 - 0.45 * np.clip(e["cheek"], 0, 1) * line)

    # Mouth: lip line curved by the smile / frown, one corner raised for contempt, opening from
    # the expression plus talking; the upper lip lifts for disgust.
    xn = x / mw
    curve, asym = e["mouth_curve"], e["mouth_asym"]
    yl = my - curve * 0.1 * xn ** 2 - asym * 0.08 * np.clip(xn, 0.0, 1.0) ** 2
    opening = np.clip(e["mouth_open"] + col(talk), 0.0, 1.6)
    shape = np.sqrt(np.clip(1.0 - xn ** 2, 0.0, 1.0))
    h_up = (0.025 * opening + 0.03 * e["lip_raise"]) * shape
    h_dn = 0.075 * opening * shape
    out_x = (np.abs(xn) - 1.0) * mw
    lips = _soft(np.maximum(out_x - 0.01, np.maximum(yl - h_up - 0.018 - y, y - (yl + h_dn + 0.02))), w)
    img = img * (1 - lips) + lips * (0.62 * skin)
    inside = _soft(np.maximum(out_x + 0.015, np.maximum(yl - h_up - y, y - (yl + h_dn))), w)
    img = img * (1 - inside) + inside * 28.0

    # Illumination: directional gradient drifting over the track, global brightness, noise.
    light_dir = rng.uniform(-0.35, 0.35)
    light = light_dir + col(_ar1(rng, nf, 0.9, 0.06))
    bright = np.exp(rng.normal(0.0, 0.12) + col(_ar1(rng, nf, 0.9, 0.04)))
    img = img * bright * (1.0 + light * x * 0.6)
    img = img + rng.normal(0.0, noise_std, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Tracks
# --------------------------------------------------------------------------------------------------
def _num_frames(num_samples: int) -> int:
    """Logit rows of a track: the row covering its last sample, plus one."""
    return frame_row((num_samples - 1) / SAMPLE_RATE) + 1


def generate_track_with_latents(speaker: Speaker, track_index: int, split: int,
                                rng: np.random.Generator, cfg: SyntheticConfig):
    """Like ``generate_track`` but also returns the hidden variables (for tests and analysis):

    {'frame_time': [F] s, 'frame_intensity': [F] hidden emotion intensity, 'face_intensity': [F] after
     transition attenuation, 'transition': [F] bool, 'expression_probs': [F, 8], 'speech_env': [F],
     'ctrl_time', 'ctrl_f0', 'ctrl_voiced', 'ctrl_weights' (4 ms control grid)}.
    """
    duration = float(rng.uniform(cfg.min_track_seconds, cfg.max_track_seconds))
    num_samples = int(round(duration * SAMPLE_RATE))
    duration = num_samples / SAMPLE_RATE
    eps = _episodes(speaker, duration, rng, cfg)

    # Voice.
    rng_voice = np.random.default_rng(rng.integers(2 ** 63))
    rng_face = np.random.default_rng(rng.integers(2 ** 63))
    rng_rec = np.random.default_rng(rng.integers(2 ** 63))
    speech, ctrl = _synth_voice(speaker, num_samples, eps, rng_voice)

    # Frames: hidden emotion and intensity at each sampled video frame.
    nf = _num_frames(num_samples)
    ft = (FRAME_STRIDE * np.arange(nf) + 1) / VIDEO_FPS
    ft = np.minimum(ft, duration)
    fw = _emotion_weights(eps, ft)
    emo_inten = fw[:, 1:].max(axis=1)
    frame_emotion = np.where(emo_inten > 0.1, 1 + fw[:, 1:].argmax(axis=1), NEUTRAL).astype(np.int8)
    inten = np.where(frame_emotion > 0, emo_inten, 0.0)

    # Neutral transition frames: the face drifts towards neutral on some frames within an episode.
    transition = (frame_emotion > 0) & (rng_face.random(nf) < cfg.transition_prob)
    atten = np.where(transition, rng_face.uniform(0.0, 0.3, nf), np.clip(rng_face.normal(1.0, 0.08, nf), 0.75, 1.0))
    face_inten = inten * atten
    face_w = np.zeros((nf, NUM_EMOTIONS))
    face_w[np.arange(nf), frame_emotion] = face_inten
    face_w[:, NEUTRAL] = 0.0

    # Talking mouth: speech envelope x vowel openness at each frame's instant.
    ci = np.clip(np.rint(ft * SAMPLE_RATE / _HOP).astype(int), 0, ctrl["t"].shape[0] - 1)
    speech_env = np.clip(ctrl["voiced"][ci], 0.0, 1.0) * (0.3 + 0.7 * ctrl["jaw"][ci])
    talk = 0.5 * speech_env
    faces = render_faces(speaker.face, _face_expression(face_w), talk, rng_face,
                         size=cfg.face_size, noise_std=cfg.face_noise)

    # Oracle logits on the rendered expression.
    probs = np.zeros((nf, NUM_EMOTIONS))
    calm = 1.0 - face_inten
    probs[:, NEUTRAL] = calm * cfg.neutral_confidence
    probs += (calm * (1.0 - cfg.neutral_confidence) / (NUM_EMOTIONS - 1))[:, None] * (
        np.arange(NUM_EMOTIONS) != NEUTRAL)
    probs += face_inten[:, None] * _CONFUSION[frame_emotion]
    probs = 0.97 * probs + 0.03 / NUM_EMOTIONS
    logits = cfg.oracle_scale * np.log(probs) + rng_face.normal(0.0, cfg.oracle_noise, probs.shape)
    logits -= logits.mean(axis=1, keepdims=True)

    # Recording: speaker loudness, track gain, background noise at a random SNR, int16.
    active = np.abs(speech) > 0.1 * np.abs(speech).max()
    p_speech = float(np.mean(speech[active] ** 2)) if active.any() else 1e-6
    speech = speech / math.sqrt(p_speech) * 0.05 * 10.0 ** ((speaker.loudness_db + rng_rec.normal(0, 3.0)) / 20.0)
    snr = rng_rec.uniform(*cfg.snr_db)
    noise = _background_noise(num_samples, rng_rec) * 0.05 * 10.0 ** ((speaker.loudness_db - snr) / 20.0)
    wave = speech + noise
    peak = float(np.abs(wave).max())
    if peak > 0.85:
        wave *= 0.85 / peak
    audio = np.rint(wave * 32767.0).astype(np.int16)

    video, utt = divmod(track_index, TRACKS_PER_VIDEO)
    track = {
        "track_id": f"{speaker.identity}/v{video:03d}/{utt + 1:05d}",
        "identity": speaker.identity,
        "split": int(split),
        "audio": audio,
        "logits": logits.astype(np.float32),
        "faces": faces,
        "frame_emotion": frame_emotion,
    }
    latents = {
        "frame_time": ft, "frame_intensity": inten, "face_intensity": face_inten,
        "transition": transition, "expression_probs": probs, "speech_env": speech_env,
        "ctrl_time": ctrl["t"], "ctrl_f0": ctrl["f0"], "ctrl_voiced": ctrl["voiced"],
        "ctrl_weights": ctrl["weights"], "episodes": eps, "snr_db": snr,
    }
    return track, latents


def track_index_from_id(track_id: str) -> int:
    """Inverse of the track_id naming: 'syn00012/v003/00002' -> 3 * TRACKS_PER_VIDEO + 1."""
    _, video, utt = track_id.split("/")
    return int(video[1:]) * TRACKS_PER_VIDEO + int(utt) - 1


def generate_track(speaker: Speaker, track_index: int, split: int, rng: np.random.Generator,
                   cfg: SyntheticConfig) -> dict:
    """One track dict (schema of cmemo_jax.data.records): track_id, identity, split, audio (int16),
    logits (float32 [F, 8]), faces (uint8 [F, S, S]), frame_emotion (int8 [F], 0 = neutral).

    Pass ``track_rng(cfg, speaker, track_index)`` as `rng` for the corpus's deterministic stream.
    """
    return generate_track_with_latents(speaker, track_index, split, rng, cfg)[0]


def _jobs(cfg: SyntheticConfig, split_name: str) -> list[tuple[int, int, int]]:
    """(speaker index, track index, split code) of every track of a split, in corpus order."""
    if split_name not in SPLIT_IDS:
        raise ValueError(f"unknown split {split_name!r}; expected one of {sorted(SPLIT_IDS)}")
    code = SPLIT_IDS[split_name]
    jobs = []
    for spk in generate_speakers(cfg):
        codes = split_assignment(cfg, spk)
        jobs.extend((spk.index, k, code) for k in range(cfg.tracks_per_speaker) if codes[k] == code)
    return jobs


def generate_tracks(cfg: SyntheticConfig, split_name: str, num_workers: int = 0) -> Iterator[dict]:
    """Tracks of one split ('train', 'unheard_val', 'heard_val') in a fixed order.

    Training speakers produce 'train' and 'heard_val' tracks, unheard speakers 'unheard_val' only.
    num_workers > 1 generates in that many worker processes (``python -m cmemo_jax.data.synthetic``
    subprocesses, so no fork of a process that holds TF/JAX threads and no re-import of the caller's
    main module); the output is identical to num_workers=0.
    """
    jobs = _jobs(cfg, split_name)
    if num_workers <= 1 or len(jobs) < 2 * num_workers:
        speakers = {s.index: s for s in generate_speakers(cfg)}
        for si, k, code in jobs:
            spk = speakers[si]
            yield generate_track(spk, k, code, track_rng(cfg, spk, k), cfg)
        return
    yield from _generate_in_subprocesses(cfg, split_name, len(jobs), num_workers)


def _generate_in_subprocesses(cfg, split_name, n_jobs, num_workers):
    import pickle
    import subprocess
    import sys

    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    cfg_json = json.dumps(cfg.to_dict())
    procs = [subprocess.Popen([sys.executable, "-m", "cmemo_jax.data.synthetic", "--worker", cfg_json,
                               split_name, str(w), str(num_workers)], stdout=subprocess.PIPE, env=env)
             for w in range(num_workers)]
    try:
        for j in range(n_jobs):
            proc = procs[j % num_workers]
            head = proc.stdout.read(8)
            size = int.from_bytes(head, "little") if len(head) == 8 else -1
            blob = proc.stdout.read(size) if size >= 0 else b""
            if size < 0 or len(blob) != size:
                proc.wait()
                raise RuntimeError(f"synthetic corpus worker {j % num_workers} died (exit code "
                                   f"{proc.returncode}) at track {j} of split {split_name!r}")
            yield pickle.loads(blob)
        for proc in procs:
            proc.stdout.close()
            if proc.wait() != 0:
                raise RuntimeError(f"synthetic corpus worker exited with code {proc.returncode}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout and not proc.stdout.closed:
                proc.stdout.close()


def _worker_main(cfg_json: str, split_name: str, worker: int, num_workers: int) -> None:
    """Subprocess body: writes (8-byte length, pickle) records of jobs[worker::num_workers] to stdout."""
    import pickle
    import sys

    d = json.loads(cfg_json)
    cfg = SyntheticConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})
    speakers = {s.index: s for s in generate_speakers(cfg)}
    out = sys.stdout.buffer
    for si, k, code in _jobs(cfg, split_name)[worker::num_workers]:
        spk = speakers[si]
        blob = pickle.dumps(generate_track(spk, k, code, track_rng(cfg, spk, k), cfg), protocol=5)
        out.write(len(blob).to_bytes(8, "little"))
        out.write(blob)
        out.flush()


# --------------------------------------------------------------------------------------------------
# Cached corpus on disk
# --------------------------------------------------------------------------------------------------
def config_hash(cfg: SyntheticConfig) -> str:
    blob = json.dumps({"version": GENERATOR_VERSION, "config": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def corpus_name(cfg: SyntheticConfig) -> str:
    """Directory name of a config's corpus: 'synthetic-v<version>-<hash of the config>'."""
    return f"synthetic-v{GENERATOR_VERSION}-{config_hash(cfg)}"


def _default_shards(n_tracks: int) -> int:
    return max(1, min(16, n_tracks // 64))


def ensure_corpus(cache_dir: str, cfg: SyntheticConfig | None = None, num_shards: int | None = None,
                  num_workers: int | None = None, verbose: bool = False) -> str:
    """Generates the corpus of `cfg` into ``cache_dir/<corpus_name(cfg)>/`` unless already complete.

    Writes '<split>.tfrecord-*' shards (cmemo_jax.data.records) for train / unheard_val / heard_val,
    'dataset_info.json', and finally the '_COMPLETE' marker; returns the directory. If the marker
    exists, returns at once. num_shards: per split (default: about 64 tracks a shard, 1 to 16, chosen
    per split); num_workers: generator processes (default: min(2, cpus) when the corpus
    is large enough to pay for spawning them). The output is identical for any num_workers.
    """
    import time

    from cmemo_jax.data import records

    cfg = cfg or SyntheticConfig()
    out_dir = os.path.join(cache_dir, corpus_name(cfg))
    marker = os.path.join(out_dir, COMPLETE_MARKER)
    if os.path.exists(marker):
        return out_dir
    os.makedirs(out_dir, exist_ok=True)
    n_total = (cfg.num_train_speakers + cfg.num_unheard_speakers) * cfg.tracks_per_speaker
    if num_workers is None:
        num_workers = min(2, os.cpu_count() or 1) if n_total >= 200 else 0

    counts, hist, argmax_hist, frames, seconds = {}, {}, {}, {}, {}
    t0 = time.time()
    for split_name in ("train", "unheard_val", "heard_val"):
        n_split = len(_jobs(cfg, split_name))
        shards = num_shards or _default_shards(n_split)
        stats = {"n": 0, "hist": np.zeros(NUM_EMOTIONS, np.int64), "amax": np.zeros(NUM_EMOTIONS, np.int64),
                 "frames": 0, "samples": 0}

        def counted(it, stats=stats):
            for tr in it:
                stats["n"] += 1
                stats["hist"] += np.bincount(tr["frame_emotion"], minlength=NUM_EMOTIONS)
                stats["amax"] += np.bincount(tr["logits"].argmax(axis=1), minlength=NUM_EMOTIONS)
                stats["frames"] += tr["logits"].shape[0]
                stats["samples"] += tr["audio"].shape[0]
                yield tr

        records.write_shards(counted(generate_tracks(cfg, split_name, num_workers)), out_dir,
                             split_name, shards)
        counts[split_name] = stats["n"]
        hist[split_name] = {EMOTIONS[i]: int(c) for i, c in enumerate(stats["hist"])}
        argmax_hist[split_name] = {EMOTIONS[i]: int(c) for i, c in enumerate(stats["amax"])}
        frames[split_name] = stats["frames"]
        seconds[split_name] = round(stats["samples"] / SAMPLE_RATE, 2)
        if verbose:
            print(f"synthetic corpus: {split_name}: {stats['n']} tracks, {time.time() - t0:.1f} s")

    speakers = generate_speakers(cfg)
    info = {
        "source": "synthetic",
        "name": corpus_name(cfg),
        "generator_version": GENERATOR_VERSION,
        "num_examples": counts,
        "num_frames": frames,
        "audio_seconds": seconds,
        "sample_rate": SAMPLE_RATE,
        "frame_period_s": FRAME_PERIOD_S,
        "face_size": cfg.face_size,
        "emotions": list(EMOTIONS),
        "config": cfg.to_dict(),
        "emotion_histogram": hist,            # hidden per-frame emotion
        "logit_argmax_histogram": argmax_hist,  # oracle's per-frame top emotion
        "identities": {
            "train": [s.identity for s in speakers if not s.unheard],
            "unheard_val": [s.identity for s in speakers if s.unheard],
        },
        "splits": {str(k): v for k, v in SPLIT_NAMES.items()},
    }
    records.write_dataset_info(out_dir, info)
    with open(marker + f".tmp-{os.getpid()}", "w") as fh:
        fh.write(corpus_name(cfg) + "\n")
    os.replace(marker + f".tmp-{os.getpid()}", marker)
    return out_dir


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        # python -m cmemo_jax.data.synthetic CACHE_DIR [tiny|demo|default]: generate (or find) a corpus.
        cache = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.expanduser("~"), ".cache", "cmemo_jax", "synthetic")
        preset = sys.argv[2] if len(sys.argv) > 2 else "default"
        print(ensure_corpus(cache, getattr(SyntheticConfig, preset)(), verbose=True))
