"""Tests of the embedded synthetic audio-visual corpus (cmemo_jax.data.synthetic).

Fast (tiny preset): determinism, schema, identity persistence of the voice, emotion -> voice and
emotion -> face effects in asserted directions, split disjointness, and the cached on-disk corpus.
"""
import dataclasses
import io
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from cmemo_jax import constants
from cmemo_jax.data import synthetic as S

SR = constants.SAMPLE_RATE
CFG = S.SyntheticConfig.tiny()
HAPPINESS, SURPRISE, SADNESS, ANGER = (constants.EMOTIONS.index(e)
                                       for e in ("happiness", "surprise", "sadness", "anger"))


@pytest.fixture(scope="module")
def speakers():
    return S.generate_speakers(CFG)


@pytest.fixture(scope="module")
def tiny_corpus():
    return {name: list(S.generate_tracks(CFG, name)) for name in ("train", "unheard_val", "heard_val")}


def _track(spk, k, cfg=CFG, split=constants.SPLIT_TRAIN):
    return S.generate_track_with_latents(spk, k, split, S.track_rng(cfg, spk, k), cfg)


# ------------------------------------------------------------------------------ measurement helpers
def _frame_f0(audio, win=800, hop=400, fmin=60.0, fmax=450.0):
    """Autocorrelation f0 (Hz) and energy (dB) of 50 ms frames, from the 60-1500 Hz band."""
    x = audio.astype(np.float64) / 32768.0
    n = (len(x) - win) // hop + 1
    fr = x[np.arange(n)[:, None] * hop + np.arange(win)] * np.hanning(win)
    nfft = 4096
    f = np.fft.rfftfreq(nfft, 1.0 / SR)
    power = np.abs(np.fft.rfft(fr, nfft, axis=1)) ** 2
    ac = np.fft.irfft(power * ((f > 60) & (f < 1500)), axis=1)[:, :win]
    ac = ac / (ac[:, :1] + 1e-12)
    lo, hi = int(SR / fmax), int(SR / fmin)
    lag = lo + ac[:, lo:hi].argmax(axis=1)
    t = (np.arange(n) * hop + win / 2) / SR
    energy_db = 10.0 * np.log10((fr ** 2).mean(axis=1) + 1e-12)
    return t, SR / lag, energy_db


def _ctrl_at(lat, key, t):
    i = np.clip(np.rint(t / (lat["ctrl_time"][1] - lat["ctrl_time"][0])).astype(int), 0,
                len(lat["ctrl_time"]) - 1)
    return lat[key][i]


# ------------------------------------------------------------------------------------------- tests
def test_presets_and_config_hash():
    tiny, demo, default = S.SyntheticConfig.tiny(), S.SyntheticConfig.demo(), S.SyntheticConfig.default()
    assert tiny.num_train_speakers < demo.num_train_speakers <= default.num_train_speakers
    assert tiny.max_track_seconds <= 8.0
    assert default == S.SyntheticConfig()
    assert S.corpus_name(tiny) == S.corpus_name(S.SyntheticConfig.tiny())
    assert S.corpus_name(tiny) != S.corpus_name(dataclasses.replace(tiny, seed=1))
    # The trainer rebuilds configs from __dict__ (config.data.synthetic_seed).
    assert type(tiny)(**{**tiny.__dict__, "seed": 3}).seed == 3


def test_determinism(speakers):
    spk = speakers[1]
    a = S.generate_track(spk, 2, constants.SPLIT_TRAIN, S.track_rng(CFG, spk, 2), CFG)
    b = S.generate_track(spk, 2, constants.SPLIT_TRAIN, S.track_rng(CFG, spk, 2), CFG)
    for key in ("audio", "logits", "faces", "frame_emotion"):
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == b[key].dtype
    assert a["track_id"] == b["track_id"]
    # Speakers are regenerated identically; a different seed changes everything.
    assert S.generate_speakers(CFG) == speakers
    other = dataclasses.replace(CFG, seed=CFG.seed + 1)
    c = S.generate_track(S.generate_speakers(other)[1], 2, 1,
                         S.track_rng(other, S.generate_speakers(other)[1], 2), other)
    assert c["audio"].shape != a["audio"].shape or not np.array_equal(c["audio"], a["audio"])


