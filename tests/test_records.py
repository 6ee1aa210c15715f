"""Record schema: encode/decode round trip, validation messages, shard writing/listing, tf.data parsing."""
import os

import numpy as np
import pytest

from cmemo_jax.data import records


def _track(track_id="t0", num_samples=1000, num_frames=5, faces=True, seed=0):
    rng = np.random.default_rng(seed)
    t = {
        "track_id": track_id,
        "identity": "id10001",
        "split": 2,
        "audio": rng.integers(-32768, 32767, num_samples, endpoint=True).astype(np.int16),
        "logits": rng.normal(size=(num_frames, 8)).astype(np.float32),
    }
    if faces:
        t["faces"] = rng.integers(0, 255, (num_frames, 6, 7)).astype(np.uint8)
        t["frame_emotion"] = rng.integers(-1, 8, num_frames).astype(np.int8)
    return t


def _assert_same(a, b):
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype, k
            np.testing.assert_array_equal(a[k], b[k])
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("faces", [True, False])
def test_round_trip(faces):
    t = _track(faces=faces)
    _assert_same(records.decode_track(records.encode_track(t)), t)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda t: t.update(audio=t["audio"].astype(np.float32)), "audio must be int16"),
    (lambda t: t.update(audio=np.zeros(0, np.int16)), "num_samples"),
    (lambda t: t.update(logits=np.zeros((5, 7), np.float32)), "logits must be [num_frames, 8]"),
    (lambda t: t.update(logits=np.zeros((0, 8), np.float32)), "num_frames"),
    (lambda t: t.update(logits=t["logits"].astype(np.float64)), "logits must be float32"),
    (lambda t: t["logits"].__setitem__((1, 2), np.nan), "NaN"),
    (lambda t: t.update(faces=t["faces"][:3]), "faces have 3 rows"),
    (lambda t: t.update(frame_emotion=t["frame_emotion"][:2]), "frame_emotion"),
    (lambda t: t.pop("identity"), "identity"),
])
def test_validation_names_track(mutate, fragment):
    t = _track(track_id="bad_track_42")
    mutate(t)
    with pytest.raises(ValueError) as err:
        records.encode_track(t)
    assert "bad_track_42" in str(err.value)
    assert fragment in str(err.value)


def test_write_and_list_shards(tmp_path):
    tracks = [_track(f"t{k}", num_samples=100 + k, num_frames=1 + k % 3, seed=k) for k in range(7)]
    paths = records.write_shards(iter(tracks), str(tmp_path), "train", 3)
    assert [os.path.basename(p) for p in paths] == [f"train.tfrecord-{i:05d}-of-00003" for i in range(3)]
    # A leftover temp file of a killed writer is never listed.
    (tmp_path / "train.tfrecord-00000-of-00003.tmp-123").write_bytes(b"junk")
    assert records.list_shards(str(tmp_path), "train") == paths
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        records.list_shards(str(tmp_path), "heard_val")

    import tensorflow as tf
    # Round robin: shard i holds tracks i, i+3, ...
    for i, p in enumerate(paths):
        got = [records.decode_track(r.numpy()) for r in tf.data.TFRecordDataset(p)]
        assert [g["track_id"] for g in got] == [f"t{k}" for k in range(i, 7, 3)]


def test_invalid_track_leaves_no_shard(tmp_path):
    bad = _track("broken")
    bad["logits"] = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match="broken"):
        records.write_shards([_track("ok"), bad], str(tmp_path), "train", 2)
    assert os.listdir(tmp_path) == []


def test_parse_example_matches_decode(tmp_path):
    import tensorflow as tf
    tracks = [_track(f"t{k}", num_samples=50 + 13 * k, num_frames=1 + k, seed=k, faces=k % 2 == 0)
              for k in range(4)]
    paths = records.write_shards(tracks, str(tmp_path), "heard_val", 1)
    ds = tf.data.TFRecordDataset(paths).map(records.parse_example)
    for t, ex in zip(tracks, ds.as_numpy_iterator()):
        assert ex["audio"].dtype == np.int16 and ex["logits"].dtype == np.float32
        np.testing.assert_array_equal(ex["audio"], t["audio"])
        np.testing.assert_array_equal(ex["logits"], t["logits"])
        assert ex["num_samples"] == len(t["audio"]) and ex["num_frames"] == len(t["logits"])
        assert ex["split"] == 2 and ex["identity"] == b"id10001" and ex["track_id"] == t["track_id"].encode()


