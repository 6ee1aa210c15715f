"""Baselines of Table 5 beside the probe: handcrafted features + random forest, and random guessing.

The paper compares with Noroozi et al. [51], a random forest on 88 utterance-level audio features
(MFCCs, zero-crossing density, filter-bank energies, pitch / intensity statistics). Their exact set
is not published with the paper; this is a feature set in the same spirit, per clip at 16 kHz:

* mean and std over frames of 13 MFCCs, their deltas and delta-deltas            (78)
* mean and std of the zero-crossing rate, the RMS energy, the spectral centroid (Hz) (6)
* pitch (librosa.yin, 50-500 Hz): mean, std, min, max of f0 (Hz) over voiced frames, and the
  fraction of frames that are voiced                                              (5)

89 numbers in all (`FEATURE_NAMES`). Frames are 25 ms (400 samples) with a 10 ms hop, as in the
student's front-end; yin uses 64 ms frames so that a 50 Hz period fits twice.

librosa's yin is compiled by numba: on CPUs numba does not know, set NUMBA_CPU_NAME=generic in the
environment before the first import (see docs/method.md §6).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from cmemo_jax.constants import FFT_SIZE, HOP_SAMPLES, SAMPLE_RATE, WINDOW_SAMPLES

N_MFCC = 13
N_MELS = 40
FMIN_HZ, FMAX_HZ = 50.0, 500.0
YIN_FRAME = 1024            # 64 ms at 16 kHz: yin needs frames longer than two periods of FMIN_HZ
VOICED_RANGE_DB = 20.0      # a frame is voiced only if its RMS is within this of the clip's loudest

_FRAME_STATS = ([f"{kind}{i}" for kind in ("mfcc", "delta", "delta2") for i in range(N_MFCC)]
                + ["zcr", "rms", "centroid_hz"])
FEATURE_NAMES = tuple([f"{n}_{s}" for n in _FRAME_STATS for s in ("mean", "std")]
                      + ["f0_mean_hz", "f0_std_hz", "f0_min_hz", "f0_max_hz", "voiced_fraction"])
NUM_FEATURES = len(FEATURE_NAMES)


def _frame_features(y: np.ndarray) -> np.ndarray:
    """Per-frame descriptors [13 * 3 + 3, frames]: MFCC, delta, delta-delta, ZCR, RMS, centroid."""
    import librosa

    framing = dict(n_fft=FFT_SIZE, hop_length=HOP_SAMPLES, win_length=WINDOW_SAMPLES)
    mfcc = librosa.feature.mfcc(y=y, sr=SAMPLE_RATE, n_mfcc=N_MFCC, n_mels=N_MELS, **framing)
    # mode='nearest' keeps deltas defined for clips shorter than the 9-frame regression window.
    delta = librosa.feature.delta(mfcc, order=1, mode="nearest")
    delta2 = librosa.feature.delta(mfcc, order=2, mode="nearest")
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=WINDOW_SAMPLES, hop_length=HOP_SAMPLES)
    rms = librosa.feature.rms(y=y, frame_length=WINDOW_SAMPLES, hop_length=HOP_SAMPLES)
    centroid = librosa.feature.spectral_centroid(y=y, sr=SAMPLE_RATE, **framing)
    n = min(a.shape[1] for a in (mfcc, zcr, rms, centroid))   # librosa's framings agree; be safe
    return np.concatenate([a[:, :n] for a in (mfcc, delta, delta2, zcr, rms, centroid)], axis=0)


def pitch_statistics(y: np.ndarray) -> np.ndarray:
    """[5] float64: f0 mean, std, min, max (Hz) over voiced frames and the voiced fraction.

    yin always returns an f0, so voicing is decided apart: a frame is voiced when its RMS is within
    VOICED_RANGE_DB of the clip's loudest frame and its f0 is not pinned to the search limits (yin
    clips failed estimates there). No voiced frame -> all five are 0.
    """
    import librosa

    f0 = librosa.yin(y, fmin=FMIN_HZ, fmax=FMAX_HZ, sr=SAMPLE_RATE, frame_length=YIN_FRAME, hop_length=HOP_SAMPLES)
    rms = librosa.feature.rms(y=y, frame_length=YIN_FRAME, hop_length=HOP_SAMPLES)[0]
    n = min(len(f0), len(rms))
    f0, rms = f0[:n], rms[:n]
    loud = rms > 0
    if loud.any():
        loud &= rms >= rms.max() * 10.0 ** (-VOICED_RANGE_DB / 20.0)
    voiced = loud & (f0 > FMIN_HZ * 1.01) & (f0 < FMAX_HZ * 0.99)
    if not voiced.any():
        return np.zeros(5)
    v = f0[voiced]
    return np.array([v.mean(), v.std(), v.min(), v.max(), voiced.mean()])


def handcrafted_features(waveform) -> np.ndarray:
    """One clip's handcrafted feature vector.

    Args:
      waveform: float [num_samples] mono at 16 kHz (any length > 0; short clips are zero-padded to
        one yin frame).
    Returns:
      float32 [NUM_FEATURES] (= 89), finite; the order of FEATURE_NAMES.
    """
    y = np.asarray(waveform, np.float32).reshape(-1)
    if y.size == 0:
        raise ValueError("handcrafted_features needs a non-empty waveform")
    if y.size < YIN_FRAME:
        y = np.pad(y, (0, YIN_FRAME - y.size))
    frames = _frame_features(y)
    stats = np.stack([frames.mean(axis=1), frames.std(axis=1)], axis=1).reshape(-1)   # name_mean, name_std
    out = np.concatenate([stats, pitch_statistics(y)])
    # Silence makes librosa's normalised descriptors 0/0; report those as 0 rather than poison a forest.
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def features_matrix(waveforms) -> np.ndarray:
    """[n, NUM_FEATURES] float32 for a list of n 16 kHz waveforms."""
    if len(waveforms) == 0:
        return np.zeros((0, NUM_FEATURES), np.float32)
    return np.stack([handcrafted_features(w) for w in waveforms])


def _full_proba(proba: np.ndarray, seen_classes: np.ndarray, num_classes: int) -> np.ndarray:
    """[m, len(seen)] probabilities -> [m, num_classes] (zeros for classes absent from training)."""
    out = np.zeros((proba.shape[0], num_classes))
    out[:, np.asarray(seen_classes, np.int64)] = proba
    return out


@dataclasses.dataclass
class ForestModel:
    """A fitted random forest with the predict / predict_proba of cross_validate's fit functions."""
    forest: object
    num_classes: int

    def predict(self, x) -> np.ndarray:
        """[m, D] -> [m] int classes."""
        return np.asarray(self.forest.predict(np.asarray(x, np.float32)), np.int64)

    def predict_proba(self, x) -> np.ndarray:
        """[m, D] -> [m, k] class probabilities (vote fractions)."""
        proba = self.forest.predict_proba(np.asarray(x, np.float32))
        return _full_proba(proba, self.forest.classes_, self.num_classes)


