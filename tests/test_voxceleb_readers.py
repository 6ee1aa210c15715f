"""VoxCeleb1 tree/split reader, EmoVoxCeleb .mat readers (v5 via scipy, v7.3 via h5py) and build_records."""
import importlib.util
import os

import numpy as np
import pytest
import soundfile as sf

from cmemo_jax.data import emovoxceleb, records, voxceleb
from cmemo_jax.data.voxceleb_records import build_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (rel path without .wav, set code, samples). Track k has 3 + k logit rows (_expected_logits), so its
# audio lasts about (3 + k) * 0.24 s: the records tool skips tracks whose audio disagrees with their rows.
TRACKS = [
    ("id10001/1zcIwhmdeo4/00001", 1, 12000),
    ("id10001/1zcIwhmdeo4/00002", 1, 15000),
    ("id10002/Abc_def-123/00001", 2, 19000),
    ("id10003/xyz/00007", 3, 23000),
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


def test_read_wav_int16_follows_load_audio_rules(tmp_path):
    from cmemo_jax.audio import AudioDecodeError

    # Full int16 range, bit-exact through load_audio + int16_from_waveform.
    a = np.array([-32768, -1, 0, 1, 32767] * 100, np.int16)
    sf.write(str(tmp_path / "ext.wav"), a, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(voxceleb.read_wav_int16(str(tmp_path / "ext.wav")), a)
    # NaN samples: rejected (the old reader turned them into int16 garbage).
    x = np.full(1000, 0.25, np.float32)
    x[3] = np.nan
    sf.write(str(tmp_path / "nan.wav"), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=r"nan\.wav: 1 of 1000 samples are not finite") as info:
        voxceleb.read_wav_int16(str(tmp_path / "nan.wav"))
    assert isinstance(info.value, RuntimeError)  # old callers catch RuntimeError
    # Float at +-5: rescaled to full scale (not clipped), repair reported.
    sf.write(str(tmp_path / "loud.wav"), np.array([5.0, -2.5, 0.0], np.float32), 16000, subtype="FLOAT")
    y, check = voxceleb.read_wav_int16(str(tmp_path / "loud.wav"), return_info=True)
    np.testing.assert_array_equal(y, np.array([32767, -16384, 0], np.int16))
    assert check.repaired and "loud.wav" in check.warnings[0]
    # Truncated: the header promises more frames than the data holds.
    sf.write(str(tmp_path / "cut.wav"), _audio(0, 5000), 16000, subtype="PCM_16")
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:-1000])
    with pytest.raises(RuntimeError, match=r"cut\.wav: truncated file: the header promises 5000 frames, "
                                           r"the data holds 4500"):
        voxceleb.read_wav_int16(str(tmp_path / "cut.wav"))


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


def _read_all(out):
    """{track_id: track} over the shards list_shards gives for every split."""
    import tensorflow as tf
    got = {}
    for split in ("train", "unheard_val", "heard_val"):
        try:
            paths = records.list_shards(str(out), split)
        except FileNotFoundError:
            continue
        for p in paths:
            for r in tf.data.TFRecordDataset(p).as_numpy_iterator():
                t = records.decode_track(r)
                got[t["track_id"]] = t
    return got


def test_build_records_skips_rejected_audio_and_duration_mismatch(tmp_path):
    wav = _write_tree(tmp_path)
    extra = {  # track id -> (set, rows, writer of its wav)
        "id10006/short/00001": (1, 20, lambda p: sf.write(p, np.array([7], np.int16), 16000, subtype="PCM_16")),
        "id10006/cut/00001": (1, 4, lambda p: (sf.write(p, _audio(1, 15000), 16000, subtype="PCM_16"),
                                               p.write_bytes(p.read_bytes()[:-2000]))),
        "id10006/nan/00001": (2, 4, lambda p: sf.write(p, np.full(15000, np.nan, np.float32), 16000,
                                                       subtype="FLOAT")),
        "id10006/loud/00001": (3, 4, lambda p: sf.write(p, np.linspace(-5, 5, 15000, dtype=np.float32),
                                                        16000, subtype="FLOAT")),
    }
    for tid, (_, _, write) in extra.items():
        p = wav / (tid + ".wav")
        p.parent.mkdir(parents=True)
        write(p)
    tracks = list(TRACKS) + [(tid, s, 0) for tid, (s, _, _) in extra.items()]
    logits = _expected_logits() + [_logits(9, rows) for _, rows, _ in extra.values()]
    mat = tmp_path / "logits.mat"
    write_v5(mat, tracks, logits)

    out = tmp_path / "records"
    summary = build_records(str(mat), str(wav), str(out), log=lambda _: None)
    skipped = dict(line.split("\t") for line in (out / "skipped.txt").read_text().splitlines())
    assert set(skipped) == {"id10006/short/00001", "id10006/cut/00001", "id10006/nan/00001"}
    assert "duration mismatch" in skipped["id10006/short/00001"]
    assert "1 samples" in skipped["id10006/short/00001"] and "20 logit rows" in skipped["id10006/short/00001"]
    assert "truncated file" in skipped["id10006/cut/00001"]
    assert "15000 of 15000 samples are not finite" in skipped["id10006/nan/00001"]
    assert summary["skipped_by_kind"] == {"duration mismatch": 1, "rejected audio": 2}
    # The loud float track is rescaled, written and listed as repaired.
    repaired = (out / "repaired.txt").read_text().splitlines()
    assert len(repaired) == 1 and repaired[0].startswith("id10006/loud/00001\t") and "rescaled" in repaired[0]
    assert summary["num_examples"] == {"train": 2, "unheard_val": 1, "heard_val": 2}
    got = _read_all(out)
    assert set(got) == {t for t, _, _ in TRACKS} | {"id10006/loud/00001"}
    loud = got["id10006/loud/00001"]["audio"]
    assert loud.min() == -32768 and loud.max() == 32767  # peak 5 -> full scale, not clipped flat
    info = records.read_dataset_info(str(out))
    assert info["num_skipped"] == 3 and info["num_repaired"] == 1


