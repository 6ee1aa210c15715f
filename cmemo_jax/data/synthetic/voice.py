"""Synthesised 16 kHz voices whose prosody follows the hidden emotion, and background noise.

Source-filter synthesis on an 8 ms control grid (``HOP`` samples):

1. an articulation plan: syllables (optional fricative / plosive / nasal onset, a vowel nucleus with
   its formants and jaw opening), pauses between phrases, pitch accents and declination;
2. a pitch contour: the speaker's habitual f0, shifted and stretched by the emotion, plus jitter,
   slow drift and (fear) tremor;
3. the sources: Rosenberg glottal pulses mixed with aspiration noise, and fricative noise;
4. short-time Fourier filtering: moving formants and spectral tilt for the voiced source, a band-pass
   for the fricatives; overlap-add back to a waveform.

The emotion acts through per-control-step intensities (``emotions.emotion_weights``): each prosodic
parameter is its neutral value plus intensity x (emotion's value - neutral value), see ``_VOICE``.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft

from cmemo_jax.constants import NUM_EMOTIONS, SAMPLE_RATE
from cmemo_jax.data.synthetic.emotions import NEUTRAL, emotion_weights

#                      neu   hap   sur   sad   ang   dis   fea   con
_VOICE = {
    # f0 level shift (semitones) and pitch-accent range multiplier.
    "f0_shift_st":  np.array([0.0, 4.5, 7.0, -3.0, 2.5, -1.5, 5.5, -1.5]),
    "range_mul":    np.array([1.0, 2.2, 2.8, 0.3, 1.6, 0.8, 0.6, 1.4]),
    # Speaking rate multiplier (syllables / s) and loudness (dB).
    "rate_mul":     np.array([1.0, 1.12, 1.05, 0.65, 1.2, 0.85, 1.35, 0.85]),
    "loud_db":      np.array([0.0, 3.0, 3.5, -6.0, 8.0, -1.0, -1.5, -2.0]),
    # Spectral tilt change (dB / octave, + brighter) and glottal closing-phase factor (< 1 tenser).
    "tilt_db":      np.array([0.0, 2.0, 1.0, -5.0, 5.0, 0.5, 0.0, -1.0]),
    "closing_mul":  np.array([1.0, 0.85, 0.9, 1.7, 0.4, 1.0, 1.1, 1.2]),
    # Jitter (semitone std of cycle-scale f0 noise), breathiness (aspiration mix), tremor (st, 6 Hz).
    "jitter_st":    np.array([0.10, 0.12, 0.12, 0.15, 0.25, 0.35, 0.45, 0.15]),
    "breath":       np.array([0.06, 0.06, 0.10, 0.40, 0.05, 0.15, 0.40, 0.20]),
    "tremor_st":    np.array([0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 1.0, 0.0]),
    # Pause probability after a syllable; contour slope within a syllable (st, + rising).
    "pause_p":      np.array([0.12, 0.08, 0.12, 0.30, 0.06, 0.22, 0.20, 0.18]),
    "slope_st":     np.array([0.0, 0.5, 5.0, -0.8, -1.0, -2.5, 1.0, -3.0]),
    # Formant scale (smiling raises F2/F3; sadness / disgust lower them).
    "formant_mul":  np.array([1.0, 1.08, 1.03, 0.96, 1.02, 0.95, 1.02, 0.99]),
}
assert all(v.shape == (NUM_EMOTIONS,) for v in _VOICE.values())
_VOICE_DELTA = {k: v - v[NEUTRAL] for k, v in _VOICE.items()}

# Vowels: (F1, F2, F3) of an adult male in Hz, and jaw openness (0-1) for the talking mouth.
_VOWELS = np.array([
    [730, 1090, 2440, 1.0],   # a
    [530, 1840, 2480, 0.6],   # e
    [270, 2290, 3010, 0.2],   # i
    [570, 840, 2410, 0.7],    # o
    [300, 870, 2240, 0.3],    # u
    [660, 1720, 2410, 0.8],   # ae
    [520, 1190, 2390, 0.5],   # schwa
])
_SCHWA = 6
_F4_HZ = 3500.0
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])

# Short-time Fourier filter geometry (samples).
HOP = 128                  # also the control-grid step (8 ms at 16 kHz)
_WIN = 256
_NFFT = 512


def moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average of n steps along axis 0 with edge padding (n <= 1: x itself)."""
    if n <= 1:
        return x
    pad = n // 2
    xp = np.pad(x, [(pad, n - 1 - pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), xp], axis=0), axis=0)
    return (c[n:] - c[:-n]) / n


