"""Rendered 48x48 grey faces whose expression follows the hidden emotion.

A face is a speaker's *appearance* (a tuple in ``FACE_KEYS`` order, drawn by ``draw_face_params``)
plus per-frame *expression* parameters (``face_expression`` of the frame's emotion intensities) plus
a talking mouth. ``render_faces`` paints, vectorised over frames and pixels, an anti-aliased head
with hair, eyes and brows, nose, smile lines and mouth, under a jittered pose and drifting light.
Face coordinates: x right, y down, both about [-1, 1] over the crop; the head is centred near
(0, 0.02).
"""
from __future__ import annotations

import math

import numpy as np

from cmemo_jax.constants import NUM_EMOTIONS
from cmemo_jax.data.synthetic.emotions import NEUTRAL

# Expression offsets of a full-intensity face, per emotion (neutral 0); coordinates in face units.
#                      neu   hap   sur   sad   ang   dis   fea   con
_FACE = {
    "eye_open":     np.array([0.0, -0.35, 0.65, -0.3, -0.3, -0.5, 0.55, -0.15]),
    "brow_raise":   np.array([0.0, 0.01, 0.10, -0.01, -0.07, -0.05, 0.06, 0.0]),
    "brow_inner":   np.array([0.0, 0.0, 0.02, 0.08, -0.08, -0.03, 0.07, 0.0]),
    "mouth_curve":  np.array([0.0, 1.0, 0.0, -0.9, -0.45, -0.5, -0.35, 0.1]),
    "mouth_asym":   np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
    "mouth_open":   np.array([0.0, 0.35, 1.1, 0.0, 0.25, 0.15, 0.55, 0.0]),
    "mouth_width":  np.array([0.0, 0.3, -0.35, -0.08, -0.12, 0.0, 0.22, 0.05]),
    "nose_wrinkle": np.array([0.0, 0.0, 0.0, 0.0, 0.25, 1.0, 0.0, 0.15]),
    "lip_raise":    np.array([0.0, 0.0, 0.0, 0.0, 0.2, 1.0, 0.0, 0.2]),
    "cheek":        np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.35]),
}
assert all(v.shape == (NUM_EMOTIONS,) and v[NEUTRAL] == 0.0 for v in _FACE.values())

# Appearance parameters of a face, in the order of Speaker.face.
FACE_KEYS = ("head_w", "head_h", "skin", "bg", "hair", "hair_y", "eye_x", "eye_y", "eye_size",
             "brow_thick", "mouth_y", "mouth_w", "nose_len", "beard")


def draw_face_params(rng: np.random.Generator, female: bool) -> tuple:
    """One identity's appearance: a tuple of floats in FACE_KEYS order (grey levels 0-255, lengths
    in face units). Consumes a fixed sequence of draws from `rng` (speaker identities depend on it)."""
    face = (
        rng.uniform(0.60, 0.74),                  # head_w
        rng.uniform(0.80, 0.92),                  # head_h
        rng.uniform(135, 205),                    # skin grey level
        rng.uniform(30, 230),                     # background
        rng.uniform(15, 90) if rng.random() < 0.85 else rng.uniform(170, 230),  # hair
        rng.uniform(-0.62, -0.45),                # hair line
        rng.uniform(0.25, 0.33),                  # eye_x
        rng.uniform(-0.22, -0.12),                # eye_y
        rng.uniform(0.9, 1.15),                   # eye_size
        rng.uniform(0.035, 0.06),                 # brow thickness
        rng.uniform(0.40, 0.50),                  # mouth_y
        rng.uniform(0.20, 0.27),                  # mouth half width
        rng.uniform(0.9, 1.1),                    # nose length
        float((not female) and rng.random() < 0.3) * rng.uniform(0.15, 0.4),  # beard darkness
    )
    return tuple(float(v) for v in face)


def face_expression(face_w: np.ndarray) -> dict:
    """[F, 8] face emotion intensities (neutral column ignored) -> dict of [F] expression parameters."""
    return {k: face_w[:, 1:] @ v[1:] for k, v in _FACE.items()}


