"""Tests of the synthetic sets in real datasets' formats: FERPlus csv files (cmemo_jax.data.synthetic.
ferplus) and the acted RML / eNTERFACE'05 .avi trees (cmemo_jax.data.synthetic.acted).

Test sizes: 100 FERPlus rows, 24 + 12 + 6 acted clips of 2.5-4.5 s.
"""
import csv
import hashlib
import os
import re

import numpy as np
import pytest

from cmemo_jax import constants
from cmemo_jax.data import enterface, ferplus, rml
from cmemo_jax.data.clips import ACTED_EMOTIONS
from cmemo_jax.data.synthetic import acted
from cmemo_jax.data.synthetic import ferplus as synthetic_ferplus
from cmemo_jax.data.synthetic import generate_speakers, SyntheticConfig

FER_SIZES = dict(n_train=80, n_public=10, n_private=10)


def _sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _read_csv(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


# ------------------------------------------------------------------------------------------ FERPlus
@pytest.fixture(scope="module")
def fer_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ferplus"))
    paths = synthetic_ferplus.write_ferplus(out, seed=3, **FER_SIZES)
    assert paths == {"fer2013": os.path.join(out, "fer2013.csv"),
                     "fer2013new": os.path.join(out, "fer2013new.csv")}
    return out


def test_ferplus_files_have_the_release_formats(fer_dir):
    head_old, old = _read_csv(os.path.join(fer_dir, "fer2013.csv"))
    head_new, new = _read_csv(os.path.join(fer_dir, "fer2013new.csv"))
    assert head_old == ["emotion", "pixels", "Usage"]
    assert head_new == ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger",
                        "disgust", "fear", "contempt", "unknown", "NF"]
    n = sum(FER_SIZES.values())
    assert len(old) == len(new) == n
    usages = ["Training"] * 80 + ["PublicTest"] * 10 + ["PrivateTest"] * 10
    assert [r[2] for r in old] == usages and [r[0] for r in new] == usages
    for i, (o, w) in enumerate(zip(old, new)):
        assert 0 <= int(o[0]) <= 6                       # the old FER2013 7-class code
        pixels = o[1].split(" ")
        assert len(pixels) == 48 * 48 and all(0 <= int(p) <= 255 for p in pixels)
        assert w[1] in ("", f"fer{i:07d}.png")
        votes = [int(v) for v in w[2:]]
        assert len(votes) == 10 and sum(votes) == 10 and min(votes) >= 0


def test_ferplus_votes_are_ambiguous_like_the_real_ones(fer_dir):
    _, old = _read_csv(os.path.join(fer_dir, "fer2013.csv"))
    _, new = _read_csv(os.path.join(fer_dir, "fer2013new.csv"))
    votes = np.array([[int(v) for v in r[2:]] for r in new])
    named = np.array([bool(r[1]) for r in new])
    top = votes[:, :8].max(axis=1)
    assert (top >= 9).sum() >= 10 and (top[named] <= 6).sum() >= 5     # near-unanimous and split votes
    assert (votes[named, 8] > 0).sum() >= 3                            # some 'unknown' answers
    assert 1 <= (~named).sum() <= 5                                     # rows without an image name
    assert (named & (votes[:, 9] >= 6)).sum() >= 1                     # an image that is not a face
    # Faces show their emotion: the old FER2013 code agrees with the majority of clear votes.
    fer_of = {e: synthetic_ferplus.FER2013_CODES[e] for e in constants.EMOTIONS}
    clear = named & (top >= 7)
    agree = [fer_of[constants.EMOTIONS[votes[i, :8].argmax()]] == int(old[i][0]) for i in np.flatnonzero(clear)]
    assert len(agree) >= 20 and np.mean(agree) > 0.8
    assert synthetic_ferplus.FER2013_CODES["contempt"] == synthetic_ferplus.FER2013_CODES["disgust"] == 1


