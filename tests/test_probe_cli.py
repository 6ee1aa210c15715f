"""`python -m cmemo_jax.probe fit` on the user's own labelled clips, and `predict --head` with the result.

The clips are synthetic and clearly separable (low- vs high-pitched voiced sounds); the student is
the tiny random export of test_predict, whose 8 outputs still separate them linearly.
"""
import csv
import json
import os
import re

import numpy as np
import pytest
import soundfile as sf
from test_predict import make_student_export, speechlike

from cmemo_jax import export, predict, probe
from cmemo_jax.constants import SAMPLE_RATE as SR


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "student.msgpack"
    make_student_export(path)
    return str(path)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A manifest of 24 clips, 'low' (f0 100-160 Hz) vs 'high' (f0 700-1000 Hz), 4 speakers, plus one
    clip that cannot be decoded. -> (csv path, {label: [clip paths]})."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(1)
    rows, by_label = [], {"low": [], "high": []}
    for i in range(24):
        label = ("low", "high")[i % 2]
        f0 = rng.uniform(100, 160) if label == "low" else rng.uniform(700, 1000)
        path = root / f"clip{i:02d}.wav"
        sf.write(path, speechlike((1.2, 2.2)[(i // 2) % 2], seed=i, f0=f0), SR)
        rows.append((path.name, label.upper() if i == 0 else label, f"s{i % 4}"))
        by_label[label].append(str(path))
    with open(root / "broken.wav", "wb") as fh:
        fh.write(b"RIFF not really a wav file")
    rows.append(("broken.wav", "low", "s0"))
    with open(root / "clips.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "label", "speaker"), *rows])
    return str(root / "clips.csv"), by_label


def fit(student, data, out, *extra):
    return probe.main(["fit", f"--model={student}", f"--data={data}", f"--out={out}", *extra])


def test_fit_reports_cv_saves_head_and_predict_uses_it(student, labelled, tmp_path, capsys):
    data, by_label = labelled
    head = str(tmp_path / "head.msgpack")
    assert fit(student, data, head, "--folds=4") == 0
    out, err = capsys.readouterr()
    accuracy = re.search(r"4-fold random \(seed 0\) cross-validated accuracy: ([0-9.]+) ± ([0-9.]+) "
                         r"\(24 clips, labels high, low\)", out)
    assert accuracy and float(accuracy.group(1)) >= 0.9, out
    assert "skipped: " in err and "broken.wav" in err
    assert os.path.isfile(head) and "wrote" in out

    head_probe, labels = probe.load_head(head, student_path=student, num_features=8)
    assert labels == ("high", "low") and head_probe.weights.shape == (8, 2)
    _, _, meta = probe.read_head(head)
    assert meta["student"] == {"file": "student.msgpack", "sha256": export.file_sha256(student)}
    assert meta["cv"]["folds"] == 4 and meta["cv"]["num_clips"] == 24

    high_clip = by_label["high"][0]
    assert predict.main([f"--model={student}", f"--head={head}", "--json", high_clip]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(list(r["probabilities"]) == ["high", "low"] and len(r["embedding"]) == 8 for r in records)
    assert records[-1]["whole_file"] and records[-1]["probabilities"]["high"] > 0.5
    assert predict.main([f"--model={student}", f"--head={head}", by_label["low"][0]]) == 0
    table = capsys.readouterr().out
    assert re.search(r"start_s\s+end_s\s+high\s+low\s+top", table) and table.rstrip().endswith("low")


def test_speaker_independent_folds(student, labelled, tmp_path, capsys):
    head = str(tmp_path / "head.msgpack")
    assert fit(student, labelled[0], head, "--folds=4", "--speaker-independent") == 0
    out = capsys.readouterr().out
    match = re.search(r"4-fold speaker-independent cross-validated accuracy: ([0-9.]+)", out)
    assert match and float(match.group(1)) >= 0.8, out


def test_head_errors_are_one_line(student, labelled, tmp_path, capsys):
    head = str(tmp_path / "head.msgpack")
    assert fit(student, labelled[0], head, "--folds=3") == 0
    capsys.readouterr()
    clip = labelled[1]["low"][0]
    other = str(tmp_path / "other_student.msgpack")
    make_student_export(other, seed=1)
    garbage = str(tmp_path / "garbage.msgpack")
    with open(garbage, "wb") as fh:
        fh.write(os.urandom(300))
    cases = [(student, "not a probe head"), (garbage, "not a cmemo_jax msgpack file"),
             (str(tmp_path / "missing.msgpack"), "cannot read head file")]
    for bad_head, fault in cases:
        with pytest.raises(probe.HeadError, match=re.escape(fault)):
            probe.load_head(bad_head)
        assert predict.main([f"--model={student}", f"--head={bad_head}", clip]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {bad_head}: ") and fault in err[0]
    # A head given as the model, and a head used with another student than its own.
    assert predict.main([f"--model={head}", clip]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {head}: a probe head, not a student model (a head goes to --head)"]
    assert predict.main([f"--model={other}", f"--head={head}", clip]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fitted on the student 'student.msgpack'" in err[0]


def test_data_kind_detection_and_data_errors(student, labelled, tmp_path, capsys):
    clip = labelled[1]["low"][0]

    def place(*parts):
        path = tmp_path.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(open(clip, "rb").read())

    place("rml", "rml-1", "s1", "an1.wav")
    place("rml", "rml-2", "s6", "english", "ha2.wav")
    place("ent", "subject 3", "fear", "sentence 1", "s3_fe_1.wav")
    kind, clips, problems = probe.read_data(str(tmp_path / "rml"))
    assert kind == "rml" and [c.label for c in clips] == ["anger", "happiness"] and not problems
    kind, clips, _ = probe.read_data(str(tmp_path / "ent"))
    assert kind == "enterface" and [(c.label, c.speaker) for c in clips] == [("fear", "subject 3")]
    assert probe.read_data(labelled[0])[0] == "manifest"

    (tmp_path / "empty").mkdir()
    no_speakers = tmp_path / "no_speakers.csv"
    no_speakers.write_text(f"path,label\n{clip},low\n{labelled[1]['high'][0]},high\n")
    for data, fault in ((str(tmp_path / "empty"), "no clips found"),
                        (str(tmp_path / "nowhere"), "no such file or folder"),
                        (str(no_speakers), "needs >= 2 speakers")):
        extra = ["--speaker-independent"] if data == str(no_speakers) else []
        assert fit(student, data, str(tmp_path / "h.msgpack"), *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: {data}: ") and fault in err[-1], err