def _soft(d: np.ndarray, w) -> np.ndarray:
    """Anti-aliased inside mask from a signed distance-like value (negative inside), edge width w."""
    return np.clip(0.5 - d / w, 0.0, 1.0)


def _ar1(rng: np.random.Generator, n: int, rho: float, std: float) -> np.ndarray:
    """Stationary AR(1) sequence [n] (smooth jitter); a short Python loop over frames only."""
    e = rng.normal(0.0, std * math.sqrt(1.0 - rho ** 2), n)
    out = np.empty(n)
    prev = rng.normal(0.0, std)
    for i in range(n):
        prev = rho * prev + e[i]
        out[i] = prev
    return out


def _col(v) -> np.ndarray:
    """[F] (or scalar) -> [F, 1, 1] float64, to broadcast a per-frame value over pixels."""
    return np.asarray(v, dtype=np.float64).reshape(-1, 1, 1)


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Unposed face coordinates of the pixel centres: (gy, gx) [size, size] and the pixel pitch."""
    px = 2.0 / size
    g = ((np.arange(size) + 0.5) * px - 1.0) * 0.9   # zoom: the head fills most of the crop
    gy, gx = np.meshgrid(g, g, indexing="ij")
    return gy, gx, px


def _posed_coords(rng, nf: int, size: int, pose_jitter: float):
    """Face coordinates of every pixel under a smooth random shift / rotation / scale per frame.

    Returns (x, y) [F, size, size], w [F, 1, 1] (anti-aliasing edge width, 1.2 pixels in face
    units) and gy [size, size] (the unposed rows, for the background gradient).
    """
    gy, gx, px = _pixel_grid(size)
    pj = float(pose_jitter)
    dx = _col(pj * (_ar1(rng, nf, 0.8, 0.04) + rng.normal(0, 0.03)))
    dy = _col(pj * (_ar1(rng, nf, 0.8, 0.035) + rng.normal(0, 0.03)))
    rot = _col(pj * np.deg2rad(_ar1(rng, nf, 0.8, 4.0) + rng.normal(0, 2.0)))
    scale = _col(np.exp(pj * (_ar1(rng, nf, 0.8, 0.03) + rng.normal(0, 0.04))))
    cr, sr_ = np.cos(rot), np.sin(rot)
    x0, y0 = gx[None] - dx, gy[None] - dy
    x = (cr * x0 + sr_ * y0) / scale
    y = (-sr_ * x0 + cr * y0) / scale
    w = px / scale[..., 0:1, 0:1] * 1.2
    return x, y, w, gy


def _paint_head(p: dict, x, y, w, gy, nf: int, size: int) -> np.ndarray:
    """Background gradient, head ellipse, hair above the hair line, optional beard: [F, S, S] float."""
    img = np.broadcast_to(p["bg"] + 25.0 * gy[None] * (1 if p["bg"] < 128 else -1), (nf, size, size)).copy()
    hw, hh = p["head_w"], p["head_h"]
    rr = np.sqrt((x / hw) ** 2 + ((y - 0.02) / hh) ** 2)
    head = _soft((rr - 1.0) * min(hw, hh), w)
    img = img * (1 - head) + p["skin"] * head
    # Hair: inside a slightly larger ellipse, above a hair line that curves down at the temples.
    rr_h = np.sqrt((x / (hw * 1.06)) ** 2 + ((y + 0.02) / (hh * 1.04)) ** 2)
    hair = _soft((rr_h - 1.0) * hw, w) * _soft(y - (p["hair_y"] + 0.08 * (x / hw) ** 2), w)
    img = img * (1 - hair) + p["hair"] * hair
    if p["beard"] > 0:
        beard = head * _soft(0.30 - y, w * 2) * (1 - _soft(np.abs(x) - 0.5 * hw, w))
        img = img * (1 - p["beard"] * beard)
    return img


def _paint_cheeks(img, p: dict, e: dict, x, y) -> np.ndarray:
    """Cheek shading: raised cheeks for smiles, stronger on one side for contempt's asymmetry."""
    ex, ey = p["eye_x"], p["eye_y"]
    for s in (-1.0, 1.0):
        ch_w = e["cheek"] * (1.0 if s > 0 else (1.0 - 0.7 * np.clip(e["mouth_asym"], 0, 1)))
        cheek = np.exp(-(((x - s * (ex + 0.02)) / 0.12) ** 2 + ((y - (ey + 0.22)) / 0.07) ** 2))
        img = img * (1 - 0.10 * ch_w * cheek)
    return img


