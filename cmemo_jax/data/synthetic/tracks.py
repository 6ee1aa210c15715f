"""One speaking face-track: a voice and a face driven by the same hidden emotion, plus oracle logits.

A track lasts U(min_track_seconds, max_track_seconds). Its random stream (``speakers.track_rng``)
draws the duration and the emotion episodes, then seeds three independent sub-streams for the voice,
the face (and oracle) and the recording chain, so that a change in one modality's draws cannot
shift another's. Frames follow EmoVoxCeleb timing: row r shows video frame 6 r + 1 at 25 fps.
"""
from __future__ import annotations

import math

import numpy as np

from cmemo_jax.constants import FRAME_STRIDE, NUM_EMOTIONS, SAMPLE_RATE, VIDEO_FPS, frame_row
from cmemo_jax.data.synthetic.config import SyntheticConfig
from cmemo_jax.data.synthetic.emotions import CONFUSION, NEUTRAL, emotion_weights, episodes
from cmemo_jax.data.synthetic.faces import face_expression, render_faces
from cmemo_jax.data.synthetic.speakers import Speaker
from cmemo_jax.data.synthetic.voice import HOP, background_noise, synth_voice

TRACKS_PER_VIDEO = 4       # track k of a speaker is utterance k % 4 + 1 of video k // 4
PEAK_LEVEL = 0.85          # recordings are scaled down to this peak (of full scale) if louder


def num_frames(num_samples: int) -> int:
    """Logit rows of a track of `num_samples` 16 kHz samples: the row covering its last sample, + 1."""
    return frame_row((num_samples - 1) / SAMPLE_RATE) + 1


def frame_times(num_samples: int) -> np.ndarray:
    """[F] instant (s) of each row's video frame, (6 r + 1) / 25, clipped to the track's end."""
    ft = (FRAME_STRIDE * np.arange(num_frames(num_samples)) + 1) / VIDEO_FPS
    return np.minimum(ft, num_samples / SAMPLE_RATE)


