"""Prediction on files of any format, rate and length (cmemo_jax.predict, cmemo_jax.inference).

A tiny student export is made without training: the variable shapes come from the model's own
`init` (abstractly, jax.eval_shape), the values from numpy. Why not run `init` itself: eagerly it
compiles ~140 small XLA programs, 15-20 s on the shared 2-core test machine, for nothing the tests
need. The export's meta is the training task's own `StudentObjective.export_meta()`.
"""
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf
from conftest import load_config

from cmemo_jax import constants, export, inference
from cmemo_jax.audio.io import AudioDecodeError, int16_from_waveform, load_audio
from cmemo_jax.predict import Predictor, WindowCutter, main
from cmemo_jax.tasks.student import StudentObjective

SR = constants.SAMPLE_RATE
WINDOW = constants.CROP_SAMPLES


def make_student_export(path, seed=0):
    """Writes a tiny random student export; -> (StudentObjective, variables)."""
    objective = StudentObjective(load_config("student", "tiny"))
    shapes = jax.eval_shape(lambda: objective.model.init(jax.random.PRNGKey(0), jnp.zeros((1, 512, 400)),
                                                         train=False))
    rng = np.random.default_rng(seed)

    def leaf(key_path, s):
        name = key_path[-1].key
        if name == "kernel":   # He-normal, as the model's own initialiser
            return rng.normal(0, math.sqrt(2 / math.prod(s.shape[:-1])), s.shape).astype(np.float32)
        if name in ("scale", "var"):
            return (1 + 0.2 * rng.uniform(size=s.shape)).astype(np.float32)
        return (0.1 * rng.normal(size=s.shape)).astype(np.float32)

    variables = jax.tree_util.tree_map_with_path(leaf, shapes)
    export.save(str(path), objective.export_meta(), variables)
    return objective, variables


