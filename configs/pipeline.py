"""The whole method in one command: teacher -> label -> student -> evaluate (paper §3-§5).

    python -m cmemo_jax.main --config=configs/pipeline.py:demo --workdir=DIR    # embedded corpus, CPU
    python -m cmemo_jax.main --config=configs/pipeline.py --workdir=DIR \
        --config.teacher.data.source=ferplus --config.teacher.data.ferplus_dir=/data/ferplus \
        --config.teacher.init.from_path=senet50_ft.msgpack \
        --config.label.data.source=face_frames --config.label.data.frames_dir=/data/vox1/faces \
        --config.label.data.voxceleb_wav_dir=/data/vox1/wav --config.label.data.meta_csv=/data/vox1_meta.csv \
        --config.label.data.emovox_mat=/data/senet50-ferplus-logits.mat \
        --config.evaluate.eval.rml_dir=/data/rml --config.evaluate.eval.enterface_dir=/data/enterface

Each phase keeps its own config block (`config.teacher`, `config.label`, `config.student`,
`config.evaluate`: the same fields as configs/<phase>.py) and its own workdir (DIR/<phase>); the
pipeline wires them: the label phase reads the teacher's export, the student trains on the label
phase's records, the evaluation uses both exports and the same records. Killed at any phase, the same
command resumes there. Without RML / eNTERFACE folders, `acted_sets=True` evaluates on held-out acted
sets that the embedded corpus writes in those layouts (DIR/acted).
"""
import os

import ml_collections

from cmemo_jax.config_defaults import distributed_block
from cmemo_jax.config_files import load_config_file

_HERE = os.path.dirname(os.path.abspath(__file__))
PHASES = ("teacher", "label", "student", "evaluate")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "paper", "demo", "tiny"):
        raise ValueError(f"unknown config argument {arg!r}: use '', 'demo' or 'tiny'")
    c = ml_collections.ConfigDict()
    c.phase = "pipeline"
    for name in PHASES:
        c[name] = load_config_file(os.path.join(_HERE, f"{name}.py"), arg)
    # Held-out acted sets of the embedded corpus (RML and eNTERFACE'05 layouts, other voices, rates,
    # stereo .avi) when no real evaluation folders are given; the paper's recipe uses real ones.
    c.acted_sets = arg in ("demo", "tiny")
    c.acted_speakers = 4 if arg == "tiny" else 8
    c.allow_config_change = False
    c.distributed = distributed_block()
    return c
