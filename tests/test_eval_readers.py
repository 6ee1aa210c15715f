"""Evaluation-set readers (RML, eNTERFACE'05, CSV manifest) on small trees of real media files.

The .avi files hold 44.1 kHz stereo PCM with a different tone on each channel (and a tiny video
stream, like the real releases), so the tests prove that the LEFT channel reaches the probe.
"""
import os

import av
import numpy as np
import pytest
import soundfile as sf

from cmemo_jax.data import clips as clips_lib
from cmemo_jax.data import enterface, manifest, rml
from cmemo_jax.data.clips import ACTED_EMOTIONS, Clip

SR_IN = 44100
RIGHT_HZ = 2500.0          # every file's right channel: a tone no left channel uses


def tone(freq, seconds=0.5, sr=SR_IN, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def dominant_hz(x, sr=16000):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


def write_avi(path, left_hz=None, video=True, seconds=0.5):
    """An .avi with stereo pcm_s16le at 44.1 kHz (left: left_hz, right: RIGHT_HZ) and/or 32x32 video."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with av.open(str(path), mode="w", format="avi") as out:
        vstream = out.add_stream("mpeg4", rate=25) if video else None
        if vstream is not None:
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        if left_hz is not None:
            astream = out.add_stream("pcm_s16le", rate=SR_IN, layout="stereo")
            stereo = np.stack([tone(left_hz, seconds), tone(RIGHT_HZ, seconds)], axis=1)
            pcm = np.round(stereo * 32767).astype(np.int16)              # packed s16: [1, n * 2]
            for start in range(0, len(pcm), 1024):
                chunk = pcm[start:start + 1024].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
                frame.sample_rate, frame.pts = SR_IN, start
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode(None):
                out.mux(packet)
        if vstream is not None:
            for i in range(int(seconds * 25)):
                frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 8 * i, np.uint8), format="rgb24")
                frame.pts = i
                for packet in vstream.encode(frame):
                    out.mux(packet)
            for packet in vstream.encode(None):
                out.mux(packet)
    return str(path)


def write_stereo_wav(path, left_hz):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, np.stack([tone(left_hz), tone(RIGHT_HZ)], axis=1), SR_IN, subtype="PCM_16")
    return str(path)


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("not a clip\n")
    return str(path)


def assert_left_channel(waveforms, kept, left_hz_of):
    """Each decoded clip is 16 kHz, 0.5 s long, and carries its file's left tone, not the right one."""
    for x, clip in zip(waveforms, kept):
        assert x.dtype == np.float32 and x.ndim == 1 and abs(len(x) - 8000) <= 2, clip.path
        assert abs(dominant_hz(x) - left_hz_of[clip.path]) < 5, clip.path
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        right_bin = int(round(RIGHT_HZ * len(x) / 16000))
        assert spec[right_bin] < 1e-3 * spec.max(), f"{clip.path}: right channel leaked in"


def problem_for(problems, path, phrase):
    """The problem lines that name `path` and contain `phrase` (exactly one expected)."""
    hits = [p for p in problems if str(path) in p and phrase in p]
    assert len(hits) == 1, (path, phrase, problems)
    return hits[0]


# ------------------------------------------------------------------------------------------- RML

@pytest.fixture(scope="module")
def rml_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("rml")
    left = {}
    spec = {"rml-1/s1/an01.avi": 300, "rml-1/s1/english/ha02.avi": 400, "rml-1/s1/mandarin/SA03.avi": 500,
            "rml-1/s2/Fe04.avi": 600, "rml-2/s6/su05.avi": 700}
    for rel, hz in spec.items():
        left[write_avi(root / rel, hz)] = hz
    left[write_stereo_wav(str(root / "rml-2/s8/di06.wav"), 800)] = 800
    silent = write_avi(root / "rml-2/s6/an07.avi", left_hz=None)             # video only: no audio
    bad = {"code": write_avi(root / "rml-1/s2/xx08.avi", 900),
           "stray": touch(root / "rml-1/s2/notes.txt"),
           "wrong_part": write_avi(root / "rml-1/s7/an09.avi", 900),          # s7 belongs in rml-2
           "deep": str(root / "rml-1/s1/english/extra"),
           "top": str(root / "misc")}
    write_avi(os.path.join(bad["deep"], "an10.avi"), 900)
    os.makedirs(bad["top"])
    return str(root), left, silent, bad


def test_rml_layout_labels_speakers_and_problems(rml_tree):
    root, left, silent, bad = rml_tree
    clips, problems = rml.list_clips(root)
    got = {(os.path.relpath(c.path, root), c.label, c.speaker, c.dataset) for c in clips}
    assert got == {("rml-1/s1/an01.avi", "anger", "s1", "rml"),
                   ("rml-1/s1/english/ha02.avi", "happiness", "s1", "rml"),
                   ("rml-1/s1/mandarin/SA03.avi", "sadness", "s1", "rml"),
                   ("rml-1/s2/Fe04.avi", "fear", "s2", "rml"),
                   ("rml-2/s6/an07.avi", "anger", "s6", "rml"),
                   ("rml-2/s6/su05.avi", "surprise", "s6", "rml"),
                   ("rml-2/s8/di06.wav", "disgust", "s8", "rml")}
    assert [c.path for c in clips] == sorted(c.path for c in clips)
    assert {c.label for c in clips} <= set(ACTED_EMOTIONS)
    problem_for(problems, bad["code"], "unknown emotion code 'xx'")
    problem_for(problems, bad["stray"], "unexpected file")
    problem_for(problems, os.path.dirname(bad["wrong_part"]), "folder not in the RML layout")
    problem_for(problems, bad["deep"], "folder not in the RML layout")
    problem_for(problems, bad["top"], "folder not in the RML layout")
    assert len(problems) == 5, problems


def test_rml_root_may_be_the_speaker_folders(rml_tree):
    root = rml_tree[0]
    clips, problems = rml.list_clips(os.path.join(root, "rml-2"))
    assert [(os.path.basename(c.path), c.label, c.speaker) for c in clips] == [
        ("an07.avi", "anger", "s6"), ("su05.avi", "surprise", "s6"), ("di06.wav", "disgust", "s8")]
    assert problems == []
    # In speaker-folder mode s7 is a valid speaker folder.
    clips, _ = rml.list_clips(os.path.join(root, "rml-1"))
    assert {c.speaker for c in clips} == {"s1", "s2", "s7"}


def test_rml_audio_is_the_left_channel_and_a_clip_without_audio_is_reported(rml_tree):
    root, left, silent, _ = rml_tree
    clips, _ = rml.list_clips(root)
    waveforms, kept, problems = clips_lib.load_all(clips)
    assert [c.path for c in kept] == [c.path for c in clips if c.path != silent]
    assert len(problems) == 1 and silent in problems[0] and "no audio stream" in problems[0]
    assert_left_channel(waveforms, kept, left)
    single = clips_lib.load_clip_audio(kept[0])
    np.testing.assert_array_equal(single, waveforms[0])


def test_missing_roots_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="RML"):
        rml.list_clips(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="eNTERFACE"):
        enterface.list_clips(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="manifest"):
        manifest.list_clips(str(tmp_path / "nope.csv"))