def voice_params(weights: np.ndarray) -> dict:
    """[C, 8] emotion intensities -> dict of [C] prosodic parameters (keys of ``_VOICE``)."""
    return {k: _VOICE[k][NEUTRAL] + weights[:, 1:] @ _VOICE_DELTA[k][1:] for k in _VOICE}


# ---------------------------------------------------------------------------- 1. articulation plan
def _empty_targets(n_ctrl: int) -> dict:
    """Articulation targets on the control grid, all [C] except formants [C, 3] (Hz)."""
    return {
        "voiced": np.zeros(n_ctrl),          # voiced amplitude envelope
        "fric": np.zeros(n_ctrl),            # fricative / burst noise amplitude
        "fric_fc": np.full(n_ctrl, 4000.0),  # fricative centre frequency (Hz)
        "accent": np.zeros(n_ctrl),          # f0 accent (semitones, before range scaling)
        "slope": np.zeros(n_ctrl),           # within-syllable glide (semitones, before emotion scaling)
        "decl": np.zeros(n_ctrl),            # phrase declination (semitones)
        "formants": np.tile(_VOWELS[_SCHWA, :3], (n_ctrl, 1)).astype(np.float64),
        "jaw": np.zeros(n_ctrl),             # jaw openness (0-1), drives the rendered mouth
    }


def _place_onset(tg: dict, a: int, n: int, vtl: float, rng) -> int:
    """Draws a syllable's consonant onset (70 %: fricative, plosive or nasal) over its first 20-40 %
    of the n control steps from step a; returns the onset length in steps (0: none)."""
    onset = int(n * rng.uniform(0.2, 0.4)) if rng.random() < 0.7 else 0
    kind = rng.random()
    if onset:
        if kind < 0.45:      # unvoiced fricative
            pon = (np.arange(onset) + 0.5) / onset
            tg["fric"][a:a + onset] = rng.uniform(0.25, 0.5) * np.sin(np.pi * pon) ** 0.5
            tg["fric_fc"][a:a + onset] = rng.uniform(2500, 6500) * vtl
        elif kind < 0.75:    # plosive: closure then a short burst
            cl = max(onset - 3, 1)
            tg["fric"][a + cl:a + onset] = rng.uniform(0.3, 0.6)
            tg["fric_fc"][a + cl:a + onset] = rng.uniform(1500, 4000) * vtl
        else:                # voiced consonant (nasal-ish): weak voicing, low F1
            tg["voiced"][a:a + onset] = 0.3
            tg["formants"][a:a + onset] = (280.0, 1300.0, 2500.0)
    return onset


def _place_nucleus(tg: dict, start: int, b: int, rng) -> None:
    """A random vowel over control steps [start, b): voicing, its formants, the jaw opening."""
    v = _VOWELS[rng.integers(len(_VOWELS))]
    nuc = slice(start, b)
    m = b - start
    pn = np.linspace(0.0, 1.0, m, endpoint=False) + 0.5 / m
    tg["voiced"][nuc] = np.sin(np.pi * pn) ** 0.6 * rng.uniform(0.75, 1.0)
    tg["formants"][nuc] = v[:3] * np.exp(rng.normal(0.0, 0.04, 3))
    tg["jaw"][nuc] = v[3] * np.sin(np.pi * pn) ** 0.5


