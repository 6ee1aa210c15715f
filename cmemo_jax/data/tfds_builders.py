"""TensorFlow Datasets builders for FERPlus and for our EmoVoxCeleb record shards.

Importing this module registers 'ferplus' and 'emovoxceleb' with TFDS, after which::

    import tensorflow_datasets as tfds
    import cmemo_jax.data.tfds_builders  # noqa: F401  (registration)
    ds = tfds.load('ferplus', data_dir=DATA_DIR, download_and_prepare_kwargs={
        'download_config': tfds.download.DownloadConfig(manual_dir=FOLDER_WITH_THE_TWO_CSVS)})

It imports TensorFlow and TFDS at module level (the builders subclass a TFDS class), so nothing else
in the package imports it eagerly: models, front-end and the train step must import without
TensorFlow (docs/method.md §6).

TFDS caches a prepared dataset under DATA_DIR/<name>/<version>/ and does not look at manual_dir again:
prepare EmoVoxCeleb from different record directories (synthetic, real) into different data_dirs.
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath

from cmemo_jax.constants import EMOTIONS, NUM_EMOTIONS, SAMPLE_RATE, SPLIT_NAMES
from cmemo_jax.data import ferplus, records

_FERPLUS_CITATION = """\
@inproceedings{BarsoumICMI2016,
  title={Training Deep Networks for Facial Expression Recognition with Crowd-Sourced Label
         Distribution},
  author={Barsoum, Emad and Zhang, Cha and Canton Ferrer, Cristian and Zhang, Zhengyou},
  booktitle={ACM International Conference on Multimodal Interaction (ICMI)},
  year={2016}
}"""

_EMOVOXCELEB_CITATION = """\
@inproceedings{Albanie18a,
  title={Emotion Recognition in Speech using Cross-Modal Transfer in the Wild},
  author={Albanie, Samuel and Nagrani, Arsha and Vedaldi, Andrea and Zisserman, Andrew},
  booktitle={ACM Multimedia},
  year={2018}
}"""


class _Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of our builders: states where their code lives.

    TFDS 4.9.10 finds a builder's source file through `importlib_resources`, which it requires only on
    Python < 3.9, so on newer Pythons without that package `download_and_prepare` fails
    (tensorflow/datasets#11212). The file of the class is all it needs.
    """

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls))


class Ferplus(_Builder):
    """FER2013 48x48 grey faces with the cleaned FERPlus votes (cmemo_jax.data.ferplus).

    Example: image uint8 [48, 48, 1]; votes float32 [10] (cleaned counts: 8 emotions in EMOTIONS
    order, unknown, NF); label int64 index into EMOTIONS (argmax of the emotion votes).
    Splits: train / validation / test = Usage Training / PublicTest / PrivateTest.
    """

    name = "ferplus"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "FER2013 images with FERPlus votes, cleaned as in microsoft/FERPlus."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Place {ferplus.FER2013_FILE} (the FER2013 release, Kaggle "Challenges in Representation Learning:
Facial Expression Recognition Challenge") and {ferplus.FERPLUS_FILE} (github.com/microsoft/FERPlus)
in manual_dir, both unchanged."""

    def _info(self) -> tfds.core.DatasetInfo:
        size = ferplus.IMAGE_SIZE
        return tfds.core.DatasetInfo(
            builder=self,
            description="FER2013 faces relabelled by 10 annotators each (FERPlus), with the FERPlus "
                        "authors' vote cleaning.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(size, size, 1), dtype=np.uint8),
                "votes": tfds.features.Tensor(shape=(ferplus.NUM_VOTES,), dtype=np.float32),
                "label": tfds.features.ClassLabel(names=list(EMOTIONS)),
            }),
            supervised_keys=("image", "label"),
            homepage="https://github.com/microsoft/FERPlus",
            citation=_FERPLUS_CITATION,
        )

    def _split_generators(self, dl_manager):
        data = ferplus.load_ferplus(os.fspath(dl_manager.manual_dir))
        return {split: self._generate_examples(data[split]) for split in ferplus.SPLITS}

    def _generate_examples(self, split: ferplus.FerPlusSplit):
        # The csv row is unique across splits: a stable key that traces an example to its source.
        for i in range(len(split)):
            yield int(split.row[i]), {"image": split.image[i], "votes": split.votes[i],
                                      "label": int(split.label[i])}


class Emovoxceleb(_Builder):
    """EmoVoxCeleb-format tracks from one of our record directories (cmemo_jax.data.records).

    Example: track_id, identity (text); split int64 (1 train, 2 unheard val, 3 heard val);
    audio int16 [num_samples] 16 kHz mono; logits float32 [num_frames, 8] teacher frame logits, one row
    per 0.24 s. Faces, if the records hold any, are not carried over.
    """

    name = "emovoxceleb"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Tracks of a cmemo_jax record directory."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
manual_dir is a cmemo_jax record directory: '<split>.tfrecord-NNNNN-of-NNNNN' shards for
{', '.join(SPLIT_NAMES.values())} and {records.DATASET_INFO_FILE}, as written by the data_prep/
scripts or by cmemo_jax.data.synthetic.ensure_corpus."""

    def _info(self) -> tfds.core.DatasetInfo:
        # Raw bytes for the long arrays: TFDS would otherwise widen int16 audio to int64 lists.
        raw = tfds.features.Encoding.BYTES
        return tfds.core.DatasetInfo(
            builder=self,
            description="Speaking face-tracks: audio and per-frame teacher emotion logits.",
            features=tfds.features.FeaturesDict({
                "track_id": tfds.features.Text(),
                "identity": tfds.features.Text(),
                "split": tfds.features.Tensor(shape=(), dtype=np.int64),
                # A plain Tensor: tfds.features.Audio ignores the BYTES encoding when serialising.
                "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding=raw,
                                              doc=f"{SAMPLE_RATE} Hz mono PCM of the whole track"),
                "logits": tfds.features.Tensor(shape=(None, NUM_EMOTIONS), dtype=np.float32,
                                               encoding=raw,
                                               doc="teacher logits, one row per 0.24 s, EMOTIONS order"),
            }),
            homepage="https://www.robots.ox.ac.uk/~vgg/research/cross-modal-emotions/",
            citation=_EMOVOXCELEB_CITATION,
        )

    def _split_generators(self, dl_manager):
        data_dir = os.fspath(dl_manager.manual_dir)
        info = records.read_dataset_info(data_dir)   # FileNotFoundError: not a record directory
        expected = info.get("num_examples", {})
        # Listing every split first fails before any writing when a split has no shards.
        shards = {split: records.list_shards(data_dir, split) for split in SPLIT_NAMES.values()}
        return {split: self._generate_examples(files, split, expected.get(split))
                for split, files in shards.items()}

    def _generate_examples(self, shards: list[str], split: str, expected: int | None):
        count = 0
        for serialized in tf.data.TFRecordDataset(shards).as_numpy_iterator():
            track = records.decode_track(serialized)
            count += 1
            yield track["track_id"], {key: track[key] for key in
                                      ("track_id", "identity", "split", "audio", "logits")}
        # A shard lost between writing and preparing would otherwise go unnoticed.
        if expected is not None and count != expected:
            raise ValueError(f"emovoxceleb {split}: {count} tracks in {len(shards)} shards, but "
                             f"{records.DATASET_INFO_FILE} says {expected}")
