"""Reader for the authors' EmoVoxCeleb teacher logits, `senet50-ferplus-logits.mat`.

Assumed layout (from the authors' MatConvNet code, which builds an `imdb` struct and saves it with
`save(path, '-struct', 'imdb')`, so its fields are top-level variables of the .mat file):

    wavLogits       cell {1 x N}; cell i: single [n_i, 8] teacher logits of track i, one row per
                    0.24 s (25 fps, stride 6). Stored transposed ([8, n_i]) is also accepted: the
                    dimension equal to 8 is the emotion axis ([8, 8] is read as MATLAB's [n, 8]).
                    Empty cells (tracks without face frames) come back as [0, 8].
    images.name     cell {1 x N} of char: 'id10001/1zcIwhmdeo4/00001.wav' (relative wav path; an
                    extension, if any, is dropped for the track id) -- or a char matrix, one row each
    images.set      numeric [1 x N]: 1 train, 2 unheard-identity val, 3 heard-identity val
    images.id       numeric [1 x N]: a running track index (kept as 'index'; not the speaker)
    images.video    cell {1 x N} of char (optional): YouTube id
    images.track    numeric [1 x N] (optional): face-track number within the video
    (other fields such as images.denseFrames are ignored)

The speaker identity is the first path component of images.name ('id10001'), as in the authors' code.
MATLAB v5/v7 files are read with scipy.io.loadmat; v7.3 files (HDF5) with h5py, where numeric arrays
appear transposed, cells are arrays of object references into '#refs#' and strings are uint16 arrays.
A track may be a struct array (images(i).name, ...) instead of a struct of arrays: both are accepted.
Structural problems raise ValueError naming the file and the field; per-track logits are returned
as found (float32) so a batch tool can skip bad tracks one by one (see `logits_problem`).
"""
from __future__ import annotations

import os

import numpy as np

from cmemo_jax.constants import FRAME_PERIOD_S, NUM_EMOTIONS, SAMPLE_RATE, VIDEO_FPS

# How far a track's audio duration may stray from what its logit rows cover (seconds).
# Row r is video frame 6 r + 1 at 25 fps (constants.frame_row), so a track of D seconds whose rows and
# audio come from the same interval has n = ceil((25 D - 1) / 6) rows and n * 0.24 s lies in
# [D - 0.04, D + 0.2): within one row period. Two more video frames (0.08 s) allow for the face
# track and the audio cut being a frame or two apart.
DURATION_TOLERANCE_S = FRAME_PERIOD_S + 2 / VIDEO_FPS  # 0.32 s


def _err(path, field, msg):
    return ValueError(f"{path}: field {field!r}: {msg}")


def _orient(m: np.ndarray, matlab_order_is_transposed: bool) -> np.ndarray:
    """Returns [n, 8] float32 when one dimension is 8; otherwise the array as found (2-D if possible)."""
    m = np.asarray(m, dtype=np.float32)
    if m.size == 0:
        return np.zeros((0, NUM_EMOTIONS), np.float32)
    if m.ndim == 1:
        m = m[None, :] if m.shape[0] == NUM_EMOTIONS else m[:, None]
    if m.ndim != 2:
        return m
    if matlab_order_is_transposed:  # h5py shows MATLAB's [n, 8] as [8, n]
        if m.shape[0] == NUM_EMOTIONS:
            return np.ascontiguousarray(m.T)
        return m
    if m.shape[1] == NUM_EMOTIONS:
        return m
    if m.shape[0] == NUM_EMOTIONS:
        return np.ascontiguousarray(m.T)
    return m


def logits_problem(logits: np.ndarray) -> str | None:
    """Why a track's logits cannot be used (None when they are a finite float [n >= 1, 8] matrix)."""
    if logits.ndim != 2 or logits.shape[1] != NUM_EMOTIONS:
        return f"logits shape {tuple(logits.shape)} is not [n, {NUM_EMOTIONS}]"
    if logits.shape[0] == 0:
        return "no logit rows (track without face frames)"
    if not np.all(np.isfinite(logits)):
        return "logits contain NaN or Inf"
    return None