def _place_intonation(tg: dict, a: int, b: int, t: float, syl: float, phrase_start: float, rng) -> None:
    """Pitch accent, glide and phrase declination of the syllable at t (s) lasting syl s."""
    ph = np.linspace(0.0, 1.0, b - a, endpoint=False)
    acc = float(rng.uniform(0.0, 1.0) ** 1.5) * (2.5 if rng.random() < 0.35 else 1.0)
    tg["accent"][a:b] = acc * np.sin(np.pi * ph) ** 1.2
    tg["slope"][a:b] = ph - 0.5
    tg["decl"][a:b] = -1.8 * (t + syl * ph - phrase_start)


def _plan_articulation(speaker, num_samples: int, vp: dict, n_ctrl: int, rng) -> dict:
    """Syllables and pauses from a random start until 0.1 s before the end: targets dict (above).

    Rate and pause probability follow the emotion at each syllable's start; a pause restarts the
    phrase (declination resets).
    """
    tg = _empty_targets(n_ctrl)
    step = HOP / SAMPLE_RATE
    t = float(rng.uniform(0.05, 0.35))
    phrase_start = t
    after_pause = True
    duration = num_samples / SAMPLE_RATE
    while t < duration - 0.1:
        c = min(int(t / step), n_ctrl - 1)
        rate = speaker.rate_sps * vp["rate_mul"][c]
        if not after_pause and rng.random() < vp["pause_p"][c]:
            t += float(rng.uniform(0.12, 0.5)) / vp["rate_mul"][c]
            phrase_start = t
            after_pause = True
            continue
        after_pause = False
        syl = float(np.clip(rng.lognormal(0.0, 0.28), 0.5, 2.0)) / rate
        a, b = int(t / step), min(int((t + syl) / step), n_ctrl)
        if b - a < 4:
            break
        onset = _place_onset(tg, a, b - a, speaker.vtl, rng)
        _place_nucleus(tg, a + onset, b, rng)
        _place_intonation(tg, a, b, t, syl, phrase_start, rng)
        t += syl
        if rng.random() < 0.25:
            t += float(rng.uniform(0.02, 0.08))   # short closure gap between words
    return tg


def _coarticulate(tg: dict) -> None:
    """Smooths the targets in place: voicing and frication over ~12 ms (no clicks), formants over
    ~30 ms; declination floors at -6 st (long phrases)."""
    tg["voiced"] = moving_average(tg["voiced"], 2)
    tg["fric"] = moving_average(tg["fric"], 2)
    tg["formants"] = moving_average(tg["formants"], 4)
    tg["decl"] = np.maximum(tg["decl"], -6.0)


# ---------------------------------------------------------------------------- 2. pitch, 3. sources
def _pitch_contour(speaker, vp: dict, tg: dict, t_ctrl: np.ndarray, rng) -> np.ndarray:
    """[C] f0 in Hz: habitual f0 x 2^(semitones / 12) of emotion shift, accents x emotion range,
    glides, declination, jitter, slow drift (~0.4 s, ~0.8 st) and a 6 Hz tremor."""
    n_ctrl = t_ctrl.shape[0]
    jitter = rng.normal(0.0, 1.0, n_ctrl) * (vp["jitter_st"] + speaker.jitter_st)
    drift = moving_average(rng.normal(0.0, 1.0, n_ctrl), 50) * 6.0
    tremor = vp["tremor_st"] * np.sin(2 * np.pi * 6.0 * t_ctrl + rng.uniform(0, 2 * np.pi))
    st = (vp["f0_shift_st"] + 3.0 * tg["accent"] * vp["range_mul"] + vp["slope_st"] * tg["slope"]
          + tg["decl"] * np.sqrt(vp["range_mul"]) + jitter + drift + tremor)
    return speaker.f0_hz * 2.0 ** (st / 12.0)


