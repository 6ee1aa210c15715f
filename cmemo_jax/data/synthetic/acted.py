"""Synthetic held-out ACTED sets in the RML and eNTERFACE'05 layouts, for evaluation (docs/method.md §3).

Like the real ones, and unlike the training corpus, these clips are *acted*: each is one short
sentence carrying a single emotion at high intensity throughout (anger, disgust, fear, happiness,
sadness, surprise; no neutral, no contempt), by new people (speaker streams the corpus never uses)
who read rather than chat (slower, cleaner, steadier voices). And they come through another recording
chain: a room (reverberation), two microphones (STEREO: the channels differ in gain, delay and
self-noise), a high-pass preamp, at 22.05 kHz (RML) or 44.1 kHz (eNTERFACE), in .avi containers
with a pcm_s16le audio stream and an mpeg4 video stream of the rendered face (25 fps). A student
that learnt the corpus's recording conditions instead of emotion will show it here.

Layouts (what ``cmemo_jax.data.rml`` / ``cmemo_jax.data.enterface`` read)::

    RML        OUT/rml-1/s1/an1.avi, OUT/rml-1/s2/english/di2.avi, ..., OUT/rml-2/s6/...
    eNTERFACE  OUT/subject 1/anger/sentence 1/s1_an_1.avi, ... with the release's irregular levels:
               OUT/subject N/anger/subject N/sentence M/... (last subject: an extra subject level)
               OUT/subject 1/happiness/s1_ha_M.avi          (first subject: no sentence folders)

    write_rml(out_dir, cfg=None, n_speakers=4, clips_per_emotion=2, seed=0) -> [ActedClip]
    write_enterface(out_dir, cfg=None, n_subjects=4, sentences=2, seed=0) -> [ActedClip]
    write_acted_sequence(path, emotions, ...) -> [SequencePart]: one reader, one sentence per
        emotion in a row, as a stereo 22.05 kHz WAV (an example recording for predict and the notebooks)
    ActedClip(path, emotion, speaker): emotion an EMOTIONS name, speaker 's1' / 'subject 1'
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import NamedTuple

import numpy as np

from cmemo_jax.constants import EMOTIONS, SAMPLE_RATE, VIDEO_FPS
from cmemo_jax.data.clips import ACTED_EMOTIONS
from cmemo_jax.data.enterface import speaker_id as enterface_speaker_id
from cmemo_jax.data.rml import EMOTION_CODES, PARTS as RML_PARTS
from cmemo_jax.data.synthetic.config import SyntheticConfig
from cmemo_jax.data.synthetic.emotions import NEUTRAL, emotion_weights
from cmemo_jax.data.synthetic.faces import face_expression, render_faces
from cmemo_jax.data.synthetic.speakers import STREAM_ACTED, Speaker, draw_speaker
from cmemo_jax.data.synthetic.tracks import speech_rms, talking_mouth
from cmemo_jax.data.synthetic.voice import background_noise, synth_voice

# Emotion name -> the two-letter code both releases put in their file names ('anger' -> 'an').
CODES = {name: code for code, name in EMOTION_CODES.items()}
assert set(CODES) == set(ACTED_EMOTIONS)
RML_LANGUAGES = ("english", "mandarin", "urdu", "punjabi", "persian", "italian")
VIDEO_CODEC = "mpeg4"          # PyAV's FFmpeg here encodes mpeg4 and mjpeg; mpeg4 is far smaller
CLIP_SECONDS = (2.5, 4.5)      # one read sentence
PEAK_LEVEL = 0.9               # of full scale, after the chain

# Sub-stream tags under STREAM_ACTED: which set, then speakers vs clips.
_RML, _ENTERFACE, _SEQUENCE = 0, 1, 2
_SPEAKERS, _CLIPS = 0, 1


class SequencePart(NamedTuple):
    """One sentence of an acted sequence: [start_s, end_s) in seconds of the file, emotion name."""
    start_s: float
    end_s: float
    emotion: str


class ActedClip(NamedTuple):
    """One written clip: path of the .avi, emotion name (EMOTIONS spelling), speaker id."""
    path: str
    emotion: str
    speaker: str


@dataclasses.dataclass(frozen=True)
class RecordingChain:
    """How a set was recorded.

    sample_rate: Hz of the stored audio; snr_db: (low, high) room-noise SNR; rt60_s: (low, high)
    reverberation time of the room; wet: reverberant energy relative to the direct sound;
    highpass_hz: preamp high-pass corner; right_gain_db: std of the right mic's gain relative to the
    left; right_delay: (low, high) samples the right mic lags; hiss_dbfs: each mic's own white noise
    (RMS, dB of full scale).
    """
    sample_rate: int
    snr_db: tuple
    rt60_s: tuple
    wet: float
    highpass_hz: float
    right_gain_db: float
    right_delay: tuple
    hiss_dbfs: float


RML_CHAIN = RecordingChain(sample_rate=22_050, snr_db=(25.0, 35.0), rt60_s=(0.15, 0.3), wet=0.2,
                           highpass_hz=100.0, right_gain_db=1.5, right_delay=(1, 4), hiss_dbfs=-66.0)
ENTERFACE_CHAIN = RecordingChain(sample_rate=44_100, snr_db=(20.0, 30.0), rt60_s=(0.3, 0.5), wet=0.3,
                                 highpass_hz=60.0, right_gain_db=2.0, right_delay=(1, 5), hiss_dbfs=-60.0)


# ---------------------------------------------------------------------------- people
def acted_style(speaker: Speaker) -> Speaker:
    """The same person reading a sentence for the camera: slower, less breathy, steadier pitch."""
    return dataclasses.replace(speaker, rate_sps=speaker.rate_sps * 0.85, breath=speaker.breath * 0.5,
                               jitter_st=speaker.jitter_st * 0.5)


def acted_speakers(cfg: SyntheticConfig, dataset: int, identities: list[str], seed: int) -> list[Speaker]:
    """New people for one set (streams of STREAM_ACTED: no corpus speaker shares them)."""
    return [acted_style(draw_speaker(np.random.default_rng([int(seed), STREAM_ACTED, dataset, _SPEAKERS, i]),
                                     cfg, index=i, identity=name, unheard=True))
            for i, name in enumerate(identities)]


# ---------------------------------------------------------------------------- one clip
def _acted_episode(duration: float, emotion: int, rng: np.random.Generator) -> list:
    """One episode over the whole sentence at 85-100 % intensity (acted, not caught in the wild)."""
    start, end = float(rng.uniform(0.05, 0.25)), duration - float(rng.uniform(0.05, 0.25))
    return [(start, end, emotion, float(rng.uniform(0.85, 1.0)), 0.2)]


def _face_video(speaker: Speaker, eps, ctrl: dict, duration: float, rng: np.random.Generator,
                cfg: SyntheticConfig) -> np.ndarray:
    """[F, S, S] uint8 frames at 25 fps (S = cfg.face_size) of the face acting the episode while
    talking; a studio head moves less (half the corpus's pose jitter)."""
    ft = (np.arange(int(duration * VIDEO_FPS)) + 0.5) / VIDEO_FPS
    face_w = emotion_weights(eps, ft)
    face_w[:, NEUTRAL] = 0.0
    talk = 0.5 * talking_mouth(ctrl, ft)
    return render_faces(speaker.face, face_expression(face_w), talk, rng, size=cfg.face_size,
                        noise_std=cfg.face_noise, pose_jitter=0.5)


def _room_response(rng: np.random.Generator, sample_rate: int, rt60: float, wet: float) -> np.ndarray:
    """[R] impulse response: the direct sound (1) then exponentially decaying noise (60 dB over rt60 s)
    of energy `wet` relative to it, starting after 5 ms (the first reflections)."""
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.normal(0.0, 1.0, n) * 10.0 ** (-3.0 * t / rt60)
    tail[: int(0.005 * sample_rate)] = 0.0
    tail *= math.sqrt(wet / max(float(np.sum(tail ** 2)), 1e-12))
    tail[0] = 1.0
    return tail


def _stereo_pair(room: np.ndarray, chain: RecordingChain, rng: np.random.Generator) -> np.ndarray:
    """[L, 2] left / right mics of one room signal: the right one a little louder or softer and a
    few samples later, each with its own hiss, both through the preamp's high-pass."""
    import scipy.signal   # lazy: it costs ~0.5 s to import, and only these writers need it

    sr, n = chain.sample_rate, room.shape[0]
    sos = scipy.signal.butter(2, chain.highpass_hz, btype="highpass", fs=sr, output="sos")
    gain = 10.0 ** (rng.normal(0.0, chain.right_gain_db) / 20.0)
    delay = int(rng.integers(*chain.right_delay))
    right = gain * np.concatenate([np.zeros(delay), room[:n - delay]])
    hiss = 10.0 ** (chain.hiss_dbfs / 20.0)
    channels = [x + hiss * rng.normal(0.0, 1.0, n) for x in (room, right)]
    return np.stack([scipy.signal.sosfilt(sos, x) for x in channels], axis=1)


def record_stereo(speech: np.ndarray, chain: RecordingChain, rng: np.random.Generator) -> np.ndarray:
    """16 kHz float speech -> int16 [L, 2] at chain.sample_rate through the set's recording chain:
    level (0.08 RMS +- 2 dB), resampling, room reverberation and noise, two microphones, peak limit."""
    import scipy.signal

    from cmemo_jax.audio import resample   # soxr, as the readers use

    x = speech / speech_rms(speech) * 0.08 * 10.0 ** (rng.normal(0.0, 2.0) / 20.0)
    x = resample(x, SAMPLE_RATE, chain.sample_rate).astype(np.float64)
    ir = _room_response(rng, chain.sample_rate, float(rng.uniform(*chain.rt60_s)), chain.wet)
    room = scipy.signal.fftconvolve(x, ir)[:x.shape[0]]
    snr = rng.uniform(*chain.snr_db)
    room = room + background_noise(x.shape[0], rng, chain.sample_rate) * speech_rms(room) * 10.0 ** (-snr / 20.0)
    wave = _stereo_pair(room, chain, rng)
    peak = float(np.abs(wave).max())
    if peak > PEAK_LEVEL:
        wave *= PEAK_LEVEL / peak
    return np.rint(wave * 32767.0).astype(np.int16)


def acted_clip(speaker: Speaker, emotion: int, rng: np.random.Generator, chain: RecordingChain,
               cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """One acted sentence: (int16 [L, 2] audio at chain.sample_rate, uint8 [F, S, S] 25 fps video)."""
    duration = float(rng.uniform(*CLIP_SECONDS))
    num_samples = int(round(duration * SAMPLE_RATE))
    duration = num_samples / SAMPLE_RATE
    eps = _acted_episode(duration, emotion, rng)
    rng_voice, rng_face, rng_rec = (np.random.default_rng(rng.integers(2 ** 63)) for _ in range(3))
    speech, ctrl = synth_voice(speaker, num_samples, eps, rng_voice)
    faces = _face_video(speaker, eps, ctrl, duration, rng_face, cfg)
    return record_stereo(speech, chain, rng_rec), faces


# ---------------------------------------------------------------------------- container
def write_avi(path: str, audio: np.ndarray, sample_rate: int, frames: np.ndarray, fps: int = int(VIDEO_FPS)) -> None:
    """Writes an .avi: `frames` (uint8 [F, H, W] grey, H and W even) as mpeg4 yuv420p at `fps`, and
    `audio` (int16 [L, 2]) as a pcm_s16le stereo stream; atomically (temporary name, then rename)."""
    import av   # PyAV: only the writers of video sets need it

    tmp = f"{path}.tmp-{os.getpid()}"
    with av.open(tmp, "w", format="avi") as container:
        video = container.add_stream(VIDEO_CODEC, rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.codec_context.thread_count = 1     # one thread: the same bytes on every run
        sound = container.add_stream("pcm_s16le", rate=sample_rate, layout="stereo")
        for img in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="gray")))
        container.mux(video.encode())
        _mux_audio(container, sound, audio, sample_rate)
    os.replace(tmp, path)


