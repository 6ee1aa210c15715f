"""One process of the multi-host test: a few student train steps on fixed global batches.

Run by tests/test_multihost.py as N processes on localhost (CPU collectives through gloo); every
process builds the same global batches from a seed and passes only its own rows, exactly as each
host of a cluster passes its own shard. Process 0 saves the final parameters.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--process_id", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import ml_collections
    import numpy as np

    from cmemo_jax.train import distributed

    if args.num_processes > 1:
        distributed.initialize_from(ml_collections.ConfigDict(dict(
            coordinator_address=f"127.0.0.1:{args.port}", num_processes=args.num_processes,
            process_id=args.process_id, auto=False)))
    import jax

    from conftest import load_config
    from cmemo_jax.tasks.student import StudentObjective
    from cmemo_jax.train import optim, sharding, step as step_lib

    assert jax.process_count() == args.num_processes
    config = load_config("student", "tiny")
    objective = StudentObjective(config)
    mesh = sharding.make_mesh()
    tx = optim.make_optimizer(config.optim, total_steps=args.steps)
    state = step_lib.init_state(objective, tx, jax.random.key(0), objective.example_batch(), mesh)
    train_step = step_lib.make_train_step(objective, tx, mesh)
    rng = np.random.default_rng(123)
    local = config.batch_size // args.num_processes
    lo, hi = args.process_id * local, (args.process_id + 1) * local
    losses = []
    for _ in range(args.steps):
        global_batch = objective.random_batch(rng, batch_size=config.batch_size)
        mine = {k: v[lo:hi] for k, v in global_batch.items()}
        state, metrics = train_step(state, sharding.device_batch(mine, mesh), jax.random.key(1))
        losses.append(float(metrics["loss"]))
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)}
    if jax.process_index() == 0:
        np.savez(args.out, losses=np.asarray(losses), **flat)
    print("done", jax.process_index(), losses, flush=True)


if __name__ == "__main__":
    main()
