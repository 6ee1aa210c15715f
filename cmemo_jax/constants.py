"""Constants shared by every part of cmemo_jax: emotion order, sample rate, EmoVoxCeleb frame timing.

Nothing here imports jax or tensorflow, so data tools, models and tests can all use it.
"""
import math
import os

# Emotion order everywhere (FERPlus order; docs/method.md §4).
EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
NUM_EMOTIONS = len(EMOTIONS)

SAMPLE_RATE = 16_000          # Hz; every waveform is resampled to this before the front-end.
WINDOW_SAMPLES = 400          # 25 ms Hamming window at 16 kHz.
HOP_SAMPLES = 160             # 10 ms hop at 16 kHz.
FFT_SIZE = 512                # all 512 bins of a 512-point FFT are kept (VGGVox).
CROP_SAMPLES = 64_384         # 4.024 s: exactly 400 spectrogram frames.
INT16_SCALE = 2.0 ** 15       # [-1, 1] floats <-> int16 units (the scale the VGGVox weights were trained on).
CROP_SECONDS = CROP_SAMPLES / SAMPLE_RATE

# EmoVoxCeleb: one teacher-labelled face frame every 6 video frames at 25 fps = 0.24 s.
VIDEO_FPS = 25.0
FRAME_STRIDE = 6
FRAME_PERIOD_S = FRAME_STRIDE / VIDEO_FPS  # 0.24 s

# EmoVoxCeleb `set` codes (docs/method.md §3).
SPLIT_TRAIN = 1
SPLIT_UNHEARD_VAL = 2
SPLIT_HEARD_VAL = 3
SPLIT_NAMES = {SPLIT_TRAIN: "train", SPLIT_UNHEARD_VAL: "unheard_val", SPLIT_HEARD_VAL: "heard_val"}
SPLIT_IDS = {name: code for code, name in SPLIT_NAMES.items()}


def num_spectrogram_frames(num_samples: int) -> int:
    """Frames of the no-padding framing: floor((L - 400) / 160) + 1 (0 if L < 400)."""
    if num_samples < WINDOW_SAMPLES:
        return 0
    return (num_samples - WINDOW_SAMPLES) // HOP_SAMPLES + 1


def frame_row(time_s: float) -> int:
    """Row of the EmoVoxCeleb logit matrix that covers time `time_s` (seconds from track start).

    Row r holds video frame 6 r + 1 (0-based at 25 fps), i.e. it covers [(6r+1)/25, (6r+7)/25) s;
    times before the first sampled frame belong to row 0.
    """
    return int(math.floor(max(VIDEO_FPS * time_s - 1.0, 0.0) / FRAME_STRIDE))


def frame_rows_in_segment(start_s: float, duration_s: float, num_rows: int) -> tuple[int, int]:
    """Half-open row range [first, last) of the frames whose time span overlaps a segment.

    Used to max-pool the teacher logits of exactly the frames inside a crop. Always returns at
    least one row when the track has any (a segment past the last row maps to the last row).
    """
    if num_rows <= 0:
        return 0, 0
    first = min(frame_row(start_s), num_rows - 1)
    # The segment is half-open: the row holding its last instant is the last row it overlaps.
    last_instant = start_s + duration_s - 1e-9
    last = min(frame_row(last_instant), num_rows - 1) + 1
    return first, max(last, first + 1)


def max_rows_per_segment(num_samples: int = CROP_SAMPLES) -> int:
    """Upper bound on len(frame_rows_in_segment(...)) for a crop of `num_samples` at 16 kHz, any start:
    the fixed row window size (18 for the 4.024 s crop)."""
    return int(math.floor(num_samples / SAMPLE_RATE / FRAME_PERIOD_S)) + 2


CACHE_ENV_VAR = "CMEMO_CACHE"


def default_cache_dir() -> str:
    """Where generated corpora and other caches go: $CMEMO_CACHE, else ~/.cache/cmemo_jax."""
    return os.environ.get(CACHE_ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "cmemo_jax")