def _paint_eyes_and_brows(img, p: dict, e: dict, x, y, w) -> np.ndarray:
    """Sclera, pupil and lid line of both eyes (opening from the expression) and the brows above."""
    ex, ey = p["eye_x"], p["eye_y"]
    eye_open = np.clip(1.0 + e["eye_open"], 0.08, 2.0)
    ew, eh = 0.105 * p["eye_size"], 0.05 * p["eye_size"] * eye_open
    for s in (-1.0, 1.0):
        ux, uy = x - s * ex, y - ey
        r_e = np.sqrt((ux / ew) ** 2 + (uy / eh) ** 2)
        sclera = _soft((r_e - 1.0) * eh, w)
        img = img * (1 - sclera) + 235.0 * sclera
        pupil = _soft(np.sqrt(ux ** 2 + uy ** 2) - 0.042 * p["eye_size"], w) * sclera
        img = img * (1 - pupil) + 25.0 * pupil
        lid = _soft(np.abs(r_e - 1.0) * eh - 0.012, w) * (uy < 0.2 * eh)
        img = img * (1 - 0.7 * lid)

        # Brow: arched band; raise lifts it, inner raise tilts its inner end.
        u = (x - s * ex) * s                      # + towards the face's outside
        tb = np.clip((u + 0.13) / 0.26, 0.0, 1.0)  # 0 inner end, 1 outer end
        yb = (ey - 0.12 * p["eye_size"] - 0.03 - e["brow_raise"] - e["brow_inner"] * (1.0 - tb)
              - 0.025 * (1.0 - (2.0 * tb - 1.0) ** 2))
        brow = _soft(np.maximum(np.abs(y - yb) - 0.5 * p["brow_thick"], np.abs(u) - 0.13), w)
        img = img * (1 - 0.75 * brow) + 0.75 * brow * 40.0
    return img


def _nose_bottom(p: dict) -> float:
    """y of the nose tip (face units)."""
    return 0.22 * p["nose_len"]


def _paint_nose(img, p: dict, e: dict, x, y, w) -> np.ndarray:
    """Shaded ridge, nostrils (lifted with the upper lip) and the wrinkles of disgust."""
    ey = p["eye_y"]
    nose_bot = _nose_bottom(p)
    ridge = _soft(np.maximum(np.abs(x - 0.03) - 0.012, np.abs(y - 0.5 * (ey + nose_bot)) - 0.5 * (nose_bot - ey)), w)
    img = img * (1 - 0.12 * ridge)
    for s in (-1.0, 1.0):
        nos = _soft(np.sqrt(((x - s * 0.055) / 1.4) ** 2 + (y - nose_bot - 0.01 - 0.02 * e["lip_raise"]) ** 2) - 0.022, w)
        img = img * (1 - 0.55 * nos)
    for k in range(3):
        wy = ey + 0.06 + 0.035 * k
        wr = _soft(np.maximum(np.abs(y - wy) - 0.009, np.abs(x) - 0.075), w)
        img = img * (1 - 0.55 * np.clip(e["nose_wrinkle"], 0, 1) * wr)
    return img


def _mouth_half_width(p: dict, e: dict) -> np.ndarray:
    """[F, 1, 1] mouth half width: the identity's, widened by smiles / fear, narrowed by surprise."""
    return p["mouth_w"] * np.clip(1.0 + e["mouth_width"], 0.5, 1.6)


