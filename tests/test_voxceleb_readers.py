"""VoxCeleb1 tree/split reader, EmoVoxCeleb .mat readers (v5 via scipy, v7.3 via h5py) and build_records."""
import importlib.util
import os

import numpy as np
import pytest
import soundfile as sf

from cmemo_jax.data import emovoxceleb, records, voxceleb
from cmemo_jax.data.voxceleb_records import build_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (rel path without .wav, set code, samples)
TRACKS = [
    ("id10001/1zcIwhmdeo4/00001", 1, 17000),
    ("id10001/1zcIwhmdeo4/00002", 1, 9000),
    ("id10002/Abc_def-123/00001", 2, 12000),
    ("id10003/xyz/00007", 3, 8000),
]


def _logits(k, n):
    return (np.arange(n * 8, dtype=np.float32).reshape(n, 8) + 100 * k)


def _audio(k, n):
    return ((np.arange(n) * (k + 1)) % 20000 - 10000).astype(np.int16)


def _write_tree(root):
    wav = root / "wav"
    for k, (tid, _, n) in enumerate(TRACKS):
        p = wav / (tid + ".wav")
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(p), _audio(k, n), 16000, subtype="PCM_16")
    return wav


# ---------------------------------------------------------------------------------------- VoxCeleb

def test_list_utterances_and_split(tmp_path):
    wav = _write_tree(tmp_path)
    (wav / "README.txt").write_text("not an utterance")
    utts = voxceleb.list_utterances(str(wav))
    assert [u.track_id for u in utts] == sorted(t[0] for t in TRACKS)
    u = utts[0]
    assert (u.identity, u.video, u.utterance, u.split) == ("id10001", "1zcIwhmdeo4", "00001", None)
    assert os.path.exists(u.path)

    split = tmp_path / "iden_split.txt"
    split.write_text("".join(f"{s} {t}.wav\n" for t, s, _ in TRACKS) + "\n")
    utts = voxceleb.list_utterances(str(wav), str(split))
    assert [(u.track_id, u.split) for u in utts] == [(t, s) for t, s, _ in TRACKS]
    assert utts[2].rel_path == "id10002/Abc_def-123/00001.wav"

    split.write_text("1 id10001/1zcIwhmdeo4/00001.wav\n4 id10001/x/00002.wav\n")
    with pytest.raises(ValueError, match=r"iden_split.txt:2: malformed line"):
        voxceleb.read_iden_split(str(split))
    split.write_text("1 foo.wav\n")
    with pytest.raises(ValueError, match=r"iden_split.txt:1:"):
        voxceleb.read_iden_split(str(split))


def test_read_wav_int16_exact_and_resampled(tmp_path):
    a = _audio(0, 5000)
    sf.write(str(tmp_path / "a.wav"), a, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(voxceleb.read_wav_int16(str(tmp_path / "a.wav")), a)
    # 8 kHz stereo float: first channel, resampled to 16 kHz.
    t = np.arange(8000) / 8000
    x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], 1).astype(np.float32)
    sf.write(str(tmp_path / "b.wav"), x, 8000, subtype="FLOAT")
    y = voxceleb.read_wav_int16(str(tmp_path / "b.wav"))
    assert y.dtype == np.int16 and abs(len(y) - 16000) <= 2
    assert 0.45 * 32768 < np.abs(y[1000:-1000]).max() < 0.55 * 32768
    (tmp_path / "c.wav").write_bytes(b"RIFF garbage")
    with pytest.raises(RuntimeError, match="c.wav"):
        voxceleb.read_wav_int16(str(tmp_path / "c.wav"))


# ------------------------------------------------------------------------------------- EmoVoxCeleb

def _cell(items):
    c = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        c[0, i] = x
    return c


def _mat_content(tracks, logits):
    return {
        "images": {
            "name": _cell([t + ".wav" for t, _, _ in tracks]),
            "id": np.arange(1, len(tracks) + 1, dtype=np.float64)[None],
            "set": np.array([[s for _, s, _ in tracks]], dtype=np.float64),
            "video": _cell([t.split("/")[1] for t, _, _ in tracks]),
            "track": np.arange(len(tracks), dtype=np.float64)[None] + 1,
            "denseFrames": _cell(["id10001/1.6/x/1/0001.jpg"]),
        },
        "wavLogits": _cell(logits),
    }


