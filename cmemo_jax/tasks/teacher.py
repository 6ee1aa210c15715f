"""The teacher task: SE-ResNet-50 learns facial emotion on FERPlus from the annotators' vote
distribution (paper §3.1, §4.1).

Per step, on the device: uint8 48x48 grey faces -> flip + random affine (training) -> resize to the
model's input size, grey to 3 channels (cmemo_jax.faces) -> SENet50 -> cross entropy against the
8-emotion vote distribution. Evaluation uses the hard-label protocol: accuracy of the argmax against
the argmax of the votes, on validation (PublicTest, model selection) and test (PrivateTest, reported).
"""
from __future__ import annotations

import jax
import numpy as np

from cmemo_jax import constants, losses
from cmemo_jax.faces import random_affine_params, teacher_inputs
from cmemo_jax.models import registry


class TeacherObjective:
    """The model side of the teacher phase. Batch keys: image uint8 `[batch, 48, 48, 1]`, target
    float32 `[batch, 8]` (vote distribution), label int32 `[batch]`, valid bool `[batch]`."""

    kind = "teacher"

    def __init__(self, config):
        self.config = config
        self.model = registry.build(self.kind, config.model)
        self.image_size = int(config.data.image_size)
        self.local_batch_size = config.batch_size // jax.process_count()

    def model_inputs(self, batch, rng, train: bool):
        affine = None
        if train and self.config.data.augment and rng is not None:
            affine = random_affine_params(jax.random.fold_in(rng, 1), batch["image"].shape[0])
        return teacher_inputs(batch["image"], self.image_size, affine=affine)

    def per_example_loss(self, outputs, batch):
        return losses.soft_cross_entropy(outputs, batch["target"])

    def eval_outputs(self, outputs, batch):
        return {"logits": outputs, "label": batch["label"]}

    def example_batch(self, batch_size=None):
        b = self.local_batch_size if batch_size is None else batch_size
        return {"image": np.zeros((b, 48, 48, 1), np.uint8),
                "target": np.full((b, constants.NUM_EMOTIONS), 1.0 / constants.NUM_EMOTIONS, np.float32),
                "label": np.zeros((b,), np.int32), "valid": np.ones((b,), bool)}

    def export_meta(self):
        return {"kind": self.kind, "model": registry.constructor_kwargs(self.model),
                "emotions": list(constants.EMOTIONS),
                "input": {"size": self.image_size, "channels": "RGB", "range": [0, 255]}}


def _split_arrays(split) -> dict:
    from cmemo_jax.data.ferplus import vote_distribution

    n = len(split.label)
    return {"image": split.image, "target": vote_distribution(split.votes) if n else
            np.zeros((0, constants.NUM_EMOTIONS), np.float32), "label": split.label.astype(np.int32)}


def _take(arrays: dict, index: np.ndarray, batch_size: int) -> dict:
    """Rows `index` of every array, padded to batch_size with valid=False rows."""
    batch = {k: v[index] for k, v in arrays.items()}
    pad = batch_size - len(index)
    if pad:
        batch = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
    batch["valid"] = np.arange(batch_size) < len(index)
    return batch


class TeacherTask(TeacherObjective):
    """The objective plus FERPlus in host memory (35k 48x48 images: 80 MB) and its metrics."""

    selection_metric = "validation/accuracy"
    selection_mode = "max"

    def __init__(self, config, ferplus):
        super().__init__(config)
        self.splits = {name: _split_arrays(ferplus[name]) for name in ("train", "validation", "test")}
        self.num_train_examples = len(self.splits["train"]["label"])
        if self.num_train_examples < config.batch_size:
            raise ValueError(f"FERPlus train split has {self.num_train_examples} images, fewer than one batch")

    def train_batches(self, start_step: int):
        """Epochs of a seeded permutation; batch k (1-based step) is the same whatever start_step.
        Each process takes its own contiguous slice of the global batch."""
        n, b = self.num_train_examples, self.config.batch_size
        per_epoch = n // b  # the last partial batch of an epoch is dropped
        lo = jax.process_index() * self.local_batch_size
        step = start_step
        while True:
            epoch, within = divmod(step, per_epoch)
            perm = np.random.default_rng([self.config.seed, epoch]).permutation(n)
            for k in range(within, per_epoch):
                index = perm[k * b + lo: k * b + lo + self.local_batch_size]
                yield _take(self.splits["train"], index, self.local_batch_size)
            step = (epoch + 1) * per_epoch

    def eval_datasets(self):
        def make(name):
            def batches():
                arrays, b = self.splits[name], self.local_batch_size
                n = len(arrays["label"])
                # every process yields the same number of batches (collective steps stay in lockstep)
                per_process = -(-n // jax.process_count())
                mine = np.arange(n)[jax.process_index() * per_process:(jax.process_index() + 1) * per_process]
                for start in range(0, max(per_process, 1), b):
                    yield _take(arrays, mine[start:start + b], b)
            return batches
        return {name: make(name) for name in ("validation", "test")}

    def summarize(self, name, outputs):
        labels = outputs["label"]
        predicted = outputs["logits"].argmax(axis=1)
        k = constants.NUM_EMOTIONS
        confusion = np.zeros((k, k), np.int64)
        np.add.at(confusion, (labels, predicted), 1)
        per_class = {constants.EMOTIONS[c]: float(confusion[c, c] / confusion[c].sum())
                     for c in range(k) if confusion[c].sum()}
        return {"loss": float(np.mean(outputs["loss"])), "accuracy": float(np.mean(predicted == labels)),
                "num_images": int(len(labels)), "per_class_accuracy": per_class,
                "confusion": confusion.tolist()}