def speechlike(seconds, sr=SR, seed=0, f0=180.0):
    """A harmonic tone with a wobbling pitch and syllable-like amplitude bursts, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    pitch = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)) ** 2
    return (0.2 * envelope * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def write_avi(path, seconds, sr=44100, audio=True):
    """An .avi like the RML / eNTERFACE releases: 32x32 mpeg4 video at 25 fps and (unless audio=False)
    stereo pcm_s16le at `sr`, a different tone on each channel."""
    import av

    t = np.arange(int(seconds * sr)) / sr
    pcm = np.round(np.stack([0.4 * np.sin(2 * np.pi * 300 * t), 0.2 * np.sin(2 * np.pi * 2500 * t)], 1) * 32767)
    pcm = pcm.astype(np.int16)
    with av.open(str(path), mode="w", format="avi") as out:
        video = out.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        streams = [(video, [av.VideoFrame.from_ndarray(np.full((32, 32, 3), (8 * i) % 256, np.uint8),
                                                       format="rgb24") for i in range(int(seconds * 25))])]
        if audio:
            sound = out.add_stream("pcm_s16le", rate=sr, layout="stereo")
            frames = [av.AudioFrame.from_ndarray(pcm[i:i + 1024].reshape(1, -1), format="s16", layout="stereo")
                      for i in range(0, len(pcm), 1024)]
            for i, frame in enumerate(frames):
                frame.sample_rate = sr
            streams.append((sound, frames))
        for stream, frames in streams:
            for i, frame in enumerate(frames):
                frame.pts = i if stream is video else i * 1024
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    return str(path)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "student.msgpack"
    objective, variables = make_student_export(path)
    return str(path), objective, variables


@pytest.fixture(scope="module")
def predictor(student):
    return Predictor.load(student[0])


def training_path(objective):
    """The training path, jitted: StudentObjective.model_inputs (no dither at eval) + model.apply."""
    def outputs(variables, crops_int16):
        spec = objective.model_inputs({"audio": crops_int16}, None, train=False)
        return objective.model.apply(variables, spec, train=False)
    return jax.jit(outputs)


def test_window_and_bucket_rules():
    ladder = inference.bucket_ladder(10_640, 30 * SR)
    assert ladder[0] == 10_640 and ladder[-1] <= 30 * SR
    assert all((b - constants.WINDOW_SAMPLES) % constants.HOP_SAMPLES == 0 for b in ladder)   # whole frames
    assert all(1.2 < b2 / b1 < 1.3 for b1, b2 in zip(ladder, ladder[1:]))
    assert inference.bucket_for(ladder[3] + 5, ladder) == ladder[3]
    assert inference.bucket_for(100, ladder) == ladder[0]
    starts = inference.cover_starts(25_000, 10_000)
    assert starts.tolist() == [0, 10_000, 15_000]                 # ceil(2.5) windows, the last end-aligned
    assert inference.sliding_starts(WINDOW + 5 * SR, WINDOW, 2 * SR).tolist() == [0, 2 * SR, 4 * SR, 5 * SR]
    assert inference.sliding_starts(WINDOW, WINDOW, 2 * SR).tolist() == [0]
    # The streaming cutter yields exactly the windows of sliding_starts, whatever the chunking and hop
    # (a hop longer than the window skips audio), holding no more than one window between chunks.
    audio = np.arange(3 * WINDOW + 3 * SR + 77, dtype=np.int64).astype(np.int16)
    for hop, chunk in ((SR, 7_000), (WINDOW + 12_345, 50_000), (3 * WINDOW, 100_000)):
        cutter, got = WindowCutter(WINDOW, hop), []
        for i in range(0, len(audio), chunk):
            got += cutter.push(audio[i:i + chunk])
            assert len(cutter.buffer) <= WINDOW
        got += cutter.finish()
        assert [s for s, _ in got] == inference.sliding_starts(len(audio), WINDOW, hop).tolist()
        assert all(np.array_equal(row, audio[s:s + WINDOW]) for s, row in got)


def test_windows_equal_training_path(student, predictor, tmp_path):
    """Export round trip: each window of a file = the student on that crop through the training front-end."""
    path, objective, variables = student
    wav = str(tmp_path / "clip16k.wav")
    sf.write(wav, speechlike(9.0), SR, subtype="PCM_16")
    result = predictor(wav)
    audio = sf.read(wav, dtype="int16")[0]
    starts = [int(round(w.start_s * SR)) for w in result.windows]
    assert starts == inference.sliding_starts(len(audio), WINDOW, 2 * SR).tolist()
    expected = np.asarray(training_path(objective)(variables, np.stack([audio[s:s + WINDOW] for s in starts])))
    np.testing.assert_allclose(result.embeddings(), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(result.whole.embedding, expected.mean(axis=0), atol=1e-5)
    assert result.whole.start_s == 0 and result.whole.end_s == pytest.approx(9.0)
    # Probabilities: softmax at temperature 1 of the raw outputs.
    probs = result.probabilities()
    e = np.exp(expected - expected.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), atol=1e-5)
    # The in-memory API gives the same rows.
    np.testing.assert_allclose(predictor.runner.windows(load_audio(wav)), expected, atol=1e-5)


def test_bucketed_whole_clip_embedding_vs_exact(predictor, capsys):
    """embed_clips (bucket windows, averaged) against the exact forward at each clip's own length."""
    runner = predictor.runner
    rung = runner.ladder[4]                       # 1.635 s; the next rung is 1.25x longer
    lengths = [rung, int(rung * 1.05), int(rung * 1.2)]
    clips = [speechlike(n / SR, seed=i, f0=120 + 60 * i) for i, n in enumerate(lengths)]
    bucketed = runner.embed_clips(clips)
    exact = np.concatenate([runner.forward(int16_from_waveform(c)[None]) for c in clips])
    np.testing.assert_allclose(bucketed[0], exact[0], atol=1e-5)       # a rung's length: exact
    diff = np.abs(bucketed[1:] - exact[1:])
    corr = np.corrcoef(bucketed[1:].ravel(), exact[1:].ravel())[0, 1]
    spread = exact.std()
    with capsys.disabled():
        print(f"\n[bucket rule] clips of 1.05x and 1.2x a rung: max |diff| {diff.max():.4f}, mean |diff| "
              f"{diff.mean():.4f}, output std {spread:.3f}, correlation {corr:.4f}")
    assert corr > 0.98 and diff.mean() < 0.1 * spread
    # Other lengths in the same rung: compiled once per (rows, bucket), not per clip length.
    size = inference._apply_jit._cache_size()
    for extra in (160, 999, 2345):
        runner.embed_clips([clips[0], speechlike((lengths[1] + extra) / SR, seed=extra),
                            speechlike((lengths[2] - extra) / SR, seed=extra + 1)])
    assert inference._apply_jit._cache_size() == size