def _mux_audio(container, stream, audio: np.ndarray, sample_rate: int, block: int = 4096) -> None:
    """Encodes int16 [L, 2] audio in blocks of `block` samples (interleaved s16 frames)."""
    import av

    for start in range(0, audio.shape[0], block):
        chunk = np.ascontiguousarray(audio[start:start + block]).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate, frame.pts = sample_rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _write_clip(path: str, speaker: Speaker, emotion: str, rng_key: list, chain: RecordingChain,
                cfg: SyntheticConfig) -> ActedClip:
    """Synthesises one clip from the stream `rng_key` and writes it to `path` (folders made)."""
    audio, frames = acted_clip(speaker, EMOTIONS.index(emotion), np.random.default_rng(rng_key), chain, cfg)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_avi(path, audio, chain.sample_rate, frames)
    return ActedClip(path=path, emotion=emotion, speaker=speaker.identity)


# ---------------------------------------------------------------------------- layouts
def rml_speaker_folders(n_speakers: int) -> list[tuple[str, str]]:
    """(part, speaker) of n speakers (1-8): the first half from rml-1 (s1...), the rest from rml-2
    (s6...), as a smaller copy of the release."""
    if not 1 <= n_speakers <= sum(len(s) for s in RML_PARTS.values()):
        raise ValueError(f"n_speakers must be 1-8 (the RML layout's s1..s8), got {n_speakers}")
    n_first = min(len(RML_PARTS["rml-1"]), math.ceil(n_speakers / 2))
    return ([("rml-1", s) for s in RML_PARTS["rml-1"][:n_first]]
            + [("rml-2", s) for s in RML_PARTS["rml-2"][:n_speakers - n_first]])