def test_split_iteration_matches_single_tracks_and_workers(tiny_corpus, speakers):
    # generate_tracks yields exactly generate_track(track_rng(...)) for each job, in a fixed order...
    first = tiny_corpus["heard_val"][0]
    spk = next(s for s in speakers if s.identity == first["identity"])
    k = S.track_index_from_id(first["track_id"])
    again = S.generate_track(spk, k, constants.SPLIT_HEARD_VAL, S.track_rng(CFG, spk, k), CFG)
    np.testing.assert_array_equal(first["audio"], again["audio"])
    np.testing.assert_array_equal(first["logits"], again["logits"])
    # ... and a process pool gives the same tracks in the same order.
    pooled = list(S.generate_tracks(CFG, "train", num_workers=2))
    assert [t["track_id"] for t in pooled] == [t["track_id"] for t in tiny_corpus["train"]]
    for p, q in zip(pooled, tiny_corpus["train"]):
        np.testing.assert_array_equal(p["audio"], q["audio"])
        np.testing.assert_array_equal(p["faces"], q["faces"])


def test_schema_dtypes_shapes(tiny_corpus):
    tracks = [t for split in tiny_corpus.values() for t in split]
    assert len({t["track_id"] for t in tracks}) == len(tracks)
    for t in tracks:
        assert set(t) == {"track_id", "identity", "split", "audio", "logits", "faces", "frame_emotion"}
        assert isinstance(t["track_id"], str) and isinstance(t["identity"], str)
        assert re.fullmatch(r"syn\d{5}/v\d{3}/\d{5}", t["track_id"])
        assert t["track_id"].split("/")[0] == t["identity"]
        assert isinstance(t["split"], int) and t["split"] in (1, 2, 3)
        audio, logits, faces, fe = t["audio"], t["logits"], t["faces"], t["frame_emotion"]
        assert audio.dtype == np.int16 and audio.ndim == 1
        duration = audio.shape[0] / SR
        assert CFG.min_track_seconds - 1e-3 <= duration <= CFG.max_track_seconds + 1e-3
        # Peak well inside the int16 range, and not silent.
        assert 1000 < np.abs(audio.astype(np.int32)).max() <= int(0.86 * 32767)
        n_frames = constants.frame_row((audio.shape[0] - 1) / SR) + 1
        assert logits.dtype == np.float32 and logits.shape == (n_frames, constants.NUM_EMOTIONS)
        assert np.all(np.isfinite(logits))
        assert faces.dtype == np.uint8 and faces.shape == (n_frames, CFG.face_size, CFG.face_size)
        assert fe.dtype == np.int8 and fe.shape == (n_frames,)
        assert fe.min() >= 0 and fe.max() < constants.NUM_EMOTIONS
        # The last row covers the end of the audio and the rows span the duration in 0.24 s steps.
        assert abs(n_frames * constants.FRAME_PERIOD_S - duration) < 2 * constants.FRAME_PERIOD_S
        # Faces are not blank; consecutive frames differ (pose, noise, expression).
        assert faces.std() > 20 and np.any(faces[0] != faces[-1])


def test_split_disjointness(tiny_corpus, speakers):
    ids = {name: {t["identity"] for t in tr} for name, tr in tiny_corpus.items()}
    assert ids["unheard_val"].isdisjoint(ids["train"])
    assert ids["heard_val"] <= ids["train"]
    assert len(ids["train"]) == CFG.num_train_speakers and len(ids["unheard_val"]) == CFG.num_unheard_speakers
    for name, code in constants.SPLIT_IDS.items():
        assert all(t["split"] == code for t in tiny_corpus[name])
    n_hv = CFG.num_train_speakers * round(CFG.heard_val_fraction * CFG.tracks_per_speaker)
    assert len(tiny_corpus["heard_val"]) == n_hv
    assert len(tiny_corpus["train"]) == CFG.num_train_speakers * CFG.tracks_per_speaker - n_hv
    assert len(tiny_corpus["unheard_val"]) == CFG.num_unheard_speakers * CFG.tracks_per_speaker
    heard_ids = {t["track_id"] for t in tiny_corpus["heard_val"]}
    assert heard_ids.isdisjoint(t["track_id"] for t in tiny_corpus["train"])
    with pytest.raises(ValueError):
        next(S.generate_tracks(CFG, "test"))


