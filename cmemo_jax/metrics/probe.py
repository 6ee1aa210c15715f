"""The linear probe of paper §5 / Table 5 and the k-fold cross-validation around it.

The student's 8 logits per clip are an embedding; a single affine map followed by a softmax
(multinomial logistic regression) maps them to the dataset's emotions. It is fitted by full-batch
L-BFGS on the exact gradient in float64, on features standardised with the training fold's mean and
standard deviation, minimising

    mean_i CE(softmax(x_i W + b), y_i) + (l2 / 2) ||W||_F^2          (the bias is not penalised)

which is scikit-learn's ``LogisticRegression(C=1 / (l2 * n_train))`` (lbfgs, multinomial). The paper
does not state a penalty; DEFAULT_L2 = 1e-3 only keeps the optimum finite on separable folds (on RML,
n_train = 648, it is C ~ 1.5, barely a constraint on 8 standardised features).

Protocol (docs/method.md §3): 10 folds from a seeded random permutation of all clips, mean and std of the
fold accuracies; `speaker_folds` gives the speaker-independent variant. `cross_validate` is generic
over the fit function, so the baselines (random forest, random guessing) run through the same code.
"""
from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

DEFAULT_L2 = 1e-3      # see the module docstring: mean-loss convention, C = 1 / (l2 * n)
MAX_ITER = 1000        # L-BFGS iterations; 8 x 6 parameters converge in well under 100


@dataclasses.dataclass(frozen=True)
class Probe:
    """A fitted affine + softmax probe. logits(x) = ((x - mean) / scale) @ weights + bias.

    weights [d, k], bias [k] (centred: softmax ignores a common shift), mean [d], scale [d] (the
    training fold's per-feature mean and population std; 1 for a constant feature).
    """
    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def logits(self, x) -> np.ndarray:
        """[n, d] embeddings -> [n, k] float64 logits."""
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        return z @ self.weights + self.bias

    def predict_proba(self, x) -> np.ndarray:
        """[n, d] -> [n, k] class probabilities (rows sum to 1)."""
        return softmax(self.logits(x), axis=-1)

    def predict(self, x) -> np.ndarray:
        """[n, d] -> [n] int class indices."""
        return np.argmax(self.logits(x), axis=-1)


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (mean [d], scale [d]) of x [n, d]; a (near-)constant feature gets scale 1."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    # A constant column's std is rounding noise; dividing by it would blow the column up.
    scale = np.where(scale <= 1e-12 * np.maximum(1.0, np.abs(mean)), 1.0, scale)
    return mean, scale


def _loss_and_grad(params: np.ndarray, z: np.ndarray, onehot: np.ndarray, l2: float):
    """Objective of the module docstring and its exact gradient, params = [W.ravel(), b]."""
    n, d = z.shape
    k = onehot.shape[1]
    w, b = params[:d * k].reshape(d, k), params[d * k:]
    log_p = log_softmax(z @ w + b, axis=-1)
    loss = -np.sum(onehot * log_p) / n + 0.5 * l2 * np.sum(w * w)
    g = (np.exp(log_p) - onehot) / n                   # d loss / d logits, [n, k]
    grad = np.concatenate([(z.T @ g + l2 * w).ravel(), g.sum(axis=0)])
    return loss, grad


def _one_blas_thread():
    """Context limiting BLAS to one thread (threadpoolctl, a scikit-learn dependency, if present).

    The problem is tiny ([n, 8] x [8, k]): with OpenBLAS's default thread pool, scipy's L-BFGS-B
    spends its time waking threads, ~60x slower on a busy 2-core machine (measured 1.0 s vs 16 ms).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def fit_probe(x, y, num_classes: int, l2: float = DEFAULT_L2) -> Probe:
    """Fits the affine + softmax probe.

    Args:
      x: [n, d] embeddings (the student's logits: d = 8).
      y: [n] int class indices in [0, num_classes).
      num_classes: k; a class absent from y gets a very negative bias (never predicted).
      l2: L2 penalty on the weights, mean-loss convention (see the module docstring).
    Returns:
      Probe with float64 weights [d, k], bias [k], mean [d], scale [d].
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"fit_probe wants x [n, d] and y [n], got {x.shape} and {y.shape}")
    if y.size == 0 or y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), "
                         f"got range [{y.min(initial=0)}, {y.max(initial=0)}]")
    mean, scale = standardisation(x)
    z = (x - mean) / scale
    onehot = np.eye(num_classes)[y]
    d = x.shape[1]
    with _one_blas_thread():
        result = minimize(_loss_and_grad, np.zeros(d * num_classes + num_classes), args=(z, onehot, float(l2)),
                          jac=True, method="L-BFGS-B",
                          options={"maxiter": MAX_ITER, "gtol": 1e-10, "ftol": 64 * np.finfo(float).eps})
    if not result.success:
        warnings.warn(f"probe L-BFGS did not converge: {result.message}", RuntimeWarning, stacklevel=2)
    w = result.x[:d * num_classes].reshape(d, num_classes)
    b = result.x[d * num_classes:]
    return Probe(weights=w, bias=b - b.mean(), mean=mean, scale=scale)