def _sources(speaker, vp: dict, tg: dict, f0_ctrl: np.ndarray, num_samples: int, rng):
    """Per-sample excitations [L]: (voiced source = glottal pulses + aspiration, fricative noise).

    Rosenberg pulse: opening phase 0.42 of the period, closing phase 0.17 x the emotion's closing
    factor (tense voices close faster: brighter); the derivative of the flow excites the tract.
    """
    sr = SAMPLE_RATE
    n_ctrl = f0_ctrl.shape[0]
    ts = np.arange(num_samples, dtype=np.float64) / HOP
    f0 = np.interp(ts, np.arange(n_ctrl), f0_ctrl)
    phase = np.cumsum(f0 / sr) + rng.random()
    frac = phase - np.floor(phase)
    tp = 0.42
    tn = np.clip(0.17 * np.interp(ts, np.arange(n_ctrl), vp["closing_mul"]), 0.05, 0.5)
    flow = np.where(frac < tp, 0.5 * (1.0 - np.cos(np.pi * frac / tp)),
                    np.where(frac < tp + tn, np.cos(0.5 * np.pi * np.minimum((frac - tp) / tn, 1.0)), 0.0))
    exc = np.diff(flow, prepend=flow[0]) * (sr / f0) ** 0.5 * 0.12
    amp_db = vp["loud_db"]
    amp = np.interp(ts, np.arange(n_ctrl), tg["voiced"] * 10.0 ** (amp_db / 20.0))
    breath = np.interp(ts, np.arange(n_ctrl), np.clip(vp["breath"] + speaker.breath, 0.0, 0.8))
    noise = rng.normal(0.0, 1.0, num_samples)
    src_v = amp * ((1.0 - breath) * exc + breath * 0.025 * noise * (0.4 + flow))
    fric_amp = np.interp(ts, np.arange(n_ctrl), tg["fric"] * 10.0 ** (amp_db / 40.0))
    src_n = fric_amp * 0.05 * rng.normal(0.0, 1.0, num_samples)
    return src_v, src_n


# ---------------------------------------------------------------------------- 4. filtering
def _tract_envelope(fmts: np.ndarray, vtl: float, tilt: np.ndarray, freqs, octs, rolloff) -> np.ndarray:
    """[R, K] all-pole vocal-tract magnitude (4 formants, unit gain at DC) x tilt x 7 kHz roll-off.

    fmts: [R, 4] formant frequencies (Hz) of R frames; tilt: [R] dB / octave above 500 Hz.
    """
    f2 = freqs ** 2
    num, den = np.ones((fmts.shape[0], 1)), np.ones((fmts.shape[0], f2.shape[1]))
    for k in range(4):
        fk2 = fmts[:, k:k + 1] ** 2
        bk = _BANDWIDTHS[k] * (1.0 + 0.3 * (vtl - 1.0))   # shorter tracts: wider bandwidths
        num = num * fk2
        den *= (fk2 - f2) ** 2 + bk * bk * f2
    return num / np.sqrt(den) * np.exp(tilt[:, None] * octs) * rolloff


def _overlap_add(spec: np.ndarray, num_samples: int, pad: int) -> np.ndarray:
    """[N, K] filtered spectra of Hann frames (hop HOP) -> [num_samples] waveform (unit OLA gain)."""
    n_frames = spec.shape[0]
    y_frames = scipy.fft.irfft(spec, n=_NFFT, axis=1)
    per = _NFFT // HOP
    blocks = np.zeros((n_frames + per, HOP))
    yb = y_frames.reshape(n_frames, per, HOP)
    for k in range(per):
        blocks[k:k + n_frames] += yb[:, k, :]
    return blocks.reshape(-1)[pad:pad + num_samples] * (HOP * 2.0 / _WIN)   # Hann OLA gain


