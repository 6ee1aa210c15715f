"""Front-end throughput: our jitted VGGVox spectrogram vs librosa, NumPy, tf.signal and torch.stft.

One batch of 64 clips of 4.024 s (64,384 samples, speech-like noise, float32 in [-1, 1]) -> the
normalised [64, 512, 400] spectrogram, computed by:

  ours-fft      cmemo_jax.audio.spectrogram(dft='fft'), jitted, device-resident input (ours' timing
                includes no host transfer; the NumPy-based peers start from host memory, where their input is)
  ours-matmul   cmemo_jax.audio.spectrogram(dft='matmul') (the DFT as a [400, 512] matmul)
  librosa       scipy.signal.lfilter DC removal, pre-emphasis, librosa.stft, |.|, per-bin mean/std
  numpy         the same with strided framing + numpy.fft.rfft
  tf.signal     the same in TensorFlow (tf.function, jit_compile=False), tf.signal.stft
  torch.stft    the same in PyTorch, torch.stft (on the GPU when JAX runs on one)

Every peer does the whole recipe of cmemo_jax/audio/frontend.py: x * 2**15, DC removal
y[n] = x[n] - x[n-1] + 0.99 y[n-1], pre-emphasis 0.97, 400-sample symmetric Hamming frames with hop
160 and no padding, |512-point DFT|, per-bin mean/std (N - 1) normalisation over time, and the 257
unique bins mirrored to 512 (as ours does; the mirror is a cheap copy). TensorFlow and PyTorch have
no IIR filter, so their DC removal is an FFT convolution with the filter's impulse response
truncated at 2048 taps (0.99**2048 ~ 1e-9, exact to float32). librosa.stft and torch.stft centre a
400-sample window inside the 512-sample frame, so their input is front-padded with 56 zeros to frame
exactly the samples ours frames. Each timed call follows one untimed call of the same variant (the
steady state of a training loop). A peer whose import fails is skipped. Each peer's output is checked
against ours (max |difference| in normalised units), so the comparison is between equal results.

  python benchmarks/bench_frontend.py [--repeats 7] [--warmup 2] [--batch 64] [--pause 0.5] [--out result.json]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _common  # noqa: E402

SAMPLES = 64_384
N_FFT, WIN, HOP = 512, 400, 160
HALF = N_FFT // 2 + 1
DC_ALPHA, PREEMPH, SCALE, EPS = 0.99, 0.97, 2.0 ** 15, 1e-5
DC_TAPS = 2048
CENTRE_PAD = (N_FFT - WIN) // 2   # 56: librosa / torch centre the window inside the n_fft frame


def speech_like_noise(batch: int, samples: int, seed: int = 0) -> np.ndarray:
    """Noise with a speech-like spectrum and syllable-rate envelope, float32 in [-1, 1]."""
    import scipy.signal

    rng = np.random.default_rng(seed)
    white = rng.standard_normal((batch, samples))
    # Two-pole resonance around 500 Hz plus a 1/f-ish tilt, a 4 Hz syllabic envelope, a DC offset.
    b, a = scipy.signal.butter(2, [150 / 8000, 4000 / 8000], btype="band")
    shaped = scipy.signal.lfilter(b, a, white, axis=-1)
    t = np.arange(samples) / 16000.0
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 5, (batch, 1)) * t + rng.uniform(0, 6.3, (batch, 1)))
    x = shaped * env ** 2 + 0.01
    x = 0.3 * x / np.max(np.abs(x), axis=-1, keepdims=True)
    return x.astype(np.float32)


def _dc_impulse_response(taps: int = DC_TAPS) -> np.ndarray:
    """Impulse response of (1 - z^-1) / (1 - a z^-1): h[0] = 1, h[n] = a^n - a^(n-1) for n >= 1."""
    n = np.arange(taps, dtype=np.float64)
    h = DC_ALPHA ** n - np.where(n >= 1, DC_ALPHA ** np.maximum(n - 1, 0), 0.0)
    return h


def _hamming_sym() -> np.ndarray:
    import scipy.signal

    return scipy.signal.get_window("hamming", WIN, fftbins=False)


def _normalize_mirror_np(mag: np.ndarray) -> np.ndarray:
    """[B, 257, T] magnitude -> normalised over time, mirrored to [B, 512, T]."""
    mean = mag.mean(axis=-1, keepdims=True)
    std = mag.std(axis=-1, ddof=1, keepdims=True)
    norm = (mag - mean) / (std + EPS)
    return np.concatenate([norm, norm[:, HALF - 2:0:-1]], axis=1)


# ------------------------------------------------------------------------------------------ peers

def make_ours(x_np, dft: str):
    import jax

    from cmemo_jax.audio import spectrogram

    x = jax.device_put(x_np)
    fn = jax.jit(lambda w: spectrogram(w, dft=dft))

    def run():
        return fn(x).block_until_ready()

    return run, lambda: np.asarray(fn(x))


def make_librosa(x_np):
    import librosa
    import scipy.signal

    window = _hamming_sym()

    def compute():
        y = scipy.signal.lfilter([1.0, -1.0], [1.0, -DC_ALPHA], x_np * np.float32(SCALE), axis=-1)
        z = np.concatenate([y[:, :1], y[:, 1:] - PREEMPH * y[:, :-1]], axis=-1).astype(np.float32)
        z = np.pad(z, [(0, 0), (CENTRE_PAD, 0)])
        spec = librosa.stft(z, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window=window, center=False)
        return _normalize_mirror_np(np.abs(spec))

    return compute, compute


def make_numpy(x_np):
    import scipy.signal

    window = _hamming_sym().astype(np.float32)

    def compute():
        y = scipy.signal.lfilter([1.0, -1.0], [1.0, -DC_ALPHA], x_np * np.float32(SCALE), axis=-1)
        z = np.concatenate([y[:, :1], y[:, 1:] - PREEMPH * y[:, :-1]], axis=-1).astype(np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(z, WIN, axis=-1)[:, ::HOP]   # [B, T, 400]
        mag = np.abs(np.fft.rfft(frames * window, n=N_FFT, axis=-1))                   # [B, T, 257]
        return _normalize_mirror_np(np.swapaxes(mag, 1, 2))

    return compute, compute


def make_tf(x_np):
    import tensorflow as tf

    h = _dc_impulse_response()
    n_conv = 1 << int(np.ceil(np.log2(SAMPLES + DC_TAPS - 1)))
    h_f = tf.signal.rfft(tf.constant(h, tf.float32), fft_length=[n_conv])
    x = tf.constant(x_np)

    @tf.function(jit_compile=False)
    def compute(w):
        w = w * SCALE
        y = tf.signal.irfft(tf.signal.rfft(w, fft_length=[n_conv]) * h_f, fft_length=[n_conv])[:, :SAMPLES]
        z = tf.concat([y[:, :1], y[:, 1:] - PREEMPH * y[:, :-1]], axis=-1)
        spec = tf.signal.stft(z, frame_length=WIN, frame_step=HOP, fft_length=N_FFT,
                              window_fn=lambda n, dtype: tf.signal.hamming_window(n, periodic=False, dtype=dtype),
                              pad_end=False)                                               # [B, T, 257]
        mag = tf.abs(spec)
        mean = tf.reduce_mean(mag, axis=1, keepdims=True)
        c = mag - mean
        std = tf.sqrt(tf.reduce_sum(c * c, axis=1, keepdims=True) / (tf.cast(tf.shape(mag)[1], tf.float32) - 1))
        norm = c / (std + EPS)
        full = tf.concat([norm, tf.reverse(norm[:, :, 1:HALF - 1], axis=[2])], axis=2)
        return tf.transpose(full, [0, 2, 1])

    def run():
        return compute(x).numpy()

    return run, run


def make_torch(x_np):
    import jax
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    # On a GPU machine PyTorch runs on the GPU too, like ours.
    use_cuda = jax.default_backend() == "gpu" and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    sync = torch.cuda.synchronize if use_cuda else (lambda: None)
    h = torch.tensor(_dc_impulse_response(), dtype=torch.float32, device=device)
    n_conv = 1 << int(np.ceil(np.log2(SAMPLES + DC_TAPS - 1)))
    h_f = torch.fft.rfft(h, n=n_conv)
    window = torch.hamming_window(WIN, periodic=False, dtype=torch.float32, device=device)
    x = torch.from_numpy(x_np).to(device)

    def compute():
        with torch.inference_mode():
            w = x * SCALE
            y = torch.fft.irfft(torch.fft.rfft(w, n=n_conv) * h_f, n=n_conv)[:, :SAMPLES]
            z = torch.cat([y[:, :1], y[:, 1:] - PREEMPH * y[:, :-1]], dim=-1)
            z = torch.nn.functional.pad(z, (CENTRE_PAD, 0))
            spec = torch.stft(z, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window=window, center=False,
                              return_complex=True)                                          # [B, 257, T]
            mag = spec.abs()
            mean = mag.mean(dim=-1, keepdim=True)
            std = mag.std(dim=-1, keepdim=True)   # unbiased (N - 1)
            norm = (mag - mean) / (std + EPS)
            full = torch.cat([norm, torch.flip(norm[:, 1:HALF - 1], dims=[1])], dim=1)
            sync()
            return full

    return compute, lambda: compute().cpu().numpy()


PEERS = {"librosa": make_librosa, "numpy": make_numpy, "tf.signal": make_tf, "torch.stft": make_torch}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="clips per batch (default 64)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timed rounds (default 7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each variant first (default 2)")
    p.add_argument("--pause", type=float, default=0.5,
                   help="seconds of idle before each timed call, so other runtimes' spinning threads settle (default 0.5)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma list of peers (default all: {','.join(PEERS)})")
    p.add_argument("--out", default=None, help="write the result as JSON here")
    args = p.parse_args(argv)

    info = _common.machine_info()
    _common.print_machine(info)
    x = speech_like_noise(args.batch, SAMPLES)
    print(f"# input: {args.batch} clips x {SAMPLES} samples (4.024 s) float32 -> [{args.batch}, 512, 400]")

    runners, outputs, skipped = {}, {}, {}
    for dft in ("fft", "matmul"):
        runners[f"ours-{dft}"], outputs[f"ours-{dft}"] = make_ours(x, dft)
    for name in [s.strip() for s in args.peers.split(",") if s.strip()]:
        if name not in PEERS:
            raise SystemExit(f"unknown peer {name!r}; choose from {list(PEERS)}")
        try:
            runners[name], outputs[name] = PEERS[name](x)
        except Exception as e:  # noqa: BLE001 - an unavailable peer is reported, not fatal
            skipped[name] = f"{type(e).__name__}: {e}"
            print(f"skipped: {name}: {skipped[name]}")

    # Agreement with ours (normalised units, where values are O(1)).
    ref = outputs["ours-fft"]()
    agreement = {}
    for name, out in list(outputs.items()):
        try:
            o = out()
            agreement[name] = float(np.max(np.abs(o - ref))) if o.shape == ref.shape else f"shape {o.shape}"
        except Exception as e:  # noqa: BLE001
            skipped[name] = f"failed: {type(e).__name__}: {e}"
            print(f"skipped: {name}: {skipped[name]}")
            runners.pop(name, None)

    times = _common.interleaved_times(runners, args.repeats, args.warmup, pause=args.pause, lead_in=1)
    res = {name: _common.summary(t, work=args.batch) for name, t in times.items()}
    ours = times["ours-fft"]
    rows = []
    for name, r in res.items():
        rows.append([name, r["rate_per_s"], r["median_s"] * 1e3, r["min_s"] * 1e3,
                     _common.median_ratio(times[name], ours), _common.median_ratio(times[name], times["ours-matmul"]),
                     agreement.get(name)])
    _common.print_table(
        ["variant", "clips/s", "median ms", "min ms", "ours-fft x", "ours-matmul x", "max|diff| vs ours"], rows,
        title=f"Front-end, batch {args.batch}, median of {args.repeats} interleaved rounds "
              f"('ours x' = how many times faster ours is, median over rounds of t_peer / t_ours)")
    for name, why in skipped.items():
        print(f"skipped: {name}: {why}")

    _common.write_json(args.out, {
        "benchmark": "frontend", "machine": info, "args": vars(args),
        "input": {"batch": args.batch, "samples": SAMPLES, "output_shape": [args.batch, 512, 400]},
        "results": res, "max_abs_diff_vs_ours": agreement, "skipped": skipped,
        "speedup_of_ours_fft": {n: _common.median_ratio(times[n], ours) for n in times},
        "speedup_of_ours_matmul": {n: _common.median_ratio(times[n], times["ours-matmul"]) for n in times},
    })


if __name__ == "__main__":
    _common.restart_as_cli_does()
    main()