def test_ferplus_reader_and_cleaning_accept_it(fer_dir):
    data = ferplus.load_ferplus(fer_dir)
    assert data.num_malformed == 0
    assert all(len(data[s]) > 0 for s in ferplus.SPLITS)
    kept = sum(len(data[s]) for s in ferplus.SPLITS)
    # Cleaning drops the unnamed / NF rows and the too-ambiguous ones, but keeps most faces.
    assert 0.6 * 100 <= kept < 100 and data.dropped_by_cleaning == 100 - kept
    reasons = " ".join(r for _, r in data.skipped)
    assert "no Image name" in reasons
    images = data["train"].image
    assert images.dtype == np.uint8 and images.shape[1:] == (48, 48, 1) and images.std() > 20


def test_ferplus_is_deterministic_for_a_seed(fer_dir, tmp_path):
    again = synthetic_ferplus.write_ferplus(str(tmp_path / "a"), seed=3, **FER_SIZES)
    other = synthetic_ferplus.write_ferplus(str(tmp_path / "b"), seed=4, **FER_SIZES)
    for key, name in (("fer2013", "fer2013.csv"), ("fer2013new", "fer2013new.csv")):
        assert _sha(again[key]) == _sha(os.path.join(fer_dir, name))
        assert _sha(other[key]) != _sha(again[key])
    assert not [n for n in os.listdir(tmp_path / "a") if ".tmp-" in n]


def test_ensure_ferplus_caches_by_preset(tmp_path):
    out = synthetic_ferplus.ensure_ferplus(str(tmp_path), "tiny")
    assert os.path.isfile(os.path.join(out, "_COMPLETE"))
    assert len(ferplus.load_ferplus(out)["train"]) > 0
    mtime = os.path.getmtime(os.path.join(out, "fer2013.csv"))
    assert synthetic_ferplus.ensure_ferplus(str(tmp_path), "tiny") == out
    assert os.path.getmtime(os.path.join(out, "fer2013.csv")) == mtime
    with pytest.raises(ValueError):
        synthetic_ferplus.ensure_ferplus(str(tmp_path), "huge")


# ------------------------------------------------------------------------------------------ acted
@pytest.fixture(scope="module")
def rml_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rml"))
    return root, acted.write_rml(root, n_speakers=4, clips_per_emotion=1, seed=0)


@pytest.fixture(scope="module")
def enterface_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("enterface"))
    return root, acted.write_enterface(root, n_subjects=2, sentences=1, seed=0)


def test_rml_layout_and_names(rml_set):
    root, clips = rml_set
    assert len(clips) == 4 * 6
    rel = sorted(os.path.relpath(c.path, root) for c in clips)
    assert {p.split(os.sep)[0] for p in rel} == {"rml-1", "rml-2"}
    assert {c.speaker for c in clips} == {"s1", "s2", "s6", "s7"}
    assert any(len(p.split(os.sep)) == 4 for p in rel) and any(len(p.split(os.sep)) == 3 for p in rel)
    for c in clips:
        name = os.path.basename(c.path)
        assert os.path.isfile(c.path) and re.fullmatch(r"(an|di|fe|ha|sa|su)\d+\.avi", name)
        assert rml.emotion_of(name) == c.emotion                       # label from the file name
        assert c.speaker in c.path.split(os.sep)
    assert {c.emotion for c in clips} == set(ACTED_EMOTIONS)
    found, problems = rml.list_clips(root)
    assert problems == []
    assert sorted((c.path, c.label, c.speaker) for c in found) == sorted(clips)


def test_enterface_layout_with_irregular_levels(enterface_set):
    root, clips = enterface_set
    assert len(clips) == 2 * 6
    for c in clips:
        parts = os.path.relpath(c.path, root).split(os.sep)
        m = re.fullmatch(r"s(\d+)_(an|di|fe|ha|sa|su)_(\d+)\.avi", parts[-1])
        assert os.path.isfile(c.path) and m and parts[0] == f"subject {m.group(1)}" == c.speaker
        assert parts[1] == c.emotion == rml.EMOTION_CODES[m.group(2)]
    rel = {os.path.relpath(c.path, root) for c in clips}
    assert os.path.join("subject 1", "anger", "sentence 1", "s1_an_1.avi") in rel
    assert os.path.join("subject 1", "happiness", "s1_ha_1.avi") in rel              # no sentence level
    assert os.path.join("subject 2", "anger", "subject 2", "sentence 1", "s2_an_1.avi") in rel
    found, problems = enterface.list_clips(root)
    assert problems == []
    assert sorted((c.path, c.label, c.speaker) for c in found) == sorted(clips)