def test_dataset_info(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_info.json"):
        records.read_dataset_info(str(tmp_path))
    records.write_dataset_info(str(tmp_path), {"num_examples": {"train": 3}, "source": "test"})
    info = records.read_dataset_info(str(tmp_path))
    assert info["num_examples"] == {"train": 3} and info["sample_rate"] == 16000 and info["source"] == "test"


# ------------------------------------------------- shard lists: dataset_info.json names the files to read

def _tracks(n, prefix="t"):
    return [_track(f"{prefix}{k}", num_samples=100 + k, num_frames=1 + k % 3, seed=k, faces=False)
            for k in range(n)]


def _names(paths):
    return [os.path.basename(p) for p in paths]


def test_dataset_info_lists_written_shards_and_list_shards_reads_only_them(tmp_path):
    import shutil
    train = records.write_shards(_tracks(5), str(tmp_path), "train", 2)
    val = records.write_shards(_tracks(2, "v"), str(tmp_path), "heard_val", 1)
    records.write_dataset_info(str(tmp_path), {"num_examples": {"train": 5, "heard_val": 2}})
    info = records.read_dataset_info(str(tmp_path))
    assert info["shards"] == {"train": _names(train), "heard_val": _names(val)}
    # A complete-looking shard that is not listed (another run's, a copy) is never read.
    shutil.copy(val[0], tmp_path / "train.tfrecord-00000-of-00001")
    assert records.list_shards(str(tmp_path), "train") == train
    assert records.list_shards(str(tmp_path), "heard_val") == val
    # A split the list lacks, and a listed file that is gone: one-line errors naming the directory.
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*lists no 'unheard_val'") as err:
        records.list_shards(str(tmp_path), "unheard_val")
    assert "\n" not in str(err.value)
    os.remove(train[1])
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: 1 of the 2 'train' shards .* missing"):
        records.list_shards(str(tmp_path), "train")


def test_list_shards_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"records dir {tmp_path / 'nope'} does not exist"):
        records.list_shards(str(tmp_path / "nope"), "train")


def test_rewriting_a_split_replaces_its_shards(tmp_path):
    records.write_shards(_tracks(6), str(tmp_path), "train", 4)
    records.write_shards(_tracks(3, "v"), str(tmp_path), "heard_val", 2)
    new = records.write_shards(_tracks(6), str(tmp_path), "train", 2)
    assert sorted(os.listdir(tmp_path)) == sorted(_names(new) + [
        "heard_val.tfrecord-00000-of-00002", "heard_val.tfrecord-00001-of-00002"])
    records.write_dataset_info(str(tmp_path), {})
    assert records.list_shards(str(tmp_path), "train") == new


def test_dataset_info_discovers_shards_written_elsewhere(tmp_path):
    # Shards written by another process (nothing remembered here): the one complete set per split.
    paths = records.write_shards(_tracks(3), str(tmp_path), "train", 3)
    records._WRITTEN.clear()
    (tmp_path / "train.tfrecord-00000-of-00003.tmp-99").write_bytes(b"junk")   # killed writer's temp
    records.write_dataset_info(str(tmp_path), {})
    assert records.read_dataset_info(str(tmp_path))["shards"] == {"train": _names(paths)}
    # Two complete sets of one split: it cannot tell which is current.
    import shutil
    shutil.copy(paths[0], tmp_path / "train.tfrecord-00000-of-00001")
    records._WRITTEN.clear()
    with pytest.raises(ValueError, match="complete shard sets of"):
        records.write_dataset_info(str(tmp_path), {})


def test_old_directory_without_list_falls_back_to_glob_with_warning(tmp_path):
    paths = records.write_shards(_tracks(4), str(tmp_path), "train", 2)
    with open(tmp_path / records.DATASET_INFO_FILE, "w") as fh:   # written before the list existed
        fh.write('{"num_examples": {"train": 4}}')
    with pytest.warns(UserWarning, match="no shard list"):
        assert records.list_shards(str(tmp_path), "train") == paths
    # Mixed shard counts in such a directory are stale shards: an error, not a silent union.
    import shutil
    shutil.copy(paths[0], tmp_path / "train.tfrecord-00000-of-00001")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="2 different shard counts"):
        records.list_shards(str(tmp_path), "train")


def test_one_home_for_tf_and_is_remote():
    from cmemo_jax.data import pipeline, tf_io
    assert records._tf is tf_io.import_tf and pipeline._tf is tf_io.import_tf
    assert records.is_remote is tf_io.is_remote and pipeline.is_remote is tf_io.is_remote
    assert tf_io.is_remote("gs://b/d") and not tf_io.is_remote("/data/d")
