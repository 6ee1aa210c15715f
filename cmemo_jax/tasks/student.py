"""The student task: distil the face teacher's frame logits into the speech student (paper §3, §5).

Per step, inside the jitted step on the device: int16 crop -> VGGVox spectrogram [batch, 512, 400]
-> Student -> logits; teacher logits of the frames inside the crop -> masked max -> distillation
loss at temperature T.
"""
from __future__ import annotations

import jax
import numpy as np

from cmemo_jax import constants, losses
from cmemo_jax.audio.frontend import spectrogram_from_int16
from cmemo_jax.metrics.auc import teacher_student_auc
from cmemo_jax.models import registry


def frontend_meta(audio_config) -> dict:
    """The front-end settings an export carries, so prediction feeds the model what training did."""
    return {"name": "vggvox", "sample_rate": constants.SAMPLE_RATE, "dft": audio_config.dft}


class StudentObjective:
    """The model side of the student phase, everything that runs inside the jitted step.

    Needs no TensorFlow, so benchmarks and the GPU machine use it with device-resident batches.
    Batch keys: audio int16 `[batch, crop_samples]`, logits float32 `[batch, rows, 8]` (teacher
    rows overlapping the crop, zero-padded), num_rows int32 `[batch]`, valid bool `[batch]`.
    """

    kind = "student"

    def __init__(self, config):
        self.config = config
        self.model = registry.build(self.kind, config.model)
        self.loss_fn = losses.get_loss(config.loss.name)
        self.crop_samples = int(config.audio.crop_samples)
        self.max_rows = constants.max_rows_per_segment(self.crop_samples)
        self.local_batch_size = config.batch_size // jax.process_count()

    def model_inputs(self, batch, rng, train: bool):
        dither = rng if (train and self.config.audio.dither and rng is not None) else None
        return spectrogram_from_int16(batch["audio"], dft=self.config.audio.dft, dither_key=dither)

    def teacher_targets(self, batch):
        return losses.masked_max_pool(batch["logits"], batch["num_rows"])

    def per_example_loss(self, outputs, batch):
        return self.loss_fn(outputs, self.teacher_targets(batch), temperature=self.config.loss.temperature)

    def eval_outputs(self, outputs, batch):
        return {"student_logits": outputs, "teacher_logits": self.teacher_targets(batch)}

    def example_batch(self, batch_size=None):
        b = self.local_batch_size if batch_size is None else batch_size
        return {"audio": np.zeros((b, self.crop_samples), np.int16),
                "logits": np.zeros((b, self.max_rows, constants.NUM_EMOTIONS), np.float32),
                "num_rows": np.ones((b,), np.int32), "valid": np.ones((b,), bool)}

    def random_batch(self, rng: np.random.Generator, batch_size=None):
        """A batch of noise audio and random teacher logits (benchmarks, multi-host tests)."""
        batch = self.example_batch(batch_size)
        b = batch["audio"].shape[0]
        batch["audio"] = rng.integers(-8000, 8000, size=batch["audio"].shape, dtype=np.int16)
        batch["logits"] = rng.normal(size=batch["logits"].shape).astype(np.float32)
        batch["num_rows"] = rng.integers(1, self.max_rows + 1, size=(b,), dtype=np.int32)
        return batch

    def export_meta(self):
        return {"kind": self.kind, "model": registry.constructor_kwargs(self.model),
                "emotions": list(constants.EMOTIONS), "frontend": frontend_meta(self.config.audio),
                "train_crop_samples": self.crop_samples, "loss": self.config.loss.to_dict()}


class StudentTask(StudentObjective):
    """The student objective plus its data (record shards of speaking face-tracks) and metrics."""

    selection_metric = "unheard_val/loss"
    selection_mode = "min"
    eval_splits = ("heard_val", "unheard_val")

    def __init__(self, config, data_dir: str):
        super().__init__(config)
        from cmemo_jax.data import pipeline, records  # TensorFlow is imported here, not by the model code.

        self._pipeline = pipeline
        self.files = {split: records.list_shards(data_dir, split) for split in ("train", *self.eval_splits)}
        self.num_train_examples = pipeline.count_records(self.files["train"])

    def train_batches(self, start_step: int):
        return self._pipeline.train_batches(
            self.files["train"], batch_size=self.local_batch_size, seed=self.config.seed,
            crop_samples=self.crop_samples, max_rows=self.max_rows,
            process_index=jax.process_index(), process_count=jax.process_count(),
            start_step=start_step, shuffle_buffer=self.config.data.shuffle_buffer,
            cache=self.config.data.cache_in_ram)

    def eval_datasets(self):
        def make(split):
            return lambda: self._pipeline.eval_batches(
                self.files[split], batch_size=self.local_batch_size, crop_samples=self.crop_samples,
                max_rows=self.max_rows, process_index=jax.process_index(),
                process_count=jax.process_count())
        return {split: make(split) for split in self.eval_splits}

    def summarize(self, name, outputs):
        auc = teacher_student_auc(outputs["teacher_logits"], outputs["student_logits"])
        note = f"left_out={auc['left_out']}" if auc["left_out"] else ""
        return {"loss": float(np.mean(outputs["loss"])), "mean_auc": auc["mean_auc"],
                "num_clips": int(outputs["loss"].shape[0]), "per_class_auc": auc["per_class"],
                "left_out": auc["left_out"], "label_counts": auc["label_counts"], "note": note}
