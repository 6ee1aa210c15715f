"""On-disk example schema: one ``tf.train.Example`` per speaking face-track, in sharded TFRecord files.

Python-side track dict (what ``encode_track`` takes and ``decode_track`` returns)::

    track_id       str
    identity       str                      speaker identity, e.g. 'id10001'
    split          int                      1 train, 2 unheard-identity val, 3 heard-identity val
    audio          np.int16   [num_samples] 16 kHz mono PCM of the whole track
    logits         np.float32 [num_frames, 8] teacher frame logits, one row per 0.24 s (FRAME_PERIOD_S)
    faces          np.uint8   [num_frames, H, W]  optional grey face crops (synthetic corpus)
    frame_emotion  np.int8    [num_frames]        optional hidden per-frame truth (-1 = unknown)

Serialized features (all scalars int64, arrays as little-endian raw bytes)::

    track_id, identity (bytes); split, num_samples, num_frames, face_height, face_width (int64);
    audio (int16 LE), logits (float32 LE row-major), faces (uint8, may be empty),
    frame_emotion (int8, may be empty).

Raw bytes rather than int64/float lists: decoding is a single ``tf.io.decode_raw`` (no per-value
varint work) and int16 audio stays half the size of float features.

TensorFlow is imported lazily inside the functions so that modules importing this one (for the
constants or the numpy codecs' signatures) do not pay for or require TensorFlow.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Iterable

import numpy as np

from cmemo_jax.constants import NUM_EMOTIONS, SAMPLE_RATE

DATASET_INFO_FILE = "dataset_info.json"


def _tf():
    import tensorflow as tf  # lazy: only the input pipeline needs TF
    return tf


def is_remote(path: str) -> bool:
    """True for URLs such as gs://bucket/dir (handled through tf.io.gfile instead of os)."""
    return "://" in str(path)


def shard_name(split_name: str, index: int, num_shards: int) -> str:
    """File name of shard `index` of `num_shards` for a split, e.g. 'train.tfrecord-00000-of-00004'."""
    return f"{split_name}.tfrecord-{index:05d}-of-{num_shards:05d}"


def _validate(track: dict) -> dict:
    """Checks a track dict and returns it with normalised numpy arrays; ValueError names the track."""
    tid = track.get("track_id", "<missing track_id>")

    def bad(msg):
        return ValueError(f"track {tid!r}: {msg}")

    for key in ("track_id", "identity", "split", "audio", "logits"):
        if key not in track:
            raise bad(f"missing field {key!r}")
    if not isinstance(track["track_id"], str) or not isinstance(track["identity"], str):
        raise bad("track_id and identity must be str")
    split = track["split"]
    if isinstance(split, (bool, np.bool_)) or not isinstance(split, (int, np.integer)):
        raise bad(f"split must be an int, got {type(split).__name__}")

    audio = np.asarray(track["audio"])
    if audio.dtype != np.int16:
        raise bad(f"audio must be int16, got {audio.dtype}")
    if audio.ndim != 1:
        raise bad(f"audio must be 1-D [num_samples], got shape {audio.shape}")
    if audio.shape[0] < 1:
        raise bad("audio is empty (num_samples must be >= 1)")

    logits = np.asarray(track["logits"])
    if logits.dtype != np.float32:
        raise bad(f"logits must be float32, got {logits.dtype}")
    if logits.ndim != 2 or logits.shape[1] != NUM_EMOTIONS:
        raise bad(f"logits must be [num_frames, {NUM_EMOTIONS}], got shape {logits.shape}")
    if logits.shape[0] < 1:
        raise bad("logits have no rows (num_frames must be >= 1)")
    if not np.all(np.isfinite(logits)):
        raise bad("logits contain NaN or Inf")
    num_frames = logits.shape[0]

    faces = track.get("faces")
    if faces is not None:
        faces = np.asarray(faces)
        if faces.dtype != np.uint8:
            raise bad(f"faces must be uint8, got {faces.dtype}")
        if faces.ndim != 3:
            raise bad(f"faces must be [num_frames, H, W], got shape {faces.shape}")
        if faces.shape[0] != num_frames:
            raise bad(f"faces have {faces.shape[0]} rows but logits have {num_frames}")
    frame_emotion = track.get("frame_emotion")
    if frame_emotion is not None:
        frame_emotion = np.asarray(frame_emotion)
        if frame_emotion.dtype != np.int8:
            raise bad(f"frame_emotion must be int8, got {frame_emotion.dtype}")
        if frame_emotion.shape != (num_frames,):
            raise bad(f"frame_emotion must be [{num_frames}], got shape {frame_emotion.shape}")
    return dict(track_id=track["track_id"], identity=track["identity"], split=int(split),
                audio=audio, logits=logits, faces=faces, frame_emotion=frame_emotion)


