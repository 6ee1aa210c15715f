"""Sharded, jitted train and eval steps, generic over a task (cmemo_jax.train.task.Objective).

Everything in the task's methods runs inside the one jitted step, so the spectrogram and the
max-pooling of teacher logits are fused with the model on the accelerator.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from cmemo_jax import losses
from cmemo_jax.train import sharding as sharding_lib
from cmemo_jax.train.state import TrainState


def init_state(task, tx: optax.GradientTransformation, rng, example_batch: dict, mesh) -> TrainState:
    """Initialise parameters (replicated over the mesh) from an example host batch."""

    def _init(rng):
        x = task.model_inputs(example_batch, None, train=False)
        variables = task.model.init({"params": rng, "dropout": rng}, x, train=False)
        params = variables["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                          batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params))

    return jax.jit(_init, out_shardings=sharding_lib.replicated(mesh))(rng)


def _forward(task, params, batch_stats, batch, rng, train: bool):
    x = task.model_inputs(batch, rng, train)
    variables = {"params": params, "batch_stats": batch_stats}
    if train:
        outputs, updates = task.model.apply(variables, x, train=True, mutable=["batch_stats"],
                                            rngs={"dropout": rng})
        return outputs, updates.get("batch_stats", batch_stats)
    return task.model.apply(variables, x, train=False), batch_stats


def _all_finite(tree) -> jax.Array:
    return jax.tree.reduce(jnp.logical_and, jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), tree),
                           jnp.bool_(True))


def _keep_frozen(new_stats, old_stats, frozen):
    """Batch statistics of frozen top-level modules stay as they were (as loaded)."""
    if not frozen or not isinstance(new_stats, dict):
        return new_stats
    return {k: (old_stats[k] if k in frozen else v) for k, v in new_stats.items()}


def make_train_step(task, tx: optax.GradientTransformation, mesh, lr_schedule=None, frozen=()):
    """`step(state, batch, base_rng) -> (state, metrics)`, jitted over the mesh, state donated.

    `lr_schedule` (optional) only adds the current learning rate to the metrics; `frozen` names
    top-level modules whose batch statistics are not updated (their parameters are frozen by the
    optimiser, cmemo_jax.train.optim).

    A step whose loss or gradient is not finite changes nothing but the step counter (so no NaN
    ever reaches the weights or a checkpoint) and reports `nonfinite` = 1; the loop then stops or
    goes on as `config.nonfinite` says.

    The per-step randomness (dither, dropout) is `fold_in(base_rng, state.step)`, so a resumed
    run draws exactly the numbers the uninterrupted run would have.
    """
    frozen = frozenset(frozen)

    def step(state: TrainState, batch: dict, base_rng):
        rng = jax.random.fold_in(base_rng, state.step)

        def loss_fn(params):
            outputs, new_stats = _forward(task, params, state.batch_stats, batch, rng, train=True)
            per_example = task.per_example_loss(outputs, batch)
            return losses.masked_mean(per_example, batch["valid"]), new_stats

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # The new weights are checked too: a finite loss with a huge learning rate can still
        # overflow them, and they must never reach a checkpoint.
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & _all_finite(params)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
        new_stats = _keep_frozen(new_stats, state.batch_stats, frozen)
        # A skipped step's loss counts in no logged mean (the loop divides by the finite steps).
        metrics = {"loss": jnp.where(finite, loss, 0.0), "grad_norm": jnp.where(finite, grad_norm, 0.0),
                   "nonfinite": 1.0 - finite.astype(jnp.float32)}
        if lr_schedule is not None:
            metrics["learning_rate"] = lr_schedule(state.step)
        new_state = TrainState(step=state.step + 1, params=keep(params, state.params),
                               batch_stats=keep(new_stats, state.batch_stats),
                               opt_state=keep(opt_state, state.opt_state))
        return new_state, metrics

    replicated = sharding_lib.replicated(mesh)
    return jax.jit(step, in_shardings=(replicated, sharding_lib.batch_sharding(mesh), replicated),
                   out_shardings=(replicated, replicated), donate_argnums=(0,))


def make_eval_step(task, mesh):
    """`eval_step(state, batch) -> dict` of per-example arrays (loss, valid, task outputs).

    Outputs are replicated (gathered over the mesh) so every process can read them on the host.
    """

    def step(state: TrainState, batch: dict):
        outputs, _ = _forward(task, state.params, state.batch_stats, batch, None, train=False)
        result = dict(task.eval_outputs(outputs, batch))
        result["loss"] = task.per_example_loss(outputs, batch)
        result["valid"] = batch["valid"]
        return result

    replicated = sharding_lib.replicated(mesh)
    return jax.jit(step, in_shardings=(replicated, sharding_lib.batch_sharding(mesh)),
                   out_shardings=replicated)
