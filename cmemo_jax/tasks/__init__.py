"""Tasks: what each trained phase plugs into the shared trainer (cmemo_jax.train.task.Task)."""
