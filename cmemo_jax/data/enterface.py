"""eNTERFACE'05 audio-visual emotion database reader.

Nominal layout: ``ROOT/subject N/<emotion>/sentence M/sN_an_M.avi`` with emotion folders named
anger, disgust, fear, happiness, sadness, surprise. The real release is irregular: some subjects have
an extra ``subject N`` level (e.g. ``subject 6/anger/subject 6/sentence 1/``), some have clips directly
in ``<emotion>/`` with no ``sentence M`` level. So the tree is walked: a clip's emotion is its nearest
ancestor folder named after an emotion, its speaker the ``subject N`` folder above it. Folders above
the first ``subject N`` (e.g. ``enterface database/``) are accepted as wrappers; below it only
``subject N``, emotion and ``sentence M`` folders belong to the layout. Everything else is reported
as a problem (one line naming the path) and skipped.
"""
from __future__ import annotations

import os
import re

from cmemo_jax.data.clips import ACTED_EMOTIONS, MEDIA_EXTENSIONS, Clip, is_media_file

DATASET = "enterface"

# 'subject 6' in the release; copies often swap the spaces for '-' or '_' (the authors' own did).
_SUBJECT = re.compile(r"^subject[\s_-]*(\d+)$", re.IGNORECASE)
_SENTENCE = re.compile(r"^sentence[\s_-]*(\d+)$", re.IGNORECASE)
_EXT_LIST = "/".join(sorted(MEDIA_EXTENSIONS))


def speaker_id(subject_number: int) -> str:
    """Canonical speaker id of subject N: 'subject N' (whatever the folder's case or separator)."""
    return f"subject {subject_number}"


def _file(path: str, subject: int | None, emotion: str | None, clips: list, problems: list) -> None:
    """Appends the clip a file stands for, or the reason it is not one."""
    if not is_media_file(path):
        problems.append(f"{path}: unexpected file (eNTERFACE clips are {_EXT_LIST})")
    elif subject is None:
        problems.append(f"{path}: clip not inside a 'subject N' folder")
    elif emotion is None:
        problems.append(f"{path}: clip not inside an emotion folder ({', '.join(sorted(ACTED_EMOTIONS))})")
    else:
        clips.append(Clip(path=path, label=emotion, speaker=speaker_id(subject), dataset=DATASET))


def _folder_role(name: str, subject: int | None) -> tuple[str, int | None]:
    """Classifies a folder name -> (role, subject number): role in subject/emotion/sentence/other."""
    m = _SUBJECT.match(name.strip())
    if m:
        return "subject", int(m.group(1))
    if name.strip().lower() in ACTED_EMOTIONS:
        return "emotion", subject
    if _SENTENCE.match(name.strip()):
        return "sentence", subject
    return "other", subject


def _walk(folder: str, subject: int | None, emotion: str | None, clips: list, problems: list) -> None:
    """Depth-first walk (sorted) carrying the nearest subject and emotion folders seen so far."""
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isdir(path):
            _file(path, subject, emotion, clips, problems)
            continue
        role, number = _folder_role(name, subject)
        if role == "subject" and subject is not None and number != subject:
            problems.append(f"{path}: folder of subject {number} inside subject {subject}")
        elif role == "other" and subject is not None:
            problems.append(f"{path}: folder not in the eNTERFACE layout "
                            "(subject N/<emotion>/[sentence M/]clip)")
        else:
            # Emotion folders set the label; 'other' folders above the first subject are wrappers.
            child_emotion = name.strip().lower() if role == "emotion" else emotion
            _walk(path, number, child_emotion, clips, problems)


def list_clips(root: str) -> tuple[list[Clip], list[str]]:
    """All eNTERFACE'05 clips under `root` (the folder holding the `subject N` folders, or above).

    Returns:
      (clips, problems): clips sorted by path, labelled with emotion names, speaker 'subject N';
      problems one line each.
    Raises:
      FileNotFoundError: `root` is not a directory.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"eNTERFACE directory not found: {root}")
    clips, problems = [], []
    _walk(root, None, None, clips, problems)
    clips.sort(key=lambda c: c.path)
    return clips, problems
