"""Handcrafted-feature baseline: the feature vector, pitch statistics, random forest, random guessing."""
import os

os.environ.setdefault("NUMBA_CPU_NAME", "generic")   # librosa's yin is numba-compiled (docs/method.md §6)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cmemo_jax.metrics import handcrafted as hc  # noqa: E402
from cmemo_jax.metrics.probe import cross_validate, random_folds  # noqa: E402

SR = 16000


def harmonic(f0, seconds=1.0, amp=0.4, harmonics=4, seed=0):
    """A voiced-like tone: f0 and a few decaying harmonics, with a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(amp / h * np.sin(2 * np.pi * h * f0 * t) for h in range(1, harmonics + 1))
    return (x + np.random.default_rng(seed).normal(0, 1e-3, t.shape)).astype(np.float32)


def feature(vec, name):
    return float(vec[hc.FEATURE_NAMES.index(name)])


def test_feature_vector_length_and_finiteness():
    assert len(hc.FEATURE_NAMES) == hc.NUM_FEATURES == 89 and len(set(hc.FEATURE_NAMES)) == 89
    rng = np.random.default_rng(0)
    for x in (harmonic(150), rng.normal(0, 0.1, SR), np.zeros(SR), rng.normal(0, 0.1, 100)):
        v = hc.handcrafted_features(x)
        assert v.dtype == np.float32 and v.shape == (hc.NUM_FEATURES,) and np.all(np.isfinite(v))
    silence = hc.handcrafted_features(np.zeros(SR))
    assert feature(silence, "voiced_fraction") == 0.0 and feature(silence, "f0_mean_hz") == 0.0
    with pytest.raises(ValueError):
        hc.handcrafted_features(np.zeros(0))


def test_frame_features_are_in_their_named_slots():
    t = np.arange(SR) / SR
    v = hc.handcrafted_features(0.5 * np.sin(2 * np.pi * 1000 * t))
    assert feature(v, "centroid_hz_mean") == pytest.approx(1000, abs=30)
    assert feature(v, "zcr_mean") == pytest.approx(2 * 1000 / SR, abs=0.01)      # two crossings per period
    assert feature(v, "rms_mean") == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("f0", [200.0, 120.0])
def test_pitch_statistics_recover_f0_and_voicing(f0):
    voiced = harmonic(f0, seconds=1.0)
    x = np.concatenate([np.zeros(SR), voiced])                      # half silence, half voice
    mean, std, lo, hi, fraction = hc.pitch_statistics(x)
    assert mean == pytest.approx(f0, abs=2.0)
    assert std < 2.0 and f0 - 5 < lo <= hi < f0 + 5
    assert fraction == pytest.approx(0.5, abs=0.05)
    v = hc.handcrafted_features(x)
    assert feature(v, "f0_mean_hz") == pytest.approx(mean, abs=1e-3)


def two_class_corpus(n_per_class=16):
    """Class 0: low voiced tones (110-140 Hz); class 1: noise bursts. Lengths vary, as clips do."""
    rng = np.random.default_rng(1)
    waves, labels = [], []
    for i in range(n_per_class):
        seconds = rng.uniform(0.4, 0.8)
        waves.append(harmonic(rng.uniform(110, 140), seconds, amp=rng.uniform(0.1, 0.5), seed=i))
        labels.append(0)
        waves.append((rng.uniform(0.05, 0.3) * rng.normal(size=int(seconds * SR))).astype(np.float32))
        labels.append(1)
    return waves, np.array(labels)


def test_random_forest_separates_clearly_different_classes():
    waves, y = two_class_corpus()
    x = hc.features_matrix(waves)
    assert x.shape == (len(y), hc.NUM_FEATURES)
    folds = random_folds(len(y), k=4, seed=0)
    result = cross_validate(x, y, folds, hc.fit_random_forest, class_names=["tone", "noise"])
    assert result["accuracy_mean"] >= 0.95
    np.testing.assert_allclose(result["scores"].sum(axis=1), 1.0)
    # Seeded: the same folds give the same forest.
    again = cross_validate(x, y, folds, hc.fit_random_forest, class_names=["tone", "noise"])
    np.testing.assert_array_equal(again["scores"], result["scores"])


def test_forest_probabilities_cover_classes_absent_from_training():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.integers(0, 2, 30)
    model = hc.fit_random_forest(x, y, num_classes=3, n_estimators=20)
    proba = model.predict_proba(x)
    assert proba.shape == (30, 3) and np.all(proba[:, 2] == 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_random_baseline_is_near_chance():
    y = np.random.default_rng(0).integers(0, 6, 6000)
    result = hc.random_baseline(y, random_folds(len(y), k=10, seed=0), num_classes=6)
    assert result["chance"] == pytest.approx(1 / 6)
    assert result["accuracy_mean"] == pytest.approx(1 / 6, abs=0.015)
    np.testing.assert_allclose(result["confusion"].sum(axis=1), 1.0)
    again = hc.random_baseline(y, random_folds(len(y), k=10, seed=0), num_classes=6)
    assert again["fold_accuracy"] == result["fold_accuracy"]