# ------------------------------------------------------------------------------------- eNTERFACE

def test_enterface_irregular_levels(tmp_path):
    top = tmp_path / "enterface database"
    good = {"subject 1/anger/sentence 1/s1_an_1.avi": ("anger", "subject 1", 300),
            "subject 1/happiness/sentence 2/s1_ha_2.avi": ("happiness", "subject 1", 350),
            "subject 6/anger/subject 6/sentence 1/s6_an_1.avi": ("anger", "subject 6", 400),   # extra level
            "subject 6/subject 6/fear/sentence 3/s6_fe_3.avi": ("fear", "subject 6", 450),
            "subject 2/sadness/s2_sa_1.avi": ("sadness", "subject 2", 500),                   # no sentence
            "Subject-12/Surprise/sentence_5/s12_su_5.avi": ("surprise", "subject 12", 550),   # renamed copy
            "subject 2/disgust/sentence 1/s2_di_1.avi": ("disgust", "subject 2", None)}       # no audio
    left = {}
    for rel, (_, _, hz) in good.items():
        path = write_avi(top / rel, hz, video=True) if hz else write_avi(top / rel, None)
        left[path] = hz
    bad = {"stray": touch(top / "subject 2/Thumbs.db"),
           "no_emotion": write_avi(top / "subject 2/s2_xx_1.avi", 600),
           "not_layout": write_avi(top / "subject 2/sadness/backup/s2_sa_9.avi", 600),
           "unknown_emotion": write_avi(top / "subject 3/joy/sentence 1/s3_jo_1.avi", 600),
           "other_subject": write_avi(top / "subject 4/subject 5/anger/s5_an_1.avi", 600),
           "readme": touch(tmp_path / "README.txt")}

    clips, problems = enterface.list_clips(str(tmp_path))
    got = {os.path.relpath(c.path, top): (c.label, c.speaker, c.dataset) for c in clips}
    assert got == {rel: (label, speaker, "enterface") for rel, (label, speaker, _) in good.items()}
    problem_for(problems, bad["stray"], "unexpected file")
    problem_for(problems, bad["no_emotion"], "not inside an emotion folder")
    problem_for(problems, os.path.dirname(bad["not_layout"]), "folder not in the eNTERFACE layout")
    joy = os.path.dirname(os.path.dirname(bad["unknown_emotion"]))
    problem_for(problems, joy, "folder not in the eNTERFACE layout")
    problem_for(problems, str(top / "subject 4/subject 5"), "subject 5 inside subject 4")
    problem_for(problems, bad["readme"], "unexpected file")
    assert len(problems) == 6, problems

    waveforms, kept, load_problems = clips_lib.load_all(clips)
    silent = str(top / "subject 2/disgust/sentence 1/s2_di_1.avi")
    assert len(load_problems) == 1 and silent in load_problems[0]
    assert len(kept) == len(clips) - 1
    assert_left_channel(waveforms, kept, left)


