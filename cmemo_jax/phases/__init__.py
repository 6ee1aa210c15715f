"""One module per phase of the method, each with `run(config, workdir)`; `cmemo_jax.main` dispatches.

teacher   SE-ResNet-50 on FERPlus vote distributions (paper §3.1, §4.1)
label     the teacher over every face-track frame -> EmoVoxCeleb frame logits (paper §4.2)
student   distil the teacher's frame logits into the speech student (paper §3, §5)
evaluate  Table 5 on RML / eNTERFACE / a manifest, baselines, heard/unheard ROC AUC (paper §5)
pipeline  all of the above in one command, wired together
"""
PHASES = {
    "teacher": "cmemo_jax.phases.teacher",
    "label": "cmemo_jax.phases.label",
    "student": "cmemo_jax.phases.student",
    "evaluate": "cmemo_jax.phases.evaluate",
    "pipeline": "cmemo_jax.phases.pipeline",
}