def duration_problem(num_samples: int, num_rows: int, *, sample_rate: int = SAMPLE_RATE,
                     tolerance_s: float = DURATION_TOLERANCE_S) -> str | None:
    """Why a track's audio and its logit rows do not belong together (None when they do).

    Accepted iff |num_samples / sample_rate - num_rows * FRAME_PERIOD_S| <= tolerance_s
    (DURATION_TOLERANCE_S = 0.32 s by default: one row period plus two video frames).
    Args:
      num_samples: audio length in samples at `sample_rate` Hz.
      num_rows: teacher logit rows of the track (one per 0.24 s).
    """
    audio_s = num_samples / float(sample_rate)
    rows_s = num_rows * FRAME_PERIOD_S
    if abs(audio_s - rows_s) <= tolerance_s:
        return None
    return (f"duration mismatch: audio {audio_s:.3f} s ({num_samples} samples) but {num_rows} logit rows "
            f"cover {rows_s:.2f} s (tolerance {tolerance_s:.2f} s)")


def _track_id(name: str) -> str:
    name = name.strip().replace("\\", "/")
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in (".wav", ".m4a", ".mp4", ".jpg", ".png", ".flac") else name


def _make_records(path, names, sets, logits, ids=None, videos=None, tracks=None):
    n = len(names)
    for field, vals in (("images.set", sets), ("wavLogits", logits), ("images.id", ids),
                        ("images.video", videos), ("images.track", tracks)):
        if vals is not None and len(vals) != n:
            raise _err(path, field, f"has {len(vals)} entries but images.name has {n}")
    out = []
    for i in range(n):
        tid = _track_id(names[i])
        rec = {"track_id": tid, "identity": tid.split("/")[0], "split": int(sets[i]),
               "logits": logits[i], "name": names[i].strip()}
        if ids is not None:
            rec["index"] = int(ids[i])
        if videos is not None:
            rec["video"] = videos[i]
        if tracks is not None:
            rec["track"] = int(tracks[i])
        out.append(rec)
    return out


# ------------------------------------------------------------------------------------- v5 (scipy)

def _v5_strings(path, field, x) -> list[str]:
    x = np.asarray(x)
    if x.dtype == object:
        out = []
        for e in x.ravel(order="F"):
            e = np.asarray(e)
            if e.dtype.kind not in "US":
                raise _err(path, field, f"cell holds {e.dtype}, expected char")
            out.append("".join(str(s) for s in e.ravel()) if e.size else "")
        return out
    if x.dtype.kind in "US":
        if x.ndim == 0:
            return [str(x)]
        return [str(s) for s in x.ravel(order="F")]  # char matrix: one string per row
    raise _err(path, field, f"expected a cell of strings, got {x.dtype}")


def _v5_numbers(path, field, x) -> np.ndarray:
    try:
        return np.asarray(x, dtype=np.float64).ravel(order="F")
    except (TypeError, ValueError) as e:
        raise _err(path, field, f"expected numbers ({e})") from None


def _v5_get(path, struct, name, required=True):
    if isinstance(struct, dict):
        v = struct.get(name)
    else:
        v = getattr(struct, name, None)
    if v is None and required:
        raise _err(path, f"images.{name}", "missing")
    return v


