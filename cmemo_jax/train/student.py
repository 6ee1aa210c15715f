"""The student phase: distil the face teacher's frame logits into the speech student (paper §3, §5).

Data: record shards of speaking face-tracks (whole-track int16 audio + teacher frame logits),
either the user's (config.data.records_dir, made by data_prep/) or the embedded synthetic corpus,
generated on first use into a cache directory. Per step, inside the jitted step on the device:
int16 crop -> VGGVox spectrogram [batch, 512, 400] -> Student -> logits; teacher logits of the
frames inside the crop -> masked max -> distillation loss at temperature T.
"""
from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from cmemo_jax import constants, losses
from cmemo_jax.audio import frontend
from cmemo_jax.metrics.auc import teacher_student_auc
from cmemo_jax.models import Student
from cmemo_jax.models.student import student_kwargs


def build_student(model_config) -> Student:
    """Student from the `config.model` fields (also the constructor args stored in exports)."""
    return Student(**student_kwargs(model_config))


def spectrogram_inputs(audio_int16, audio_config, dither_key=None):
    """`[batch, samples]` int16 PCM at 16 kHz -> `[batch, 512, frames]` normalised spectrogram.

    The one front-end path shared by training, evaluation and prediction.
    """
    waveform = frontend.waveform_from_int16(audio_int16)
    return frontend.spectrogram(waveform, sample_rate=constants.SAMPLE_RATE, dither_key=dither_key,
                                dft=audio_config.dft)


def resolve_data_dir(config) -> str:
    """Directory of record shards: the configured one, or the synthetic corpus (generated once)."""
    data = config.data
    if data.source == "records":
        if not data.records_dir:
            raise ValueError("config.data.source='records' needs config.data.records_dir")
        return data.records_dir
    if data.source != "synthetic":
        raise ValueError(f"unknown config.data.source {data.source!r} (use 'synthetic' or 'records')")
    from cmemo_jax.data import synthetic

    preset = getattr(synthetic.SyntheticConfig, data.synthetic_preset, None)
    if preset is None:
        raise ValueError(f"unknown synthetic preset {data.synthetic_preset!r}")
    cache_dir = data.cache_dir or os.environ.get(
        "CMEMO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "cmemo_jax"))
    corpus_dir, cfg = os.path.join(cache_dir, "synthetic"), preset()
    # Process 0 generates; the others wait for it and then find the corpus cached.
    if jax.process_index() == 0:
        path = synthetic.ensure_corpus(corpus_dir, cfg)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("synthetic corpus ready")
    if jax.process_index() != 0:
        path = synthetic.ensure_corpus(corpus_dir, cfg)
    return path


class StudentObjective:
    """The model side of the student phase, everything that runs inside the jitted step.

    Needs no TensorFlow, so benchmarks and the GPU machine use it with device-resident batches.
    Batch keys: audio int16 `[batch, crop_samples]`, logits float32 `[batch, rows, 8]` (teacher
    rows overlapping the crop, zero-padded), num_rows int32 `[batch]`, valid bool `[batch]`.
    """

    def __init__(self, config):
        self.config = config
        self.model = build_student(config.model)
        self.loss_fn = losses.get_loss(config.loss.name)
        self.crop_samples = int(round(config.audio.crop_seconds * constants.SAMPLE_RATE))
        self.max_rows = constants.max_rows_per_segment(self.crop_samples / constants.SAMPLE_RATE)
        self.local_batch_size = config.batch_size // jax.process_count()

    def model_inputs(self, batch, rng, train: bool):
        dither = rng if (train and self.config.audio.dither and rng is not None) else None
        return spectrogram_inputs(batch["audio"], self.config.audio, dither_key=dither)

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
        kwargs = student_kwargs(self.config.model)
        kwargs["conv_features"] = list(kwargs["conv_features"])
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"]).name
        return {"kind": "student", "model": kwargs, "emotions": list(constants.EMOTIONS),
                "frontend": {"name": "vggvox", "sample_rate": constants.SAMPLE_RATE,
                             "dft": self.config.audio.dft},
                "train_crop_seconds": self.config.audio.crop_seconds,
                "loss": self.config.loss.to_dict()}


class StudentTask(StudentObjective):
    """The student objective plus its data: what the shared trainer (cmemo_jax.train.loop) plugs in."""

    selection_metric = "unheard_val/loss"

    def __init__(self, config, data_dir: str):
        super().__init__(config)
        from cmemo_jax.data import pipeline, records  # TensorFlow is imported here, not by the model code.

        self._pipeline = pipeline
        self.files = {split: records.list_shards(data_dir, split)
                      for split in ("train", "heard_val", "unheard_val")}
        self.num_train_tracks = pipeline.count_records(self.files["train"])

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
        return {split: make(split) for split in ("heard_val", "unheard_val")}

    def summarize(self, name, outputs):
        auc = teacher_student_auc(outputs["teacher_logits"], outputs["student_logits"])
        return {"loss": float(np.mean(outputs["loss"])), "mean_auc": auc["mean_auc"],
                "num_clips": int(outputs["loss"].shape[0]), "per_class_auc": auc["per_class"],
                "left_out": auc["left_out"], "label_counts": auc["label_counts"]}


def train_steps_for(config, num_train_tracks: int) -> int:
    """num_train_steps if set (> 0), else num_epochs passes of one crop per training track."""
    if config.num_train_steps and config.num_train_steps > 0:
        return int(config.num_train_steps)
    return max(1, math.ceil(config.num_epochs * num_train_tracks / config.batch_size))


def run(config, workdir: str) -> dict:
    """The student phase entry point used by cmemo_jax.main."""
    from cmemo_jax.train import loop

    data_dir = resolve_data_dir(config)
    task = StudentTask(config, data_dir)
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.num_train_steps = train_steps_for(config, task.num_train_tracks)
    if jax.process_index() == 0:
        print(f"student: {task.num_train_tracks} training tracks in {data_dir}; "
              f"{config.num_train_steps} steps of batch {config.batch_size} on {jax.device_count()} device(s)",
              flush=True)
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "model_meta.json"), "w") as f:
            json.dump(task.export_meta(), f, indent=2)
    return loop.fit(task, config, workdir)
