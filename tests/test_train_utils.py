"""Learning-rate schedule, weight-decay mask, ROC AUC protocol, frame-row timing."""
import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cmemo_jax import constants
from cmemo_jax.metrics.auc import roc_auc, teacher_student_auc
from cmemo_jax.train import optim


def test_log_spaced_schedule_endpoints_and_geometric_steps():
    sched = optim.make_schedule(ml_collections.ConfigDict(dict(lr_start=1e-4, lr_end=1e-5)), 11)
    values = np.array([float(sched(i)) for i in range(11)])
    np.testing.assert_allclose(values, np.logspace(-4, -5, 11), rtol=1e-5)
    assert float(sched(50)) == pytest.approx(1e-5, rel=1e-5)  # clamps after the run


def test_weight_decay_applies_to_kernels_only():
    cfg = ml_collections.ConfigDict(dict(lr_start=1.0, lr_end=1.0, momentum=0.0, weight_decay=0.5))
    tx = optim.make_optimizer(cfg, total_steps=10)
    params = {"conv": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}, "bn": {"scale": jnp.ones((2,))}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["conv"]["kernel"], -0.5 * np.ones((2, 2)))
    np.testing.assert_allclose(updates["conv"]["bias"], 0.0)
    np.testing.assert_allclose(updates["bn"]["scale"], 0.0)


def _pairwise_auc(scores, positives):
    pos, neg = scores[positives], scores[~positives]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_roc_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)  # rounding makes ties
    positives = rng.random(60) < 0.3
    assert roc_auc(scores, positives) == pytest.approx(_pairwise_auc(scores, positives), abs=1e-12)
    assert roc_auc([0.1, 0.2, 0.9, 0.8], [False, False, True, True]) == 1.0
    with pytest.raises(ValueError):
        roc_auc([0.1, 0.2], [True, True])


def test_teacher_student_auc_leaves_out_absent_classes():
    rng = np.random.default_rng(1)
    n = 200
    teacher = rng.normal(size=(n, 8))
    teacher[:, 5:] -= 100.0  # disgust, fear, contempt never dominate: left out as in the paper
    student_perfect = teacher * 3.0
    result = teacher_student_auc(teacher, student_perfect)
    assert result["left_out"] == ["disgust", "fear", "contempt"]
    assert result["evaluated"] == ["neutral", "happiness", "surprise", "sadness", "anger"]
    assert result["mean_auc"] > 0.9
    random_student = rng.normal(size=(n, 8))
    assert abs(teacher_student_auc(teacher, random_student)["mean_auc"] - 0.5) < 0.1
    assert sum(result["label_counts"].values()) == n


def test_frame_rows_cover_exactly_the_crop():
    # Row r covers [(6r+1)/25, (6r+7)/25) s.
    assert constants.frame_row(0.0) == 0
    assert constants.frame_row(0.28) == 1  # 25*0.28-1 = 6 -> row 1
    assert constants.frame_row(0.2799) == 0
    n_rows = 100
    k = constants.max_rows_per_segment()
    for start in np.linspace(0, 15, 301):
        first, last = constants.frame_rows_in_segment(start, constants.CROP_SECONDS, n_rows)
        assert 1 <= last - first <= k
        # every instant of the crop maps into [first, last)
        for t in np.linspace(start, start + constants.CROP_SECONDS - 1e-6, 50):
            assert first <= constants.frame_row(t) < last
    assert constants.frame_rows_in_segment(100.0, 4.0, 10) == (9, 10)
    assert constants.num_spectrogram_frames(constants.CROP_SAMPLES) == 400
