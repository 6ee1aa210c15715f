"""Student phase: cross-modal distillation of the face teacher into the speech student.

    python -m cmemo_jax.main --config=configs/student.py --workdir=DIR           # paper recipe
    python -m cmemo_jax.main --config=configs/student.py:demo --workdir=DIR      # CPU demo (~10 min)
    python -m cmemo_jax.main --config=configs/student.py:tiny --workdir=DIR      # tests

Without config.data.records_dir the embedded synthetic corpus is used (generated on first use).
Point it at real EmoVoxCeleb records (made by data_prep/make_voxceleb_records.py) with
--config.data.source=records --config.data.records_dir=/path/to/records.
"""
import ml_collections

from cmemo_jax import constants
from cmemo_jax.config_defaults import add_training_fields


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.phase = "student"
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"           # 'synthetic' | 'records'
    c.data.records_dir = ""
    c.data.synthetic_preset = "default"   # SyntheticConfig preset: 'default' | 'demo' | 'tiny'
    c.data.cache_dir = ""                 # '' -> $CMEMO_CACHE or ~/.cache/cmemo_jax
    c.data.shuffle_buffer = 4096
    c.data.cache_in_ram = False           # keep whole tracks in RAM (where they fit)

    c.audio = ml_collections.ConfigDict()
    c.audio.crop_samples = constants.CROP_SAMPLES  # 4.024 s at 16 kHz -> 512 x 400 spectrogram (paper §5.1)
    c.audio.dither = True                 # VGGVox dither in training; evaluation is dither-free
    c.audio.dft = "fft"                   # 'fft' | 'matmul' (DFT as matmul, for TPUs)

    c.model = ml_collections.ConfigDict()
    c.model.conv_features = (96, 256, 256, 256, 256)  # paper Table 4 (VGGVox has conv3 = 384)
    c.model.fc6_features = 4096
    c.model.fc7_features = 1024
    c.model.num_classes = 8
    c.model.dtype = "float32"             # compute dtype; 'bfloat16' = mixed precision on GPU/TPU
    c.model.pool_impl = "auto"            # max-pool lowering: 'auto' (per backend) | 'argmax' | 'reduce_window' (same maths)
    c.model.conv_impl = "auto"            # conv lowering: 'auto' | 'xla' | 'gemmgrad' | 'patches' | 6 names (same maths)

    c.loss = ml_collections.ConfigDict()
    c.loss.name = "distill"               # 'distill' (paper) | 'l2' (logit regression ablation)
    c.loss.temperature = 2.0

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"                  # 'sgd' (paper) | 'adamw'
    c.optim.schedule = "log"              # 'log' (paper: 1e-4 -> 1e-5 log-spaced) | 'cosine' | 'constant'
    c.optim.momentum = 0.9
    c.optim.weight_decay = 5e-4
    c.optim.lr_start = 1e-4
    c.optim.lr_end = 1e-5
    c.optim.grad_clip_norm = 0.0

    # one random 4 s crop per training track per epoch; selection on 'unheard_val/loss' (paper §5.1)
    add_training_fields(c, export_path="student.msgpack", batch_size=64, num_epochs=50, log_every_steps=50,
                        eval_every_steps=2000, checkpoint_every_steps=1000)

    if arg in (None, "", "paper"):
        return c
    if arg == "demo":
        # CPU demo: a narrower student on the demo-size synthetic corpus; a higher learning rate
        # so that a few hundred steps suffice. The paper recipe is the default above.
        c.data.synthetic_preset = "demo"
        c.data.cache_in_ram = True
        c.model.conv_features = (32, 64, 64, 64, 64)
        c.model.fc6_features = 256
        c.model.fc7_features = 128
        c.optim.lr_start, c.optim.lr_end = 3e-2, 3e-3
        c.batch_size = 32
        c.num_epochs = 12
        c.log_every_steps = 25
        c.eval_every_steps = 100
        c.checkpoint_every_steps = 100
        return c
    if arg == "tiny":
        c.data.synthetic_preset = "tiny"
        c.data.shuffle_buffer = 64
        c.audio.dither = True
        c.model.conv_features = (4, 8, 8, 8, 8)
        c.model.fc6_features = 16
        c.model.fc7_features = 8
        c.optim.lr_start, c.optim.lr_end = 1e-2, 1e-3
        c.batch_size = 8
        c.num_train_steps = 6
        c.log_every_steps = 2
        c.eval_every_steps = 3
        c.checkpoint_every_steps = 3
        return c
    raise ValueError(f"unknown config argument {arg!r}: use '', 'demo' or 'tiny'")
