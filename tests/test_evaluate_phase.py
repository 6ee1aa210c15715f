"""The evaluate phase (paper §5) end to end on small media trees, with an untrained tiny student.

The trees hold short clips of synthetic voices whose pitch, loudness, brightness and syllable rate
depend on the emotion (three speakers each), in the RML layout (wav), the eNTERFACE layout (avi with a
video stream, for the teacher (V) row) and a CSV manifest, plus the bad entries a real copy has.
"""
import csv
import hashlib
import json
import os
import re

os.environ.setdefault("NUMBA_CPU_NAME", "generic")   # librosa's yin is numba-compiled (docs/method.md §6)

import av  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402

from cmemo_jax import export  # noqa: E402
from cmemo_jax.errors import ConfigError  # noqa: E402
from cmemo_jax.models import registry  # noqa: E402
from cmemo_jax.phases import evaluate  # noqa: E402
from cmemo_jax.tasks.student import StudentObjective  # noqa: E402
from conftest import load_config  # noqa: E402

SR = 16000
# Emotion -> (f0 Hz, syllables / s, amplitude, harmonic decay): clearly different voices.
VOICES = {"anger": (190.0, 5.0, 0.7, 0.6), "happiness": (280.0, 4.0, 0.45, 0.8), "sadness": (110.0, 2.0, 0.15, 0.35)}
RML_CODES = {"anger": "an", "happiness": "ha", "sadness": "sa"}
SPEAKER_SCALE = (0.9, 1.0, 1.12)            # three speakers' pitch
CLIPS_PER_SPEAKER = 2                      # per emotion: 3 emotions x 3 speakers x 2 = 18 clips per set
MANIFEST_NAMES = {"anger": "angry", "happiness": "happy", "sadness": "sad"}


def voice(emotion: str, speaker: int, take: int) -> np.ndarray:
    """float32 [samples] at 16 kHz, 1.06-1.28 s: harmonics of a wobbling f0 under a syllable envelope.

    The lengths share one StudentRunner length bucket (1.045-1.305 s), so the tiny student compiles once.
    """
    f0, rate, amp, decay = VOICES[emotion]
    rng = np.random.default_rng(100 * speaker + 10 * take + len(emotion))
    t = np.arange(int(SR * (1.06 + 0.22 * rng.random()))) / SR
    f = f0 * SPEAKER_SCALE[speaker] * (1 + 0.03 * np.sin(2 * np.pi * 5 * t + rng.random()))
    phase = 2 * np.pi * np.cumsum(f) / SR
    x = sum(decay ** h * np.sin(h * phase) for h in range(1, 8))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * rate * t + rng.random() * 6)
    x = amp * envelope * x / np.max(np.abs(x)) + rng.normal(0, 0.01, t.shape)
    return np.clip(x, -1, 1).astype(np.float32)


def write_wav(path, x):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, x, SR, subtype="PCM_16")
    return str(path)


