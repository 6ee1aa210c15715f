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

Directory layout (DATA_DIR, local or a gs:// URL)::

    <split>.tfrecord-XXXXX-of-NNNNN   shards of a split (shard_name), written by write_shards
    dataset_info.json                 written by write_dataset_info; its 'shards' maps each split to
                                      the shard file names that make it up (names relative to DATA_DIR)

Readers take a split's files from that list (list_shards), never from a directory glob, so a shard
left by another run cannot slip into training. Rules:

* write_shards writes every shard under a temporary name and renames them only when all are complete;
  writing a split replaces it: shards of the same split with another shard count (an earlier run) are
  removed once the new ones are in place;
* write_dataset_info records info['shards'] when given, else the shards write_shards last wrote into
  this directory in this process, else the one complete '<split>.tfrecord-*-of-NNNNN' set it finds on
  disk per split (several complete sets of one split: ValueError, it cannot tell which is current);
* list_shards returns exactly the listed files; directories written before the list existed fall back
  to the glob with a warning (mixed or incomplete shard sets are then an error).

TensorFlow is imported lazily inside the functions so that modules importing this one (for the
constants or the numpy codecs' signatures) do not pay for or require TensorFlow.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any, Iterable

import numpy as np

from cmemo_jax.constants import NUM_EMOTIONS, SAMPLE_RATE
from cmemo_jax.data import tf_io
from cmemo_jax.data.tf_io import import_tf as _tf, is_remote  # noqa: F401 - old names, one home

DATASET_INFO_FILE = "dataset_info.json"
SHARDS_KEY = "shards"  # dataset_info.json: {split: [shard file names relative to DATA_DIR]}

# Canonical shard names (shard_name); temp files ('...-of-00004.tmp-123') do not match.
_SHARD_RE = re.compile(r"^(?P<split>.+)\.tfrecord-(?P<index>\d+)-of-(?P<count>\d+)$")

# (directory key, split) -> shard names the last write_shards call of this process wrote there.
# write_dataset_info reads it so that writers which do not pass info["shards"] (the synthetic corpus) still
# get exactly the files they wrote listed.
_WRITTEN: dict[tuple[str, str], tuple[str, ...]] = {}


def shard_name(split_name: str, index: int, num_shards: int) -> str:
    """File name of shard `index` of `num_shards` for a split, e.g. 'train.tfrecord-00000-of-00004'."""
    return f"{split_name}.tfrecord-{index:05d}-of-{num_shards:05d}"


def _dir_key(data_dir: str) -> str:
    return str(data_dir).rstrip("/") if is_remote(data_dir) else os.path.abspath(data_dir)


def _shard_sets(names: Iterable[str]) -> dict[str, dict[int, dict[int, str]]]:
    """Canonical shard names -> {split: {shard count N: {index: name}}} (other names ignored)."""
    out: dict[str, dict[int, dict[int, str]]] = {}
    for name in names:
        m = _SHARD_RE.match(name)
        if m:
            out.setdefault(m["split"], {}).setdefault(int(m["count"]), {})[int(m["index"])] = name
    return out


def _is_complete(count: int, by_index: dict[int, str]) -> bool:
    return set(by_index) == set(range(count))


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
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(deterministic=True)


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
    killed writer never leaves a complete-looking shard (list_shards ignores the .tmp files). Writing a
    split replaces it: once the new shards are in place, shards of the same split with another shard
    count (left by an earlier run) are removed. The names are remembered for write_dataset_info.
    Invalid tracks raise ValueError (nothing is renamed into place in that case).
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    tf = _tf()
    tf_io.makedirs(out_dir)
    names = [shard_name(split_name, k, num_shards) for k in range(num_shards)]
    finals = [tf_io.join(out_dir, n) for n in names]
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
                if tf_io.exists(p):
                    tf_io.remove(p)
    for tmp, final in zip(temps, finals):
        tf_io.rename(tmp, final)
    _remove_other_shard_sets(out_dir, split_name, keep=set(names))
    _WRITTEN[(_dir_key(out_dir), split_name)] = tuple(names)
    return finals


def _remove_other_shard_sets(out_dir: str, split_name: str, keep: set[str]) -> None:
    """Deletes canonical shards of `split_name` in out_dir that are not in `keep` (stale shard counts)."""
    for by_index in _shard_sets(tf_io.listdir(out_dir)).get(split_name, {}).values():
        for name in by_index.values():
            if name not in keep:
                tf_io.remove(tf_io.join(out_dir, name))


def list_shards(data_dir: str, split_name: str) -> list[str]:
    """Paths of the shards that make up a split, as DATA_DIR/dataset_info.json lists them (in order).

    Directories without a shard list (written before it existed, or shards without dataset_info) fall
    back to the complete '<split>.tfrecord-*-of-NNNNN' set on disk, with a warning.
    Raises:
      FileNotFoundError (one line naming the directory): the directory does not exist, it holds no
        shards of the split, or a listed shard is missing.
      ValueError: no list and the directory holds mixed or incomplete shard sets of the split.
    """
    if not tf_io.isdir(data_dir):
        raise FileNotFoundError(f"records dir {data_dir} does not exist")
    listed = _listed_shards(data_dir)
    if listed is None:
        return _glob_shards(data_dir, split_name)
    names = listed.get(split_name) or []
    if not names:
        splits = ", ".join(sorted(k for k, v in listed.items() if v)) or "none"
        raise FileNotFoundError(f"{tf_io.join(data_dir, DATASET_INFO_FILE)} lists no '{split_name}' "
                                f"record shards (splits listed: {splits})")
    paths = [tf_io.join(data_dir, n) for n in names]
    missing = [n for n, p in zip(names, paths) if not tf_io.exists(p)]
    if missing:
        raise FileNotFoundError(f"{data_dir}: {len(missing)} of the {len(names)} '{split_name}' shards that "
                                f"{DATASET_INFO_FILE} lists are missing (first: {missing[0]})")
    return paths


def _listed_shards(data_dir: str) -> dict[str, list[str]] | None:
    """info['shards'] of DATA_DIR/dataset_info.json; None when there is no file or no list in it."""
    if not tf_io.exists(tf_io.join(data_dir, DATASET_INFO_FILE)):
        return None
    listed = read_dataset_info(data_dir).get(SHARDS_KEY)
    if listed is None:
        return None
    _check_shard_list(tf_io.join(data_dir, DATASET_INFO_FILE), listed)
    return listed


def _check_shard_list(where: str, listed) -> None:
    """ValueError naming `where` unless `listed` is {split: [file names inside the directory]}."""
    ok = isinstance(listed, dict) and all(
        isinstance(v, list) and all(isinstance(n, str) and n and "/" not in n and "\\" not in n for n in v)
        for v in listed.values())
    if not ok:
        raise ValueError(f"{where}: '{SHARDS_KEY}' must map each split to a list of shard file names, "
                         f"got {str(listed)[:200]}")


def _glob_shards(data_dir: str, split_name: str) -> list[str]:
    """The one complete canonical shard set of a split on disk (directories without a shard list)."""
    warnings.warn(f"{data_dir}: no shard list ({DATASET_INFO_FILE} missing, or written before it listed "
                  f"shards); taking the '{split_name}' shards from the directory listing", stacklevel=3)
    sets = _shard_sets(tf_io.listdir(data_dir)).get(split_name, {})
    if not sets:
        raise FileNotFoundError(
            f"no '{split_name}' record shards ({split_name}.tfrecord-*-of-*) in {data_dir}")
    if len(sets) > 1:
        raise ValueError(f"{data_dir}: '{split_name}' shards of {len(sets)} different shard counts "
                         f"({', '.join(map(str, sorted(sets)))}): stale shards of an earlier run; rewrite "
                         f"the directory")
    (count, by_index), = sets.items()
    if not _is_complete(count, by_index):
        raise ValueError(f"{data_dir}: '{split_name}' has {len(by_index)} of its {count} shards")
    return [tf_io.join(data_dir, by_index[i]) for i in range(count)]


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
    DATA_DIR/dataset_info.json atomically; returns the path.

    'sample_rate' defaults to 16000. 'shards' ({split: [shard file names]}, what list_shards reads)
    defaults to the shards found by ``_shards_to_list`` (module docstring): call this after the shards
    are written.
    """
    info = dict(info)
    info.setdefault("sample_rate", SAMPLE_RATE)
    if SHARDS_KEY in info:
        info[SHARDS_KEY] = {k: list(v) for k, v in info[SHARDS_KEY].items()}
        _check_shard_list(f"write_dataset_info({data_dir})", info[SHARDS_KEY])
    else:
        info[SHARDS_KEY] = _shards_to_list(data_dir)
    path = tf_io.join(data_dir, DATASET_INFO_FILE)
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


def _shards_to_list(data_dir: str) -> dict[str, list[str]]:
    """{split: shard names} for dataset_info: what write_shards last wrote here in this process, else the
    single complete shard set per split on disk. ValueError if a split has several complete sets."""
    on_disk = tf_io.listdir(data_dir) if tf_io.isdir(data_dir) else []
    present = set(on_disk)
    key = _dir_key(data_dir)
    out = {split: list(names) for (k, split), names in _WRITTEN.items()
           if k == key and names and present.issuperset(names)}
    for split, sets in _shard_sets(on_disk).items():
        if split in out:
            continue
        complete = sorted(n for n, by_index in sets.items() if _is_complete(n, by_index))
        if len(complete) > 1:
            raise ValueError(f"{data_dir}: '{split}' has complete shard sets of {complete} files; cannot tell "
                             f"which is current (pass info['{SHARDS_KEY}'] or remove the stale ones)")
        if complete:
            out[split] = [sets[complete[0]][i] for i in range(complete[0])]
        else:
            warnings.warn(f"{data_dir}: '{split}' holds only an incomplete shard set; not listed")
    return out


def read_dataset_info(data_dir: str) -> dict[str, Any]:
    """Reads DATA_DIR/dataset_info.json; FileNotFoundError naming the path if it is missing."""
    path = tf_io.join(data_dir, DATASET_INFO_FILE)
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