def write_rml(out_dir: str, cfg: SyntheticConfig | None = None, n_speakers: int = 4,
              clips_per_emotion: int = 2, seed: int = 0) -> list[ActedClip]:
    """Writes an RML-style set: OUT/rml-1/sK/[<language>/]<code><n>.avi, OUT/rml-2/sK/...

    Every second speaker's clips sit in a language folder, as in the release. n_speakers (1-8) new
    speakers x 6 emotions x clips_per_emotion clips of 2.5-4.5 s, 22.05 kHz stereo.
    Returns the clips written, in writing order. Deterministic for (cfg, arguments, seed).
    """
    cfg = cfg or SyntheticConfig()
    folders = rml_speaker_folders(n_speakers)
    speakers = acted_speakers(cfg, _RML, [s for _, s in folders], seed)
    clips = []
    for i, ((part, name), speaker) in enumerate(zip(folders, speakers)):
        folder = os.path.join(out_dir, part, name)
        if i % 2:
            folder = os.path.join(folder, RML_LANGUAGES[(i // 2) % len(RML_LANGUAGES)])
        for emotion in ACTED_EMOTIONS:
            for k in range(clips_per_emotion):
                path = os.path.join(folder, f"{CODES[emotion]}{k + 1}.avi")
                key = [int(seed), STREAM_ACTED, _RML, _CLIPS, i, EMOTIONS.index(emotion), k]
                clips.append(_write_clip(path, speaker, emotion, key, RML_CHAIN, cfg))
    return clips


def enterface_clip_folder(out_dir: str, subject: int, emotion: str, sentence: int, first: bool,
                          last: bool) -> str:
    """Folder of a clip in the eNTERFACE'05 tree, with the release's two irregularities: the first
    subject's happiness clips lie directly in the emotion folder, the last subject's anger folder
    holds another 'subject N' level."""
    subject_dir = os.path.join(out_dir, enterface_speaker_id(subject))
    if first and emotion == "happiness":
        return os.path.join(subject_dir, emotion)
    if last and emotion == "anger":
        return os.path.join(subject_dir, emotion, enterface_speaker_id(subject), f"sentence {sentence}")
    return os.path.join(subject_dir, emotion, f"sentence {sentence}")


def write_enterface(out_dir: str, cfg: SyntheticConfig | None = None, n_subjects: int = 4,
                    sentences: int = 2, seed: int = 0) -> list[ActedClip]:
    """Writes an eNTERFACE'05-style set: OUT/subject N/<emotion>/sentence M/sN_<code>_M.avi.

    n_subjects new speakers ('subject 1'...) x 6 emotions x `sentences` clips of 2.5-4.5 s, 44.1 kHz
    stereo, with the irregular levels of ``enterface_clip_folder``. Returns the clips written, in
    writing order. Deterministic for (cfg, arguments, seed).
    """
    if n_subjects < 1 or sentences < 1:
        raise ValueError(f"need at least one subject and one sentence, got {n_subjects}, {sentences}")
    cfg = cfg or SyntheticConfig()
    numbers = list(range(1, n_subjects + 1))
    speakers = acted_speakers(cfg, _ENTERFACE, [enterface_speaker_id(n) for n in numbers], seed)
    clips = []
    for i, (number, speaker) in enumerate(zip(numbers, speakers)):
        for emotion in ACTED_EMOTIONS:
            for m in range(1, sentences + 1):
                folder = enterface_clip_folder(out_dir, number, emotion, m, first=i == 0,
                                               last=i == n_subjects - 1)
                path = os.path.join(folder, f"s{number}_{CODES[emotion]}_{m}.avi")
                key = [int(seed), STREAM_ACTED, _ENTERFACE, _CLIPS, i, EMOTIONS.index(emotion), m]
                clips.append(_write_clip(path, speaker, emotion, key, ENTERFACE_CHAIN, cfg))
    return clips



def write_acted_sequence(path: str, emotions: tuple = ("happiness", "sadness", "anger", "surprise"),
                         cfg: SyntheticConfig | None = None, pause_s: float = 0.6,
                         seed: int = 0) -> list[SequencePart]:
    """Writes one new reader's sentences, one per emotion in `emotions` (ACTED_EMOTIONS names), in a
    row with `pause_s` of silence before each, as a stereo 16-bit WAV at 22.05 kHz (the RML chain).

    An example recording whose emotion changes over time, for `predict` and the notebooks; returns
    where each sentence lies. Deterministic for (cfg, arguments, seed)."""
    import soundfile

    unknown = [e for e in emotions if e not in ACTED_EMOTIONS]
    if not emotions or unknown:
        raise ValueError(f"emotions must be a non-empty sequence of {ACTED_EMOTIONS}, got {tuple(emotions)}")
    cfg = cfg or SyntheticConfig()
    speaker, = acted_speakers(cfg, _SEQUENCE, ["reader"], seed)
    sr, pause = RML_CHAIN.sample_rate, np.zeros((int(round(pause_s * RML_CHAIN.sample_rate)), 2), np.int16)
    pieces, parts, at = [], [], 0
    for k, emotion in enumerate(emotions):
        rng = np.random.default_rng([int(seed), STREAM_ACTED, _SEQUENCE, _CLIPS, k, EMOTIONS.index(emotion)])
        audio, _ = acted_clip(speaker, EMOTIONS.index(emotion), rng, RML_CHAIN, cfg)
        pieces += [pause, audio]
        at += pause.shape[0]
        parts.append(SequencePart(at / sr, (at + audio.shape[0]) / sr, emotion))
        at += audio.shape[0]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    soundfile.write(tmp, np.concatenate(pieces), sr, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
    return parts