def write_avi(path, x=None, grey=128, size=(56, 40), seconds=1.0):
    """An .avi with a mpeg4 video stream (flat grey frames with a bright centre patch) and, if `x`
    is given, stereo pcm audio whose left channel is x (the right one silence)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    w, h = size
    with av.open(str(path), mode="w", format="avi") as out:
        vstream = out.add_stream("mpeg4", rate=25)
        vstream.width, vstream.height, vstream.pix_fmt = w, h, "yuv420p"
        if x is not None:
            astream = out.add_stream("pcm_s16le", rate=SR, layout="stereo")
            pcm = np.round(np.stack([x, np.zeros_like(x)], axis=1) * 32767).astype(np.int16)
            for start in range(0, len(pcm), 1024):
                chunk = pcm[start:start + 1024].reshape(1, -1)                  # packed s16: [1, n * 2]
                frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
                frame.sample_rate, frame.pts = SR, start
                for packet in astream.encode(frame):
                    out.mux(packet)
            for packet in astream.encode(None):
                out.mux(packet)
        for i in range(int((len(x) / SR if x is not None else seconds) * 25)):
            img = np.full((h, w, 3), grey, np.uint8)
            img[h // 3:2 * h // 3, w // 3:2 * w // 3] = min(grey + 60 + i, 255)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in vstream.encode(frame):
                out.mux(packet)
        for packet in vstream.encode(None):
            out.mux(packet)
    return str(path)


def touch(path, text="not a clip\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    return str(path)


def make_rml_tree(root):
    """rml-1/s1..s3/<code><n>.wav (18 clips) and four bad entries -> {bad entry: what the line says}."""
    for emotion, code in RML_CODES.items():
        for s in range(3):
            for take in range(CLIPS_PER_SPEAKER):
                write_wav(os.path.join(root, "rml-1", f"s{s + 1}", f"{code}{take + 1}.wav"), voice(emotion, s, take))
    touch(os.path.join(root, "rml-1", "s1", "xx1.wav"))                       # unknown emotion code
    touch(os.path.join(root, "rml-1", "s1", "english", "deeper", "an1.wav"))   # folder not in the layout
    write_avi(os.path.join(root, "rml-1", "s2", "an9.avi"))                    # video only: no audio stream
    touch(os.path.join(root, "rml-1", "s3", "readme.txt"))                     # not a clip
    return {"xx1.wav": "unknown emotion code", "deeper": "not in the RML layout", "an9.avi": "",
            "readme.txt": "unexpected file"}


def make_enterface_tree(root):
    """subject 1..3/<emotion>/sentence 1/*.avi with video (grey level by emotion), 18 clips, one bad folder."""
    for e, emotion in enumerate(VOICES):
        for s in range(3):
            for take in range(CLIPS_PER_SPEAKER):
                path = os.path.join(root, f"subject {s + 1}", emotion, "sentence 1",
                                    f"s{s + 1}_{RML_CODES[emotion]}_{take + 1}.avi")
                write_avi(path, voice(emotion, s, take + 5), grey=60 + 60 * e)
    touch(os.path.join(root, "subject 2", "misc", "x.avi"))                    # folder not in the layout
    return {"misc": "not in the eNTERFACE layout"}


def make_manifest(root, rml_root):
    """A CSV over the RML wavs with its own label names, one missing file and one unknown label."""
    rows = [["path", "label", "speaker"]]
    for emotion, code in RML_CODES.items():
        for s in range(3):
            for take in range(CLIPS_PER_SPEAKER):
                rows.append([os.path.join(rml_root, "rml-1", f"s{s + 1}", f"{code}{take + 1}.wav"),
                             MANIFEST_NAMES[emotion].upper(), f"spk{s}"])
    rows.append(["missing/gone.wav", "sad", "spk0"])
    rows.append([os.path.join(rml_root, "rml-1", "s1", "an1.wav"), "bored", "spk0"])
    path = os.path.join(root, "clips.csv")
    os.makedirs(root, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path, {"gone.wav": "no such file", "bored": "unknown label"}


def he_variables(model, example, seed):
    """Untrained variables of `model` for input `example`: kernels N(0, 2 / fan_in), biases 0, BN
    identity. The tree comes from `jax.eval_shape(model.init)` (tracing only): compiling the real
    initialisers costs ~15-30 s on this 2-core machine and only the tree structure matters here."""
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), example, train=False))
    rng = np.random.default_rng(seed)

    def init(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
        return (np.ones if name in ("scale", "var") else np.zeros)(leaf.shape, np.float32)

    return jax.tree_util.tree_map_with_path(init, shapes)


def make_student_export(path):
    objective = StudentObjective(load_config("student", "tiny"))
    variables = he_variables(objective.model, jnp.zeros((1, 512, 400)), seed=0)
    return export.save(path, objective.export_meta(), variables)


def make_teacher_export(path, size=32):
    """A small random SE-ResNet (one block per stage, width 4) on 32x32 inputs."""
    model = registry.build("teacher", {"width": 4, "stage_sizes": [1, 1, 1, 1]})
    variables = he_variables(model, jnp.zeros((1, size, size, 3)), seed=1)
    meta = {"kind": "teacher", "model": registry.constructor_kwargs(model), "input": {"size": size}}
    return export.save(path, meta, variables)


def tiny_eval_config(cache_dir, **fields):
    cfg = load_config("evaluate", "tiny")
    cfg.data.cache_dir = cache_dir
    for key, value in fields.items():
        cfg.eval[key] = value
    return cfg


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_student_export(str(root / "student.msgpack")), make_teacher_export(str(root / "teacher.msgpack"))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, synthetic_cache, models):
    """One full run of the phase on the three trees -> (workdir, summary, results.json, results.md,
    {dataset: {bad entry: what its problem line says}})."""
    data = tmp_path_factory.mktemp("eval_data")
    rml_root, ent_root = str(data / "rml"), str(data / "enterface")
    bad = {"rml": make_rml_tree(rml_root), "enterface": make_enterface_tree(ent_root)}
    csv_path, bad["manifest"] = make_manifest(str(data / "manifest"), rml_root)
    cfg = tiny_eval_config(synthetic_cache, model=models[0], teacher_model=models[1], rml_dir=rml_root,
                           enterface_dir=ent_root, manifest=csv_path, manifest_labels=("angry", "happy", "sad"))
    workdir = str(tmp_path_factory.mktemp("eval_workdir"))
    summary = evaluate.run(cfg, workdir)
    with open(os.path.join(workdir, "results.json")) as fh:
        results = json.load(fh)
    with open(os.path.join(workdir, "results.md")) as fh:
        markdown = fh.read()
    return workdir, summary, results, markdown, bad


def test_results_json_per_dataset(evaluated):
    _, summary, results, _, _ = evaluated
    for name in ("rml", "enterface", "manifest"):
        ds = results["datasets"][name]
        assert ds["clips_read"] == ds["n_clips"] == 18 and ds["num_speakers"] == 3
        # Emotion names in EMOTIONS order, other labels sorted.
        expected = ["happiness", "sadness", "anger"] if name != "manifest" else ["angry", "happy", "sad"]
        assert ds["class_names"] == expected
        for protocol in ("random_folds", "speaker_folds"):
            proto = ds["protocols"][protocol]
            assert proto["folds"] == 3 and sum(proto["fold_sizes"]) == 18
            want = {"random", "student (probe)", "handcrafted (RF)"}
            want |= {"teacher (V)"} if name == "enterface" else set()         # the only set with video
            assert set(proto["methods"]) == want
            for method, r in proto["methods"].items():
                assert len(r["fold_accuracy"]) == 3 and 0.0 <= r["accuracy_mean"] <= 1.0
                assert r["accuracy_mean"] == pytest.approx(np.mean(r["fold_accuracy"]))
                assert r["accuracy_std"] == pytest.approx(np.std(r["fold_accuracy"], ddof=1))
            assert proto["methods"]["random"]["chance"] == pytest.approx(1 / 3)
        # The voices differ clearly per emotion: the handcrafted forest must find it.
        assert ds["protocols"]["random_folds"]["methods"]["handcrafted (RF)"]["accuracy_mean"] > 0.6
        student = ds["protocols"]["random_folds"]["methods"]["student (probe)"]
        assert summary["datasets"][name]["student (probe)"] == student["accuracy_mean"]
    assert any("no video frames" in n for n in results["datasets"]["rml"]["notes"])


def test_bad_entries_reported_and_skipped(evaluated):
    _, _, results, markdown, bad = evaluated
    for name, entries in bad.items():
        problems = results["datasets"][name]["problems"]
        assert results["datasets"][name]["entries_skipped"] == len(problems) == len(entries)
        for entry, says in entries.items():
            assert any(entry in p and says in p for p in problems), (entry, problems)
    rml_problems = results["datasets"]["rml"]["problems"]
    assert any("an9.avi" in p and "audio" in p.lower() for p in rml_problems)
    assert results["datasets"]["rml"]["clips_listed"] == 19 and results["datasets"]["rml"]["clips_skipped"] == 1
    assert "Skipped entries" in markdown


def _table(markdown, heading_start):
    """The markdown table under the first heading that starts with `heading_start` -> list of cell rows."""
    block = markdown.split(heading_start, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def test_results_md_shaped_like_table5(evaluated):
    _, _, results, markdown, _ = evaluated
    for heading in ("## Table 5: accuracy (%), mean ± std over folds — random",
                    "## Table 5: accuracy (%), mean ± std over folds — speaker"):
        table = _table(markdown, heading)
        assert [row[0] for row in table[2:]] == ["random", "student (probe)", "teacher (V)", "handcrafted (RF)"]
        assert table[0][:2] == ["Method", "Modality"] and len(table[0]) == 5
        assert [h.split(" (")[0] for h in table[0][2:]] == ["RML", "eNTERFACE", "manifest"]
        assert all(len(row) == 5 for row in table)
        body = {row[0]: row[2:] for row in table[2:]}
        assert all(re.fullmatch(r"\d+\.\d ± \d+\.\d", c) for c in body["student (probe)"])
        assert body["teacher (V)"][0] == "–" and re.fullmatch(r"\d+\.\d ± \d+\.\d", body["teacher (V)"][1])
        assert "(chance 33.3)" in body["random"][0]
    student_rml = results["datasets"]["rml"]["protocols"]["random_folds"]["methods"]["student (probe)"]
    assert f"{100 * student_rml['accuracy_mean']:.1f} ± {100 * student_rml['accuracy_std']:.1f}" in markdown
    auc = _table(markdown, "## ROC AUC")
    assert auc[0][:2] == ["split", "n"] and auc[0][2:10] == list(evaluate.constants.EMOTIONS)
    assert [row[0] for row in auc[2:]] == ["heard_val", "unheard_val"]


def test_confusion_and_roc_figures(evaluated):
    workdir, _, results, _, _ = evaluated
    figs = os.path.join(workdir, "figures")
    for name in ("rml", "enterface", "manifest"):
        for protocol in ("random_folds", "speaker_folds"):
            stem = os.path.join(figs, f"{name}_student_confusion_{protocol}")
            with open(stem + ".json") as fh:
                record = json.load(fh)
            confusion = np.array(record["confusion"])
            assert confusion.shape == (3, 3) and np.allclose(confusion.sum(axis=1), 1.0)
            assert record["produced_by"] == results["produced_by"]
            assert os.path.getsize(stem + ".png") > 1000
    assert os.path.exists(os.path.join(figs, "enterface_teacher_confusion_random_folds.png"))
    for split in ("heard_val", "unheard_val"):
        assert os.path.getsize(os.path.join(figs, f"roc_{split}.png")) > 1000


def test_auc_block_on_the_synthetic_corpus(evaluated, synthetic_cache):
    from cmemo_jax.data import records, sources

    _, summary, results, _, _ = evaluated
    info = records.read_dataset_info(sources.resolve_records_dir(tiny_eval_config(synthetic_cache).data))
    for split in ("heard_val", "unheard_val"):
        s = results["auc"]["splits"][split]
        assert s["num_clips"] == info["num_examples"][split]
        assert set(s["per_class"]) | set(s["left_out"]) == set(evaluate.constants.EMOTIONS)
        assert all(0.0 <= v <= 1.0 for v in s["per_class"].values())
        assert s["mean_auc"] == pytest.approx(np.mean(list(s["per_class"].values())))
        assert summary["mean_auc"][split] == s["mean_auc"]
    common = results["auc"]["common"]["emotions"]
    assert all(e in results["auc"]["splits"][s]["per_class"] for e in common for s in ("heard_val", "unheard_val"))


def test_provenance(evaluated, models):
    _, _, results, markdown, _ = evaluated
    produced = results["produced_by"]
    with open(models[0], "rb") as fh:
        assert produced["models"]["student"]["sha256"] == hashlib.sha256(fh.read()).hexdigest()
    assert produced["config"]["eval"]["folds"] == 3 and produced["seeds"]["folds"] == 0
    code = produced["code"]
    assert re.fullmatch(r"[0-9a-f]{40}", code.get("git_commit", "")) or code.get("package_version")
    assert produced["models"]["student"]["sha256"] in markdown


def test_small_or_single_class_dataset_is_skipped_with_one_line(tmp_path, synthetic_cache, models, capsys):
    csv_path = str(tmp_path / "few.csv")
    wavs = [write_wav(str(tmp_path / f"c{i}.wav"), voice("anger", 0, i)) for i in range(4)]
    with open(csv_path, "w") as fh:
        fh.write("path,label\n" + "".join(f"{w},{'angry' if i < 2 else 'sad'}\n" for i, w in enumerate(wavs[:2])))
    cfg = tiny_eval_config(synthetic_cache, model=models[0], manifest=csv_path)
    record = evaluate.evaluate_dataset("manifest", csv_path, cfg, None, None, str(tmp_path / "figs"))
    assert record["skipped"] == "2 usable clip(s), fewer than the 3 folds"
    with open(csv_path, "w") as fh:
        fh.write("path,label\n" + "".join(f"{w},angry\n" for w in wavs))
    record = evaluate.evaluate_dataset("manifest", csv_path, cfg, None, None, str(tmp_path / "figs"))
    assert "single class" in record["skipped"]
    lines = [line for line in capsys.readouterr().out.splitlines() if "dataset skipped" in line]
    assert len(lines) == 2


def test_config_errors_are_one_line(tmp_path, synthetic_cache, models):
    with pytest.raises(ConfigError, match="eval.model is required"):
        evaluate.run(tiny_eval_config(synthetic_cache), str(tmp_path / "w"))
    with pytest.raises(ConfigError, match="nothing to evaluate"):
        evaluate.run(tiny_eval_config(synthetic_cache, model=models[0], auc=False), str(tmp_path / "w"))
    with pytest.raises(ConfigError, match="eval.teacher_model=.*'student' model"):
        evaluate.run(tiny_eval_config(synthetic_cache, model=models[0], teacher_model=models[0], auc=False,
                                      rml_dir=str(tmp_path)), str(tmp_path / "w"))
    with pytest.raises(ConfigError, match="eval.rml_dir=.*no such folder"):
        evaluate.run(tiny_eval_config(synthetic_cache, model=models[0], rml_dir=str(tmp_path / "nope")),
                     str(tmp_path / "w"))


def test_phase_on_the_synthetic_acted_sets(tmp_path, synthetic_cache, models):
    """The acted RML / eNTERFACE'05 writers (stereo 22.05 / 44.1 kHz .avi with rendered faces, the
    release's irregular folder levels): every clip read, all six emotions, teacher (V) on the video."""
    from cmemo_jax.data.synthetic import acted

    rml_clips = acted.write_rml(str(tmp_path / "rml"), n_speakers=3, clips_per_emotion=1)
    ent_clips = acted.write_enterface(str(tmp_path / "enterface"), n_subjects=3, sentences=1)
    cfg = tiny_eval_config(synthetic_cache, model=models[0], teacher_model=models[1], auc=False,
                           rml_dir=str(tmp_path / "rml"), enterface_dir=str(tmp_path / "enterface"))
    workdir = str(tmp_path / "work")
    evaluate.run(cfg, workdir)
    with open(os.path.join(workdir, "results.json")) as fh:
        results = json.load(fh)
    for name, written in (("rml", rml_clips), ("enterface", ent_clips)):
        ds = results["datasets"][name]
        assert ds["clips_read"] == len(written) == 18 and ds["problems"] == []
        assert ds["class_names"] == [e for e in evaluate.constants.EMOTIONS if e in {c.emotion for c in written}]
        assert len(ds["class_names"]) == 6 and ds["num_speakers"] == 3
        for protocol in ("random_folds", "speaker_folds"):
            methods = ds["protocols"][protocol]["methods"]
            assert set(methods) == {"random", "student (probe)", "teacher (V)", "handcrafted (RF)"}
            assert all(0.0 <= m["accuracy_mean"] <= 1.0 for m in methods.values())
            assert methods["random"]["chance"] == pytest.approx(1 / 6)
            with open(ds["figures"][protocol]["teacher (V)"]["json"]) as fh:
                assert np.allclose(np.sum(json.load(fh)["confusion"], axis=1), 1.0)
    assert results["auc"] is None
    with open(os.path.join(workdir, "results.md")) as fh:
        markdown = fh.read()
    assert [h.split(" (")[0] for h in _table(markdown, "## Table 5")[0][2:]] == ["RML", "eNTERFACE"]
    assert "ROC AUC" not in markdown
