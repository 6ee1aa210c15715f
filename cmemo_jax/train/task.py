"""What a phase plugs into the shared trainer: the task interface, written down.

A task bundles what differs between phases (student: spectrogram + masked max-pool of teacher
logits + distillation; teacher: face images + soft-label cross entropy). The model side
(`Objective`) runs inside the jitted, sharded steps and needs no TensorFlow, so benchmarks and
accelerator machines without TensorFlow use it with device-resident batches; `Task` adds the data
and the host-side metrics that `cmemo_jax.train.loop.fit` needs.

Batches are dicts of host NumPy arrays with a leading batch axis; every batch has a bool `valid`
`[batch]` (False marks padding rows, which count in no loss or metric).
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Protocol, runtime_checkable

import flax.linen as nn
import jax


@runtime_checkable
class Objective(Protocol):
    """The model side of a phase: everything that runs inside the jitted steps."""

    model: nn.Module

    def model_inputs(self, batch: Mapping[str, jax.Array], rng: jax.Array | None, train: bool) -> Any:
        """On-device preprocessing of a batch -> the model's input (e.g. int16 audio -> spectrogram)."""

    def per_example_loss(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
        """`[batch]` losses of the model outputs against the batch's targets."""

    def eval_outputs(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> dict:
        """Per-example arrays `[batch, ...]` that the evaluation keeps (gathered to the host)."""

    def example_batch(self, batch_size: int | None = None) -> dict:
        """A host batch with the training shapes and dtypes (for initialisation)."""

    def export_meta(self) -> dict:
        """JSON-able description of the trained model for `cmemo_jax.export` ('kind', 'model', ...)."""


@runtime_checkable
class Task(Objective, Protocol):
    """An objective plus its data and metrics: what `fit` trains.

    selection_metric: 'dataset/metric' of `evaluate`'s results that picks the best checkpoint,
      e.g. 'unheard_val/loss'; selection_mode: 'min' or 'max' (e.g. 'max' for an accuracy).
    """

    selection_metric: str
    selection_mode: str

    def train_batches(self, start_step: int) -> Iterator[dict]:
        """This process's training batches, resumable: batch k of the run is yielded k-th after
        `train_batches(k - 1)` (the data position is the step)."""

    def eval_datasets(self) -> dict[str, Callable[[], Iterator[dict]]]:
        """{name: callable returning an iterator of padded host batches}; every process yields the
        same number of batches (so the collective eval steps stay in lockstep)."""

    def summarize(self, name: str, outputs: dict) -> dict:
        """Host-side metrics of one eval dataset from its concatenated, unpadded eval outputs.

        Numeric values are logged as scalars; a str value under 'note' is printed beside them."""
