"""VoxCeleb1 reader: the `wav/idNNNNN/<youtube_id>/NNNNN.wav` tree and `iden_split.txt`.

`iden_split.txt` lines look like ``1 id10006/x/00003.wav`` (1 train, 2 val, 3 test: the identification
split; EmoVoxCeleb has its own `set` codes, see emovoxceleb.py). Errors on malformed lines are one line
naming the file and line number.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from cmemo_jax.constants import SAMPLE_RATE

_REL_PATH = re.compile(r"^(id\d+)/([^/\s]+)/([^/\s]+)\.wav$")


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One VoxCeleb1 utterance (a speaking face-track's audio)."""
    identity: str          # 'id10006'
    video: str             # YouTube id, e.g. '1zcIwhmdeo4'
    utterance: str         # file stem, e.g. '00003'
    rel_path: str          # 'id10006/1zcIwhmdeo4/00003.wav' (relative to the wav dir)
    path: str              # absolute/joined path of the wav file
    split: int | None = None  # iden_split code (1 train, 2 val, 3 test) when read from iden_split.txt

    @property
    def track_id(self) -> str:
        """'id10006/1zcIwhmdeo4/00003': the key EmoVoxCeleb uses (its `images.name` minus extension)."""
        return self.rel_path[:-len(".wav")]


def parse_rel_path(rel_path: str) -> tuple[str, str, str]:
    """'idNNNNN/<video>/<utt>.wav' -> (identity, video, utterance); ValueError if it is not that shape."""
    m = _REL_PATH.match(rel_path.replace(os.sep, "/"))
    if not m:
        raise ValueError(f"not a VoxCeleb1 wav path (idNNNNN/<video>/<utt>.wav): {rel_path!r}")
    return m.group(1), m.group(2), m.group(3)


def read_iden_split(path: str) -> list[tuple[int, str]]:
    """Parses iden_split.txt -> [(split_code, rel_path)] in file order; blank lines are ignored."""
    out = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            ok = len(parts) == 2 and parts[0] in ("1", "2", "3") and _REL_PATH.match(parts[1])
            if not ok:
                raise ValueError(f"{path}:{lineno}: malformed line {line!r} "
                                 f"(expected '<1|2|3> idNNNNN/<video>/<utt>.wav')")
            out.append((int(parts[0]), parts[1]))
    return out


def list_utterances(wav_dir: str, iden_split_path: str | None = None) -> list[Utterance]:
    """Utterances of a VoxCeleb1 `wav` directory.

    With `iden_split_path`, lists the entries of that file (in its order, with their split code; the
    wav files are not checked for existence). Without it, walks wav_dir/idNNNNN/<video>/*.wav (sorted;
    files elsewhere are ignored) with split None.
    """
    if iden_split_path is not None:
        utts = []
        for split, rel in read_iden_split(iden_split_path):
            ident, video, utt = parse_rel_path(rel)
            utts.append(Utterance(ident, video, utt, rel, os.path.join(wav_dir, rel), split))
        return utts
    if not os.path.isdir(wav_dir):
        raise FileNotFoundError(f"VoxCeleb wav directory not found: {wav_dir}")
    utts = []
    for ident in sorted(os.listdir(wav_dir)):
        idir = os.path.join(wav_dir, ident)
        if not (ident.startswith("id") and os.path.isdir(idir)):
            continue
        for video in sorted(os.listdir(idir)):
            vdir = os.path.join(idir, video)
            if not os.path.isdir(vdir):
                continue
            for fname in sorted(os.listdir(vdir)):
                if fname.endswith(".wav"):
                    rel = f"{ident}/{video}/{fname}"
                    utts.append(Utterance(ident, video, fname[:-4], rel, os.path.join(vdir, fname)))
    return utts


def read_wav_int16(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Reads a wav as int16 [num_samples] mono at `sample_rate` (first channel; soxr resampling).

    16 kHz mono 16-bit files (all of VoxCeleb1) are read straight as int16 with no float round trip.
    Raises RuntimeError naming the file if it cannot be decoded or is empty.
    """
    import soundfile as sf

    try:
        info = sf.info(path)
        if info.samplerate == sample_rate and info.subtype == "PCM_16":
            audio = sf.read(path, dtype="int16", always_2d=True)[0][:, 0]
        else:
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            x = x[:, 0]
            if sr != sample_rate:
                import soxr
                x = soxr.resample(x, sr, sample_rate)
            audio = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    except Exception as e:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise RuntimeError(f"cannot read wav {path}: {e}") from e
    if audio.size == 0:
        raise RuntimeError(f"empty wav {path}")
    return np.ascontiguousarray(audio)
