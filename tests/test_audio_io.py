"""Host-side audio I/O: decoding through soundfile and PyAV, down-mixing, channel choice, resampling,
and the rules for bad audio (truncated, NaN / inf, beyond full scale)."""
import fractions
import logging

import av
import numpy as np
import pytest
import soundfile as sf

from cmemo_jax.audio import AudioCheck, AudioDecodeError, int16_from_waveform, load_audio, resample
from cmemo_jax.audio.io import header_frames


def dominant_hz(x, sr=16000):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


def tone(freq, seconds, sr, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_with_pyav(path, left, right, sr, container_format, codec, sample_format, layout="stereo"):
    """Encode a stereo float signal into a container with PyAV, frame by frame."""
    with av.open(str(path), mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        stream.format = sample_format
        stream.time_base = fractions.Fraction(1, sr)
        planar = np.stack([left, right])                                # [2, n]
        hop = 1024
        pts = 0
        for start in range(0, planar.shape[1], hop):
            chunk = planar[:, start:start + hop]
            if sample_format == "s16":                                  # packed int16: [1, n * ch]
                data = np.round(chunk.T * 32767).astype(np.int16).reshape(1, -1)
            else:                                                       # planar float: [ch, n]
                data = np.ascontiguousarray(chunk, dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout=layout)
            frame.sample_rate = sr
            frame.pts = pts
            pts += chunk.shape[1]
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_wav_stereo_44k1_to_16k_mono(tmp_path):
    sr = 44100
    left, right = tone(440, 1.0, sr), tone(1000, 1.0, sr, amp=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="PCM_16")
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 16000) <= 1
    # Mono is the channel average: both tones, 440 Hz the louder; amplitude halved by the mix.
    assert abs(dominant_hz(x) - 440) < 2
    ref = 0.5 * (tone(440, 1.0, 16000) + tone(1000, 1.0, 16000, amp=0.25))
    n = min(len(x), len(ref))
    # Away from the edges (resampler filter warm-up), the resampled mix equals the analytic mix.
    assert np.abs(x[200:n - 200] - ref[200:n - 200]).max() < 2e-3
    # channel=0 picks the left channel: pure 440 Hz at the original amplitude.
    left16 = load_audio(path, channel=0)
    assert abs(dominant_hz(left16) - 440) < 2
    assert np.abs(left16[200:n - 200] - tone(440, 1.0, 16000)[200:n - 200]).max() < 2e-3
    right16 = load_audio(path, channel=1)
    assert abs(dominant_hz(right16) - 1000) < 2
    with pytest.raises(AudioDecodeError, match="stereo.wav.*channel 2"):
        load_audio(path, channel=2)


def test_flac_and_other_rate(tmp_path):
    path = tmp_path / "tone.flac"
    sf.write(path, tone(300, 0.5, 22050), 22050)
    x = load_audio(path)
    assert abs(len(x) - 8000) <= 1
    assert abs(dominant_hz(x) - 300) < 4
    # Any target rate; no resampling at the file's own rate.
    x8 = load_audio(path, sample_rate=8000)
    assert abs(len(x8) - 4000) <= 1
    raw = load_audio(path, sample_rate=22050)
    np.testing.assert_allclose(raw, sf.read(path, dtype="float32")[0], atol=1e-7)


def test_mp4_aac_through_pyav(tmp_path):
    sr = 48000
    left, right = tone(440, 1.0, sr), tone(440, 1.0, sr)
    path = tmp_path / "clip.mp4"
    write_with_pyav(path, left, right, sr, "mp4", "aac", "fltp")
    x = load_audio(path)
    # AAC adds encoder priming / padding: the length is right to within a couple of AAC frames.
    assert abs(len(x) - 16000) < 1500
    assert abs(dominant_hz(x) - 440) < 2
    assert 0.3 < np.abs(x).max() < 0.7


def test_mkv_pcm_left_channel_through_pyav(tmp_path):
    sr = 44100
    path = tmp_path / "video_audio.mkv"
    write_with_pyav(path, tone(440, 1.0, sr), tone(2000, 1.0, sr), sr, "matroska", "pcm_s16le", "s16")
    left = load_audio(path, channel=0)
    assert abs(len(left) - 16000) <= 1                  # PCM: no codec delay
    assert abs(dominant_hz(left) - 440) < 2
    assert np.abs(left[200:-200] - tone(440, 1.0, 16000)[200:len(left) - 200]).max() < 2e-3
    assert abs(dominant_hz(load_audio(path, channel=1)) - 2000) < 2
    mono = load_audio(path)
    assert abs(np.abs(mono).max() - 0.5) < 0.05        # two full-scale-0.5 tones averaged


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioDecodeError, match="nope.wav.*no such file") as info:
        load_audio(path)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["garbage.wav", "garbage.mp4", "garbage.flac", "garbage.avi"])
def test_garbage_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioDecodeError, match=name) as info:
        load_audio(path)
    assert "\n" not in str(info.value)


