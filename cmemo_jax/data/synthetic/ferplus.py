"""Synthetic FERPlus: rendered 48x48 grey faces with ten simulated annotators' votes, in the release's
two csv files (docs/method.md §3; read by ``cmemo_jax.data.ferplus``).

Each face is a new identity (appearance drawn like a corpus speaker's, from a stream of its own)
showing one emotion at some intensity, rendered by the corpus's face renderer under a random pose,
light and pixel noise. Ten annotators then vote from what an observer perceives in that face
(``tracks.expression_probs``: the corpus's confusion structure, blended with a calm face as the
intensity falls), so strong expressions get near-unanimous votes, subtle ones split between the
emotion, neutral and its confusable neighbours, and ambiguous faces collect 'unknown' votes. As in
the real release a few images are not faces (blank or noise: mostly NF votes) and a few rows have
no image name (images FERPlus removed). Everything is a function of the seed.

Files (exactly the real formats)::

    fer2013.csv      emotion,pixels,Usage      emotion: the old FER2013 code (FER2013_CODES)
    fer2013new.csv   Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,
                     unknown,NF                Image name 'fer0000123.png' (the row index) or empty

Rows are Training, then PublicTest, then PrivateTest, paired row by row across the two files.

    write_ferplus(out_dir, cfg=None, n_train=..., n_public=..., n_private=..., seed=0) -> {name: path}
    ensure_ferplus(cache_dir, preset='demo', seed=0) -> folder (generated once, cached)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from cmemo_jax.constants import EMOTIONS, NUM_EMOTIONS
from cmemo_jax.data.ferplus import (FER2013_COLUMNS, FER2013_FILE, FERPLUS_COLUMNS, FERPLUS_FILE,
                                    IMAGE_SIZE, NUM_VOTES, USAGE_TO_SPLIT)
from cmemo_jax.data.synthetic.config import PRESETS, SyntheticConfig, preset as config_preset
from cmemo_jax.data.synthetic.corpus import (COMPLETE_MARKER, GENERATOR_VERSION, mark_complete,
                                             remove_stale_temporaries)
from cmemo_jax.data.synthetic.emotions import NEUTRAL
from cmemo_jax.data.synthetic.faces import draw_face_params, face_expression, render_faces
from cmemo_jax.data.synthetic.speakers import STREAM_FERPLUS
from cmemo_jax.data.synthetic.tracks import expression_probs

# Bump when the output for given arguments changes (part of ensure_ferplus's cache name).
FERPLUS_VERSION = 1

# The 7 FER2013 classes: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
# FER2013 had no contempt: its nearest class is disgust (the CONFUSION row of contempt puts its
# largest non-neutral mass there).
FER2013_CODES = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5,
                 "neutral": 6, "contempt": 1}
NUM_ANNOTATORS = 10
USAGES = tuple(USAGE_TO_SPLIT)            # Training, PublicTest, PrivateTest: the files' row order

# (n_train, n_public, n_private) of ensure_ferplus's presets: ~100 faces for tests, a few thousand
# for the CPU demo, 12k for the default (the real release has 28,709 / 3,589 / 3,589).
SIZES = {"tiny": (80, 10, 10), "demo": (2400, 300, 300), "default": (9600, 1200, 1200)}

# Share of each emotion among the faces (EMOTIONS order): roughly FERPlus's majority labels, with
# disgust, fear and contempt raised to a few per cent so that a demo-size set has them all.
_EMOTION_SHARES = np.array([0.33, 0.25, 0.11, 0.11, 0.08, 0.03, 0.05, 0.04])
NOT_FACE_FRACTION = 0.01        # images that are not faces (blank or noise)
_UNKNOWN_BASE, _UNKNOWN_SLOPE = 0.02, 0.20   # P(unknown) = base + slope x (1 - top perceived prob)
_STRAY_NF = 0.003               # P(NF) for a real face: an annotator's slip
# People agree on a clear face more than the corpus's deliberately blurry oracle: an annotator's
# choice follows the perceived probabilities raised to this power (renormalised).
_AGREEMENT = 1.5
_VOTE_CONCENTRATION = 60.0      # Dirichlet spread of a face's vote distribution around its mean

# Sub-stream tags under STREAM_FERPLUS.
_LAYOUT, _FACE = 0, 1


@dataclasses.dataclass(frozen=True)
class FaceRow:
    """One row of both files.

    usage: 'Training' | 'PublicTest' | 'PrivateTest'; emotion: index into EMOTIONS (the face's
    hidden truth; for a non-face a random one, which only feeds the old FER2013 code); intensity
    0-1; kind: 'face' | 'blank' | 'noise'; named: False for the rows without an image name.
    """
    index: int
    usage: str
    emotion: int
    intensity: float
    kind: str
    named: bool


def _layout(n_train: int, n_public: int, n_private: int, seed: int) -> list[FaceRow]:
    """Every row's usage, emotion, intensity and kind. At least 2 non-faces and 1 unnamed row once
    there are 2 rows or more, so that even a test-size set has each oddity of the real file."""
    counts = (n_train, n_public, n_private)
    n = sum(counts)
    rng = np.random.default_rng([int(seed), STREAM_FERPLUS, _LAYOUT])
    usage = np.repeat(np.arange(3), counts)
    emotion = rng.choice(NUM_EMOTIONS, size=n, p=_EMOTION_SHARES / _EMOTION_SHARES.sum())
    # Subtle expressions are common in the wild: intensity ~ Beta(2, 1) over [0.15, 1].
    intensity = np.where(emotion == NEUTRAL, 0.0, 0.15 + 0.85 * rng.beta(2.0, 1.0, size=n))
    n_nf = min(n, max(2 if n >= 2 else 0, int(round(NOT_FACE_FRACTION * n))))
    not_face = rng.permutation(n)[:n_nf]
    kind = np.full(n, "face", dtype=object)
    kind[not_face] = np.where(rng.random(n_nf) < 0.5, "blank", "noise")
    named = np.ones(n, bool)
    if n_nf:
        named[not_face[:max(1, n_nf // 2)]] = False   # images FERPlus removed: no name
    return [FaceRow(index=i, usage=USAGES[usage[i]], emotion=int(emotion[i]),
                    intensity=float(intensity[i]), kind=str(kind[i]), named=bool(named[i]))
            for i in range(n)]


def _render_face(row: FaceRow, rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """[48, 48] uint8: a new identity showing the row's emotion; a photo may catch a talking mouth."""
    face = draw_face_params(rng, female=bool(rng.random() < 0.5))
    face_w = np.zeros((1, NUM_EMOTIONS))
    if row.emotion != NEUTRAL:
        face_w[0, row.emotion] = row.intensity
    talk = np.array([rng.uniform(0.0, 0.3) if rng.random() < 0.3 else 0.0])
    return render_faces(face, face_expression(face_w), talk, rng, size=IMAGE_SIZE,
                        noise_std=cfg.face_noise)[0]


