"""The label phase: a tiny untrained teacher over the tiny synthetic corpus and over a face-frames tree;
the face-frames reader's output and problem lines; batch packing and the resume rule."""
import collections
import functools
import hashlib
import json
import os

import jax
import numpy as np
import pytest

from cmemo_jax import export
from cmemo_jax.constants import EMOTIONS, FRAME_PERIOD_S, SAMPLE_RATE
from cmemo_jax.data import face_frames, pipeline, records, sources, tf_io
from cmemo_jax.faces import teacher_inputs
from cmemo_jax.models import build, registry
from cmemo_jax.phases import label
from cmemo_jax.tasks import label as label_engine
from cmemo_jax.train import sharding
from conftest import load_config

TEACHER_SIZE = 64


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A width-8, one-block-per-stage SENet50 export at 64x64, initialised, never trained."""
    model = build("teacher", dict(width=8, stage_sizes=(1, 1, 1, 1)))
    variables = model.init(jax.random.PRNGKey(0), np.zeros((1, TEACHER_SIZE, TEACHER_SIZE, 3), np.float32))
    path = str(tmp_path_factory.mktemp("teacher") / "tiny_teacher.msgpack")
    export.save(path, {"kind": "teacher", "model": registry.constructor_kwargs(model), "emotions": list(EMOTIONS),
                       "input": {"size": TEACHER_SIZE}}, dict(variables))
    return path


def _assert_teacher_logits(logits, teacher_path, faces, crop_fraction=1.0):
    """`logits` equal the teacher applied straight to one track's frames, outside the phase, within
    1e-5 of the track's logit scale: the untrained teacher's logits reach ~1e2, and a batch of other
    frames sums in another order (float32 eps x 1e2 ~ 1e-5 absolute)."""
    direct = _direct_logits(teacher_path, faces, crop_fraction)
    np.testing.assert_allclose(logits, direct, rtol=0, atol=1e-5 * max(1.0, np.abs(direct).max()))


REF_ROWS = 48  # > the frames of any tiny-corpus track (8 s / 0.24 s)


@functools.lru_cache(maxsize=None)
def _reference(teacher_path, crop_fraction):
    model, variables, _ = export.load(teacher_path)
    return jax.jit(lambda faces: model.apply(
        variables, teacher_inputs(faces, TEACHER_SIZE, crop_fraction=crop_fraction), train=False))


def _direct_logits(teacher_path, faces, crop_fraction=1.0):
    """The teacher applied straight to one track's frames, outside the phase: [n, 8] (zero frames pad
    the track to REF_ROWS so that one compile serves every track; rows are independent in eval)."""
    n = len(faces)
    assert n <= REF_ROWS
    padded = np.zeros((REF_ROWS, *faces.shape[1:]), np.uint8)
    padded[:n] = faces
    return np.asarray(_reference(teacher_path, crop_fraction)(padded))[:n]


def _read(paths):
    tf = tf_io.import_tf()
    return [[records.decode_track(r) for r in tf.data.TFRecordDataset(p).as_numpy_iterator()] for p in paths]


def _config(teacher_path, cache_dir, **data):
    cfg = load_config("label", "tiny")
    cfg.label.teacher_model = teacher_path
    cfg.data.cache_dir = cache_dir
    for key, value in data.items():
        cfg.data[key] = value
    return cfg


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, teacher_file, synthetic_cache):
    workdir = str(tmp_path_factory.mktemp("label_tiny"))
    cfg = _config(teacher_file, synthetic_cache)
    return cfg, workdir, label.run(cfg, workdir)


def test_every_track_relabelled_with_the_teachers_logits(labelled, teacher_file):
    cfg, workdir, results = labelled
    in_dir = sources.resolve_records_dir(cfg.data)
    out_dir = os.path.join(workdir, "records")
    for split in ("train", "unheard_val", "heard_val"):
        in_shards, out_shards = records.list_shards(in_dir, split), records.list_shards(out_dir, split)
        assert [os.path.basename(p) for p in out_shards] == [os.path.basename(p) for p in in_shards]
        for src, dst in zip(_read(in_shards), _read(out_shards)):  # same tracks in the same shard
            assert [t["track_id"] for t in dst] == [t["track_id"] for t in src]
            for a, b in zip(src, dst):
                assert b["split"] == a["split"] and b["identity"] == a["identity"]
                np.testing.assert_array_equal(b["audio"], a["audio"])
                np.testing.assert_array_equal(b["faces"], a["faces"])
                assert b["logits"].shape == (a["faces"].shape[0], 8) and b["logits"].dtype == np.float32
                _assert_teacher_logits(b["logits"], teacher_file, a["faces"])
                assert not np.allclose(b["logits"], a["logits"])  # the oracle's logits are gone
        assert results["num_tracks"][split] == pipeline.count_records(in_shards)
    assert results["frames_per_second"] > 0 and results["num_skipped"] == 0
    print(f"\nlabel phase, tiny corpus: {sum(results['num_frames'].values())} frames, "
          f"{results['frames_per_second']} frames/s overall, {results.get('steady_frames_per_second')} "
          f"frames/s after the first track (CPU, {jax.device_count()} device(s))")


def test_dataset_info_histogram_and_student_loader(labelled, teacher_file):
    cfg, workdir, results = labelled
    out_dir = os.path.join(workdir, "records")
    info = records.read_dataset_info(out_dir)
    with open(teacher_file, "rb") as fh:
        assert info["teacher"]["sha256"] == hashlib.sha256(fh.read()).hexdigest()
    assert info["source"] == "teacher" and info["teacher"]["file"] == "tiny_teacher.msgpack"
    assert info["teacher"]["crop_fraction"] == 1.0 and info["teacher"]["input_size"] == TEACHER_SIZE
    in_info = records.read_dataset_info(sources.resolve_records_dir(cfg.data))
    assert info["identities"] == in_info["identities"] and info["splits"] == in_info["splits"]
    assert set(info["shards"]) == {"train", "unheard_val", "heard_val"}
    table = json.load(open(os.path.join(workdir, "emotion_histogram.json")))
    for split, n in results["num_tracks"].items():
        assert sum(table["tracks"][split].values()) == n
        assert sum(table["frames"][split].values()) == results["num_frames"][split]
    assert os.path.getsize(os.path.join(workdir, "emotion_histogram.png")) > 1000
    assert "| neutral |" in open(os.path.join(workdir, "emotion_histogram.md")).read()
    # The student phase reads the output as records.
    train = records.list_shards(out_dir, "train")
    assert pipeline.count_records(train) == results["num_tracks"]["train"] > 0
    batch = next(pipeline.eval_batches(records.list_shards(out_dir, "unheard_val"), batch_size=4))
    assert batch["logits"].shape[-1] == 8 and batch["valid"].any()


def test_rerun_after_completion_does_nothing(labelled, capsys):
    cfg, workdir, results = labelled
    out_dir = os.path.join(workdir, "records")
    mtimes = {n: os.path.getmtime(os.path.join(out_dir, n)) for n in os.listdir(out_dir)}
    again = label.run(cfg, workdir)
    assert again == results and "nothing to do" in capsys.readouterr().out
    assert {n: os.path.getmtime(os.path.join(out_dir, n)) for n in os.listdir(out_dir)} == mtimes


def test_resume_relabels_only_unfinished_splits(labelled, tmp_path):
    """A run killed while writing heard_val: its marker is missing and a temp shard is left."""
    cfg, workdir, _ = labelled
    import shutil
    work2 = str(tmp_path / "work")
    shutil.copytree(workdir, work2, ignore=shutil.ignore_patterns(".lock", "results.json"))
    out_dir = os.path.join(work2, "records")
    for m in os.listdir(os.path.join(work2, label.STATE_DIR)):  # markers name the copied out_dir
        path = os.path.join(work2, label.STATE_DIR, m)
        marker = json.load(open(path))
        marker["out_dir"] = out_dir
        json.dump(marker, open(path, "w"))
    os.remove(os.path.join(work2, label.STATE_DIR, "heard_val.json"))
    stale = os.path.join(out_dir, "heard_val.tfrecord-00000-of-00001.tmp-99999")
    open(stale, "wb").close()
    cfg2 = cfg.copy_and_resolve_references()
    res = label.run(cfg2, work2)
    assert res["labelled_splits"] == ["heard_val"] and sorted(res["resumed_splits"]) == ["train", "unheard_val"]
    assert not os.path.exists(stale)
    assert res["num_tracks"] == json.load(open(os.path.join(workdir, "results.json")))["num_tracks"]


def test_frame_batches_pack_tracks_and_label_tracks_keeps_order():
    """Tracks of 3, 5, 1 grey frames then 2 RGB frames, batch 4: padding at the end and at the shape
    change; a stand-in labeller (mean grey level per frame) shows every row returns to its track."""
    rng = np.random.default_rng(0)
    tracks = [{"track_id": f"t{i}", "identity": "x", "split": 1, "audio": np.zeros(10, np.int16),
               "faces": rng.integers(0, 255, (n, 6, 6) if i < 3 else (n, 6, 6, 3), dtype=np.uint8)}
              for i, n in enumerate((3, 5, 1, 2))]
    pending = collections.deque()
    batches = list(label_engine.frame_batches(iter(tracks), pending, 4, slice(0, 4)))
    assert [int(b["valid"].sum()) for b in batches] == [4, 4, 1, 2]
    assert [b["faces"].ndim for b in batches] == [3, 3, 3, 4] and len(pending) == 4

    mesh = sharding.make_mesh()

    @jax.jit
    def fake(batch):
        axes = tuple(range(1, batch["faces"].ndim))
        mean = batch["faces"].astype(np.float32).mean(axis=axes)
        return {"logits": jax.numpy.repeat(mean[:, None], 8, axis=1), "valid": batch["valid"]}

    out = list(label_engine.label_tracks(fake, iter(tracks), mesh, 4 * jax.device_count()))
    assert [t["track_id"] for t in out] == ["t0", "t1", "t2", "t3"]
    for t, src in zip(out, tracks):
        expect = src["faces"].reshape(len(src["faces"]), -1).mean(axis=1)
        np.testing.assert_allclose(t["logits"][:, 3], expect, rtol=1e-6)
        assert ("faces" in t) == (src["faces"].ndim == 3)  # RGB crops are not stored


# ------------------------------------------------------------------------------- face frames


def _jpeg(path, rgb):
    from PIL import Image
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rgb).save(path, quality=95)


def _wav(path, seconds, seed=0):
    import soundfile
    os.makedirs(os.path.dirname(path), exist_ok=True)
    audio = np.random.default_rng(seed).integers(-3000, 3000, int(seconds * SAMPLE_RATE)).astype(np.int16)
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    return audio


def _track(root, rel, numbers, seconds, wav_dir, size=(40, 32), seed=0, wav=True):
    rng = np.random.default_rng(seed)
    for k in numbers:
        _jpeg(os.path.join(root, rel, f"{k:05d}.jpg" if "1.6" not in rel else f"{k:02d}.jpg"),
              rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return _wav(os.path.join(wav_dir, *_wav_key(rel)) + ".wav", seconds, seed) if wav else None


def _wav_key(rel):
    """<id>/<video>/<5-digit track> of a frames folder (the one named person, Jane_Doe, is id10003)."""
    parts = rel.split("/")
    return [parts[0] if parts[0].startswith("id") else "id10003", parts[-2], parts[-1].zfill(5)]


@pytest.fixture(scope="module")
def frames_tree(tmp_path_factory):
    """Ids layout under A (3 good tracks, 4 bad ones), the release layout under B (one named track)."""
    base = tmp_path_factory.mktemp("frames")
    a, b, wav = str(base / "A"), str(base / "B"), str(base / "wav")
    dur = lambda n: n * FRAME_PERIOD_S  # noqa: E731 - the audio a track of n frames covers
    audio = {"id10001/vidA/00001": _track(a, "id10001/vidA/00001", range(1, 6), dur(5), wav, seed=1),
             "id10001/vidA/00003": _track(a, "id10001/vidA/00003", range(1, 25, 6), dur(4), wav, seed=2),
             "id10002/vidC/00003": _track(a, "id10002/vidC/00003", range(1, 8), dur(7), wav, seed=3)}
    _track(a, "id10001/vidA/00002", (1, 2, 4), dur(4), wav, seed=4)                # missing frame 3
    _track(a, "id10001/vidB/00001", range(1, 5), dur(4), wav, seed=5)               # corrupt frame
    with open(os.path.join(a, "id10001/vidB/00001/00003.jpg"), "r+b") as fh:
        fh.truncate(200)
    _track(a, "id10002/vidC/00001", range(1, 6), 3.0, wav, seed=6)                  # 5 frames, 3 s audio
    _track(a, "id10002/vidC/00002", range(1, 4), dur(3), wav, seed=7, wav=False)    # no audio
    audio["id10003/vidD/00001"] = _track(b, "unzippedIntervalFaces/data/Jane_Doe/1.6/vidD/1", range(1, 5),
                                         dur(4), wav, seed=8)
    meta = str(base / "vox1_meta.csv")
    with open(meta, "w") as fh:
        fh.write("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
                 "id10001\tAnn_A\tf\tUK\tdev\nid10002\tBob_B\tm\tUSA\ttest\nid10003\tJane_Doe\tf\tIreland\ttest\n")
    return {"a": a, "b": b, "wav": wav, "meta": meta, "audio": audio}


def test_face_frames_reader(frames_tree):
    t = frames_tree
    meta = face_frames.read_vox1_meta(t["meta"])
    tracks, problems = face_frames.list_tracks(t["a"], t["wav"], meta=meta)
    assert problems == [] and len(tracks) == 7
    loaded = {tr.track_id: (out, problem) for tr, out, problem in face_frames.load_tracks(tracks, workers=2)}
    good = {k: v[0] for k, v in loaded.items() if v[0] is not None}
    assert sorted(good) == ["id10001/vidA/00001", "id10001/vidA/00003", "id10002/vidC/00003"]
    for track_id, track in good.items():
        np.testing.assert_array_equal(track["audio"], t["audio"][track_id])
        assert track["faces"].dtype == np.uint8 and track["faces"].shape[1:] == (40, 32, 3)
        assert track["split"] == (1 if track["identity"] == "id10001" else 2)
    assert good["id10001/vidA/00003"]["faces"].shape[0] == 4   # frames 1, 7, 13, 19: an even step
    bad = {k: v[1] for k, v in loaded.items() if v[0] is None}
    assert "missing frame between 00002.jpg and 00004.jpg" in bad["id10001/vidA/00002"]
    assert "unreadable frame" in bad["id10001/vidB/00001"] and "00003.jpg" in bad["id10001/vidB/00001"]
    assert "duration mismatch" in bad["id10002/vidC/00001"] and ".wav" in bad["id10002/vidC/00001"]
    assert "no audio" in bad["id10002/vidC/00002"] and "00002.wav" in bad["id10002/vidC/00002"]
    assert all("\n" not in p for p in bad.values())
    # The release layout: names mapped through vox1_meta.csv, track '1' -> '00001', frames resized.
    tracks, problems = face_frames.list_tracks(t["b"], t["wav"], meta=meta)
    assert [tr.track_id for tr in tracks] == ["id10003/vidD/00001"] and tracks[0].split == 2
    track, problem = face_frames.load_track(tracks[0], frame_size=24)
    assert problem == "" and track["faces"].shape == (4, 24, 24, 3)
    with pytest.raises(face_frames.FaceFramesError, match="vox1_meta"):
        face_frames.list_tracks(t["b"], t["wav"])


def test_label_phase_on_face_frames(frames_tree, teacher_file, tmp_path):
    t = frames_tree
    cfg = _config(teacher_file, "", source="face_frames", frames_dir=t["a"], voxceleb_wav_dir=t["wav"],
                  meta_csv=t["meta"])
    workdir = str(tmp_path / "work")
    results = label.run(cfg, workdir)
    assert results["num_tracks"] == {"train": 2, "unheard_val": 1} and results["num_skipped"] == 4
    assert results["teacher"]["crop_fraction"] == pytest.approx(1 / 1.6)
    skipped = open(os.path.join(workdir, "skipped.txt")).read().splitlines()
    assert sorted(line.split("\t")[0] for line in skipped) == [
        "id10001/vidA/00002", "id10001/vidB/00001", "id10002/vidC/00001", "id10002/vidC/00002"]
    out_dir = os.path.join(workdir, "records")
    frame_size = round(TEACHER_SIZE * 1.6)
    sources_by_id = {ft.track_id: ft for ft in face_frames.list_tracks(t["a"], t["wav"])[0]}
    for split in ("train", "unheard_val"):
        for shard in _read(records.list_shards(out_dir, split)):
            for out in shard:
                faces = face_frames.load_track(sources_by_id[out["track_id"]], frame_size)[0]["faces"]
                np.testing.assert_array_equal(out["audio"], t["audio"][out["track_id"]])
                _assert_teacher_logits(out["logits"], teacher_file, faces, 1 / 1.6)
                assert "faces" not in out


def test_config_errors_are_one_line(teacher_file, synthetic_cache, tmp_path, labelled):
    from cmemo_jax.errors import ConfigError
    bad = {"teacher missing": _config("", synthetic_cache), "no file": _config(str(tmp_path / "x"), synthetic_cache),
           "crop": _config(teacher_file, synthetic_cache), "source": _config(teacher_file, synthetic_cache, source="x"),
           "frames": _config(teacher_file, synthetic_cache, source="face_frames")}
    bad["crop"].label.crop_fraction = 1.5
    for name, cfg in bad.items():
        with pytest.raises(ConfigError) as err:
            label.check_config(cfg)
        assert "\n" not in str(err.value) and "config." in str(err.value), name
    # Writing over the input corpus, or over a dataset the phase did not make, is refused.
    cfg, workdir, _ = labelled
    in_dir = sources.resolve_records_dir(cfg.data)
    with pytest.raises(ConfigError, match="input folder"):
        label.check_out_dir(in_dir, in_dir)
    with pytest.raises(ConfigError, match="another dataset"):
        label.check_out_dir(in_dir, str(tmp_path))
    label.check_out_dir(os.path.join(workdir, "records"), in_dir)  # its own output: fine