def test_speaker_identity_persists_in_voice(speakers):
    """Median f0 measured from the audio tracks each speaker's habitual pitch; within-speaker spread
    across tracks is much smaller than the spread between speakers."""
    measured = []
    for spk in speakers:
        per_track = []
        for k in range(3):
            tr, lat = _track(spk, k)
            t, f0, _ = _frame_f0(tr["audio"])
            voiced = _ctrl_at(lat, "ctrl_voiced", t) > 0.5
            per_track.append(np.log(np.median(f0[voiced])))
        measured.append(per_track)
    measured = np.array(measured)                              # [speakers, tracks] log Hz
    true = np.log([s.f0_hz for s in speakers])
    assert np.corrcoef(measured.mean(axis=1), true)[0, 1] > 0.9
    within = measured.std(axis=1, ddof=1).mean()
    between = measured.mean(axis=1).std(ddof=1)
    assert within < 0.5 * between, (within, between)
    female = np.array([s.female for s in speakers])
    assert female.any() and (~female).any()
    assert np.exp(measured[female].mean()) > 1.4 * np.exp(measured[~female].mean())


def _emotion_vs_neutral(speakers, emotion, n_tracks=2):
    """Mean over tracks of (emotional - neutral) median f0 (semitones) and mean energy (dB), measured
    from the audio on voiced frames of speakers whose episodes are all of `emotion`."""
    d_st, d_db = [], []
    for spk in speakers[:6]:
        forced = dataclasses.replace(spk, emotion_prior=tuple(np.eye(constants.NUM_EMOTIONS)[emotion]),
                                     expressiveness=0.5)
        for k in range(10, 10 + n_tracks):
            tr, lat = _track(forced, k)
            t, f0, edb = _frame_f0(tr["audio"])
            w = _ctrl_at(lat, "ctrl_weights", t)
            voiced = _ctrl_at(lat, "ctrl_voiced", t) > 0.5
            emo, neu = (w[:, emotion] > 0.6) & voiced, (w[:, 0] > 0.97) & voiced
            if emo.sum() < 3 or neu.sum() < 3:
                continue
            st = 12.0 * np.log2(f0)
            d_st.append(np.median(st[emo]) - np.median(st[neu]))
            d_db.append(edb[emo].mean() - edb[neu].mean())
    assert len(d_st) >= 6
    return float(np.mean(d_st)), float(np.mean(d_db))


def test_emotion_drives_voice(speakers):
    hap_st, hap_db = _emotion_vs_neutral(speakers, HAPPINESS)
    sur_st, _ = _emotion_vs_neutral(speakers, SURPRISE)
    sad_st, sad_db = _emotion_vs_neutral(speakers, SADNESS)
    ang_st, ang_db = _emotion_vs_neutral(speakers, ANGER)
    assert hap_st > 1.5 and hap_db > 1.0           # happiness: higher and louder
    assert sur_st > 2.5                             # surprise: highest
    assert sad_st < -0.8 and sad_db < -3.0          # sadness: lower and quieter
    assert ang_db > 4.0 and ang_db > hap_db         # anger: loudest
    assert ang_st > sad_st + 1.0


def test_oracle_logits_follow_rendered_expression(tiny_corpus):
    tracks = [t for split in tiny_corpus.values() for t in split]
    hits, neutral_hits, n_emotional = [], [], 0
    speakers = {s.identity: s for s in S.generate_speakers(CFG)}
    for tr in tracks[:24]:
        spk = speakers[tr["identity"]]
        k = S.track_index_from_id(tr["track_id"])
        again, lat = _track(spk, k, split=tr["split"])
        np.testing.assert_array_equal(again["logits"], tr["logits"])
        fe, am = tr["frame_emotion"], tr["logits"].argmax(axis=1)
        strong = (fe > 0) & ~lat["transition"] & (lat["frame_intensity"] > 0.7)
        hits.extend(am[strong] == fe[strong])
        neutral_hits.extend(am[fe == 0] == 0)
        # Transition frames (inside an episode, face drifted back) read mostly as neutral.
        n_emotional += int((fe > 0).sum())
    assert len(hits) > 30 and np.mean(hits) > 0.85
    assert np.mean(neutral_hits) > 0.9
    assert n_emotional > 0


