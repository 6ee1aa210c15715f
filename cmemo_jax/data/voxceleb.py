"""VoxCeleb1 reader: the `wav/idNNNNN/<youtube_id>/NNNNN.wav` tree and `iden_split.txt`.

`iden_split.txt` lines look like ``1 id10006/x/00003.wav`` (1 train, 2 val, 3 test: the identification
split; EmoVoxCeleb has its own `set` codes, see emovoxceleb.py). Errors on malformed lines are one line
naming the file and line number. Audio is decoded by cmemo_jax.audio.load_audio (one decoder, one set
of rules for bad audio everywhere).
"""
from __future__ import annotations

import dataclasses
import os
import re

from cmemo_jax.audio.io import AudioDecodeError, int16_from_waveform, load_audio
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


class WavReadError(AudioDecodeError, RuntimeError):
    """read_wav_int16's error: an AudioDecodeError that is also the RuntimeError older callers catch."""


def read_wav_int16(path: str, sample_rate: int = SAMPLE_RATE, *, return_info: bool = False):
    """Reads a wav as int16 [num_samples] mono at `sample_rate` (first channel; soxr resampling).

    A thin wrapper over ``cmemo_jax.audio.load_audio(path, sample_rate, channel=0)`` and
    ``int16_from_waveform``, so VoxCeleb audio obeys the same decode rules as every other entry point
    (truncated files and NaN / inf samples rejected, float audio beyond full scale rescaled: see
    cmemo_jax/audio/io.py). 16-bit PCM comes back bit-exact (int16 / 32768 is exact in float32).

    Returns:
      int16 numpy array [num_samples]; with return_info, (that array, AudioCheck).
    Raises:
      WavReadError (an AudioDecodeError and a RuntimeError): one line naming the file and the fault.
    """
    try:
        waveform, check = load_audio(path, sample_rate, channel=0, return_info=True)
    except AudioDecodeError as e:
        raise WavReadError(str(e)) from e
    audio = int16_from_waveform(waveform)
    return (audio, check) if return_info else audio