def _filter(speaker, vp: dict, tg: dict, src_v, src_n, num_samples: int) -> np.ndarray:
    """Short-time Fourier filtering of both sources -> [num_samples] float waveform.

    Frames of 256 (Hann), hop 128, zero-padded 512-point FFT, overlap-add. Only frames within
    ~2 control steps of some voicing (frication) are transformed: most of a track is silence.
    """
    sr = SAMPLE_RATE
    n_ctrl = tg["voiced"].shape[0]
    amp_ctrl = tg["voiced"] * 10.0 ** (vp["loud_db"] / 20.0)
    tilt_ctrl = vp["tilt_db"] + speaker.tilt_db
    pad = _WIN
    n_frames = (num_samples + 2 * pad - _WIN) // HOP + 1
    cidx = np.clip(np.arange(n_frames) - (pad - _WIN // 2) // HOP, 0, n_ctrl - 1)

    def active(ctrl_amp):
        on = np.convolve((ctrl_amp > 0).astype(np.float64), np.ones(5), mode="same") > 0
        return np.flatnonzero(on[cidx])

    freqs = np.fft.rfftfreq(_NFFT, 1.0 / sr)[None, :]
    octs = np.log2(np.maximum(freqs, 250.0) / 500.0) * (math.log(10.0) / 20.0)
    rolloff = np.where(freqs > 7000.0, np.exp(-(freqs - 7000.0) / 400.0), 1.0)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_WIN) / _WIN)

    def frames(x, rows):
        xp = np.pad(x, (pad, pad + HOP))
        idx = rows[:, None] * HOP + np.arange(_WIN)[None, :]
        return scipy.fft.rfft(xp[idx] * win, n=_NFFT, axis=1)

    spec = np.zeros((n_frames, _NFFT // 2 + 1), dtype=np.complex128)
    rv = active(amp_ctrl)
    if rv.size:
        c = cidx[rv]
        fmts = np.concatenate([tg["formants"][c] * vp["formant_mul"][c, None],
                               np.full((rv.size, 1), _F4_HZ)], axis=1) * speaker.vtl
        spec[rv] = frames(src_v, rv) * _tract_envelope(fmts, speaker.vtl, tilt_ctrl[c], freqs, octs, rolloff)
    rn = active(tg["fric"])
    if rn.size:
        c = cidx[rn]
        env_n = np.exp(-0.5 * (np.log2(np.maximum(freqs, 50.0) / tg["fric_fc"][c, None]) / 0.55) ** 2
                       + 0.5 * tilt_ctrl[c, None] * octs)
        spec[rn] += frames(src_n, rn) * env_n
    return _overlap_add(spec, num_samples, pad)


def synth_voice(speaker, num_samples: int, eps, rng: np.random.Generator):
    """One utterance of `speaker` at 16 kHz under the emotion episodes `eps`.

    Returns (waveform [num_samples] float, peak roughly 1 before the recording gain, and a control
    dict on the 8 ms grid: 't' [C] s, 'voiced' [C], 'jaw' [C], 'f0' [C] Hz, 'weights' [C, 8]).
    """
    n_ctrl = num_samples // HOP + 2
    t_ctrl = np.arange(n_ctrl) * (HOP / SAMPLE_RATE)
    # Prosody follows the emotion with ~120 ms of inertia.
    weights = moving_average(emotion_weights(eps, t_ctrl), int(0.12 * SAMPLE_RATE / HOP))
    vp = voice_params(weights)
    tg = _plan_articulation(speaker, num_samples, vp, n_ctrl, rng)
    _coarticulate(tg)
    f0_ctrl = _pitch_contour(speaker, vp, tg, t_ctrl, rng)
    src_v, src_n = _sources(speaker, vp, tg, f0_ctrl, num_samples, rng)
    y = _filter(speaker, vp, tg, src_v, src_n, num_samples)
    ctrl = dict(t=t_ctrl, voiced=tg["voiced"], jaw=tg["jaw"], f0=f0_ctrl, weights=weights)
    return y, ctrl


def background_noise(num_samples: int, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[num_samples] unit-std coloured stationary noise (spectral slope between white and brown),
    with a faint 50 / 60 Hz mains hum 30 % of the time."""
    n_fft = scipy.fft.next_fast_len(num_samples, real=True)
    white = rng.normal(0.0, 1.0, n_fft)
    spec = scipy.fft.rfft(white)
    f = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    slope = rng.uniform(0.0, 1.6)
    spec *= 1.0 / np.maximum(f, 50.0) ** (slope / 2.0)
    n = scipy.fft.irfft(spec, n=n_fft)[:num_samples]
    n /= np.std(n) + 1e-12
    if rng.random() < 0.3:
        hz = 50.0 if rng.random() < 0.5 else 60.0
        tt = np.arange(num_samples) / sample_rate
        n += rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * hz * tt) * math.sqrt(2.0)
        n /= np.std(n) + 1e-12
    return n