def _paint_smile_lines(img, p: dict, e: dict, x, y, w) -> np.ndarray:
    """Nasolabial lines from the nostrils to the mouth corners, as deep as the cheeks are raised."""
    nose_bot, my = _nose_bottom(p), p["mouth_y"]
    mw = _mouth_half_width(p, e)
    for s in (-1.0, 1.0):
        frac = np.clip((y - nose_bot) / (my - nose_bot), 0.0, 1.0)
        xl = s * (0.10 + (mw + 0.03 - 0.10) * frac)
        line = _soft(np.maximum(np.abs(x - xl) - 0.012, np.abs(y - 0.5 * (nose_bot + my)) - 0.5 * (my - nose_bot)), w)
        img = img * (1 - 0.45 * np.clip(e["cheek"], 0, 1) * line)
    return img


def _paint_mouth(img, p: dict, e: dict, talk, x, y, w) -> np.ndarray:
    """Lips and the dark inside of the mouth.

    The lip line curves with the smile / frown, one corner rises for contempt, the opening sums the
    expression's and the talking's, and the upper lip lifts for disgust.
    """
    my = p["mouth_y"]
    mw = _mouth_half_width(p, e)
    xn = x / mw
    curve, asym = e["mouth_curve"], e["mouth_asym"]
    yl = my - curve * 0.1 * xn ** 2 - asym * 0.08 * np.clip(xn, 0.0, 1.0) ** 2
    opening = np.clip(e["mouth_open"] + _col(talk), 0.0, 1.6)
    shape = np.sqrt(np.clip(1.0 - xn ** 2, 0.0, 1.0))
    h_up = (0.025 * opening + 0.03 * e["lip_raise"]) * shape
    h_dn = 0.075 * opening * shape
    out_x = (np.abs(xn) - 1.0) * mw
    lips = _soft(np.maximum(out_x - 0.01, np.maximum(yl - h_up - 0.018 - y, y - (yl + h_dn + 0.02))), w)
    img = img * (1 - lips) + lips * (0.62 * p["skin"])
    inside = _soft(np.maximum(out_x + 0.015, np.maximum(yl - h_up - y, y - (yl + h_dn))), w)
    return img * (1 - inside) + inside * 28.0


def _illuminate(img, rng, x, nf: int, noise_std: float) -> np.ndarray:
    """Directional light drifting over the track, global brightness, pixel noise -> uint8 [F, S, S]."""
    light_dir = rng.uniform(-0.35, 0.35)
    light = light_dir + _col(_ar1(rng, nf, 0.9, 0.06))
    bright = np.exp(rng.normal(0.0, 0.12) + _col(_ar1(rng, nf, 0.9, 0.04)))
    img = img * bright * (1.0 + light * x * 0.6)
    img = img + rng.normal(0.0, noise_std, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_faces(face: tuple, expr: dict, talk: np.ndarray, rng: np.random.Generator,
                 size: int = 48, noise_std: float = 5.0, pose_jitter: float = 1.0) -> np.ndarray:
    """Renders [F, size, size] uint8 grey faces, vectorised over frames and pixels.

    face: appearance (FACE_KEYS order); expr: dict of [F] expression parameters (``face_expression``);
    talk: [F] extra mouth opening from the speech at each frame's instant. pose_jitter scales the
    random head pose (0: frontal, centred, unit scale). Pixel (i, j) samples face coordinates
    x = (2 (j + 0.5) / size - 1) * 0.9, y likewise from i (y points down; the head ellipse is
    centred near (0, 0.02)). noise_std: pixel noise std in grey levels.
    """
    p = dict(zip(FACE_KEYS, face))
    nf = talk.shape[0]
    x, y, w, gy = _posed_coords(rng, nf, size, pose_jitter)
    e = {k: _col(v) for k, v in expr.items()}
    img = _paint_head(p, x, y, w, gy, nf, size)
    img = _paint_cheeks(img, p, e, x, y)
    img = _paint_eyes_and_brows(img, p, e, x, y, w)
    img = _paint_nose(img, p, e, x, y, w)
    img = _paint_smile_lines(img, p, e, x, y, w)
    img = _paint_mouth(img, p, e, talk, x, y, w)
    return _illuminate(img, rng, x, nf, noise_std)
