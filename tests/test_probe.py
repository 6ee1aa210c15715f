"""The Table-5 probe against scikit-learn, the fold makers, cross_validate and the figures."""
import json

import numpy as np
import pytest
from scipy.optimize import check_grad
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from cmemo_jax.data.clips import ACTED_EMOTIONS
from cmemo_jax.metrics import figures, probe
from cmemo_jax.metrics.auc import roc_auc


def embeddings(n=300, d=8, k=4, seed=0):
    """Separable-ish data like student logits: class means apart, unequal feature scales and offsets."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.2, (k, d))
    y = rng.integers(0, k, n)
    x = (centres[y] + rng.normal(0.0, 1.0, (n, d))) * rng.uniform(0.2, 5.0, d) + rng.normal(0, 10, d)
    return x, y


def sklearn_fit(x, y, l2):
    """The same model in scikit-learn: standardise, then multinomial lbfgs with C = 1 / (l2 n)."""
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-10, max_iter=10_000).fit(scaler.transform(x), y)
    return scaler, model


@pytest.mark.parametrize("l2", [probe.DEFAULT_L2, 0.05])
def test_probe_matches_sklearn_multinomial_on_every_fold(l2):
    x, y = embeddings()
    folds = probe.random_folds(len(y), k=10, seed=3)
    result = probe.cross_validate(x, y, folds, lambda a, b, k: probe.fit_probe(a, b, k, l2=l2), num_classes=4)
    sk_acc = []
    for test, acc in zip(folds, result["fold_accuracy"]):
        train = np.setdiff1d(np.arange(len(y)), test)
        ours = probe.fit_probe(x[train], y[train], 4, l2=l2)
        scaler, model = sklearn_fit(x[train], y[train], l2)
        np.testing.assert_allclose(ours.weights, model.coef_.T, atol=1e-6)
        np.testing.assert_allclose(ours.bias, model.intercept_ - model.intercept_.mean(), atol=1e-6)
        sk_proba = model.predict_proba(scaler.transform(x[test]))
        np.testing.assert_allclose(ours.predict_proba(x[test]), sk_proba, atol=1e-7)
        sk_acc.append(np.mean(model.predict(scaler.transform(x[test])) == y[test]))
        assert acc == sk_acc[-1]
    # Separable-ish: far above chance, not trivially perfect.
    assert 0.6 < result["accuracy_mean"] < 0.99
    assert result["accuracy_std"] == pytest.approx(np.std(sk_acc, ddof=1))


def test_objective_gradient_is_exact():
    x, y = embeddings(n=60, d=5, k=3, seed=1)
    z = (x - x.mean(0)) / x.std(0)
    onehot = np.eye(3)[y]
    params = np.random.default_rng(2).normal(size=5 * 3 + 3)
    err = check_grad(lambda p: probe._loss_and_grad(p, z, onehot, 0.3)[0],
                     lambda p: probe._loss_and_grad(p, z, onehot, 0.3)[1], params)
    assert err < 1e-5


def test_probe_standardises_and_handles_constant_features_and_absent_classes():
    x, y = embeddings(n=120, d=8, k=3, seed=4)
    x[:, 2] = 7.0                                   # a dead student output
    p = probe.fit_probe(x, y, num_classes=5)       # classes 3 and 4 never occur in training
    assert p.weights.shape == (8, 5) and p.bias.shape == (5,) and p.mean.shape == (8,) and p.scale.shape == (8,)
    assert p.scale[2] == 1.0 and np.all(np.isfinite(p.weights))
    assert set(np.unique(p.predict(x))) <= {0, 1, 2}
    np.testing.assert_allclose(p.logits(x), ((x - p.mean) / p.scale) @ p.weights + p.bias)
    np.testing.assert_allclose(p.predict_proba(x).sum(axis=1), 1.0)


def test_random_folds_partition_and_seed():
    folds = probe.random_folds(103, k=10, seed=7)
    assert len(folds) == 10
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(103))
    assert {len(f) for f in folds} == {10, 11}
    again = probe.random_folds(103, k=10, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    other = probe.random_folds(103, k=10, seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other))
    with pytest.raises(ValueError):
        probe.random_folds(5, k=10)


def test_speaker_folds_never_share_a_speaker():
    rng = np.random.default_rng(0)
    speakers = [f"s{i}" for i in rng.integers(1, 9, 400)] + ["s9"] * 3
    folds = probe.speaker_folds(speakers, k=10)
    assert len(folds) == 9                          # min(k, 9 speakers)
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(len(speakers)))
    owners = [{speakers[i] for i in f} for f in folds]
    for a in range(len(owners)):
        for b in range(a + 1, len(owners)):
            assert not owners[a] & owners[b]
    three = probe.speaker_folds(speakers, k=3)
    sizes = sorted(len(f) for f in three)
    assert len(three) == 3 and sizes[-1] - sizes[0] <= max(speakers.count(s) for s in set(speakers))
    with pytest.raises(ValueError, match="2 speakers"):
        probe.speaker_folds(["a"] * 10)


def test_cross_validate_string_labels_confusion_and_scores():
    x, y = embeddings(n=240, k=6, seed=5)
    names = list(ACTED_EMOTIONS)
    labels = np.array([names[i] for i in y])
    folds = probe.random_folds(len(y), k=10, seed=0)
    result = probe.cross_validate(x, labels, folds, probe.fit_probe, class_names=names)
    assert result["class_names"] == names
    np.testing.assert_allclose(result["confusion"].sum(axis=1), 1.0)
    assert result["counts"].sum() == len(y)
    np.testing.assert_array_equal(result["counts"].sum(axis=1), np.bincount(y, minlength=6))
    # Every clip is tested once: the diagonal count is the pooled number of correct predictions.
    assert np.trace(result["counts"]) == sum(a * len(f) for a, f in zip(result["fold_accuracy"], folds))
    assert np.all(result["predictions"] >= 0)
    np.testing.assert_allclose(result["scores"].sum(axis=1), 1.0)
    # Sorted label names are the default class order.
    by_default = probe.cross_validate(x, labels, folds, probe.fit_probe)
    assert by_default["class_names"] == sorted(names)
    assert by_default["fold_accuracy"] == result["fold_accuracy"]
    json.dumps(probe.jsonable(result))
    with pytest.raises(ValueError, match="not among the class names"):
        probe.cross_validate(x, labels, folds, probe.fit_probe, class_names=names[:5])


def test_speaker_independent_cross_validation_runs_the_same_probe():
    x, y = embeddings(n=200, k=3, seed=6)
    speakers = [f"spk{i % 8}" for i in range(200)]
    result = probe.cross_validate(x, y, probe.speaker_folds(speakers, k=10), probe.fit_probe)
    assert len(result["fold_accuracy"]) == 8 and result["accuracy_mean"] > 0.5


def test_figures_and_roc_curves(tmp_path):
    x, y = embeddings(n=200, k=4, seed=9)
    result = probe.cross_validate(x, y, probe.random_folds(200, 5, seed=1), probe.fit_probe,
                                  class_names=["a", "b", "c", "d"])
    json_path, png_path = figures.save_confusion(result["confusion"], result["class_names"],
                                                 str(tmp_path / "out/rml_student"), title="RML student",
                                                 counts=result["counts"])
    with open(json_path) as fh:
        saved = json.load(fh)
    np.testing.assert_allclose(saved["confusion"], result["confusion"])
    assert saved["class_names"] == ["a", "b", "c", "d"] and saved["counts"] == result["counts"].tolist()
    with open(png_path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"

    curves = figures.roc_curves(result["scores"], y, result["class_names"])
    assert set(curves) == {"a", "b", "c", "d"}
    for c, (fpr, tpr, auc) in enumerate(curves.values()):
        assert fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0
        assert auc == pytest.approx(np.trapezoid(tpr, fpr)) and auc == roc_auc(result["scores"][:, c], y == c)
    # Ties are one step: a constant score gives the diagonal, AUC 1/2.
    fpr, tpr = figures.roc_curve(np.ones(10), np.arange(10) < 4)
    np.testing.assert_array_equal(fpr, [0, 1])
    np.testing.assert_array_equal(tpr, [0, 1])
    roc_png = figures.roc_figure(curves, str(tmp_path / "roc.png"), title="ROC")
    with open(roc_png, "rb") as fh:
        assert fh.read(4) == b"\x89PNG"