def test_video_without_audio(tmp_path):
    path = tmp_path / "silent_video.mkv"
    with av.open(str(path), mode="w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(AudioDecodeError, match="silent_video.mkv.*no audio stream"):
        load_audio(path)


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(AudioDecodeError, match="empty.wav"):
        load_audio(path)


def test_resample():
    x = tone(1000, 1.0, 48000)
    y = resample(x, 48000, 16000)
    assert y.dtype == np.float32 and len(y) == 16000
    assert np.abs(y[200:-200] - tone(1000, 1.0, 16000)[200:-200]).max() < 2e-3
    same = resample(x, 16000, 16000)
    np.testing.assert_array_equal(same, x)
    assert same is not x
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


# ------------------------------------------------------------------ rules for bad audio (io.py docstring)

def _truncate(path, n_bytes):
    """Cuts bytes off the end while the header still promises the full length."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - n_bytes])


def test_good_file_info_and_unchanged_return_type(tmp_path):
    path = tmp_path / "good.wav"
    sf.write(path, tone(440, 0.5, 16000), 16000, subtype="PCM_16")
    x = load_audio(path)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (8000,)
    y, check = load_audio(path, return_info=True)
    np.testing.assert_array_equal(x, y)
    assert isinstance(check, AudioCheck)
    assert (check.frames, check.header_frames, check.channels, check.source_sample_rate) == (8000, 8000, 1, 16000)
    assert check.gain == 1.0 and check.warnings == () and not check.repaired
    assert abs(check.peak - 0.5) < 1e-3


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_rejected_with_count(tmp_path, bad):
    x = tone(440, 0.5, 16000)
    x[[10, 500, 7000]] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=r"nonfinite\.wav: 3 of 8000 samples are not finite") as info:
        load_audio(path)
    assert "\n" not in str(info.value)
    with pytest.raises(AudioDecodeError, match="not finite"):
        load_audio(path, sample_rate=8000)  # checked before resampling: soxr would smear NaN around


def test_non_finite_only_in_an_unused_channel(tmp_path):
    left, right = tone(440, 0.25, 16000), tone(440, 0.25, 16000)
    right[5] = np.nan
    path = tmp_path / "nan_right.wav"
    sf.write(path, np.stack([left, right], 1), 16000, subtype="FLOAT")
    assert np.isfinite(load_audio(path, channel=0)).all()     # the samples used are what is checked
    with pytest.raises(AudioDecodeError, match="1 of 4000 samples are not finite"):
        load_audio(path)                                       # the mix holds the NaN


def test_float_beyond_full_scale_rescaled_and_reported(tmp_path, caplog):
    x = 5.0 * tone(440, 0.5, 16000, amp=1.0)                   # float wav at +-5
    x[100] = -5.0                                              # exact peak, negative
    path = tmp_path / "loud.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="cmemo_jax.audio.io"):
        y, check = load_audio(path, return_info=True)
    assert np.abs(y).max() == 1.0                              # rescaled, not clipped
    np.testing.assert_allclose(y, x / 5.0, rtol=1e-6, atol=1e-7)
    assert check.repaired and abs(check.peak - 5.0) < 1e-5 and abs(check.gain - 0.2) < 1e-7
    assert len(check.warnings) == 1 and "loud.wav" in check.warnings[0] and "rescaled by 0.2" in check.warnings[0]
    assert any("loud.wav" in r.getMessage() for r in caplog.records)
    # Plain call: same samples, array only; a file exactly at full scale is untouched.
    np.testing.assert_array_equal(load_audio(path), y)
    sf.write(tmp_path / "full.wav", x / 5.0, 16000, subtype="FLOAT")
    assert load_audio(tmp_path / "full.wav", return_info=True)[1].gain == 1.0


@pytest.mark.parametrize("fmt, subtype, ext", [("WAV", "PCM_16", "wav"), ("WAV", "FLOAT", "wav"),
                                               ("WAVEX", "PCM_24", "wav"), ("AIFF", "PCM_16", "aiff")])
def test_truncated_file_rejected(tmp_path, fmt, subtype, ext):
    path = tmp_path / f"cut.{ext}"
    sf.write(path, tone(440, 1.0, 16000), 16000, format=fmt, subtype=subtype)
    assert header_frames(str(path)) == 16000
    _truncate(path, 3001)
    assert len(sf.read(path)[0]) < 16000                       # libsndfile alone returns the short data
    with pytest.raises(AudioDecodeError, match=r"cut\.\w+: truncated file: the header promises 16000 "
                                               r"frames, the data holds \d+") as info:
        load_audio(path)
    assert "\n" not in str(info.value)


def test_truncated_flac_rejected(tmp_path):
    path = tmp_path / "cut.flac"
    sf.write(path, tone(440, 1.0, 16000), 16000)
    assert header_frames(str(path)) == 16000
    _truncate(path, path.stat().st_size // 2)
    with pytest.raises(AudioDecodeError, match="cut.flac"):
        load_audio(path)


def test_unknown_length_header_is_not_truncation(tmp_path):
    # Streaming writers leave 0xFFFFFFFF as the data size: the length is unknown, not a promise.
    path = tmp_path / "stream.wav"
    sf.write(path, tone(440, 0.5, 16000), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    i = data.index(b"data")
    data[i + 4:i + 8] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    assert header_frames(str(path)) is None
    assert len(load_audio(path)) == 8000


def test_int16_round_trip():
    from cmemo_jax.audio import waveform_from_int16

    every = np.arange(-32768, 32768, dtype=np.int16)
    np.testing.assert_array_equal(int16_from_waveform(np.asarray(waveform_from_int16(every))), every)
    np.testing.assert_array_equal(int16_from_waveform(np.array([1.0, -1.0, 1.2, -1.3, 0.5])),
                                  np.array([32767, -32768, 32767, -32768, 16384], np.int16))
