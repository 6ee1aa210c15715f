"""RML emotion database reader: `rml-1/s1..s5`, `rml-2/s6..s8` of labelled audio-visual clips.

Layout (the published release; docs/method.md §3)::

    ROOT/rml-1/s1/an1.avi           speaker s1, anger
    ROOT/rml-1/s2/english/ha12.avi  an optional language folder under a speaker
    ROOT/rml-2/s6/...

ROOT may also hold the sN folders directly. The emotion is the first two letters of the file name
(an di fe ha sa su, any case); the speaker is the sN folder name. Anything else is reported as a
problem (one line naming the path) and skipped.
"""
from __future__ import annotations

import os
import re

from cmemo_jax.data.clips import MEDIA_EXTENSIONS, Clip, is_media_file

DATASET = "rml"

# File-name prefix -> emotion name (cmemo_jax.constants.EMOTIONS spelling).
EMOTION_CODES = {"an": "anger", "di": "disgust", "fe": "fear", "ha": "happiness", "sa": "sadness", "su": "surprise"}

# Which speakers each half of the release holds.
PARTS = {"rml-1": ("s1", "s2", "s3", "s4", "s5"), "rml-2": ("s6", "s7", "s8")}
SPEAKERS = tuple(s for part in PARTS.values() for s in part)

_PART = re.compile(r"^rml[\s_-]?([12])$", re.IGNORECASE)      # rml-1, also RML_1 / rml 1 / rml1
_EXT_LIST = "/".join(sorted(MEDIA_EXTENSIONS))


def emotion_of(file_name: str) -> str | None:
    """Emotion name from an RML file name ('An1.avi' -> 'anger'); None for an unknown code."""
    return EMOTION_CODES.get(file_name[:2].lower())


def _sorted_entries(folder: str) -> list[tuple[str, str, bool]]:
    """[(name, path, is_dir)] of a folder, sorted by name, so results do not depend on the file system."""
    names = sorted(os.listdir(folder))
    return [(n, os.path.join(folder, n), os.path.isdir(os.path.join(folder, n))) for n in names]


def _clip_or_problem(path: str, speaker: str, clips: list, problems: list) -> None:
    """Appends the clip a file in a speaker (or language) folder stands for, or why it is not one."""
    name = os.path.basename(path)
    if not is_media_file(name):
        problems.append(f"{path}: unexpected file (RML clips are {_EXT_LIST})")
        return
    emotion = emotion_of(name)
    if emotion is None:
        problems.append(f"{path}: unknown emotion code {name[:2]!r} (expected one of {' '.join(EMOTION_CODES)})")
        return
    clips.append(Clip(path=path, label=emotion, speaker=speaker, dataset=DATASET))


def _read_speaker(folder: str, speaker: str, clips: list, problems: list) -> None:
    """Clips of one sN folder: files directly in it or in one level of language folders."""
    for _, path, is_dir in _sorted_entries(folder):
        if not is_dir:
            _clip_or_problem(path, speaker, clips, problems)
            continue
        for _, sub_path, sub_is_dir in _sorted_entries(path):   # a language folder, e.g. s1/english
            if sub_is_dir:
                problems.append(f"{sub_path}: folder not in the RML layout (sN/[language/]clip)")
            else:
                _clip_or_problem(sub_path, speaker, clips, problems)


def _read_speaker_folders(folder: str, allowed: tuple[str, ...], where: str, clips, problems) -> None:
    """Reads the sN folders of `folder` (only those in `allowed`); reports everything else."""
    for name, path, is_dir in _sorted_entries(folder):
        if not is_dir:
            problems.append(f"{path}: unexpected file (expected only speaker folders {where})")
        elif name.lower() in allowed:
            _read_speaker(path, name, clips, problems)
        else:
            problems.append(f"{path}: folder not in the RML layout (expected {', '.join(allowed)} {where})")


def list_clips(root: str) -> tuple[list[Clip], list[str]]:
    """All RML clips under `root` (the folder holding rml-1/rml-2, or the sN folders directly).

    Returns:
      (clips, problems): clips sorted by path, labelled with emotion names; problems one line each.
    Raises:
      FileNotFoundError: `root` is not a directory.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"RML directory not found: {root}")
    clips, problems = [], []
    entries = _sorted_entries(root)
    if any(is_dir and _PART.match(name) for name, _, is_dir in entries):
        for name, path, is_dir in entries:
            part = _PART.match(name) if is_dir else None
            if part:
                _read_speaker_folders(path, PARTS[f"rml-{part.group(1)}"], f"in {name}", clips, problems)
            elif is_dir:
                problems.append(f"{path}: folder not in the RML layout (expected rml-1, rml-2)")
            else:
                problems.append(f"{path}: unexpected file (expected only rml-1, rml-2 folders)")
    else:
        _read_speaker_folders(root, SPEAKERS, "in the RML root", clips, problems)
    clips.sort(key=lambda c: c.path)
    return clips, problems
