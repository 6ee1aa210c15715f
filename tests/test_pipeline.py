"""tf.data pipelines: crop/rows rule, padding, determinism, resume, per-process sharding, eval coverage.

Tracks are built so every output can be traced back: audio[i] = i % RAMP (offset recoverable from the
first sample because every track is shorter than RAMP + crop), logits[r, :7] = r (row index) and
logits[r, 7] = k (track index k).
"""
import numpy as np
import pytest

from cmemo_jax.constants import (CROP_SAMPLES, FRAME_PERIOD_S, SAMPLE_RATE, frame_rows_in_segment,
                                 max_rows_per_segment)
from cmemo_jax.data import pipeline, records

RAMP = 30000
R = max_rows_per_segment()
# Lengths in samples: some shorter than the 4.024 s crop, one exactly the crop, most longer.
LENGTHS = [20000, 64383, CROP_SAMPLES, 70000, 80000, 90000, 94000, 75000, 66000, 85000, 9000]
N = len(LENGTHS)


def _num_frames(length):
    return int(length / SAMPLE_RATE / FRAME_PERIOD_S) + 1


def _make_tracks():
    tracks = []
    for k, length in enumerate(LENGTHS):
        n = _num_frames(length)
        logits = np.repeat(np.arange(n, dtype=np.float32)[:, None], 8, axis=1)
        logits[:, 7] = k
        tracks.append({"track_id": f"t{k:02d}", "identity": f"id{k % 3}", "split": 1 + k % 3,
                       "audio": (np.arange(length) % RAMP).astype(np.int16), "logits": logits})
    return tracks


TRACKS = _make_tracks()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    return {n: records.write_shards(TRACKS, str(d / f"s{n}"), "train", n) for n in (1, 3, 4)}


def _check_example(audio, logits, num_rows, centre=False):
    """Recovers track and offset from one example and checks the crop and the row window."""
    k = int(logits[0, 7])
    track = TRACKS[k]
    length, n = len(track["audio"]), len(track["logits"])
    offset = int(audio[0])
    assert audio.shape == (CROP_SAMPLES,) and audio.dtype == np.int16
    if length < CROP_SAMPLES:
        assert offset == 0
        np.testing.assert_array_equal(audio[:length], track["audio"])
        assert not audio[length:].any()  # zero-padded at the end
        first, last = 0, n               # short tracks: all rows
    else:
        assert 0 <= offset <= length - CROP_SAMPLES
        if centre:
            assert offset == (length - CROP_SAMPLES) // 2
        np.testing.assert_array_equal(audio, track["audio"][offset:offset + CROP_SAMPLES])
        first, last = frame_rows_in_segment(offset / SAMPLE_RATE, CROP_SAMPLES / SAMPLE_RATE, n)
    assert num_rows == last - first
    # The window starts at row `first`; rows past the track are zeros.
    expected = np.zeros((R, 8), np.float32)
    rows = np.arange(first, min(first + R, n))
    expected[:len(rows)] = track["logits"][rows]
    np.testing.assert_array_equal(logits, expected)
    # What the trainer computes: max over the valid rows == max over exactly the rows of the crop.
    np.testing.assert_array_equal(logits[:num_rows].max(0), track["logits"][first:last].max(0))
    return k, offset


def _take(it, n):
    return [next(it) for _ in range(n)]


def _ids(batches):
    return [int(x) for b in batches for x in b["logits"][:, 0, 7]]


def test_train_shapes_rows_and_padding(shards):
    batches = _take(pipeline.train_batches(shards[3], batch_size=4, seed=0), 8)
    seen_offsets = set()
    for b in batches:
        assert b["audio"].shape == (4, CROP_SAMPLES) and b["audio"].dtype == np.int16
        assert b["logits"].shape == (4, R, 8) and b["logits"].dtype == np.float32
        assert b["num_rows"].dtype == np.int32 and b["valid"].dtype == bool and b["valid"].all()
        for i in range(4):
            k, off = _check_example(b["audio"][i], b["logits"][i], b["num_rows"][i])
            seen_offsets.add((k, off))
    # Epochs cover every track once (32 examples = 2 full epochs of 11 + 10).
    ids = _ids(batches)
    assert sorted(ids[:N]) == list(range(N)) and sorted(ids[N:2 * N]) == list(range(N))
    # Random crops: the same long track is cropped at different offsets in different epochs.
    assert len({off for k, off in seen_offsets if LENGTHS[k] > CROP_SAMPLES + 1000}) > 3


def test_small_crop_and_custom_rows(shards):
    crop = 16000
    b = next(pipeline.train_batches(shards[1], batch_size=N, seed=3, crop_samples=crop))
    rmax = max_rows_per_segment(crop)
    assert b["audio"].shape == (N, crop) and b["logits"].shape == (N, rmax, 8)
    for i in range(N):
        k = int(b["logits"][i, 0, 7])
        n, length = len(TRACKS[k]["logits"]), LENGTHS[k]
        # With a 1 s crop the ramp repeats inside the offset range: accept any consistent offset.
        offsets = range(int(b["audio"][i, 0]), length - crop + 1, RAMP) if length >= crop else [0]
        rows = [frame_rows_in_segment(o / SAMPLE_RATE, crop / SAMPLE_RATE, n) for o in offsets]
        if length < crop:
            rows = [(0, n)]
        assert (int(b["logits"][i, 0, 0]), int(b["logits"][i, 0, 0]) + int(b["num_rows"][i])) in rows
        assert b["num_rows"][i] <= rmax


