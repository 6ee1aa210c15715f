"""The VGGVox spectrogram front-end against an independent float64 numpy/scipy reference (docs/method.md §2)."""
import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.signal

from cmemo_jax.audio import (
    magnitude_spectrogram,
    normalize_spectrogram,
    spectrogram,
    waveform_from_int16,
)

SR = 16000
CROP = 64_384  # 4.024 s -> exactly 400 frames


# ------------------------------------------------------------------ reference (float64, numpy / scipy)

def ref_magnitude(x):
    """Steps 1-4 of the recipe written plainly: [512, n_frames] float64."""
    x = np.asarray(x, np.float64) * 2.0 ** 15
    y = scipy.signal.lfilter([1.0, -1.0], [1.0, -0.99], x)           # DC removal
    z = scipy.signal.lfilter([1.0, -0.97], [1.0], y)                 # pre-emphasis, z[0] = y[0]
    n = (len(z) - 400) // 160 + 1
    frames = np.stack([z[t * 160: t * 160 + 400] for t in range(n)])  # explicit framing loop
    frames = frames * np.hamming(400)                                # numpy's hamming is symmetric
    return np.abs(np.fft.fft(frames, 512, axis=-1)).T


def ref_spectrogram(x):
    s = ref_magnitude(x)
    return (s - s.mean(axis=1, keepdims=True)) / s.std(axis=1, ddof=1, keepdims=True)


def noise(n, seed=0):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, n).astype(np.float32)


def voiced(n, seed=1):
    """Gliding 120 Hz harmonic series, amplitude-modulated, plus noise and a DC offset."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 120.0 + 20.0 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(0.3 / k * np.sin(k * phase) for k in range(1, 30))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)) + 0.01 * rng.standard_normal(n) + 0.05
    return (0.9 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def signals():
    return {"noise": noise(CROP), "voiced": voiced(CROP)}


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("name", ["noise", "voiced"])
@pytest.mark.parametrize("dft", ["fft", "matmul"])
def test_matches_float64_reference(signals, name, dft):
    x = signals[name]
    out = np.asarray(spectrogram(jnp.asarray(x), dft=dft))
    ref = ref_spectrogram(x)
    assert out.shape == (512, 400) and out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-3
    # The normalisation really is per bin: zero mean, unit (N-1) std over time.
    np.testing.assert_allclose(out.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=1, ddof=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("name", ["noise", "voiced"])
def test_magnitude_matches_reference(signals, name):
    x = signals[name]
    mag = np.asarray(magnitude_spectrogram(jnp.asarray(x)))
    ref = ref_magnitude(x)
    assert mag.shape == (512, 400)
    # float32 vs float64: relative to the spectrogram's scale.
    assert np.abs(mag - ref).max() / ref.max() < 1e-5
    # Upper half mirrors the lower half: |X[512 - k]| = |X[k]|.
    np.testing.assert_array_equal(mag[257:], mag[255:0:-1])


def test_magnitude_matches_librosa_framing(signals):
    """Framing + window + |FFT| checked against librosa's framing and STFT machinery."""
    x = signals["voiced"]
    # Steps 1-3 (filters) done with scipy in float64, then librosa frames and transforms.
    y = scipy.signal.lfilter([1.0, -1.0], [1.0, -0.99], x.astype(np.float64) * 2.0 ** 15)
    z = scipy.signal.lfilter([1.0, -0.97], [1.0], y)
    frames = librosa.util.frame(z, frame_length=400, hop_length=160, axis=0)   # [n_frames, 400]
    assert frames.shape == (400, 400)
    window = scipy.signal.get_window("hamming", 400, fftbins=False)          # symmetric Hamming
    ref_frames = np.abs(np.fft.fft(frames * window, 512, axis=-1)).T
    # librosa.stft with a 512-long window that is the 400-point window followed by 112 zeros is the
    # same zero-padded transform; librosa returns the 257 one-sided bins.
    window_512 = np.concatenate([window, np.zeros(112)])
    stft = np.abs(librosa.stft(np.concatenate([z, np.zeros(112)]), n_fft=512, hop_length=160,
                               window=window_512, center=False))[:, :400]
    np.testing.assert_allclose(stft, ref_frames[:257], rtol=1e-6, atol=1e-6 * ref_frames.max())
    mag = np.asarray(magnitude_spectrogram(jnp.asarray(x)))
    assert np.abs(mag[:257] - stft).max() / stft.max() < 1e-5
    assert np.abs(mag - ref_frames).max() / ref_frames.max() < 1e-5


def test_dc_removal_long_memory():
    """The blocked IIR equals lfilter also for steps and long DC stretches (long impulse-response tails)."""
    from cmemo_jax.audio.frontend import _remove_dc
    rng = np.random.default_rng(7)
    x = np.concatenate([np.zeros(1000), np.full(20000, 30000.0), np.full(5000, -30000.0),
                        1000 * rng.standard_normal(40000), np.zeros(3000)]).astype(np.float32)
    y = np.asarray(_remove_dc(jnp.asarray(x)))
    ref = scipy.signal.lfilter([1.0, -1.0], [1.0, -0.99], x.astype(np.float64))
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-6


@pytest.mark.parametrize("length", [400, 401, 559, 560, 16000 + 123])
def test_odd_lengths(length):
    x = voiced(length, seed=length)
    out = np.asarray(spectrogram(jnp.asarray(x)))
    expected_frames = (length - 400) // 160 + 1
    assert out.shape == (512, expected_frames)
    assert np.all(np.isfinite(out))
    if expected_frames == 1:
        # One frame has no (N-1) std: the output is the frame minus its own mean, i.e. zeros.
        np.testing.assert_array_equal(out, 0.0)
    else:
        assert np.abs(out - ref_spectrogram(x)).max() < 1e-3