def encode_track(track: dict) -> bytes:
    """Serializes a track dict (see module docstring) to a tf.train.Example; ValueError if invalid."""
    t = _validate(track)
    tf = _tf()

    def b(v: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))

    faces, fe = t["faces"], t["frame_emotion"]
    feats = {
        "track_id": b(t["track_id"].encode("utf-8")),
        "identity": b(t["identity"].encode("utf-8")),
        "split": i(t["split"]),
        "audio": b(t["audio"].astype("<i2", copy=False).tobytes()),
        "num_samples": i(t["audio"].shape[0]),
        "logits": b(np.ascontiguousarray(t["logits"], dtype="<f4").tobytes()),
        "num_frames": i(t["logits"].shape[0]),
        "faces": b(b"" if faces is None else np.ascontiguousarray(faces).tobytes()),
        "face_height": i(0 if faces is None else faces.shape[1]),
        "face_width": i(0 if faces is None else faces.shape[2]),
        "frame_emotion": b(b"" if fe is None else fe.tobytes()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def decode_track(serialized: bytes) -> dict:
    """Inverse of ``encode_track``: a track dict of numpy arrays ('faces'/'frame_emotion' only if stored)."""
    tf = _tf()
    ex = tf.train.Example.FromString(serialized)
    f = ex.features.feature

    def b(k):
        return f[k].bytes_list.value[0]

    def i(k):
        return int(f[k].int64_list.value[0])

    num_frames = i("num_frames")
    out = {
        "track_id": b("track_id").decode("utf-8"),
        "identity": b("identity").decode("utf-8"),
        "split": i("split"),
        "audio": np.frombuffer(b("audio"), dtype="<i2").astype(np.int16),
        "logits": np.frombuffer(b("logits"), dtype="<f4").astype(np.float32).reshape(
            num_frames, NUM_EMOTIONS),
    }
    if out["audio"].shape[0] != i("num_samples"):
        raise ValueError(f"track {out['track_id']!r}: audio has {out['audio'].shape[0]} samples, "
                         f"num_samples says {i('num_samples')}")
    faces = b("faces")
    if faces:
        h, w = i("face_height"), i("face_width")
        out["faces"] = np.frombuffer(faces, dtype=np.uint8).reshape(num_frames, h, w).copy()
    fe = b("frame_emotion")
    if fe:
        out["frame_emotion"] = np.frombuffer(fe, dtype=np.int8).copy()
    return out


def write_shards(tracks: Iterable[dict], out_dir: str, split_name: str, num_shards: int) -> list[str]:
    """Writes tracks round-robin into `num_shards` TFRecord files; returns their paths (sorted).

    Each shard is written to '<name>.tmp-<pid>' and renamed only after all shards are complete, so a
    killed writer never leaves a complete-looking shard (list_shards ignores the .tmp files).
    Invalid tracks raise ValueError (nothing is renamed into place in that case).
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    tf = _tf()
    remote = is_remote(out_dir)
    if remote:
        tf.io.gfile.makedirs(out_dir)
    else:
        os.makedirs(out_dir, exist_ok=True)
    finals = [os.path.join(out_dir, shard_name(split_name, k, num_shards)) for k in range(num_shards)]
    temps = [f"{p}.tmp-{os.getpid()}" for p in finals]
    writers = [tf.io.TFRecordWriter(p) for p in temps]
    ok = False
    try:
        for n, track in enumerate(tracks):
            writers[n % num_shards].write(encode_track(track))
        ok = True
    finally:
        for w in writers:
            w.close()
        if not ok:
            for p in temps:
                if tf.io.gfile.exists(p):
                    tf.io.gfile.remove(p)
    for tmp, final in zip(temps, finals):
        if remote:
            tf.io.gfile.rename(tmp, final, overwrite=True)
        else:
            os.replace(tmp, final)
    return finals


def list_shards(data_dir: str, split_name: str) -> list[str]:
    """Sorted complete shard paths of a split; FileNotFoundError naming the directory if there are none."""
    pattern = os.path.join(data_dir, f"{split_name}.tfrecord-*-of-*")
    found = _tf().io.gfile.glob(pattern) if is_remote(data_dir) else glob.glob(pattern)
    files = sorted(p for p in found if ".tmp" not in os.path.basename(p))
    if not files:
        raise FileNotFoundError(
            f"no '{split_name}' record shards ({split_name}.tfrecord-*-of-*) in {data_dir}")
    return files


def feature_spec() -> dict:
    """tf.io.parse_single_example spec of the features the training pipeline reads (no faces)."""
    tf = _tf()
    return {
        "track_id": tf.io.FixedLenFeature([], tf.string),
        "identity": tf.io.FixedLenFeature([], tf.string),
        "split": tf.io.FixedLenFeature([], tf.int64),
        "audio": tf.io.FixedLenFeature([], tf.string),
        "num_samples": tf.io.FixedLenFeature([], tf.int64),
        "logits": tf.io.FixedLenFeature([], tf.string),
        "num_frames": tf.io.FixedLenFeature([], tf.int64),
    }


def parse_example(serialized_tensor) -> dict:
    """tf.data map function: serialized Example -> dict of tensors.

    Returns {'audio': int16 [num_samples], 'logits': float32 [num_frames, 8], 'num_samples': int64,
    'num_frames': int64, 'split': int64, 'identity': string, 'track_id': string}. Faces are not parsed.
    """
    tf = _tf()
    p = tf.io.parse_single_example(serialized_tensor, feature_spec())
    # decode_raw with little_endian=True matches the '<i2' / '<f4' encoding on any host.
    audio = tf.io.decode_raw(p["audio"], tf.int16, little_endian=True)
    logits = tf.reshape(tf.io.decode_raw(p["logits"], tf.float32, little_endian=True), [-1, NUM_EMOTIONS])
    return {"audio": audio, "logits": logits, "num_samples": p["num_samples"],
            "num_frames": p["num_frames"], "split": p["split"], "identity": p["identity"],
            "track_id": p["track_id"]}


def write_dataset_info(data_dir: str, info: dict[str, Any]) -> str:
    """Writes `info` (e.g. {'num_examples': {'train': n, ...}, 'sample_rate': 16000, 'source': ...}) as
    DATA_DIR/dataset_info.json atomically; returns the path. 'sample_rate' defaults to 16000."""
    info = dict(info)
    info.setdefault("sample_rate", SAMPLE_RATE)
    path = os.path.join(data_dir, DATASET_INFO_FILE)
    text = json.dumps(info, indent=2, sort_keys=True)
    if is_remote(data_dir):
        tf = _tf()
        tf.io.gfile.makedirs(data_dir)
        with tf.io.gfile.GFile(path, "w") as fh:
            fh.write(text)
        return path
    os.makedirs(data_dir, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


def read_dataset_info(data_dir: str) -> dict[str, Any]:
    """Reads DATA_DIR/dataset_info.json; FileNotFoundError naming the path if it is missing."""
    path = os.path.join(data_dir, DATASET_INFO_FILE)
    if is_remote(data_dir):
        tf = _tf()
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"no {DATASET_INFO_FILE} in {data_dir}")
        with tf.io.gfile.GFile(path, "r") as fh:
            return json.loads(fh.read())
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {DATASET_INFO_FILE} in {data_dir}")
    with open(path) as fh:
        return json.load(fh)