def frame_emotions(eps, ft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden emotion at each frame instant: (int8 [F] emotion, 0 = neutral; [F] intensity 0-1).

    A frame takes the strongest episode emotion once it exceeds 0.1, else it is neutral (intensity 0).
    """
    fw = emotion_weights(eps, ft)
    emo_inten = fw[:, 1:].max(axis=1)
    frame_emotion = np.where(emo_inten > 0.1, 1 + fw[:, 1:].argmax(axis=1), NEUTRAL).astype(np.int8)
    return frame_emotion, np.where(frame_emotion > 0, emo_inten, 0.0)


def _face_intensity(frame_emotion, inten, rng_face, cfg: SyntheticConfig):
    """Expression strength shown by the face: (transition bool [F], face intensity [F], [F, 8] weights).

    On "neutral transition frames" (cfg.transition_prob of the emotional ones) the face drifts back
    towards neutral while the voice keeps the emotion; elsewhere it shows 75-100 % of the intensity.
    """
    nf = frame_emotion.shape[0]
    transition = (frame_emotion > 0) & (rng_face.random(nf) < cfg.transition_prob)
    atten = np.where(transition, rng_face.uniform(0.0, 0.3, nf), np.clip(rng_face.normal(1.0, 0.08, nf), 0.75, 1.0))
    face_inten = inten * atten
    face_w = np.zeros((nf, NUM_EMOTIONS))
    face_w[np.arange(nf), frame_emotion] = face_inten
    face_w[:, NEUTRAL] = 0.0
    return transition, face_inten, face_w


def talking_mouth(ctrl: dict, ft: np.ndarray) -> np.ndarray:
    """[F] speech envelope at each frame instant: voicing x (0.3 + 0.7 jaw openness of the vowel)."""
    ci = np.clip(np.rint(ft * SAMPLE_RATE / HOP).astype(int), 0, ctrl["t"].shape[0] - 1)
    return np.clip(ctrl["voiced"][ci], 0.0, 1.0) * (0.3 + 0.7 * ctrl["jaw"][ci])


def expression_probs(emotion: np.ndarray, intensity: np.ndarray, cfg: SyntheticConfig) -> np.ndarray:
    """[N, 8] what an observer perceives in N faces of `emotion` (int [N]) shown at `intensity` [N].

    (1 - i) x a calm face (cfg.neutral_confidence on neutral, the rest spread evenly) + i x the
    CONFUSION row of the emotion, floored at 3 % / 8 so that nothing is ever ruled out.
    """
    calm = 1.0 - intensity
    probs = np.zeros((emotion.shape[0], NUM_EMOTIONS))
    probs[:, NEUTRAL] = calm * cfg.neutral_confidence
    probs += (calm * (1.0 - cfg.neutral_confidence) / (NUM_EMOTIONS - 1))[:, None] * (
        np.arange(NUM_EMOTIONS) != NEUTRAL)
    probs += intensity[:, None] * CONFUSION[emotion]
    return 0.97 * probs + 0.03 / NUM_EMOTIONS


def oracle_logits(frame_emotion, face_inten, rng_face, cfg: SyntheticConfig):
    """Noisy oracle on the rendered expression: ([F, 8] expression probabilities, [F, 8] logits).

    logits = oracle_scale x log(expression_probs) + N(0, oracle_noise), each row centred to mean 0
    (a teacher's logits have no meaningful offset).
    """
    probs = expression_probs(frame_emotion, face_inten, cfg)
    logits = cfg.oracle_scale * np.log(probs) + rng_face.normal(0.0, cfg.oracle_noise, probs.shape)
    logits -= logits.mean(axis=1, keepdims=True)
    return probs, logits


def speech_rms(speech: np.ndarray) -> float:
    """RMS over the active part of a waveform (samples above 10 % of its peak); 1e-3 if silent."""
    active = np.abs(speech) > 0.1 * np.abs(speech).max()
    return math.sqrt(float(np.mean(speech[active] ** 2)) if active.any() else 1e-6)


def _record(speech: np.ndarray, speaker: Speaker, rng_rec, cfg: SyntheticConfig):
    """Recording chain -> (int16 [L] audio, SNR in dB): speech at 0.05 RMS x speaker loudness x a
    random track gain (3 dB std), coloured background noise at U(cfg.snr_db), peak-limited."""
    speech = speech / speech_rms(speech) * 0.05 * 10.0 ** ((speaker.loudness_db + rng_rec.normal(0, 3.0)) / 20.0)
    snr = rng_rec.uniform(*cfg.snr_db)
    noise = background_noise(speech.shape[0], rng_rec) * 0.05 * 10.0 ** ((speaker.loudness_db - snr) / 20.0)
    wave = speech + noise
    peak = float(np.abs(wave).max())
    if peak > PEAK_LEVEL:
        wave *= PEAK_LEVEL / peak
    return np.rint(wave * 32767.0).astype(np.int16), snr


def track_id(speaker: Speaker, track_index: int) -> str:
    """'<identity>/v<video>/<utterance>', e.g. track 5 of syn00012 -> 'syn00012/v001/00002'."""
    video, utt = divmod(track_index, TRACKS_PER_VIDEO)
    return f"{speaker.identity}/v{video:03d}/{utt + 1:05d}"


def track_index_from_id(track_id: str) -> int:
    """Inverse of the track_id naming: 'syn00012/v003/00002' -> 3 * TRACKS_PER_VIDEO + 1."""
    _, video, utt = track_id.split("/")
    return int(video[1:]) * TRACKS_PER_VIDEO + int(utt) - 1


def generate_track_with_latents(speaker: Speaker, track_index: int, split: int,
                                rng: np.random.Generator, cfg: SyntheticConfig):
    """Like ``generate_track`` but also returns the hidden variables (for tests and analysis):

    {'frame_time': [F] s, 'frame_intensity': [F] hidden emotion intensity, 'face_intensity': [F] after
     transition attenuation, 'transition': [F] bool, 'expression_probs': [F, 8], 'speech_env': [F],
     'ctrl_time', 'ctrl_f0', 'ctrl_voiced', 'ctrl_weights' (8 ms control grid), 'episodes', 'snr_db'}.
    """
    duration = float(rng.uniform(cfg.min_track_seconds, cfg.max_track_seconds))
    num_samples = int(round(duration * SAMPLE_RATE))
    duration = num_samples / SAMPLE_RATE
    eps = episodes(speaker.emotion_prior, speaker.expressiveness, duration, rng, cfg)
    rng_voice = np.random.default_rng(rng.integers(2 ** 63))
    rng_face = np.random.default_rng(rng.integers(2 ** 63))
    rng_rec = np.random.default_rng(rng.integers(2 ** 63))

    speech, ctrl = synth_voice(speaker, num_samples, eps, rng_voice)
    ft = frame_times(num_samples)
    frame_emotion, inten = frame_emotions(eps, ft)
    transition, face_inten, face_w = _face_intensity(frame_emotion, inten, rng_face, cfg)
    speech_env = talking_mouth(ctrl, ft)
    faces = render_faces(speaker.face, face_expression(face_w), 0.5 * speech_env, rng_face,
                         size=cfg.face_size, noise_std=cfg.face_noise)
    probs, logits = oracle_logits(frame_emotion, face_inten, rng_face, cfg)
    audio, snr = _record(speech, speaker, rng_rec, cfg)

    track = {
        "track_id": track_id(speaker, track_index),
        "identity": speaker.identity,
        "split": int(split),
        "audio": audio,
        "logits": logits.astype(np.float32),
        "faces": faces,
        "frame_emotion": frame_emotion,
    }
    latents = {
        "frame_time": ft, "frame_intensity": inten, "face_intensity": face_inten,
        "transition": transition, "expression_probs": probs, "speech_env": speech_env,
        "ctrl_time": ctrl["t"], "ctrl_f0": ctrl["f0"], "ctrl_voiced": ctrl["voiced"],
        "ctrl_weights": ctrl["weights"], "episodes": eps, "snr_db": snr,
    }
    return track, latents


def generate_track(speaker: Speaker, track_index: int, split: int, rng: np.random.Generator,
                   cfg: SyntheticConfig) -> dict:
    """One track dict (schema of cmemo_jax.data.records): track_id, identity, split, audio (int16),
    logits (float32 [F, 8]), faces (uint8 [F, S, S]), frame_emotion (int8 [F], 0 = neutral).

    Pass ``track_rng(cfg, speaker, track_index)`` as `rng` for the corpus's deterministic stream.
    """
    return generate_track_with_latents(speaker, track_index, split, rng, cfg)[0]
