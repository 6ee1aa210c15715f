"""One module per phase of the method, each with `run(config, workdir)`; `cmemo_jax.main` dispatches.

student   distil the teacher's frame logits into the speech student (paper §3, §5)
"""
PHASES = {
    "student": "cmemo_jax.phases.student",
}