@pytest.mark.parametrize("which,rate", [("rml", 22_050), ("enterface", 44_100)])
def test_acted_clips_decode_as_stereo_video_files(which, rate, rml_set, enterface_set):
    av = pytest.importorskip("av")
    from cmemo_jax.audio import load_audio

    _, clips = rml_set if which == "rml" else enterface_set
    for clip in clips[:3]:
        with av.open(clip.path) as container:
            audio, video = container.streams.audio[0], container.streams.video[0]
            assert audio.codec_context.name == "pcm_s16le" and audio.rate == rate and audio.channels == 2
            assert video.codec_context.name == acted.VIDEO_CODEC and (video.width, video.height) == (48, 48)
            frame = next(container.decode(video)).to_ndarray(format="gray")
            assert frame.shape == (48, 48) and frame.std() > 10                 # a face, not a blank
        left = load_audio(clip.path, sample_rate=rate, channel=0)
        right = load_audio(clip.path, sample_rate=rate, channel=1)
        assert 2.4 <= left.shape[0] / rate <= 4.6 and left.shape == right.shape
        assert 0.01 < np.sqrt(np.mean(left ** 2)) and np.abs(left).max() < 0.95
        # Two microphones: the channels carry the same speech but are not copies of each other.
        assert not np.array_equal(left, right) and np.corrcoef(left, right)[0, 1] > 0.5
        mono16k = load_audio(clip.path, channel=0)                               # the readers' path
        assert abs(mono16k.shape[0] / constants.SAMPLE_RATE - left.shape[0] / rate) < 0.01


def test_acted_speakers_are_new_and_sets_deterministic(enterface_set, tmp_path):
    corpus_f0 = {s.f0_hz for s in generate_speakers(SyntheticConfig())}
    for dataset in (0, 1):
        people = acted.acted_speakers(SyntheticConfig(), dataset, ["a", "b", "c"], seed=0)
        assert corpus_f0.isdisjoint(p.f0_hz for p in people)
    _, clips = enterface_set
    by_name = {os.path.basename(c.path): c.path for c in clips}
    first = acted.write_enterface(str(tmp_path / "again"), n_subjects=1, sentences=1, seed=0)
    assert len(first) == 6
    for c in first:   # subject 1 of a 1-subject set: same streams, same bytes (some other folders)
        assert _sha(c.path) == _sha(by_name[os.path.basename(c.path)])
    other = acted.write_enterface(str(tmp_path / "other"), n_subjects=1, sentences=1, seed=1)
    assert _sha(other[0].path) != _sha(first[0].path)


def test_acted_sequence_marks_where_each_emotion_was_read(tmp_path):
    from cmemo_jax.audio import load_audio

    path = str(tmp_path / "seq.wav")
    parts = acted.write_acted_sequence(path, emotions=("anger", "fear"), pause_s=0.5)
    assert [p.emotion for p in parts] == ["anger", "fear"]
    wave = load_audio(path, sample_rate=acted.RML_CHAIN.sample_rate, channel=0)
    rate = acted.RML_CHAIN.sample_rate
    assert parts[0].start_s == pytest.approx(0.5) and parts[1].start_s == pytest.approx(parts[0].end_s + 0.5)
    assert parts[-1].end_s == pytest.approx(wave.shape[0] / rate, abs=1e-3)
    for p in parts:   # speech inside each part, silence in the pauses
        inside = wave[int(p.start_s * rate):int(p.end_s * rate)]
        assert np.sqrt(np.mean(inside ** 2)) > 0.01
    assert np.abs(wave[:int(0.5 * rate)]).max() == 0
    acted.write_acted_sequence(str(tmp_path / "again.wav"), ("anger", "fear"), pause_s=0.5)
    assert _sha(str(tmp_path / "again.wav")) == _sha(path)
    with pytest.raises(ValueError, match="contempt"):
        acted.write_acted_sequence(str(tmp_path / "x.wav"), emotions=("contempt",))