def fit_random_forest(x, y, num_classes: int, *, seed: int = 0, n_estimators: int = 300,
                      n_jobs: int = 1) -> ForestModel:
    """Random forest on handcrafted features ([m, D], int labels [m]); a fit_fn for cross_validate.

    sklearn defaults otherwise (sqrt(D) features per split, unlimited depth); seeded, so the same
    folds give the same forest. Use functools.partial to change seed / n_estimators / n_jobs.
    """
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
    forest.fit(np.asarray(x, np.float32), np.asarray(y, np.int64))
    return ForestModel(forest=forest, num_classes=num_classes)


@dataclasses.dataclass
class UniformGuess:
    """Predicts a uniformly random class, ignoring the input (the 'Random' row of Table 5)."""
    rng: np.random.Generator
    num_classes: int

    def predict(self, x) -> np.ndarray:
        return self.rng.integers(0, self.num_classes, size=len(x))

    def predict_proba(self, x) -> np.ndarray:
        return np.full((len(x), self.num_classes), 1.0 / self.num_classes)


def random_baseline(y, folds, num_classes: int | None = None, class_names=None, seed: int = 0) -> dict:
    """Uniform random guessing under the same folds as the probe.

    Returns cross_validate's dict plus 'chance': the analytical expected accuracy 1 / k, to report
    beside the measured 'accuracy_mean'.
    """
    from cmemo_jax.metrics.probe import cross_validate

    rng = np.random.default_rng(seed)        # one stream across folds: folds get different guesses
    result = cross_validate(np.zeros((len(y), 1)), y, folds, lambda x, t, k: UniformGuess(rng, k),
                            num_classes=num_classes, class_names=class_names)
    result["chance"] = 1.0 / len(result["class_names"])
    return result