# -------------------------------------------------------------------------------------- manifest

def test_manifest_relative_paths_any_labels_and_bad_rows(tmp_path):
    folder = tmp_path / "mine"
    a = write_stereo_wav(str(folder / "clips/a.wav"), 300)
    b = write_avi(folder / "clips/b.avi", 420)
    c = write_stereo_wav(str(tmp_path / "elsewhere/c.wav"), 540)              # absolute path in the csv
    csv_path = folder / "manifest.csv"
    csv_path.write_text("Path,Label,Speaker\n"
                        "clips/a.wav,Happy,spk1\n"
                        "clips/b.avi, sad ,\n"
                        f"{c},FRUSTRATED,spk2\n"
                        "\n"
                        "clips/missing.wav,happy,spk1\n"
                        "clips/a.wav,,spk1\n"
                        "clips/a.wav\n")
    clips, problems = manifest.list_clips(str(csv_path))
    assert clips == [Clip(a, "happy", "spk1", "manifest"), Clip(b, "sad", "", "manifest"),
                     Clip(c, "frustrated", "spk2", "manifest")]
    problem_for(problems, f"{csv_path}:6", "missing.wav: no such file")
    problem_for(problems, f"{csv_path}:7", "empty label")
    problem_for(problems, f"{csv_path}:8", "too few cells")
    assert len(problems) == 3

    waveforms, kept, load_problems = clips_lib.load_all(clips)
    assert load_problems == [] and kept == clips
    assert_left_channel(waveforms, kept, {a: 300, b: 420, c: 540})


def test_manifest_columns_by_name_and_header_required(tmp_path):
    write_stereo_wav(str(tmp_path / "x.wav"), 300)
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("\ufefflabel,notes,path\nAngry,loud,x.wav\n", encoding="utf-8")   # BOM, own order
    clips, problems = manifest.list_clips(str(csv_path))
    assert clips == [Clip(str(tmp_path / "x.wav"), "angry", "", "manifest")] and problems == []
    csv_path.write_text("x.wav,angry\n")
    with pytest.raises(ValueError, match="header row"):
        manifest.list_clips(str(csv_path))