def _mouth_profile(face_params, expr_name, intensity=1.0, size=48):
    """Renders one frontal, noiseless face of an emotion; returns (image, mouth centre row, corner
    rows, mouth box): the darkness-weighted mean row of the lip band at the mouth centre and near
    the two corners."""
    e = constants.EMOTIONS.index(expr_name)
    w = np.zeros((1, constants.NUM_EMOTIONS))
    w[0, e] = intensity if e else 0.0
    img = S.render_faces(face_params, S._face_expression(w), np.zeros(1), np.random.default_rng(0),
                         size=size, noise_std=0.0, pose_jitter=0.0)[0].astype(np.float64)
    p = dict(zip(S._FACE_KEYS, face_params))

    def col(x):
        return int(np.clip(round(((x / 0.9) + 1.0) * size / 2.0 - 0.5), 0, size - 1))

    def row(y):
        return int(np.clip(round(((y / 0.9) + 1.0) * size / 2.0 - 0.5), 0, size - 1))

    r0, r1 = row(p["mouth_y"] - 0.14), row(p["mouth_y"] + 0.14)
    band = img[r0:r1]
    mw = p["mouth_w"]
    def dark_row(c):
        d = np.clip(np.median(band) - band[:, c], 0.0, None)
        return r0 + float((d * np.arange(len(d))).sum() / (d.sum() + 1e-9))

    centre = dark_row(col(0.0))
    corners = [dark_row(col(s * 0.8 * mw)) for s in (-1, 1)]
    return img, centre, corners, (r0, r1, col(-mw), col(mw))


def test_emotion_drives_face(speakers):
    for spk in speakers[:4]:
        _, c_h, corners_h, _ = _mouth_profile(spk.face, "happiness")
        _, c_s, corners_s, _ = _mouth_profile(spk.face, "sadness")
        neu, c_n, corners_n, (r0, r1, c0, c1) = _mouth_profile(spk.face, "neutral")
        # Rows grow downwards: a smile lifts the corners above the centre, a frown drops them below
        # (relative to the same speaker's neutral mouth, by at least half a pixel).
        lift_h = np.mean(corners_h) - c_h
        lift_s = np.mean(corners_s) - c_s
        lift_n = np.mean(corners_n) - c_n
        assert lift_h < -0.5 and lift_h < lift_n - 0.5, (lift_h, lift_n)
        assert lift_s > 0.5 and lift_s > lift_n + 0.5, (lift_s, lift_n)
        # Surprise opens the mouth: more dark pixels in the mouth box than a neutral face.
        sur = _mouth_profile(spk.face, "surprise")[0]
        assert (sur[r0:r1, c0:c1 + 1] < 60).sum() > (neu[r0:r1, c0:c1 + 1] < 60).sum() + 5
        # Happiness and sadness images differ mainly below the eyes (mouth / cheeks).
        hap = _mouth_profile(spk.face, "happiness")[0]
        sad = _mouth_profile(spk.face, "sadness")[0]
        assert np.abs(hap[r0:r1] - sad[r0:r1]).sum() > 500


