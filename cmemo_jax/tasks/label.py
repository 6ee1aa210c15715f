"""The teacher over face frames: load a teacher export, and the one jitted, sharded labelling step
that the labelling phase (EmoVoxCeleb frame logits) and the evaluation's teacher-V row share.

Frames of consecutive tracks are packed into batches of a fixed shape [batch_size, H, W(, 3)] (the
last one padded with valid=False rows), preprocessed on the device by cmemo_jax.faces.teacher_inputs
(the path the teacher was trained through), split over all devices and gathered by
cmemo_jax.train.collect.iterate_outputs.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import os
from typing import Callable, Iterable, Iterator

import jax
import numpy as np

from cmemo_jax import export
from cmemo_jax.constants import NUM_EMOTIONS
from cmemo_jax.errors import CmemoError, ConfigError
from cmemo_jax.faces import teacher_inputs
from cmemo_jax.train import collect
from cmemo_jax.train import sharding as sharding_lib


# --------------------------------------------------------------------------------------- teacher

@dataclasses.dataclass
class Teacher:
    """A loaded teacher export: flax module, variables {'params', 'batch_stats'}, input side (px)."""
    model: object
    variables: dict
    size: int
    path: str
    sha256: str
    meta: dict

    def describe(self) -> dict:
        return {"file": os.path.basename(self.path), "sha256": self.sha256, "input_size": self.size,
                "model": self.meta.get("model")}


def load_teacher(path: str) -> Teacher:
    """export.load + the checks that it is a teacher; input size from meta['input']['size'] (224)."""
    model, variables, meta = export.load(path)
    if meta.get("kind") != "teacher":
        raise ConfigError(f"config.label.teacher_model={path}: a {meta.get('kind')!r} model, not a teacher export")
    size = int(meta.get("input", {}).get("size", 224))
    return Teacher(model, variables, size, path, export.file_sha256(path), meta)


# ---------------------------------------------------------------------------------------- engine

def make_label_fn(teacher: Teacher, crop_fraction: float, mesh) -> Callable[[dict], dict]:
    """The one jitted step: device batch {'faces' uint8 [B, H, W(, 3)], 'valid' bool [B]} ->
    replicated {'logits' float32 [B, 8], 'valid' [B]} (the teacher's variables replicated once)."""
    variables = jax.device_put(teacher.variables, sharding_lib.replicated(mesh))
    model, size = teacher.model, teacher.size

    @functools.partial(jax.jit, out_shardings=sharding_lib.replicated(mesh))
    def label(variables, batch):
        images = teacher_inputs(batch["faces"], size, crop_fraction=crop_fraction)
        return {"logits": model.apply(variables, images, train=False), "valid": batch["valid"]}

    return lambda batch: label(variables, batch)


def _batch(buf: np.ndarray, filled: int, rows: slice) -> dict:
    valid = np.arange(buf.shape[0]) < filled
    return {"faces": buf[rows], "valid": valid[rows]}


def frame_batches(tracks: Iterable[dict], pending: collections.deque, batch_size: int,
                  rows: slice) -> Iterator[dict]:
    """Packs the frames of consecutive tracks into global batches of `batch_size` frames; yields
    this process's `rows` of each: {'faces' uint8 [local, H, W(, 3)], 'valid' bool [local]}.

    Each track is appended to `pending` before its first frame is batched, so a consumer of the
    outputs (in the same order) knows whose rows arrive. A batch is padded (valid=False) at the end
    and when the face shape changes (a new shape is a new compile, not a mixed batch).
    """
    buf, filled = None, 0
    for track in tracks:
        faces = np.asarray(track["faces"], np.uint8)
        if buf is not None and buf.shape[1:] != faces.shape[1:]:
            yield _batch(buf, filled, rows)
            buf = None
        pending.append(track)
        start = 0
        while start < faces.shape[0]:
            if buf is None:
                buf, filled = np.zeros((batch_size, *faces.shape[1:]), np.uint8), 0
            take = min(batch_size - filled, faces.shape[0] - start)
            buf[filled:filled + take] = faces[start:start + take]
            filled, start = filled + take, start + take
            if filled == batch_size:
                yield _batch(buf, filled, rows)
                buf = None
    if buf is not None and filled:
        yield _batch(buf, filled, rows)


def _labelled(track: dict, logits: np.ndarray) -> dict:
    """The output record: the input track with the teacher's logits; faces kept only when the records
    schema holds them (grey [n, H, W]: RGB face-frame crops are not stored)."""
    if not np.all(np.isfinite(logits)):
        raise CmemoError(f"the teacher gave NaN or inf logits for track {track['track_id']}: is the export damaged?")
    out = {k: track[k] for k in ("track_id", "identity", "split", "audio")}
    out["logits"] = np.ascontiguousarray(logits, np.float32)
    if track["faces"].ndim == 3:
        out["faces"] = track["faces"]
    if track.get("frame_emotion") is not None:
        out["frame_emotion"] = track["frame_emotion"]
    return out


def local_rows(batch_size: int, mesh) -> slice:
    """This process's rows of a global batch; ConfigError unless it splits evenly over the devices."""
    try:
        local = sharding_lib.check_batch_size(batch_size, mesh)
    except ValueError as e:
        raise ConfigError(f"config.label.batch_size: {e}") from None
    return slice(jax.process_index() * local, (jax.process_index() + 1) * local)


def label_tracks(fn: Callable[[dict], dict], tracks: Iterable[dict], mesh, batch_size: int) -> Iterator[dict]:
    """Each track of `tracks` (with 'faces' [n >= 1, ...]) with its teacher logits [n, 8], in order."""
    rows = local_rows(batch_size, mesh)
    pending: collections.deque = collections.deque()
    done = np.zeros((0, NUM_EMOTIONS), np.float32)  # logits of the head of `pending`, in frame order
    for out in collect.iterate_outputs(fn, frame_batches(tracks, pending, batch_size, rows), mesh):
        done = np.concatenate([done, out["logits"]])
        while pending and len(pending[0]["faces"]) <= len(done):
            track = pending.popleft()
            n = len(track["faces"])
            yield _labelled(track, done[:n])
            done = done[n:]
