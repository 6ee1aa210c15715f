"""ROC AUC of the student against the teacher, the paper's §5 protocol.

Each clip's label is the teacher's dominant emotion after max-pooling its frame logits over the
clip; for every emotion that occurs as a label in the split (and does not label every clip), the
one-vs-rest ROC AUC of the student's softmax probability for that emotion is computed; the mean
over those emotions is reported together with the list of emotions left out.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from cmemo_jax.constants import EMOTIONS


def roc_auc(scores, positives) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula; ties count one half.

    Args:
      scores: `[n]` real scores, higher = more positive.
      positives: `[n]` bool labels; needs at least one positive and one negative.
    """
    scores = np.asarray(scores, np.float64)
    positives = np.asarray(positives, bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc needs at least one positive and one negative example")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def softmax(logits):
    logits = np.asarray(logits, np.float64)
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def teacher_student_auc(teacher_logits, student_logits, emotions=EMOTIONS) -> dict:
    """Mean one-vs-rest ROC AUC of the student against the teacher's dominant emotion.

    Args:
      teacher_logits: `[n, 8]` max-pooled teacher logits per clip.
      student_logits: `[n, 8]` student logits per clip.
    Returns:
      {'mean_auc', 'per_class': {emotion: auc}, 'evaluated': [...], 'left_out': [...],
       'label_counts': {emotion: n}}; mean_auc is nan when no emotion can be evaluated.
    """
    teacher_logits = np.asarray(teacher_logits)
    labels = teacher_logits.argmax(axis=-1)
    probs = softmax(student_logits)
    per_class, left_out = {}, []
    counts = {name: int((labels == c).sum()) for c, name in enumerate(emotions)}
    for c, name in enumerate(emotions):
        positives = labels == c
        if positives.any() and not positives.all():
            per_class[name] = roc_auc(probs[:, c], positives)
        else:
            left_out.append(name)
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {"mean_auc": mean, "per_class": per_class, "evaluated": list(per_class),
            "left_out": left_out, "label_counts": counts}