def _render_not_face(kind: str, rng: np.random.Generator) -> np.ndarray:
    """[48, 48] uint8 image that is not a face: a flat grey card, or smoothed random noise."""
    if kind == "blank":
        img = rng.uniform(0, 255) + rng.normal(0.0, 2.0, (IMAGE_SIZE, IMAGE_SIZE))
    else:
        coarse = rng.uniform(0, 255, (IMAGE_SIZE // 8, IMAGE_SIZE // 8))
        img = np.kron(coarse, np.ones((8, 8))) + rng.normal(0.0, 20.0, (IMAGE_SIZE, IMAGE_SIZE))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def vote_probabilities(emotion: int, intensity: float, kind: str, cfg: SyntheticConfig) -> np.ndarray:
    """[10] probability of each answer (VOTE_NAMES order: 8 emotions, unknown, NF) for one annotator.

    A face: the perceived expression (``expression_probs``: wider, and leaning to neutral, as the
    intensity falls) sharpened by _AGREEMENT, with 'unknown' growing as the top emotion weakens and a
    rare stray NF. A non-face: mostly NF, some unknown, a little neutral.
    """
    if kind != "face":
        return np.array([0.03] + [0.0] * (NUM_EMOTIONS - 1) + [0.12, 0.85])
    seen = expression_probs(np.array([emotion]), np.array([intensity]), cfg)[0] ** _AGREEMENT
    seen /= seen.sum()
    p_unknown = _UNKNOWN_BASE + _UNKNOWN_SLOPE * (1.0 - seen.max())
    return np.concatenate([seen * (1.0 - p_unknown - _STRAY_NF), [p_unknown, _STRAY_NF]])


def _votes(row: FaceRow, rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """[10] int vote counts summing to NUM_ANNOTATORS. The face's own vote distribution scatters
    around ``vote_probabilities`` (faces differ beyond their label); removed rows: all NF."""
    if not row.named:
        return np.eye(NUM_VOTES, dtype=np.int64)[-1] * NUM_ANNOTATORS
    p = vote_probabilities(row.emotion, row.intensity, row.kind, cfg)
    p = rng.dirichlet(_VOTE_CONCENTRATION * p + 1e-3)
    return rng.multinomial(NUM_ANNOTATORS, p)


def _row_content(row: FaceRow, seed: int, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """(pixels uint8 [48, 48], votes int [10], FER2013 code) of a row, from the row's own stream."""
    rng = np.random.default_rng([int(seed), STREAM_FERPLUS, _FACE, row.index])
    image = _render_face(row, rng, cfg) if row.kind == "face" else _render_not_face(row.kind, rng)
    votes = _votes(row, rng, cfg)
    code = FER2013_CODES[EMOTIONS[row.emotion]]
    return image, votes, code


def _image_name(row: FaceRow) -> str:
    return f"fer{row.index:07d}.png" if row.named else ""


def write_ferplus(out_dir: str, cfg: SyntheticConfig | None = None, n_train: int = SIZES["demo"][0],
                  n_public: int = SIZES["demo"][1], n_private: int = SIZES["demo"][2],
                  seed: int = 0) -> dict[str, str]:
    """Writes OUT_DIR/fer2013.csv and OUT_DIR/fer2013new.csv (formats in the module docstring).

    Args:
      cfg: face noise and observer calibration (face_noise, neutral_confidence); SyntheticConfig().
      n_train, n_public, n_private: rows with Usage Training / PublicTest / PrivateTest.
      seed: the set's seed; the same arguments give byte-identical files.
    Returns:
      {'fer2013': path, 'fer2013new': path}. Each file is written under a temporary name and
      renamed when complete.
    """
    cfg = cfg or SyntheticConfig()
    os.makedirs(out_dir, exist_ok=True)
    paths = {"fer2013": os.path.join(out_dir, FER2013_FILE), "fer2013new": os.path.join(out_dir, FERPLUS_FILE)}
    temps = {k: f"{p}.tmp-{os.getpid()}" for k, p in paths.items()}
    with open(temps["fer2013"], "w", newline="") as fer, open(temps["fer2013new"], "w", newline="") as new:
        fer.write(",".join(FER2013_COLUMNS) + "\n")
        new.write(",".join(FERPLUS_COLUMNS) + "\n")
        for row in _layout(n_train, n_public, n_private, seed):
            image, votes, code = _row_content(row, seed, cfg)
            fer.write(f"{code},{' '.join(map(str, image.ravel().tolist()))},{row.usage}\n")
            new.write(f"{row.usage},{_image_name(row)},{','.join(map(str, votes.tolist()))}\n")
    for k in paths:
        os.replace(temps[k], paths[k])
    return paths


def ferplus_name(sizes: tuple[int, int, int], seed: int, cfg: SyntheticConfig) -> str:
    """Cache folder name: 'ferplus-v<versions>-<12 hex digits over sizes, seed and config>'."""
    blob = json.dumps({"generator": GENERATOR_VERSION, "ferplus": FERPLUS_VERSION, "sizes": list(sizes),
                       "seed": int(seed), "config": cfg.to_dict()}, sort_keys=True)
    return f"ferplus-v{GENERATOR_VERSION}.{FERPLUS_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def ensure_ferplus(cache_dir: str, preset: str = "demo", seed: int = 0) -> str:
    """The folder holding a synthetic FERPlus of a preset's size (SIZES), generated on first use.

    cache_dir: where the synthetic sets live (``corpus.corpus_root()``); preset: 'tiny' | 'demo' |
    'default'. Returns ``cache_dir/<ferplus_name>/``, complete once its '_COMPLETE' marker exists.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic FERPlus preset {preset!r}; expected one of {PRESETS}")
    cfg, sizes = config_preset(preset), SIZES[preset]
    out_dir = os.path.join(cache_dir, ferplus_name(sizes, seed, cfg))
    if os.path.isdir(out_dir):
        remove_stale_temporaries(out_dir)
    if os.path.exists(os.path.join(out_dir, COMPLETE_MARKER)):
        return out_dir
    write_ferplus(out_dir, cfg, *sizes, seed=seed)
    mark_complete(out_dir, ferplus_name(sizes, seed, cfg))
    return out_dir
