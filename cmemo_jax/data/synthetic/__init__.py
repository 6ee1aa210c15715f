"""Embedded synthetic audio-visual emotion corpus: the package's offline default dataset.

One hidden emotion trajectory per track drives both modalities:

* a rendered 48x48 grey face per 0.24 s frame (EmoVoxCeleb frame rate), whose expression follows the
  hidden emotion and intensity, with "neutral transition frames", pose / illumination jitter and a
  mouth that opens with the speech envelope;
* a synthesised 16 kHz voice (source-filter: Rosenberg glottal pulses with time-varying f0, aspiration
  and fricative noise, moving formants applied by short-time Fourier filtering, spectral tilt,
  background noise), whose prosody (pitch level and range, rate, loudness, brightness, jitter,
  breathiness, pauses, contour shape) follows the same hidden emotion;
* frame logits from a noisy *oracle* on the rendered expression (a stand-in until a real face teacher
  has labelled the faces): ``a * log(expression_probs) + noise``.

Speakers have a persistent identity (pitch, vocal-tract length, rate, loudness, face geometry) and a
personal emotion prior, so identity is a usable shortcut; the heard / unheard validation splits
measure how much a student leans on it.

Everything is numpy/scipy and deterministic: each track's random stream is seeded from
``(seed, speaker index, track index)``, so the same config gives the same tracks in any order and
in any number of worker processes. ``ensure_corpus`` writes the record shards of
``cmemo_jax.data.records`` (TensorFlow is imported only there, lazily).

Modules: ``config`` (SyntheticConfig, presets), ``emotions`` (emotion indices, episodes, confusions),
``speakers`` (identities, random streams, splits), ``voice`` (speech and noise synthesis), ``faces``
(face rendering), ``tracks`` (one track + oracle logits), ``workers`` (generator processes),
``corpus`` (cache naming, ``ensure_corpus``); other synthetic sets in the real datasets' formats:
``ferplus`` (FERPlus csv files), ``acted`` (RML and eNTERFACE'05 style .avi trees).

Public API::

    SyntheticConfig (.tiny(), .demo(), .default())   Speaker   generate_speakers(cfg)
    generate_track(speaker, track_index, split, rng, cfg) -> track dict
    generate_track_with_latents(...) -> (track dict, latents dict)   (face intensity, transition flags...)
    track_rng(cfg, speaker, track_index)   split_assignment(cfg, speaker)   track_index_from_id(track_id)
    render_faces(face, expr, talk, rng, size, noise_std, pose_jitter)   face_expression(face_w)
    generate_tracks(cfg, split_name, num_workers=0) -> Iterator[track dict]
    corpus_name(cfg)   config_hash(cfg)   corpus_root(cache_dir=None)
    ensure_corpus(cache_dir, cfg, num_shards=None, num_workers=None) -> directory
    write_ferplus(out_dir, cfg, n_train, n_public, n_private, seed) -> {'fer2013': path, 'fer2013new': path}
    ensure_ferplus(cache_dir, preset, seed) -> folder of fer2013.csv + fer2013new.csv (cached)
    write_rml(out_dir, cfg, n_speakers, clips_per_emotion, seed) -> [ActedClip(path, emotion, speaker)]
    write_enterface(out_dir, cfg, n_subjects, sentences, seed) -> [ActedClip(path, emotion, speaker)]
    python -m cmemo_jax.data.synthetic [CACHE_DIR] [tiny|demo|default]
"""
from cmemo_jax.data.synthetic.acted import (ENTERFACE_CHAIN, RML_CHAIN, ActedClip, RecordingChain,
                                            write_enterface, write_rml)
from cmemo_jax.data.synthetic.config import PRESETS, SyntheticConfig, preset
from cmemo_jax.data.synthetic.corpus import (CACHE_SUBDIR, COMPLETE_MARKER, GENERATOR_VERSION, SPLITS,
                                             config_hash, corpus_name, corpus_root, ensure_corpus,
                                             generate_tracks, mark_complete, remove_stale_temporaries)
from cmemo_jax.data.synthetic.emotions import (ANGER, CONFUSION, CONTEMPT, DISGUST, FEAR, HAPPINESS,
                                               NEUTRAL, SADNESS, SURPRISE, emotion_weights, episodes)
from cmemo_jax.data.synthetic.faces import FACE_KEYS, draw_face_params, face_expression, render_faces
from cmemo_jax.data.synthetic.ferplus import FER2013_CODES, ensure_ferplus, write_ferplus
from cmemo_jax.data.synthetic.speakers import (Speaker, draw_speaker, generate_speakers, make_speaker,
                                               split_assignment, split_jobs, track_rng)
from cmemo_jax.data.synthetic.tracks import (TRACKS_PER_VIDEO, expression_probs, generate_track,
                                             generate_track_with_latents, num_frames, oracle_logits,
                                             track_id, track_index_from_id)
from cmemo_jax.data.synthetic.voice import background_noise, synth_voice

# The names these had when the corpus was one module (tests and notebooks use them).
_FACE_KEYS = FACE_KEYS
_face_expression = face_expression

__all__ = [
    "ENTERFACE_CHAIN", "RML_CHAIN", "ActedClip", "RecordingChain", "write_enterface", "write_rml",
    "PRESETS", "SyntheticConfig", "preset",
    "CACHE_SUBDIR", "COMPLETE_MARKER", "GENERATOR_VERSION", "SPLITS", "config_hash", "corpus_name",
    "corpus_root", "ensure_corpus", "generate_tracks", "mark_complete", "remove_stale_temporaries",
    "ANGER", "CONFUSION", "CONTEMPT", "DISGUST", "FEAR", "HAPPINESS", "NEUTRAL", "SADNESS", "SURPRISE",
    "emotion_weights", "episodes",
    "FACE_KEYS", "draw_face_params", "face_expression", "render_faces",
    "FER2013_CODES", "ensure_ferplus", "write_ferplus",
    "Speaker", "draw_speaker", "generate_speakers", "make_speaker", "split_assignment", "split_jobs",
    "track_rng",
    "TRACKS_PER_VIDEO", "expression_probs", "generate_track", "generate_track_with_latents", "num_frames", "oracle_logits",
    "track_id", "track_index_from_id",
    "background_noise", "synth_voice",
]