def test_exact_crop_shape():
    assert spectrogram(jnp.zeros(CROP)).shape == (512, 400)
    # 400 frames need 400 + 399 * 160 = 64,240 samples; 4.024 s leaves 144 spare, 160 more add a frame.
    assert spectrogram(jnp.zeros(64_240)).shape == (512, 400)
    assert spectrogram(jnp.zeros(64_239)).shape == (512, 399)
    assert spectrogram(jnp.zeros(64_400)).shape == (512, 401)


def test_silence_gives_finite_zeros():
    out = np.asarray(spectrogram(jnp.zeros(16000)))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, 0.0)
    # Dither scales with the signal's std, so silence stays silent with a key too.
    out = np.asarray(spectrogram(jnp.zeros(16000), dither_key=jax.random.PRNGKey(0)))
    np.testing.assert_array_equal(out, 0.0)


def test_too_short_raises():
    with pytest.raises(ValueError, match="at least 400 samples"):
        spectrogram(jnp.zeros(399))


def test_wrong_sample_rate_raises():
    with pytest.raises(ValueError, match="resample"):
        spectrogram(jnp.zeros(16000), sample_rate=8000)


def test_integer_input_raises():
    with pytest.raises(TypeError, match="waveform_from_int16"):
        spectrogram(jnp.zeros(16000, jnp.int16))


def test_unknown_dft_raises():
    with pytest.raises(ValueError, match="dft"):
        spectrogram(jnp.zeros(16000), dft="dct")


def test_batched_equals_per_example():
    length = 16000 + 123
    batch = np.stack([noise(length, 3), voiced(length, 4), 0.01 * voiced(length, 5)])
    out = np.asarray(spectrogram(jnp.asarray(batch)))
    assert out.shape == (3, 512, 99)
    for i in range(3):
        single = np.asarray(spectrogram(jnp.asarray(batch[i])))
        np.testing.assert_allclose(out[i], single, atol=1e-5)
    # vmap gives the same thing, and nested leading dims work.
    vm = np.asarray(jax.vmap(spectrogram)(jnp.asarray(batch)))
    np.testing.assert_allclose(vm, out, atol=1e-5)
    nested = np.asarray(spectrogram(jnp.asarray(batch.reshape(3, 1, length))))
    np.testing.assert_allclose(nested[:, 0], out, atol=1e-5)


def test_jit(signals):
    x = jnp.asarray(signals["voiced"])
    for dft in ("fft", "matmul"):
        jitted = jax.jit(lambda w, dft=dft: spectrogram(w, dft=dft))
        np.testing.assert_allclose(np.asarray(jitted(x)), np.asarray(spectrogram(x, dft=dft)), atol=1e-4)
    # The dither key may be traced.
    jd = jax.jit(lambda w, k: spectrogram(w, dither_key=k))
    k = jax.random.PRNGKey(3)
    np.testing.assert_allclose(np.asarray(jd(x, k)), np.asarray(spectrogram(x, dither_key=k)), atol=1e-4)


@pytest.mark.parametrize("name", ["noise", "voiced"])
def test_matmul_equals_fft(signals, name):
    x = jnp.asarray(signals[name])
    a = np.asarray(spectrogram(x, dft="fft"))
    b = np.asarray(spectrogram(x, dft="matmul"))
    assert np.abs(a - b).max() < 1e-3
    ma = np.asarray(magnitude_spectrogram(x, dft="fft"))
    mb = np.asarray(magnitude_spectrogram(x, dft="matmul"))
    assert np.abs(ma - mb).max() / ma.max() < 1e-5


def test_dither(signals):
    x = jnp.asarray(signals["voiced"])
    clean = np.asarray(spectrogram(x))
    k = jax.random.PRNGKey(0)
    d1 = np.asarray(spectrogram(x, dither_key=k))
    d1_again = np.asarray(spectrogram(x, dither_key=k))
    d2 = np.asarray(spectrogram(x, dither_key=jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(d1, d1_again)          # same key -> same output
    assert not np.array_equal(d1, clean)                 # it does something...
    assert not np.array_equal(d1, d2)
    assert np.abs(d1 - clean).max() < 1e-2               # ...but 1e-6 of the std is tiny
    # A larger dither scale moves the output visibly more (the scale is wired through).
    big = np.asarray(spectrogram(x, dither_key=k, dither_scale=1e-1))
    assert np.abs(big - clean).mean() > 10 * np.abs(d1 - clean).mean()
    # Without a key the output is deterministic.
    np.testing.assert_array_equal(np.asarray(spectrogram(x)), clean)


def test_waveform_from_int16():
    pcm = np.array([-32768, -16384, 0, 16384, 32767], np.int16)
    w = np.asarray(waveform_from_int16(pcm))
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w, [-1.0, -0.5, 0.0, 0.5, 32767 / 32768])
    # Round trip through int16 keeps the spectrogram (up to quantisation).
    x = voiced(CROP)
    q = np.round(x * 32767).astype(np.int16)
    out = np.asarray(spectrogram(waveform_from_int16(q)))
    assert np.abs(out - ref_spectrogram(q.astype(np.float64) / 32768)).max() < 1e-3


def test_normalize_spectrogram():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 5, (2, 7, 11)).astype(np.float32)
    out = np.asarray(normalize_spectrogram(jnp.asarray(s)))
    ref = (s - s.mean(-1, keepdims=True)) / s.std(-1, ddof=1, keepdims=True)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)   # eps = 1e-5 on stds of ~1.4
