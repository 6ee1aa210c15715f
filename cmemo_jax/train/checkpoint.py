"""Orbax checkpoints of the train state together with the data position (Kauldron-style).

Two managers under the workdir:
  checkpoints/  the latest few steps, for resuming after a kill;
  best/         the single best step by the task's selection metric.
Each step stores `state` (the TrainState pytree) and `progress` (JSON: global step = batches
consumed by the deterministic input pipeline, best metric so far, ...). Restoring both gives a
run that continues exactly where the killed one stopped.

Failure rules (every phase inherits them):
* a step that does not load (truncated file, missing metadata, emptied folder) is skipped with a
  warning naming it, and the next older one is tried; if none loads, `CheckpointError` says so in
  one line;
* on resume, steps newer than the one resumed from (left by a run killed between two saves) are
  deleted from both managers, so the resumed run can save them again;
* `checkpoints/` is always written before `best/`, so `best/` never runs ahead of a resumable step.
"""
from __future__ import annotations

import os
import shutil

import jax
import orbax.checkpoint as ocp
from absl import logging

from cmemo_jax.errors import CmemoError


class CheckpointError(CmemoError, RuntimeError):
    """No checkpoint of a workdir can be loaded (the message is one line naming the folder)."""


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}" if text else type(err).__name__


class Checkpointer:
    def __init__(self, workdir: str, *, max_to_keep: int = 2):
        workdir = os.path.abspath(workdir)
        self.workdir = workdir
        # max_to_keep=0 would keep nothing resumable: keep at least the newest step.
        self.latest = self._manager(os.path.join(workdir, "checkpoints"), max(int(max_to_keep), 1))
        self.best = self._manager(os.path.join(workdir, "best"), 1)

    @staticmethod
    def _manager(path: str, max_to_keep: int) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                                                create=True))

    @staticmethod
    def _save(manager, step: int, state, progress: dict):
        if step in manager.all_steps():
            manager.delete(step)  # a step replayed after a resume: the new save replaces it
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   progress=ocp.args.JsonSave(progress)), force=True)

    def save(self, step: int, state, progress: dict):
        self._save(self.latest, step, state, progress)

    def save_best(self, step: int, state, progress: dict):
        self.latest.wait_until_finished()  # best/ never holds a step checkpoints/ has not finished
        self._save(self.best, step, state, progress)

    def _restore_newest(self, manager, abstract_state, what: str):
        """(state, progress, step) of the newest loadable step of `manager`, or None if it has none."""
        steps = sorted(manager.all_steps(), reverse=True)
        skipped = []
        for step in steps:
            try:
                args = ocp.args.Composite(progress=ocp.args.JsonRestore()) if abstract_state is None else \
                    ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                       progress=ocp.args.JsonRestore())
                if abstract_state is None:  # raw restore: no model or optimiser needed (export)
                    restored = manager.restore(step)
                else:
                    restored = manager.restore(step, args=args)
                progress = dict(restored["progress"])
                if int(progress.get("step", step)) != step:
                    raise ValueError(f"progress says step {progress.get('step')}")
            except Exception as err:  # noqa: BLE001 - orbax/tensorstore raise many unrelated types
                skipped.append(f"step {step} ({_one_line(err)})")
                logging.warning("checkpoint %s/%d does not load, trying an older one: %s", what, step, err)
                if jax.process_index() == 0:
                    print(f"warning: skipping damaged checkpoint {manager.directory}/{step}: {_one_line(err)}",
                          flush=True)
                continue
            return restored["state"], progress, step
        if skipped:
            raise CheckpointError(f"{manager.directory}: no checkpoint loads (tried {'; '.join(skipped)}); "
                                  f"delete the folder to start over")
        return None

    def restore_latest(self, abstract_state):
        """(state, progress) of the newest loadable checkpoint, or None for a fresh run.

        Steps newer than the one restored (damaged ones, or best/ steps of a run killed between its
        two saves) are deleted so that the resumed run can save them again."""
        found = self._restore_newest(self.latest, abstract_state, "checkpoints")
        if found is None:
            self._drop_steps_after(self.best, -1)
            return None
        state, progress, step = found
        self._drop_steps_after(self.latest, step)
        self._drop_steps_after(self.best, step)
        return state, progress

    def restore_best(self, abstract_state):
        found = self._restore_newest(self.best, abstract_state, "best")
        return None if found is None else found[:2]

    def restore_raw(self, which: str):
        """(state pytree of numpy arrays, progress, step) without a model: for export. None if empty."""
        manager = self.best if which == "best" else self.latest
        return self._restore_newest(manager, None, which)

    @staticmethod
    def _drop_steps_after(manager, step: int):
        if jax.process_index() != 0:
            return
        for s in manager.all_steps():
            if s > step:
                logging.warning("deleting %s/%d: newer than the resumed step %d", manager.directory, s, step)
                try:
                    manager.delete(s)
                except Exception:  # noqa: BLE001 - a damaged step folder orbax cannot parse
                    shutil.rmtree(os.path.join(str(manager.directory), str(s)), ignore_errors=True)
        manager.reload()

    def wait(self):
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self):
        self.latest.close()
        self.best.close()


def abstract_like(state):
    """ShapeDtypeStructs with the shardings of `state`, the restore target orbax needs."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