def test_rerun_into_same_out_dir(tmp_path):
    wav = _write_tree(tmp_path)
    mat = tmp_path / "logits.mat"
    write_v5(mat, TRACKS, _expected_logits())
    out = tmp_path / "out"
    build_records(str(mat), str(wav), str(out), num_shards={"train": 2}, log=lambda _: None)
    first = sorted(os.listdir(out))
    assert "train.tfrecord-00001-of-00002" in first

    # Refused without overwrite; nothing touched.
    with pytest.raises(FileExistsError, match=r"out is not empty.*--overwrite"):
        build_records(str(mat), str(wav), str(out), num_shards={"train": 1}, log=lambda _: None)
    assert sorted(os.listdir(out)) == first
    spec = importlib.util.spec_from_file_location(
        "make_voxceleb_records", os.path.join(REPO, "data_prep", "make_voxceleb_records.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = [f"--emovox_mat={mat}", f"--voxceleb_wav_dir={wav}", f"--out_dir={out}", "--num_shards_train=1"]
    assert mod.main(args) == 2
    assert sorted(os.listdir(out)) == first

    # With overwrite: the new shard count only, no stale shards, no staging folder left beside.
    assert mod.main(args + ["--overwrite"]) == 0
    names = sorted(os.listdir(out))
    assert [n for n in names if ".tfrecord-" in n] == [
        "heard_val.tfrecord-00000-of-00001", "train.tfrecord-00000-of-00001",
        "unheard_val.tfrecord-00000-of-00001"]
    assert sorted(os.listdir(tmp_path)) == sorted(["wav", "logits.mat", "out"])
    info = records.read_dataset_info(str(out))
    assert info["shards"]["train"] == ["train.tfrecord-00000-of-00001"]
    # What training reads is what dataset_info lists, and it holds every track.
    assert records.list_shards(str(out), "train") == [str(out / "train.tfrecord-00000-of-00001")]
    assert set(_read_all(out)) == {t for t, _, _ in TRACKS}


def test_duration_rule():
    from cmemo_jax.constants import frame_row
    # Audio and rows cut from the same interval always pass: rows = frames 6 r + 1 inside [0, D).
    for samples in range(800, 16000 * 30, 997):
        rows = frame_row(samples / 16000 - 1e-9) + 1
        assert emovoxceleb.duration_problem(samples, rows) is None, (samples, rows)
        assert emovoxceleb.duration_problem(samples + 3200, rows) is None  # 0.2 s (a few frames) apart
    msg = emovoxceleb.duration_problem(1, 20)
    assert msg.startswith("duration mismatch") and "4.80 s" in msg
    assert emovoxceleb.duration_problem(16000, 2) is not None            # 1 s of audio, 0.48 s of rows
    assert emovoxceleb.duration_problem(16000, 2, tolerance_s=0.6) is None


def test_failed_build_leaves_out_dir_untouched(tmp_path, monkeypatch):
    wav = _write_tree(tmp_path)
    mat = tmp_path / "logits.mat"
    write_v5(mat, TRACKS, _expected_logits())
    out = tmp_path / "out"
    build_records(str(mat), str(wav), str(out), log=lambda _: None)
    before = {n: (out / n).read_bytes() for n in os.listdir(out)}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(records, "write_dataset_info", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build_records(str(mat), str(wav), str(out), overwrite=True, log=lambda _: None)
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == before
    assert sorted(os.listdir(tmp_path)) == sorted(["wav", "logits.mat", "out"])  # staging removed