def encode_labels(y, class_names: Sequence[str] | None = None,
                  num_classes: int | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels -> (int indices [n], class names).

    String labels map through `class_names` (default: their sorted unique values); an unknown label
    is a ValueError. Integer labels are returned as they are, named by `class_names` or, failing
    that, '0'..'k-1' with k = num_classes (default: max label + 1).
    """
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        if class_names is None:
            k = num_classes if num_classes is not None else int(y.max(initial=-1)) + 1
            class_names = [str(i) for i in range(k)]
        return y.astype(np.int64), tuple(class_names)
    labels = [str(v) for v in y.tolist()]
    names = tuple(class_names) if class_names is not None else tuple(sorted(set(labels)))
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the class names {list(names)}")
    return np.array([index[v] for v in labels], np.int64), names


def random_folds(n: int, k: int = 10, seed: int = 0) -> list[np.ndarray]:
    """The paper's protocol: k near-equal test folds cut from a seeded random permutation of n clips.

    Returns a list of k sorted int arrays that partition range(n).
    """
    if not 2 <= k <= n:
        raise ValueError(f"need 2 <= k <= n for {k}-fold cross-validation of {n} clips")
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(f) for f in np.array_split(perm, k)]


def speaker_folds(speakers: Sequence[str], k: int = 10) -> list[np.ndarray]:
    """Speaker-independent folds: every speaker's clips lie in exactly one fold.

    Uses min(k, number of speakers) folds; speakers are dealt largest first to the fold with the
    fewest clips so far (deterministic). An empty speaker id "" counts as one speaker.
    Returns a list of sorted int arrays that partition range(len(speakers)).
    """
    speakers = [str(s) for s in speakers]
    by_speaker: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        by_speaker.setdefault(s, []).append(i)
    k = min(k, len(by_speaker))
    if k < 2:
        raise ValueError(f"speaker-independent cross-validation needs >= 2 speakers, got {len(by_speaker)}")
    folds: list[list[int]] = [[] for _ in range(k)]
    for s in sorted(by_speaker, key=lambda s: (-len(by_speaker[s]), s)):
        smallest = min(range(k), key=lambda f: len(folds[f]))
        folds[smallest].extend(by_speaker[s])
    return [np.array(sorted(f), np.int64) for f in folds]


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Raw counts [k, k] int: rows = true class, columns = predicted class."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return counts


def normalise_rows(counts) -> np.ndarray:
    """Row-normalised confusion [k, k] float64 (each row sums to 1; a class never seen -> zeros)."""
    counts = np.asarray(counts, np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


FitFn = Callable[[np.ndarray, np.ndarray, int], object]


def cross_validate(x, y, folds: Sequence[np.ndarray], fit_fn: FitFn = fit_probe,
                   num_classes: int | None = None, class_names: Sequence[str] | None = None) -> dict:
    """k-fold cross-validation of any classifier.

    Args:
      x: [n, d] features (student logits, handcrafted features, ...).
      y: [n] labels: ints, or strings mapped through `class_names` (default: sorted unique labels).
      folds: test-index arrays (random_folds / speaker_folds); each is tested on a model fitted on
        all the other clips.
      fit_fn: fit_fn(x_train [m, d], y_train int [m], num_classes) -> a model with predict(x) -> [m']
        ints, and optionally predict_proba(x) -> [m', k].
      num_classes: k (default: len(class_names) or max label + 1).
    Returns:
      {'accuracy_mean', 'accuracy_std' (sample std over folds, ddof=1 like the MATLAB std of the
       authors' code; 0 for one fold),
       'fold_accuracy': [per fold], 'confusion': [k, k] row-normalised (rows = true class),
       'counts': [k, k] raw, 'class_names': [k], 'predictions': [n] out-of-fold class (-1 if the clip
       is in no fold), 'scores': [n, k] out-of-fold probabilities (nan rows outside the folds) or
       None when the model has no predict_proba}.
    """
    x = np.asarray(x)
    y, names = encode_labels(y, class_names, num_classes)
    k = num_classes if num_classes is not None else len(names)
    if len(names) != k:
        raise ValueError(f"{k} classes but {len(names)} class names {list(names)}; pass class_names")
    predictions = np.full(len(y), -1, np.int64)
    scores = np.full((len(y), k), np.nan)
    fold_accuracy, has_proba = [], True
    for test in folds:
        test = np.asarray(test, np.int64)
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(test) == 0 or len(train) == 0:
            raise ValueError(f"a fold leaves {len(train)} training and {len(test)} test clips")
        model = fit_fn(x[train], y[train], k)
        predictions[test] = model.predict(x[test])
        fold_accuracy.append(float(np.mean(predictions[test] == y[test])))
        if has_proba and hasattr(model, "predict_proba"):
            scores[test] = model.predict_proba(x[test])
        else:
            has_proba = False
    tested = predictions >= 0
    counts = confusion_matrix(y[tested], predictions[tested], k)
    acc = np.asarray(fold_accuracy)
    return {"accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "fold_accuracy": fold_accuracy, "confusion": normalise_rows(counts), "counts": counts,
            "class_names": list(names), "predictions": predictions,
            "scores": scores if has_proba else None}


def jsonable(result: dict) -> dict:
    """A cross_validate result with numpy arrays turned into lists (for json.dump)."""
    return {key: (value.tolist() if isinstance(value, np.ndarray) else value) for key, value in result.items()}
