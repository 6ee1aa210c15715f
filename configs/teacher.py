"""Teacher phase: SE-ResNet-50 on FERPlus (paper §3.1, §4.1).

    python -m cmemo_jax.main --config=configs/teacher.py --workdir=DIR \
        --config.data.source=ferplus --config.data.ferplus_dir=/path/to/ferplus \
        --config.init.from_path=senet50_ft.msgpack        # paper: fine-tune imported weights
    python -m cmemo_jax.main --config=configs/teacher.py:demo --workdir=DIR   # CPU demo, synthetic faces
    python -m cmemo_jax.main --config=configs/teacher.py:tiny --workdir=DIR   # tests

The authors' weights: `python -m cmemo_jax.convert --from=senet50_ft_dag.pth --to=senet50_ft.msgpack`
(VGGFace2; its 8631-way head is replaced by a fresh 8-way one on loading) or senet50_ferplus_dag.pth
(already FERPlus-trained). Without `init.from_path` the model trains from scratch.
"""
import ml_collections

from cmemo_jax.config_defaults import add_training_fields


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.phase = "teacher"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"           # 'synthetic' (rendered faces, simulated votes) | 'ferplus'
    c.data.ferplus_dir = ""               # folder with fer2013.csv + fer2013new.csv
    c.data.synthetic_preset = "default"   # 'default' | 'demo' | 'tiny'
    c.data.cache_dir = ""                 # '' -> $CMEMO_CACHE or ~/.cache/cmemo_jax
    c.data.image_size = 224               # the 48x48 faces are resized to this on the device
    c.data.augment = True                 # flip + random affine (zoom, rotation, skew)

    c.model = ml_collections.ConfigDict()
    c.model.num_classes = 8
    c.model.stage_sizes = (3, 4, 6, 3)    # SE-ResNet-50
    c.model.width = 64
    c.model.se_reduction = 16
    c.model.dropout_rate = 0.5
    c.model.dtype = "float32"             # 'bfloat16' = mixed precision on GPU/TPU

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"
    c.optim.schedule = "log"
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.optim.lr_start = 1e-3
    c.optim.lr_end = 1e-5
    c.optim.grad_clip_norm = 0.0

    # selection on 'validation/accuracy' (PublicTest), higher is better
    add_training_fields(c, export_path="teacher.msgpack", batch_size=64, num_epochs=30, log_every_steps=50,
                        eval_every_steps=1000, checkpoint_every_steps=1000)

    if arg in (None, "", "paper"):
        return c
    if arg == "demo":
        # CPU demo: a narrow, shallow SE-ResNet at the faces' own 48x48 on the full-size synthetic
        # FERPlus (12k faces; the 3k-face set overfits: BENCHMARKS.md, "demo teacher").
        c.data.synthetic_preset = "default"
        c.data.image_size = 48
        c.model.stage_sizes = (1, 1, 1, 1)
        c.model.width = 32
        c.model.dropout_rate = 0.2
        c.optim.lr_start, c.optim.lr_end = 5e-2, 1e-3
        c.batch_size = 32
        c.num_epochs = 5
        c.log_every_steps = 50
        c.eval_every_steps = 500
        c.checkpoint_every_steps = 500
        return c
    if arg == "tiny":
        c.data.synthetic_preset = "tiny"
        c.data.image_size = 48
        c.model.stage_sizes = (1, 1, 1, 1)
        c.model.width = 8
        c.optim.lr_start, c.optim.lr_end = 1e-2, 1e-3
        c.batch_size = 8
        c.num_train_steps = 6
        c.log_every_steps = 2
        c.eval_every_steps = 3
        c.checkpoint_every_steps = 3
        return c
    raise ValueError(f"unknown config argument {arg!r}: use '', 'demo' or 'tiny'")