def _read_v5(path):
    import scipy.io

    try:
        # Only the two variables we need; squeeze_me=False keeps 1-track files regular.
        mat = scipy.io.loadmat(path, variable_names=["images", "wavLogits"], squeeze_me=False,
                               struct_as_record=False, chars_as_strings=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read MATLAB file ({e})") from e
    for field in ("images", "wavLogits"):
        if field not in mat:
            raise _err(path, field, "missing")
    wav_logits = np.asarray(mat["wavLogits"])
    if wav_logits.dtype != object:
        if wav_logits.ndim == 2 and NUM_EMOTIONS in wav_logits.shape:
            cells = [wav_logits]  # a single track saved without a cell
        else:
            raise _err(path, "wavLogits", f"expected a cell array, got {wav_logits.dtype}")
    else:
        cells = list(wav_logits.ravel(order="F"))
    logits = [_orient(c, matlab_order_is_transposed=False) for c in cells]

    images = np.asarray(mat["images"])
    if images.dtype != object or images.size == 0:
        raise _err(path, "images", "expected a struct")
    if images.size == 1:  # struct of arrays (the authors' imdb layout)
        s = images.ravel()[0]
        names = _v5_strings(path, "images.name", _v5_get(path, s, "name"))
        sets = _v5_numbers(path, "images.set", _v5_get(path, s, "set"))
        opt = {}
        for k in ("id", "track"):
            v = _v5_get(path, s, k, required=False)
            opt[k] = None if v is None else _v5_numbers(path, f"images.{k}", v)
        v = _v5_get(path, s, "video", required=False)
        videos = None if v is None else _v5_strings(path, "images.video", v)
        if len(names) == 1 and len(logits) != 1:
            raise _err(path, "images.name", f"has 1 entry but wavLogits has {len(logits)}")
        return _make_records(path, names, sets, logits, opt["id"], videos, opt["track"])
    # struct array: one element per track
    elems = list(images.ravel(order="F"))
    names = [_v5_strings(path, "images.name", _v5_get(path, e, "name"))[0] for e in elems]
    sets = [_v5_numbers(path, "images.set", _v5_get(path, e, "set"))[0] for e in elems]
    return _make_records(path, names, sets, logits)


# ------------------------------------------------------------------------------------ v7.3 (h5py)

def _h5_string(path, field, ds) -> str:
    a = np.asarray(ds[()])
    if ds.attrs.get("MATLAB_empty", 0) or a.size == 0:
        return ""
    cls = ds.attrs.get("MATLAB_class", b"char")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if cls != "char":
        raise _err(path, field, f"expected char, got MATLAB class {cls}")
    # MATLAB char data is UTF-16 code units, stored [len, 1] (transposed from MATLAB's [1, len]).
    return "".join(chr(int(c)) for c in a.ravel(order="F"))


def _h5_deref(f, ref):
    return f[ref]


def _h5_strings(path, field, f, ds) -> list[str]:
    import h5py

    a = ds[()]
    if a.dtype == h5py.ref_dtype or a.dtype.kind == "O":
        return [_h5_string(path, field, _h5_deref(f, r)) for r in np.asarray(a).ravel()]
    if a.dtype.kind in "ui":  # a char matrix [N, L] in MATLAB -> [L, N] in HDF5
        a = np.atleast_2d(a)
        return ["".join(chr(int(c)) for c in col if c) for col in a.T]
    raise _err(path, field, f"expected a cell of strings, got {a.dtype}")


def _h5_numbers(path, field, ds) -> np.ndarray:
    a = np.asarray(ds[()])
    if a.dtype.kind not in "fiub":
        raise _err(path, field, f"expected numbers, got {a.dtype}")
    return a.astype(np.float64).ravel()


def _h5_matrix(f, ds):
    if ds.attrs.get("MATLAB_empty", 0):
        return np.zeros((0, NUM_EMOTIONS), np.float32)
    return _orient(np.asarray(ds[()]), matlab_order_is_transposed=True)


def _read_v73(path):
    import h5py

    try:
        f = h5py.File(path, "r")
    except Exception as e:
        raise ValueError(f"{path}: cannot read MATLAB v7.3 (HDF5) file ({e})") from e
    with f:
        for field in ("images", "wavLogits"):
            if field not in f:
                raise _err(path, field, "missing")
        wl = f["wavLogits"]
        if not isinstance(wl, h5py.Dataset):
            raise _err(path, "wavLogits", "expected a cell array")
        if wl.dtype == h5py.ref_dtype or wl.dtype.kind == "O":
            logits = [_h5_matrix(f, _h5_deref(f, r)) for r in np.asarray(wl[()]).ravel()]
        elif wl.ndim == 2 and NUM_EMOTIONS in wl.shape:
            logits = [_h5_matrix(f, wl)]
        else:
            raise _err(path, "wavLogits", f"expected a cell array, got {wl.dtype}")

        images = f["images"]
        if not isinstance(images, h5py.Group):
            raise _err(path, "images", "expected a struct")

        def need(k):
            if k not in images:
                raise _err(path, f"images.{k}", "missing")
            return images[k]

        names = _h5_strings(path, "images.name", f, need("name"))
        sets = _h5_numbers(path, "images.set", need("set"))
        ids = _h5_numbers(path, "images.id", images["id"]) if "id" in images else None
        tracks = _h5_numbers(path, "images.track", images["track"]) if "track" in images else None
        videos = _h5_strings(path, "images.video", f, images["video"]) if "video" in images else None
        return _make_records(path, names, sets, logits, ids, videos, tracks)


def is_hdf5(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(512 + 8)
    # MATLAB v7.3 files carry a 512-byte MATLAB header before the HDF5 superblock signature.
    return b"\x89HDF\r\n\x1a\n" in head


def read_emovox_logits(path: str) -> list[dict]:
    """Reads `senet50-ferplus-logits.mat` (v5/v7 or v7.3) -> per-track records, in file order.

    Each record: {'track_id': 'id10001/1zcIwhmdeo4/00001', 'identity': 'id10001', 'split': int
    (1 train, 2 unheard val, 3 heard val), 'logits': float32 [n, 8] (or as found when malformed; check
    with `logits_problem`), 'name': the raw images.name, optional 'index', 'video', 'track'}.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"EmoVoxCeleb logits file not found: {path}")
    return _read_v73(path) if is_hdf5(path) else _read_v5(path)
