"""The hidden emotion: index names, how it unfolds over a track, and how observers confuse it.

Emotion indices follow ``cmemo_jax.constants.EMOTIONS`` (neutral, happiness, surprise, sadness,
anger, disgust, fear, contempt). A track's hidden emotion is a list of non-overlapping *episodes*
``(start_s, end_s, emotion, peak_intensity, ramp_s)``; ``emotion_weights`` turns them into per-instant
intensities that drive the voice (``voice``), the face (``faces``) and the oracle (``tracks``).
"""
from __future__ import annotations

import numpy as np

from cmemo_jax.constants import EMOTIONS, NUM_EMOTIONS

NEUTRAL, HAPPINESS, SURPRISE, SADNESS, ANGER, DISGUST, FEAR, CONTEMPT = (
    EMOTIONS.index(name) for name in
    ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"))

# Perceptual confusions: row e = the distribution an observer (the oracle teacher of the corpus,
# the simulated FERPlus annotators) "sees" for a full-intensity face of emotion e.
CONFUSION = np.array([
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


def episodes(prior, expressiveness: float, duration: float, rng: np.random.Generator, cfg) -> list:
    """Non-overlapping emotional episodes of one track.

    Args:
      prior: 8 probabilities of an episode's emotion (neutral entry 0), a speaker's emotion_prior.
      expressiveness: the speaker's share of time spent in episodes (0-1).
      duration: track length in s.
      cfg: a SyntheticConfig (episode_seconds, track_mood_prob, min_intensity).
    Returns:
      list of (start s, end s, emotion index, peak intensity in [min_intensity, 1], ramp s).
    """
    prior = np.asarray(prior)
    # One dominant mood per track: most episodes repeat it, so a track has a clip-level label.
    mood = int(rng.choice(NUM_EMOTIONS, p=prior))
    lo, hi = cfg.episode_seconds
    mean_ep = 0.5 * (lo + hi)
    frac = expressiveness
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


def emotion_weights(eps, times: np.ndarray) -> np.ndarray:
    """[T, 8] intensity of each emotion at `times` (s); the neutral column is 1 - sum of the others.

    Each episode ramps linearly up from its start and down to its end over `ramp` s (at most half
    its length), so expressions and prosody never switch abruptly.
    """
    w = np.zeros((times.shape[0], NUM_EMOTIONS))
    for start, end, emo, peak, ramp in eps:
        r = min(ramp, 0.5 * (end - start))
        env = np.clip(np.minimum(times - start, end - times) / max(r, 1e-3), 0.0, 1.0)
        w[:, emo] += peak * env * ((times >= start) & (times < end))
    w[:, NEUTRAL] = 1.0 - w[:, 1:].sum(axis=1)
    return w