def test_determinism_and_seed(shards):
    a = _take(pipeline.train_batches(shards[3], batch_size=4, seed=7), 6)
    b = _take(pipeline.train_batches(shards[3], batch_size=4, seed=7), 6)
    c = _take(pipeline.train_batches(shards[3], batch_size=4, seed=8), 6)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert _ids(a) != _ids(c)


@pytest.mark.parametrize("cache", [False, True])
def test_resume_matches_fresh_run(shards, cache):
    # 11 tracks, batch 4: batches straddle epoch boundaries (at elements 11, 22, 33).
    fresh = _take(pipeline.train_batches(shards[3], batch_size=4, seed=5, cache=cache), 12)
    for k in (1, 2, 3, 5, 8, 9):
        resumed = _take(pipeline.train_batches(shards[3], batch_size=4, seed=5, start_step=k,
                                               cache=cache), 3)
        for x, y in zip(fresh[k:k + 3], resumed):
            for key in x:
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"start_step={k} key={key}")


@pytest.mark.parametrize("num_files", [4, 3])  # 4 files: shard by file; 3 files: by element
def test_two_processes_partition_tracks(shards, num_files):
    files = shards[num_files]
    per_process = []
    for p in range(2):
        ids = set()
        for b in pipeline.eval_batches(files, batch_size=4, process_index=p, process_count=2):
            ids.update(int(x) for x in b["logits"][b["valid"], 0, 7])
        per_process.append(ids)
        # A training epoch of this process sees exactly its tracks.
        n_mine = pipeline._shard_plan(files, p, 2)[2]
        train_ids = _ids(_take(pipeline.train_batches(files, batch_size=1, seed=0, process_index=p,
                                                      process_count=2), n_mine))
        assert set(train_ids) == ids and len(train_ids) == len(ids)
    assert per_process[0].isdisjoint(per_process[1])
    assert per_process[0] | per_process[1] == set(range(N))
    # Both processes yield the same number of eval batches (lockstep collectives).
    counts = [len(list(pipeline.eval_batches(files, batch_size=2, process_index=p, process_count=2)))
              for p in range(2)]
    assert counts[0] == counts[1]


def test_eval_covers_every_track_once(shards):
    batches = list(pipeline.eval_batches(shards[3], batch_size=4))
    assert len(batches) == 3  # 11 tracks -> 4 + 4 + 3 (+1 padding)
    seen = []
    for b in batches:
        assert b["audio"].shape == (4, CROP_SAMPLES) and b["valid"].dtype == bool
        for i in np.flatnonzero(b["valid"]):
            k, _ = _check_example(b["audio"][i], b["logits"][i], b["num_rows"][i], centre=True)
            assert b["split"][i] == TRACKS[k]["split"]
            assert b["track_id"][i] == TRACKS[k]["track_id"].encode()
            assert b["identity"][i] == TRACKS[k]["identity"].encode()
            seen.append(k)
    assert sorted(seen) == list(range(N))
    last = batches[-1]
    assert list(last["valid"]) == [True, True, True, False]
    assert not last["audio"][3].any() and not last["logits"][3].any() and last["num_rows"][3] == 0
    # Deterministic: a second pass is identical.
    again = list(pipeline.eval_batches(shards[3], batch_size=4))
    for x, y in zip(batches, again):
        np.testing.assert_array_equal(x["audio"], y["audio"])


def test_count_records(shards):
    assert pipeline.count_records(shards[3]) == N
    assert pipeline.count_records(shards[1][0]) == N


def test_pipeline_reads_the_listed_shards_not_a_stale_one(tmp_path):
    # A split rewritten with another shard count, plus a stale complete-looking shard copied in: the
    # files the trainer takes (records.list_shards) are exactly those dataset_info.json lists.
    import shutil
    d = str(tmp_path)
    records.write_shards(TRACKS[:6], d, "train", 3)
    listed = records.write_shards(TRACKS[:6], d, "train", 2)
    stale = records.write_shards(TRACKS[6:], str(tmp_path / "other"), "train", 1)
    records.write_dataset_info(d, {"num_examples": {"train": 6}})
    shutil.copy(stale[0], tmp_path / "train.tfrecord-00000-of-00001")
    files = records.list_shards(d, "train")
    assert files == listed
    assert [f"train.tfrecord-0000{i}-of-00002" for i in range(2)] == records.read_dataset_info(d)["shards"]["train"]
    assert pipeline.count_records(files) == 6
    seen = sorted(int(x) for b in pipeline.eval_batches(files, batch_size=4)
                  for x, v in zip(b["logits"][:, 0, 7], b["valid"]) if v)
    assert seen == list(range(6))
