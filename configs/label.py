"""Label phase: the face teacher over every face frame (one per 0.24 s) -> record shards with teacher logits.

    python -m cmemo_jax.main --config=configs/label.py --workdir=DIR --config.label.teacher_model=T.msgpack
    python -m cmemo_jax.main --config=configs/label.py:demo ...     # the demo-size synthetic corpus
    python -m cmemo_jax.main --config=configs/label.py:tiny ...     # tests

Inputs (config.data.source):
  'synthetic'    the embedded corpus's 48x48 grey faces (generated on first use into cache_dir);
  'records'      record shards with faces (config.data.records_dir);
  'face_frames'  VoxCeleb1 face-track JPEGs (config.data.frames_dir, either layout of
                 cmemo_jax/data/face_frames.py) + VoxCeleb1 audio (config.data.voxceleb_wav_dir); name
                 folders need config.data.meta_csv (vox1_meta.csv); the paper's splits come from
                 config.data.emovox_mat (else: vox1_meta 'test' identities -> unheard_val, rest -> train).
The output (config.out_dir, '' -> WORKDIR/records) is what the student trains on:
  --config.data.source=records --config.data.records_dir=OUT
"""
import ml_collections

from cmemo_jax.config_defaults import distributed_block


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.phase = "label"

    c.label = ml_collections.ConfigDict()
    c.label.teacher_model = ""            # teacher msgpack (cmemo_jax.export, meta kind 'teacher'); required
    c.label.batch_size = 256              # face frames per batch, global (split over all devices)
    # Side of the centred crop the teacher sees, as a fraction of the stored frame's side.
    # 0 -> per source: 1 / 1.6 for 'face_frames' (the release's "1.6" crops are 1.6x the face box),
    # 1.0 for the synthetic corpus's tight 48x48 crops and for records.
    c.label.crop_fraction = 0.0

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"           # 'synthetic' | 'records' | 'face_frames'
    c.data.records_dir = ""
    c.data.synthetic_preset = "default"   # SyntheticConfig preset: 'default' | 'demo' | 'tiny'
    c.data.cache_dir = ""                 # '' -> $CMEMO_CACHE or ~/.cache/cmemo_jax
    c.data.frames_dir = ""                # face_frames: <root>/<id>/<video>/<track>/*.jpg or the release
    c.data.voxceleb_wav_dir = ""          # face_frames: VoxCeleb1 wav/<id>/<video>/<track>.wav
    c.data.meta_csv = ""                  # face_frames: vox1_meta.csv (name folders -> ids; fallback splits)
    c.data.emovox_mat = ""                # face_frames: senet50-ferplus-logits.mat, for the paper's splits

    c.out_dir = ""                        # '' -> WORKDIR/records
    c.allow_config_change = False         # resume a workdir whose config differs

    # Multi-host (see README): explicit coordinator, or auto-detection on TPU pods / SLURM.
    c.distributed = distributed_block()

    if arg in (None, "", "paper"):
        return c
    if arg == "demo":
        c.data.synthetic_preset = "demo"
        c.label.batch_size = 128
        return c
    if arg == "tiny":
        c.data.synthetic_preset = "tiny"
        c.label.batch_size = 64
        return c
    raise ValueError(f"unknown config argument {arg!r}: use '', 'demo' or 'tiny'")
