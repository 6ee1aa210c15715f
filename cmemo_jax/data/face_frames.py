"""Reader of VoxCeleb1 face-track JPEG frames, joined with VoxCeleb1 audio, for the labelling phase.

Layouts of FRAMES_DIR (both may be mixed; identity folders are recognised one by one):

    <FRAMES_DIR>/<idNNNNN>/<video>/<track>/*.jpg                      (ids as folder names)
    <FRAMES_DIR>/unzippedIntervalFaces/data/<name>/1.6/<video>/<track>/*.jpg   (the face-frame release)

In the release the person folder carries the VGGFace1 name ('A.J._Buckley'); it is mapped to the
VoxCeleb1 id through `vox1_meta.csv` (tab-separated, a header line, then `VoxCeleb1 ID, VGGFace1 ID
(the name), Gender, Nationality, Set`). FRAMES_DIR may also be `.../unzippedIntervalFaces/data`.
The "1.6" crops are 1.6x wider than the face box: the labelling phase takes the centre 1 / 1.6
(config.label.crop_fraction). Track folders named by a number are zero-padded to the 5 digits of
the VoxCeleb1 wav names ('1' -> '00001'), so track `<id>/<video>/<track>` joins with
`<WAV_DIR>/<id>/<video>/<track>.wav` and with the EmoVoxCeleb track ids.

Frame timing, the one rule of this module: the JPEGs of a track, sorted by the integer value of
their file stems, are the track's logit rows in order -- frame k is row k, one row per
cmemo_jax.constants.FRAME_PERIOD_S (0.24 s: every 6th video frame at 25 fps; paper §4 "Data
format": "frames are extracted from the face tracks at an interval of 0.24 seconds"; docs/method.md
§3). The numbers must step evenly (1, 2, 3, ... or 1, 7, 13, ...): a break in the step is a missing
frame. A release sampled at another rate is not silently mislabelled: its frame counts disagree with
the audio lengths and every track is reported as a duration mismatch.

Bad input is skipped, never fatal: a track with no frames, a missing frame, a frame that does not
decode, a missing or undecodable wav (cmemo_jax.audio.load_audio's rules, through
voxceleb.read_wav_int16), or a frame count that disagrees with the audio length
(emovoxceleb.duration_problem: |seconds - rows * 0.24 s| <= 0.32 s) gives one problem line naming the
file and the fault; every good track is returned.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, Iterator

import numpy as np

from cmemo_jax.audio.io import AudioDecodeError
from cmemo_jax.constants import SPLIT_TRAIN, SPLIT_UNHEARD_VAL
from cmemo_jax.data import emovoxceleb, voxceleb
from cmemo_jax.data.voxceleb_records import bounded_map
from cmemo_jax.errors import CmemoError

FRAME_EXTENSIONS = (".jpg", ".jpeg")
RELEASE_SUBDIR = os.path.join("unzippedIntervalFaces", "data")
RELEASE_CROP = "1.6"                 # the release's crop folder: 1.6x the face box
TRACK_DIGITS = 5                     # VoxCeleb1 wav names: 00001.wav
_ID_RE = re.compile(r"^id\d+$")


class FaceFramesError(CmemoError, ValueError):
    """A frames tree or meta file that cannot be read at all (the message names it)."""


@dataclasses.dataclass(frozen=True)
class FaceTrack:
    """One face-track of the frames tree, before any file is decoded."""
    track_id: str          # '<id>/<video>/<track>', e.g. 'id10001/1zcIwhmdeo4/00001'
    identity: str          # VoxCeleb1 id, 'id10001'
    split: int             # EmoVoxCeleb set code: 1 train, 2 unheard val, 3 heard val
    frames_dir: str        # folder holding the track's JPEGs
    wav_path: str          # <wav_dir>/<track_id>.wav


# ------------------------------------------------------------------------------------------ meta

def read_vox1_meta(path: str) -> dict[str, tuple[str, str]]:
    """vox1_meta.csv -> {VGGFace1 name: (VoxCeleb1 id, set)}; set is 'dev' / 'test' ('' if absent).

    Tab-separated; a first line starting with 'VoxCeleb1 ID' is the header. Malformed lines raise
    FaceFramesError naming the file and line.
    """
    out = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.readlines()
    except OSError as e:
        raise FaceFramesError(f"{path}: cannot read vox1_meta.csv ({e.strerror})") from None
    for lineno, line in enumerate(lines, 1):
        fields = [f.strip() for f in line.rstrip("\n").split("\t")]
        if not any(fields) or (lineno == 1 and fields[0].lower().startswith("voxceleb1 id")):
            continue
        if len(fields) < 2 or not _ID_RE.match(fields[0]) or not fields[1]:
            raise FaceFramesError(f"{path}:{lineno}: malformed line {line.strip()!r} "
                                  f"(expected 'idNNNNN<TAB>name<TAB>gender<TAB>nationality<TAB>set')")
        out[fields[1]] = (fields[0], fields[4].lower() if len(fields) > 4 else "")
    return out


def split_of(track_id: str, identity_set: str, emovox_splits: dict[str, int] | None) -> int | None:
    """A track's EmoVoxCeleb set code.

    With `emovox_splits` (track id -> set code, from the authors' .mat: the paper's splits) the
    track's code, or None when the .mat does not list it. Without: the VoxCeleb1 meta 'Set' of the
    identity ('test' -> 2 unheard val, anything else -> 1 train): an approximation with no heard-val
    split and far fewer unheard identities than EmoVoxCeleb's.
    """
    if emovox_splits is not None:
        return emovox_splits.get(track_id)
    return SPLIT_UNHEARD_VAL if identity_set == "test" else SPLIT_TRAIN


def emovox_splits(mat_path: str) -> dict[str, int]:
    """{track id: EmoVoxCeleb set code} of `senet50-ferplus-logits.mat` (its logits are not used)."""
    return {r["track_id"]: int(r["split"]) for r in emovoxceleb.read_emovox_logits(mat_path)}


# --------------------------------------------------------------------------------------- listing

def _subdirs(path: str) -> list[str]:
    return sorted(e for e in os.listdir(path) if os.path.isdir(os.path.join(path, e)))


def _track_name(folder: str) -> str:
    return folder.zfill(TRACK_DIGITS) if folder.isdigit() else folder


def _person_dirs(root: str) -> Iterator[tuple[str, str]]:
    """(person folder name, folder of its videos) for each identity folder under the frames root."""
    if os.path.isdir(os.path.join(root, RELEASE_SUBDIR)):
        root = os.path.join(root, RELEASE_SUBDIR)
    for person in _subdirs(root):
        pdir = os.path.join(root, person)
        crop_dir = os.path.join(pdir, RELEASE_CROP)
        yield person, crop_dir if os.path.isdir(crop_dir) else pdir


def _identity(person: str, pdir: str, meta: dict | None, set_of_id: dict) -> tuple[str | None, str, str]:
    """(VoxCeleb1 id or None, meta set, problem) of a person folder."""
    if _ID_RE.match(person):
        return person, set_of_id.get(person, ""), ""
    if meta is None:
        raise FaceFramesError(f"{pdir}: the folder is named {person!r}, not by a VoxCeleb1 id; give "
                              f"vox1_meta.csv (config.data.meta_csv) to map names to ids")
    if person not in meta:
        return None, "", f"{pdir}: name {person!r} is not in vox1_meta.csv; its tracks are skipped"
    return meta[person][0], meta[person][1], ""


def list_tracks(frames_dir: str, wav_dir: str, *, meta: dict | None = None,
                splits: dict[str, int] | None = None) -> tuple[list[FaceTrack], list[tuple[str, str]]]:
    """Every face-track folder of the frames tree, sorted by track id; nothing is decoded.

    Args:
      frames_dir: root of either layout (module docstring).
      wav_dir: VoxCeleb1 `wav` root (`<id>/<video>/<track>.wav`).
      meta: read_vox1_meta's mapping (needed for name folders; gives the fallback split).
      splits: {track id: set code} (emovox_splits); tracks it lacks are skipped.
    Returns:
      (tracks, problems): problems are (track id or folder, one line) of what was left out.
    """
    if not os.path.isdir(frames_dir):
        raise FaceFramesError(f"face frames folder not found: {frames_dir}")
    tracks, problems, seen = [], [], set()
    set_of_id = {ident: id_set for ident, id_set in (meta or {}).values()}
    for person, pdir in _person_dirs(frames_dir):
        identity, id_set, problem = _identity(person, pdir, meta, set_of_id)
        if problem:
            problems.append((person, problem))
            continue
        for video in _subdirs(pdir):
            for folder in _subdirs(os.path.join(pdir, video)):
                track_id = f"{identity}/{video}/{_track_name(folder)}"
                tdir = os.path.join(pdir, video, folder)
                split = split_of(track_id, id_set, splits)
                if track_id in seen:
                    problems.append((track_id, f"{tdir}: track {track_id} appears twice in the frames tree"))
                elif split is None:
                    problems.append((track_id, f"{tdir}: track {track_id} is not in the EmoVoxCeleb splits file"))
                else:
                    tracks.append(FaceTrack(track_id, identity, split, tdir,
                                            os.path.join(wav_dir, *track_id.split("/")) + ".wav"))
                seen.add(track_id)
    return sorted(tracks, key=lambda t: t.track_id), problems


# --------------------------------------------------------------------------------------- loading

def frame_paths(frames_dir: str) -> tuple[list[str], str]:
    """The track's JPEGs in row order (module docstring: sorted by stem number, even step).

    Returns (paths, '') or ([], problem line naming the folder and the fault).
    """
    names = [n for n in os.listdir(frames_dir) if n.lower().endswith(FRAME_EXTENSIONS)]
    if not names:
        return [], f"{frames_dir}: no face frames (*.jpg)"
    stems = [os.path.splitext(n)[0] for n in names]
    bad = [n for n, s in zip(names, stems) if not s.isdigit()]
    if bad:
        return [], f"{os.path.join(frames_dir, bad[0])}: frame name is not a number"
    order = sorted(range(len(names)), key=lambda i: int(stems[i]))
    steps = np.diff([int(stems[i]) for i in order])
    if steps.size and steps.min() == 0:
        k = int(np.argmin(steps))
        return [], f"{frames_dir}: {names[order[k]]} and {names[order[k + 1]]} have the same frame number"
    breaks = np.nonzero(steps != (steps.min() if steps.size else 0))[0]
    if breaks.size:
        k = int(breaks[0])
        return [], (f"{frames_dir}: missing frame between {names[order[k]]} and {names[order[k + 1]]} "
                    f"(frame numbers step by {int(steps.min())})")
    return [os.path.join(frames_dir, names[i]) for i in order], ""


def read_frame(path: str, frame_size: int | None = None) -> np.ndarray:
    """One JPEG -> uint8 RGB [H, W, 3] (bilinearly resized to [frame_size, frame_size] if given).

    Raises OSError / ValueError (PIL's) on a file that does not decode, truncated files included.
    """
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError("reading face frames needs Pillow, which is not installed: pip install pillow") from err
    with Image.open(path) as im:
        im = im.convert("RGB")  # decodes the whole file: a truncated JPEG raises here
        if frame_size and im.size != (frame_size, frame_size):
            im = im.resize((frame_size, frame_size), Image.BILINEAR)
        return np.asarray(im, np.uint8)


def _read_frames(paths: list[str], frame_size: int | None) -> tuple[np.ndarray | None, str]:
    """uint8 [n, H, W, 3] of the frames, or (None, problem line naming the file)."""
    frames = []
    for path in paths:
        try:
            frames.append(read_frame(path, frame_size))
        except (OSError, ValueError, SyntaxError) as e:  # PIL's decode errors
            return None, f"{path}: unreadable frame ({type(e).__name__}: {' '.join(str(e).split())})"
        if frames[-1].shape != frames[0].shape:
            return None, (f"{path}: frame size {frames[-1].shape[:2]} differs from the track's first frame "
                          f"{frames[0].shape[:2]} (give a frame_size to resize them)")
    return np.stack(frames), ""


def load_track(track: FaceTrack, frame_size: int | None = None) -> tuple[dict | None, str]:
    """Decodes one track: (track dict, '') or (None, one problem line naming the file and the fault).

    The dict: track_id, identity, split, audio int16 [num_samples] (16 kHz mono), faces uint8
    [n_frames, H, W, 3] RGB (H = W = frame_size when given). No logits: the teacher makes them.
    Cheap checks (frame names, wav, lengths) come before the JPEGs are decoded.
    """
    paths, problem = frame_paths(track.frames_dir)
    if problem:
        return None, problem
    if not os.path.exists(track.wav_path):
        return None, f"{track.wav_path}: no audio for face-track {track.frames_dir}"
    try:
        audio = voxceleb.read_wav_int16(track.wav_path)
    except AudioDecodeError as e:
        return None, f"cannot read audio: {e}"
    problem = emovoxceleb.duration_problem(audio.shape[0], len(paths))
    if problem:
        return None, f"{track.frames_dir}: {len(paths)} frames vs {track.wav_path}: {problem}"
    faces, problem = _read_frames(paths, frame_size)
    if problem:
        return None, problem
    return {"track_id": track.track_id, "identity": track.identity, "split": track.split,
            "audio": audio, "faces": faces}, ""


def load_tracks(tracks: Iterable[FaceTrack], frame_size: int | None = None,
                workers: int = 4) -> Iterator[tuple[FaceTrack, dict | None, str]]:
    """(track, load_track's dict or None, problem) for each track, in order; `workers` threads decode
    ahead (PIL and libsndfile release the GIL), at most 2 * workers + 2 tracks in memory."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        tracks = list(tracks)
        loaded = bounded_map(pool, lambda t: load_track(t, frame_size), tracks, 2 * workers + 2)
        for track, (out, problem) in zip(tracks, loaded):
            yield track, out, problem