def test_wav_at_22khz(predictor, tmp_path):
    wav = str(tmp_path / "mono22k.wav")
    x = speechlike(6.5, sr=22050, seed=3)
    sf.write(wav, x, 22050, subtype="FLOAT")
    result = predictor(wav)
    assert result.duration_s == pytest.approx(6.5, abs=1e-3)
    assert len(result.windows) == 3 and result.windows[-1].end_s == pytest.approx(6.5, abs=1e-3)
    np.testing.assert_allclose(result.probabilities().sum(axis=1), 1.0, atol=1e-9)
    from_array = predictor(x, sample_rate=22050)                 # same rules, resampled in one go
    np.testing.assert_allclose(from_array.embeddings(), result.embeddings(), atol=1e-5)


def test_stereo_avi_at_44khz(predictor, tmp_path):
    avi = write_avi(tmp_path / "clip.avi", seconds=5.0)
    result = predictor(avi)
    assert result.duration_s == pytest.approx(5.0, abs=0.01)
    assert [round(w.start_s, 2) for w in result.windows] == [0.0, round(result.duration_s - 4.024, 2)]
    expected = predictor.runner.windows(load_audio(avi))          # load_audio: the channel mix
    np.testing.assert_allclose(result.embeddings(), expected, atol=1e-5)


def test_short_file_is_zero_padded_with_a_note(student, tmp_path, capsys):
    wav = str(tmp_path / "blip.wav")
    sf.write(wav, speechlike(0.3, seed=4), SR)
    assert main(["--model", student[0], wav]) == 0
    out, err = capsys.readouterr()
    assert "zero-padded" in err and wav in err and len(err.strip().splitlines()) == 1
    assert "0.30 s, shorter than one" in out and "whole file" in out


def test_json_lines(student, tmp_path, capsys):
    wav = str(tmp_path / "speech.wav")
    sf.write(wav, speechlike(7.0, seed=5), SR)
    assert main(["--model", student[0], "--json", "--hop", "1.5", wav]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    windows, whole = records[:-1], records[-1]
    assert [r["start_s"] for r in windows] == [0.0, 1.5, pytest.approx(7.0 - 4.024)]
    assert whole["whole_file"] and whole["start_s"] == 0 and whole["end_s"] == pytest.approx(7.0)
    for r in records:
        assert r["file"] == wav and list(r["probabilities"]) == list(constants.EMOTIONS)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0) and len(r["embedding"]) == 8
    np.testing.assert_allclose(whole["embedding"], np.mean([r["embedding"] for r in windows], axis=0), atol=1e-5)