def write_v5(path, tracks, logits):
    import scipy.io
    scipy.io.savemat(str(path), _mat_content(tracks, logits))


def write_v73(path, tracks, logits):
    """Writes the struct the way MATLAB's `save -v7.3` lays it out in HDF5."""
    import h5py

    with h5py.File(str(path), "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        counter = [0]

        def put(data, cls, empty=False):
            counter[0] += 1
            ds = refs.create_dataset(f"r{counter[0]}", data=data)
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            if empty:
                ds.attrs["MATLAB_empty"] = np.uint8(1)
            return ds.ref

        def char(s):  # MATLAB char [1, L] -> HDF5 uint16 [L, 1]
            return put(np.array([[ord(c)] for c in s], dtype=np.uint16), "char")

        def cell(name, parent, refs_list):
            ds = parent.create_dataset(name, data=np.array(refs_list, dtype=h5py.ref_dtype)[:, None])
            ds.attrs["MATLAB_class"] = np.bytes_("cell")

        def num(name, parent, values):  # MATLAB double [1, N] -> HDF5 [N, 1]
            ds = parent.create_dataset(name, data=np.asarray(values, np.float64)[:, None])
            ds.attrs["MATLAB_class"] = np.bytes_("double")

        lrefs = []
        for m in logits:
            if m.size == 0:
                lrefs.append(put(np.array([0, 8], np.uint64), "single", empty=True))
            else:
                lrefs.append(put(np.ascontiguousarray(m.T), "single"))  # [n, 8] -> [8, n]
        cell("wavLogits", f, lrefs)
        images = f.create_group("images")
        images.attrs["MATLAB_class"] = np.bytes_("struct")
        cell("name", images, [char(t + ".wav") for t, _, _ in tracks])
        cell("video", images, [char(t.split("/")[1]) for t, _, _ in tracks])
        num("set", images, [s for _, s, _ in tracks])
        num("id", images, range(1, len(tracks) + 1))
        num("track", images, range(1, len(tracks) + 1))
    with open(path, "r+b") as fh:  # MATLAB's text header in the user block
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .")


def _expected_logits():
    out = [_logits(k, 3 + k) for k in range(len(TRACKS))]
    return out


@pytest.mark.parametrize("writer", [write_v5, write_v73])
def test_read_emovox_logits(tmp_path, writer):
    logits = _expected_logits()
    stored = list(logits)
    if writer is write_v5:
        stored[1] = logits[1].T.copy()  # a track stored [8, n]: detected by the dimension equal to 8
    path = tmp_path / "senet50-ferplus-logits.mat"
    writer(path, TRACKS, stored)
    assert emovoxceleb.is_hdf5(str(path)) == (writer is write_v73)
    recs = emovoxceleb.read_emovox_logits(str(path))
    assert [r["track_id"] for r in recs] == [t for t, _, _ in TRACKS]
    assert [r["split"] for r in recs] == [s for _, s, _ in TRACKS]
    assert [r["identity"] for r in recs] == ["id10001", "id10001", "id10002", "id10003"]
    assert recs[2]["video"] == "Abc_def-123" and recs[3]["track"] == 4 and recs[0]["index"] == 1
    for r, m in zip(recs, logits):
        assert r["logits"].dtype == np.float32
        np.testing.assert_array_equal(r["logits"], m)
        assert emovoxceleb.logits_problem(r["logits"]) is None


def test_emovox_single_track_and_empty_cell(tmp_path):
    for writer in (write_v5, write_v73):
        path = tmp_path / f"one_{writer.__name__}.mat"
        writer(path, TRACKS[:2], [_logits(0, 8), np.zeros((0, 8), np.float32)])
        recs = emovoxceleb.read_emovox_logits(str(path))
        np.testing.assert_array_equal(recs[0]["logits"], _logits(0, 8))  # [8, 8]: MATLAB [n, 8] order
        assert recs[1]["logits"].shape == (0, 8)
        assert "no logit rows" in emovoxceleb.logits_problem(recs[1]["logits"])


def test_emovox_missing_field_errors(tmp_path):
    import scipy.io
    content = _mat_content(TRACKS, _expected_logits())
    del content["images"]["set"]
    path = tmp_path / "bad.mat"
    scipy.io.savemat(str(path), content)
    with pytest.raises(ValueError, match=r"bad\.mat: field 'images\.set': missing"):
        emovoxceleb.read_emovox_logits(str(path))
    scipy.io.savemat(str(path), {"images": _mat_content(TRACKS, _expected_logits())["images"]})
    with pytest.raises(ValueError, match=r"bad\.mat: field 'wavLogits': missing"):
        emovoxceleb.read_emovox_logits(str(path))
    content = _mat_content(TRACKS, _expected_logits()[:3])
    scipy.io.savemat(str(path), content)
    with pytest.raises(ValueError, match=r"bad\.mat: field 'wavLogits': has 3 entries"):
        emovoxceleb.read_emovox_logits(str(path))


# ---------------------------------------------------------------------------------- build_records

def test_build_records_end_to_end(tmp_path):
    wav = _write_tree(tmp_path)
    tracks = list(TRACKS) + [("id10004/corrupt/00001", 1, 0), ("id10004/missing/00001", 2, 0),
                             ("id10005/nanlogits/00001", 1, 5000)]
    (wav / "id10004/corrupt").mkdir(parents=True)
    (wav / "id10004/corrupt/00001.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    (wav / "id10005/nanlogits").mkdir(parents=True)
    sf.write(str(wav / "id10005/nanlogits/00001.wav"), _audio(9, 5000), 16000, subtype="PCM_16")
    logits = _expected_logits() + [_logits(4, 3), _logits(5, 3), _logits(6, 3)]
    logits[-1][1, 2] = np.nan
    mat = tmp_path / "senet50-ferplus-logits.mat"
    write_v73(mat, tracks, logits)

    out = tmp_path / "records"
    lines = []
    summary = build_records(str(mat), str(wav), str(out), num_shards={"train": 2}, log=lines.append)
    assert summary["num_examples"] == {"train": 2, "unheard_val": 1, "heard_val": 1}
    assert summary["num_skipped"] == 3
    skipped = dict(line.split("\t") for line in (out / "skipped.txt").read_text().splitlines())
    assert set(skipped) == {"id10004/corrupt/00001", "id10004/missing/00001", "id10005/nanlogits/00001"}
    assert "cannot read wav" in skipped["id10004/corrupt/00001"]
    assert "missing wav" in skipped["id10004/missing/00001"]
    assert "NaN" in skipped["id10005/nanlogits/00001"]
    assert "skipped 3" in lines[-1]
    info = records.read_dataset_info(str(out))
    assert info["num_examples"] == summary["num_examples"] and info["sample_rate"] == 16000

    import tensorflow as tf
    got = {}
    for split in ("train", "unheard_val", "heard_val"):
        for p in records.list_shards(str(out), split):
            for r in tf.data.TFRecordDataset(p).as_numpy_iterator():
                t = records.decode_track(r)
                got[t["track_id"]] = t
    assert len(records.list_shards(str(out), "train")) == 2
    assert set(got) == {t for t, _, _ in TRACKS}
    for k, (tid, s, n) in enumerate(TRACKS):
        t = got[tid]
        assert t["split"] == s and t["identity"] == tid.split("/")[0]
        np.testing.assert_array_equal(t["audio"], _audio(k, n))
        np.testing.assert_array_equal(t["logits"], logits[k])


def test_cli(tmp_path):
    wav = _write_tree(tmp_path)
    mat = tmp_path / "logits.mat"
    write_v5(mat, TRACKS, _expected_logits())
    spec = importlib.util.spec_from_file_location(
        "make_voxceleb_records", os.path.join(REPO, "data_prep", "make_voxceleb_records.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "out"
    assert mod.main([f"--emovox_mat={mat}", f"--voxceleb_wav_dir={wav}", f"--out_dir={out}",
                     "--num_shards_train=3"]) == 0
    assert len(records.list_shards(str(out), "train")) == 2  # capped at the number of tracks
    assert records.read_dataset_info(str(out))["num_examples"]["heard_val"] == 1
    assert (out / "skipped.txt").read_text() == ""
