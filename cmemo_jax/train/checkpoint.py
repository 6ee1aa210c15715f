"""Orbax checkpoints of the train state together with the data position (Kauldron-style).

Two managers under the workdir:
  checkpoints/  the latest few steps, for resuming after a kill;
  best/         the single best step by the selection metric (unheard-val loss for the student).
Each step stores `state` (the TrainState pytree) and `progress` (JSON: global step = batches
consumed by the deterministic input pipeline, best metric so far, ...). Restoring both gives a
run that continues exactly where the killed one stopped.
"""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, workdir: str, *, max_to_keep: int = 2):
        workdir = os.path.abspath(workdir)
        self.latest = ocp.CheckpointManager(
            os.path.join(workdir, "checkpoints"),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))
        self.best = ocp.CheckpointManager(
            os.path.join(workdir, "best"),
            options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

    @staticmethod
    def _save(manager, step: int, state, progress: dict):
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   progress=ocp.args.JsonSave(progress)), force=True)

    def save(self, step: int, state, progress: dict):
        self._save(self.latest, step, state, progress)

    def save_best(self, step: int, state, progress: dict):
        self._save(self.best, step, state, progress)

    @staticmethod
    def _restore(manager, abstract_state, step=None):
        step = manager.latest_step() if step is None else step
        if step is None:
            return None
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), progress=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["progress"])

    def restore_latest(self, abstract_state):
        """(state, progress) of the newest checkpoint, or None for a fresh run."""
        return self._restore(self.latest, abstract_state)

    def restore_best(self, abstract_state):
        return self._restore(self.best, abstract_state)

    def wait(self):
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self):
        self.latest.close()
        self.best.close()


def abstract_like(state):
    """ShapeDtypeStructs with the shardings of `state`, the restore target orbax needs."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