def test_plot_writes_one_png_per_file(student, tmp_path, capsys):
    files = []
    for name, seconds in (("first", 6.0), ("second", 6.5)):
        files.append(str(tmp_path / f"{name}.wav"))
        sf.write(files[-1], speechlike(seconds, seed=len(files)), SR)
    assert main(["--model", student[0], "--plot", str(tmp_path / "out.png"), *files]) == 0
    for name in ("first", "second"):
        with open(tmp_path / f"out_{name}.png", "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert main(["--model", student[0], "--plot", str(tmp_path / "one.png"), files[0]]) == 0
    assert os.path.getsize(tmp_path / "one.png") > 1000


def test_plot_marks_given_spans(predictor, tmp_path):
    from cmemo_jax.predict import plot_prediction

    result = predictor(speechlike(7.0, seed=3), sample_rate=SR)
    plain = plot_prediction(result, str(tmp_path / "plain.png"))
    marked = plot_prediction(result, str(tmp_path / "marked.png"), spans=[(0.5, 3.0, "anger"), (3.5, 6.5, "fear")])
    with open(plain, "rb") as a, open(marked, "rb") as b:
        assert a.read(8) == b"\x89PNG\r\n\x1a\n" and a.read() != b.read()[8:]


def test_bad_inputs_one_line_each_and_others_still_processed(student, tmp_path, capsys):
    good = str(tmp_path / "good.wav")
    sf.write(good, speechlike(5.0, seed=6), SR)
    missing = str(tmp_path / "missing.wav")
    garbage = str(tmp_path / "garbage.wav")
    with open(garbage, "wb") as fh:
        fh.write(np.random.default_rng(0).bytes(5000))
    nan_wav = str(tmp_path / "nan.wav")
    x = speechlike(2.0, seed=7)
    x[12_345] = np.nan
    sf.write(nan_wav, x, SR, subtype="FLOAT")
    silent_video = write_avi(tmp_path / "video_only.avi", seconds=0.5, audio=False)
    bad = [missing, garbage, nan_wav, silent_video]
    assert main(["--model", student[0], missing, garbage, good, nan_wav, silent_video]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == len(bad) and "Traceback" not in err
    for path, line in zip(bad, lines):
        assert line.startswith(f"error: {path}: ")
    assert "not finite" in lines[2] and "no audio stream" in lines[3]
    assert good in out and "whole file" in out and missing not in out

    not_ours = str(tmp_path / "weights.msgpack")
    with open(not_ours, "wb") as fh:
        fh.write(b"\x93NUMPY not a model")
    assert main(["--model", not_ours, good]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {not_ours}: ")


LONG_FILE_SCRIPT = textwrap.dedent("""
    # Peak memory of predicting a 10-minute file, then (same process) a one-hour file: ru_maxrss is
    # the process's peak so far, so a flat pipeline leaves it where the 10-minute file put it.
    import json, resource, sys, tracemalloc
    from cmemo_jax.inference import StudentRunner
    from cmemo_jax.predict import Predictor
    model, paths = sys.argv[1], sys.argv[2:]
    predictor = Predictor(StudentRunner.load(model, batch_samples=8 * 64384), hop_s=60.0)
    tracemalloc.start()
    for path in paths:
        tracemalloc.reset_peak()
        result = predictor(path, progress=True)
        print(json.dumps({"windows": len(result.windows), "duration_s": result.duration_s,
                          "traced_peak_mb": tracemalloc.get_traced_memory()[1] / 2**20,
                          "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def write_noise_wav(path, seconds, block_s=60):
    """A low-amplitude noise wav at 16 kHz written block by block (never the whole file in RAM)."""
    block = (0.05 * np.random.default_rng(0).standard_normal(block_s * SR)).astype(np.float32)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for _ in range(int(seconds // block_s)):
            f.write(block)
    return path


def test_one_hour_file_with_flat_memory(student, tmp_path, capsys):
    ten_minutes = write_noise_wav(str(tmp_path / "ten_minutes.wav"), 600)
    one_hour = write_noise_wav(str(tmp_path / "one_hour.wav"), 3600)
    assert os.path.getsize(one_hour) > 115_000_000
    env = dict(os.environ, NUMBA_CPU_NAME="generic", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", LONG_FILE_SCRIPT, student[0], ten_minutes, one_hour],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("100.0%") == 2                       # the progress line reached the end
    short, long = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert short["windows"] == 11 and long["windows"] == 61        # 0, 60, ... s and the end-aligned one
    assert long["duration_s"] == pytest.approx(3600)
    with capsys.disabled():
        print(f"\n[memory] 10 min: maxrss {short['maxrss_mb']:.1f} MB, traced peak {short['traced_peak_mb']:.2f} MB;"
              f" then 60 min: maxrss {long['maxrss_mb']:.1f} MB, traced peak {long['traced_peak_mb']:.2f} MB")
    # Decoding the hour whole would take 115 MB as int16 and 230 MB as float32.
    assert long["traced_peak_mb"] < short["traced_peak_mb"] + 2
    assert long["maxrss_mb"] < short["maxrss_mb"] + 20


def test_beyond_full_scale_is_rescaled_and_truncation_rejected(predictor, tmp_path):
    """load_audio's rules 2 and 4 hold in the streaming reader too."""
    loud = str(tmp_path / "loud.wav")
    sf.write(loud, 3.0 * speechlike(6.0, seed=8), SR, subtype="FLOAT")   # peaks near 3: unnormalised export
    result = predictor(loud)
    assert len(result.notes) == 1 and "rescaled by" in result.notes[0] and loud in result.notes[0]
    np.testing.assert_allclose(result.embeddings(), predictor.runner.windows(load_audio(loud)), atol=1e-5)
    cut = str(tmp_path / "cut.wav")
    with open(loud, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read()[: os.path.getsize(loud) // 2])               # header still promises 6 s
    with pytest.raises(AudioDecodeError, match=r"truncated file: the header promises 96000 frames"):
        predictor(cut)
