"""Evaluate phase: paper §5 — Table 5 on RML / eNTERFACE'05 / a CSV manifest (linear probe on the
student's 8 outputs, handcrafted-feature random forest, random guessing, teacher on the video), the
student's confusion matrices (Fig. 5), and the heard / unheard-identity ROC AUC against the teacher.

    python -m cmemo_jax.main --config=configs/evaluate.py --workdir=DIR \
        --config.eval.model=STUDENT.msgpack --config.eval.rml_dir=/data/RML \
        --config.eval.enterface_dir="/data/enterface database" [--config.eval.teacher_model=TEACHER.msgpack]
    python -m cmemo_jax.main --config=configs/evaluate.py:demo ...   # CPU demo (demo-size synthetic corpus)
    python -m cmemo_jax.main --config=configs/evaluate.py:tiny ...   # tests

`eval.model` is required (the pipeline phase fills it in with its student export). Datasets left ''
are not evaluated; the heard / unheard AUC reads the record shards of `data` (the synthetic corpus
unless data.source='records'). Results: WORKDIR/results.json, WORKDIR/results.md, WORKDIR/figures/.
"""
import ml_collections

from cmemo_jax.metrics.probe import DEFAULT_L2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.phase = "evaluate"

    c.eval = ml_collections.ConfigDict()
    c.eval.model = ""                     # student export (msgpack); required
    c.eval.teacher_model = ""             # teacher export (msgpack) for the 'teacher (V)' row; '' = no row
    c.eval.teacher_crop_fraction = 1.0    # side of the centred crop of each frame's centred square given
                                          # to the teacher (no face detector is run; < 1 zooms on the face)
    c.eval.rml_dir = ""                   # folder holding rml-1/rml-2 (or the sN folders)
    c.eval.enterface_dir = ""             # folder holding the 'subject N' folders
    c.eval.manifest = ""                  # CSV path,label[,speaker]
    c.eval.manifest_labels = ()           # allowed manifest labels; () = any label
    c.eval.folds = 10                     # paper / Noroozi et al.: 10-fold CV on a random permutation
    c.eval.seed = 0                       # fold permutation, random forest and random guesses
    c.eval.speaker_independent = True    # also report speaker-disjoint folds (not in the paper)
    c.eval.l2 = DEFAULT_L2                # probe L2 penalty (cmemo_jax.metrics.probe)
    c.eval.handcrafted = True             # the handcrafted-feature random-forest row
    c.eval.forest_trees = 300             # trees of that random forest
    c.eval.auc = True                     # heard / unheard ROC AUC against the teacher (paper §5)

    # Record shards of teacher-labelled tracks for the AUC (the same block as configs/student.py).
    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"           # 'synthetic' | 'records'
    c.data.records_dir = ""
    c.data.synthetic_preset = "default"   # must match the corpus the student was trained on
    c.data.cache_dir = ""                 # '' -> $CMEMO_CACHE or ~/.cache/cmemo_jax

    c.batch_size = 64                     # 4 s crops per AUC eval batch, and face frames per teacher batch
    # Evaluation keeps no state to resume and its results carry their own config, so a rerun in the
    # same workdir with another config (another model) simply replaces them.
    c.allow_config_change = True

    if arg in (None, "", "paper"):
        return c
    if arg == "demo":
        c.data.synthetic_preset = "demo"
        c.batch_size = 32
        return c
    if arg == "tiny":
        c.data.synthetic_preset = "tiny"
        c.eval.folds = 3
        c.eval.forest_trees = 25
        c.batch_size = 8
        return c
    raise ValueError(f"unknown config argument {arg!r}: use '', 'demo' or 'tiny'")