def test_ensure_corpus_tiny(tmp_path):
    records = pytest.importorskip("cmemo_jax.data.records")
    if not hasattr(records, "write_shards"):
        pytest.skip("cmemo_jax.data.records has no write_shards yet")
    tf = pytest.importorskip("tensorflow")
    out = S.ensure_corpus(str(tmp_path), CFG, num_shards=2)
    assert os.path.dirname(out) == str(tmp_path) and os.path.basename(out) == S.corpus_name(CFG)
    assert os.path.exists(os.path.join(out, S.COMPLETE_MARKER))
    info = records.read_dataset_info(out)
    n_hv = CFG.num_train_speakers * round(CFG.heard_val_fraction * CFG.tracks_per_speaker)
    assert info["num_examples"] == {
        "train": CFG.num_train_speakers * CFG.tracks_per_speaker - n_hv,
        "heard_val": n_hv,
        "unheard_val": CFG.num_unheard_speakers * CFG.tracks_per_speaker}
    assert info["sample_rate"] == SR and info["config"]["seed"] == CFG.seed
    assert set(info["emotion_histogram"]["train"]) == set(constants.EMOTIONS)
    for split in ("train", "unheard_val", "heard_val"):
        assert len(records.list_shards(out, split)) == 2
    # Round trip: the first stored train track equals the generator's.
    shard0 = records.list_shards(out, "train")[0]
    stored = records.decode_track(next(iter(tf.data.TFRecordDataset(shard0))).numpy())
    first = next(S.generate_tracks(CFG, "train"))
    assert stored["track_id"] == first["track_id"]
    for key in ("audio", "logits", "faces", "frame_emotion"):
        np.testing.assert_array_equal(stored[key], first[key])
    # Second call: cached, returns at once without touching the shards.
    mtime = os.path.getmtime(shard0)
    t0 = time.time()
    assert S.ensure_corpus(str(tmp_path), CFG, num_shards=2) == out
    assert time.time() - t0 < 1.0 and os.path.getmtime(shard0) == mtime


def test_ensure_corpus_removes_leftover_temporaries(tmp_path):
    """A killed generation leaves '<file>.tmp-<pid>' files (shards, dataset_info, marker): the next
    ensure_corpus deletes those of dead writers (and of its own pid), also once the corpus is complete,
    and keeps those of a writer that is still running."""
    pytest.importorskip("tensorflow")
    cfg = S.SyntheticConfig.tiny(num_train_speakers=2, num_unheard_speakers=1, tracks_per_speaker=2,
                                 max_track_seconds=4.5)
    out_dir = tmp_path / S.corpus_name(cfg)
    out_dir.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()                                   # its pid now names a writer that was killed
    stale = [f"train.tfrecord-00000-of-00001.tmp-{gone.pid}", f"train.tfrecord-00000-of-00003.tmp-{gone.pid}",
             f"{S.COMPLETE_MARKER}.tmp-{gone.pid}", f"dataset_info.json.tmp-{os.getpid()}"]
    live = f"heard_val.tfrecord-00000-of-00001.tmp-{os.getppid()}"   # the parent process is running
    for name in stale + [live]:
        (out_dir / name).write_bytes(b"partial")

    out = S.ensure_corpus(str(tmp_path), cfg, num_shards=1, num_workers=0)
    left = set(os.listdir(out))
    assert left.isdisjoint(stale), left
    assert live in left and S.COMPLETE_MARKER in left
    # Leftovers next to a complete corpus go too, and the cached call stays fast.
    (out_dir / f"unheard_val.tfrecord-00000-of-00001.tmp-{gone.pid}").write_bytes(b"partial")
    t0 = time.time()
    assert S.ensure_corpus(str(tmp_path), cfg, num_shards=1) == out
    assert time.time() - t0 < 1.0
    assert sorted(n for n in os.listdir(out) if ".tmp-" in n) == [live]


def test_worker_frames_round_trip_without_pickle(tiny_corpus):
    """The worker protocol (length + JSON header + raw arrays) returns the track exactly, with the
    schema's dtypes, and rejects truncated frames."""
    from cmemo_jax.data.synthetic import workers

    track = tiny_corpus["train"][0]
    frame = workers.encode_frame(track)
    assert b"pickle" not in frame and frame[8:9] == b"{"
    stream = io.BytesIO(frame + frame)
    for _ in range(2):
        back = workers.read_frame(stream)
        assert set(back) == set(track)
        for key, value in track.items():
            if isinstance(value, np.ndarray):
                assert back[key].dtype == value.dtype and back[key].flags.writeable
                np.testing.assert_array_equal(back[key], value)
            else:
                assert back[key] == value and type(back[key]) is type(value)
    assert workers.read_frame(stream) is None
    with pytest.raises(EOFError):
        workers.read_frame(io.BytesIO(frame[:-10]))
