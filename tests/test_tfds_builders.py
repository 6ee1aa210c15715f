"""TFDS builders: 'ferplus' and 'emovoxceleb' prepared from small files return exactly what was written."""
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from cmemo_jax.constants import EMOTIONS, SPLIT_IDS  # noqa: E402
from cmemo_jax.data import ferplus, records, tfds_builders  # noqa: E402,F401  (registers builders)
from test_ferplus import CLEANING_CASES, HAPPY, pixels_of, write_pair  # noqa: E402


def load(name, data_dir, manual_dir):
    """tfds.load as a user calls it, the source files in manual_dir; returns ({split: ds}, info)."""
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    return tfds.load(name, data_dir=str(data_dir), with_info=True,
                     download_and_prepare_kwargs={"download_config": config})


def test_builders_are_registered():
    assert {"ferplus", "emovoxceleb"} <= set(tfds.list_builders(with_community_datasets=False))


def test_ferplus_load_returns_the_cleaned_rows(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    rows = [("Training", f"fer{k:07d}.png", votes, pixels_of(k))
            for k, (votes, _, _) in enumerate(CLEANING_CASES)]
    rows += [("PublicTest", "v.png", HAPPY, pixels_of(50)), ("PrivateTest", "t.png", HAPPY, pixels_of(51)),
             ("PrivateTest", "u.png", "0,0,0,0,0,0,8,0,2,0", pixels_of(52))]
    write_pair(manual, rows)
    expected = ferplus.load_ferplus(str(manual))

    splits, info = load("ferplus", tmp_path / "data", manual)
    assert info.features["label"].names == list(EMOTIONS)
    assert info.features["image"].shape == (48, 48, 1)
    assert set(splits) == set(ferplus.SPLITS)
    for split in ferplus.SPLITS:
        want = expected[split]
        assert info.splits[split].num_examples == len(want)
        # TFDS orders examples by a hash of their key: match them by image content.
        by_image = {want.image[i].tobytes(): i for i in range(len(want))}
        got = list(tfds.as_numpy(splits[split]))
        assert len(got) == len(want)
        for ex in got:
            assert ex["image"].dtype == np.uint8 and ex["image"].shape == (48, 48, 1)
            i = by_image.pop(ex["image"].tobytes())
            np.testing.assert_array_equal(ex["votes"], want.votes[i])
            assert ex["votes"].dtype == np.float32
            assert ex["label"] == want.label[i]
    assert expected["test"].label.tolist() == [1, 6]   # happiness, fear


def test_ferplus_names_the_missing_file(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    write_pair(manual, [("Training", "a.png", HAPPY, pixels_of(0))])
    os.remove(manual / ferplus.FER2013_FILE)
    with pytest.raises(FileNotFoundError, match="no fer2013.csv in"):
        load("ferplus", tmp_path / "data", manual)


def _track(track_id, identity, split, num_samples, num_frames, seed, faces=False):
    rng = np.random.default_rng(seed)
    track = {"track_id": track_id, "identity": identity, "split": split,
             "audio": rng.integers(-32768, 32767, num_samples, endpoint=True).astype(np.int16),
             "logits": rng.normal(size=(num_frames, len(EMOTIONS))).astype(np.float32)}
    if faces:   # the synthetic corpus stores faces; the TFDS dataset leaves them out
        track["faces"] = rng.integers(0, 256, (num_frames, 8, 8)).astype(np.uint8)
    return track


def _write_records(folder, counts_in_info=None):
    """A record directory with 2 / 1 / 1 tracks, as synthetic.ensure_corpus writes one."""
    tracks = {
        "train": [_track("id10001/vid_a/00001", "id10001", SPLIT_IDS["train"], 16000, 5, 0, faces=True),
                  _track("id10002/vid_b/00003", "id10002", SPLIT_IDS["train"], 7321, 3, 1)],
        "unheard_val": [_track("id10009/vid_c/00001", "id10009", SPLIT_IDS["unheard_val"], 4000, 2, 2)],
        "heard_val": [_track("id10001/vid_d/00002", "id10001", SPLIT_IDS["heard_val"], 9000, 4, 3)],
    }
    for split, split_tracks in tracks.items():
        records.write_shards(split_tracks, str(folder), split, num_shards=1 if split != "train" else 2)
    counts = counts_in_info or {split: len(t) for split, t in tracks.items()}
    records.write_dataset_info(str(folder), {"num_examples": counts, "source": "test"})


def _decoded(folder, split):
    """track_id -> records.decode_track of every track in a split's shards (the reference)."""
    files = records.list_shards(str(folder), split)
    return {t["track_id"]: t for t in map(records.decode_track,
                                          tf.data.TFRecordDataset(files).as_numpy_iterator())}


def test_emovoxceleb_load_returns_the_record_tracks(tmp_path):
    manual = tmp_path / "records"
    _write_records(manual)
    splits, info = load("emovoxceleb", tmp_path / "data", manual)
    assert set(splits) == {"train", "unheard_val", "heard_val"}
    assert "16000 Hz" in info.features["audio"].doc.desc
    for split in splits:
        want = _decoded(manual, split)
        got = {ex["track_id"].decode(): ex for ex in tfds.as_numpy(splits[split])}
        assert set(got) == set(want) and info.splits[split].num_examples == len(want)
        for track_id, ex in got.items():
            ref = want[track_id]
            assert ex["identity"].decode() == ref["identity"]
            assert ex["split"] == ref["split"] == SPLIT_IDS[split]
            assert ex["audio"].dtype == np.int16 and ex["logits"].dtype == np.float32
            np.testing.assert_array_equal(ex["audio"], ref["audio"])
            np.testing.assert_array_equal(ex["logits"], ref["logits"])
            assert set(ex) == {"track_id", "identity", "split", "audio", "logits"}


def test_emovoxceleb_checks_the_track_count(tmp_path):
    manual = tmp_path / "records"
    _write_records(manual, counts_in_info={"train": 3, "unheard_val": 1, "heard_val": 1})
    with pytest.raises(ValueError, match="train: 2 tracks in 2 shards, but dataset_info.json says 3"):
        load("emovoxceleb", tmp_path / "data", manual)


def test_emovoxceleb_needs_a_record_directory(tmp_path):
    folder = tmp_path / "not_records"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a record directory\n")
    with pytest.raises(FileNotFoundError, match="no dataset_info.json in"):
        load("emovoxceleb", tmp_path / "data", folder)
