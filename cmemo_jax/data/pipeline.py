"""tf.data input pipelines over the record shards (records.py) that yield NumPy batches.

The host only crops int16 audio and slices the teacher-logit rows of the crop; the spectrogram and the
max-pool over the valid rows run on the accelerator (docs/method.md §5: the host must move ~2.3 GB/s of int16
audio at full H100 speed, so per-element work is a handful of vectorised TF ops and no float audio).

Batch dict (NumPy), B = batch size, R = max_rows (default max_rows_per_segment(crop_samples) = 18)::

    audio     int16   [B, crop_samples]   crop of the track, zero-padded at the end for short tracks
    logits    float32 [B, R, 8]           teacher rows first..first+R-1 of the crop (zeros past the track)
    num_rows  int32   [B]                 rows of `logits` that lie inside the crop (>= 1): max-pool these
    valid     bool    [B]                 False only for eval padding examples
  eval only:
    split     int32   [B]                 1 train, 2 unheard val, 3 heard val (0 for padding)
    identity  bytes   [B] (object)        b'' for padding
    track_id  bytes   [B] (object)        b'' for padding

Row rule (same as constants.frame_rows_in_segment): row(t) = floor(max(25 t - 1, 0) / 6),
first = min(row(start), n-1), last = max(min(row(start + dur - 1e-9), n-1) + 1, first + 1).
Tracks shorter than the crop are padded and use all their rows (first = 0, last = n), capped at R.

TensorFlow is imported lazily inside the functions.
"""
from __future__ import annotations

import os
import struct
from typing import Iterator, Sequence

import numpy as np

from cmemo_jax.constants import (CROP_SAMPLES, FRAME_STRIDE, NUM_EMOTIONS, SAMPLE_RATE, VIDEO_FPS,
                                 max_rows_per_segment)
from cmemo_jax.data.tf_io import import_tf as _tf, is_remote  # lazy TF: models/train import without it

DEFAULT_SHUFFLE_BUFFER = 16_384


# ----------------------------------------------------------------------------------------- counting

def _count_file(path: str) -> int:
    """Records in one TFRecord file by walking the length headers (no payload reads; TF only for URLs).

    Framing: uint64 length, uint32 masked crc of length, data, uint32 masked crc of data.
    """
    n = 0
    if is_remote(path):  # e.g. gs://: same header walk through tf.io.gfile (seek is supported)
        tf = _tf()
        size = tf.io.gfile.stat(path).length
        opener = lambda: tf.io.gfile.GFile(path, "rb")  # noqa: E731
    else:
        size = os.path.getsize(path)
        opener = lambda: open(path, "rb")  # noqa: E731
    with opener() as fh:
        pos = 0
        while pos < size:
            header = fh.read(8)
            if len(header) < 8:
                raise ValueError(f"{path}: truncated TFRecord header at byte {pos}")
            (length,) = struct.unpack("<Q", header)
            pos += 8 + 4 + length + 4
            if pos > size:
                raise ValueError(f"{path}: truncated TFRecord record at byte {pos - length - 16}")
            fh.seek(pos)
            n += 1
    return n


def count_records(files: Sequence[str]) -> int:
    """Total number of records in `files` (reads only the 8-byte record headers)."""
    if isinstance(files, str):
        files = [files]
    return sum(_count_file(f) for f in files)


# ----------------------------------------------------------------------------------------- sharding

def _shard_plan(files: Sequence[str], process_index: int, process_count: int):
    """(files_to_read, element_shard or None, num_examples_for_this_process).

    By file when the files split evenly over the processes (each reads only its files); otherwise by
    element (every process reads every file and keeps every process_count-th record), which balances the
    processes whatever the file count.
    """
    files = [files] if isinstance(files, str) else list(files)
    if not files:
        raise ValueError("no record files given")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if process_count == 1:
        return files, None, count_records(files)
    if len(files) >= process_count and len(files) % process_count == 0:
        mine = files[process_index::process_count]
        return mine, None, count_records(mine)
    total = count_records(files)
    n = (total - process_index + process_count - 1) // process_count if total > process_index else 0
    return files, (process_count, process_index), n


def _per_process_counts(files, process_count):
    return [_shard_plan(files, i, process_count)[2] for i in range(process_count)]


def _records(files, element_shard):
    tf = _tf()
    # Parallel reads interleave files in a fixed, deterministic order (one record from each in turn).
    ds = tf.data.TFRecordDataset(files, num_parallel_reads=min(len(files), 8),
                                 buffer_size=1 << 20)
    if element_shard is not None:
        ds = ds.shard(*element_shard)
    return ds


# ------------------------------------------------------------------------------------ crop + rows

def _frame_row(tf, t):
    """Row covering time t (float64 seconds): floor(max(25 t - 1, 0) / 6), as constants.frame_row."""
    return tf.cast(tf.floor(tf.maximum(VIDEO_FPS * t - 1.0, 0.0) / float(FRAME_STRIDE)), tf.int64)


def _crop_element(tf, ex, offset, crop_samples: int, max_rows: int) -> dict:
    """Crops audio at `offset` (int64 samples) and windows the logits rows of that crop."""
    audio = ex["audio"]
    logits = ex["logits"]
    num_samples = tf.shape(audio, out_type=tf.int64)[0]
    n = tf.shape(logits, out_type=tf.int64)[0]
    short = num_samples < crop_samples

    seg = audio[offset:offset + crop_samples]
    # Short tracks: zero-pad at the end (offset is 0 for them).
    seg = tf.pad(seg, [[0, crop_samples - tf.shape(seg, out_type=tf.int64)[0]]])
    seg = tf.ensure_shape(seg, [crop_samples])

    # Same float64 operation order as the Python reference so the rows agree bit for bit.
    start_s = tf.cast(offset, tf.float64) / float(SAMPLE_RATE)
    dur_s = crop_samples / float(SAMPLE_RATE)
    first = tf.minimum(_frame_row(tf, start_s), n - 1)
    last = tf.minimum(_frame_row(tf, start_s + dur_s - 1e-9), n - 1) + 1
    last = tf.maximum(last, first + 1)
    first = tf.where(short, tf.zeros_like(first), first)
    last = tf.where(short, n, last)
    num_rows = tf.minimum(last - first, max_rows)

    window = tf.pad(logits[first:], [[0, max_rows], [0, 0]])[:max_rows]
    window = tf.ensure_shape(window, [max_rows, NUM_EMOTIONS])
    return {"audio": seg, "logits": window, "num_rows": tf.cast(num_rows, tf.int32),
            "valid": tf.constant(True)}


def _default_max_rows(crop_samples: int, max_rows):
    return max_rows_per_segment(crop_samples) if max_rows is None else int(max_rows)


# ------------------------------------------------------------------------------------------- train

def build_train_dataset(files: Sequence[str], *, batch_size: int, seed: int,
                        crop_samples: int = CROP_SAMPLES, max_rows: int | None = None,
                        process_index: int = 0, process_count: int = 1, start_step: int = 0,
                        shuffle_buffer: int | None = None, cache: bool = False):
    """The infinite training tf.data.Dataset behind ``train_batches`` (batches of tensors).

    Returns (dataset, examples_per_epoch_for_this_process).
    """
    tf = _tf()
    from cmemo_jax.data.records import parse_example

    max_rows = _default_max_rows(crop_samples, max_rows)
    read_files, element_shard, n_epoch = _shard_plan(files, process_index, process_count)
    if n_epoch == 0:
        raise ValueError(f"process {process_index}/{process_count} has no training examples in "
                         f"{len(list(files))} file(s)")
    buf = min(n_epoch, DEFAULT_SHUFFLE_BUFFER if shuffle_buffer is None else int(shuffle_buffer))
    buf = max(buf, 1)

    base = _records(read_files, element_shard)
    if cache:
        # Parse before caching so the cache holds whole-track int16 audio (no re-parsing per epoch).
        base = base.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()

    # Resume: the stream is a concatenation of epochs; whole epochs are skipped by arithmetic, the
    # remainder by .skip() on the still-uncropped (and, without cache, unparsed) records.
    consumed = int(start_step) * int(batch_size)
    start_epoch, skip_in_epoch = divmod(consumed, n_epoch)
    seed = int(seed)

    def epoch_ds(epoch):
        # Rebuilt per epoch with seed + epoch: epoch e's order never depends on what came before it.
        ds = base.shuffle(buf, seed=tf.cast(seed, tf.int64) + epoch, reshuffle_each_iteration=False)
        return ds.enumerate().map(lambda i, ex: (epoch, i, ex))

    ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(epoch_ds)
    if skip_in_epoch:
        ds = ds.skip(skip_in_epoch)

    def crop(epoch, index, ex):
        if not cache:
            ex = parse_example(ex)
        num_samples = tf.shape(ex["audio"], out_type=tf.int64)[0]
        max_off = tf.maximum(num_samples - crop_samples, 0)
        # Keyed on (seed, epoch, index within epoch) so a restart reproduces every crop exactly.
        key = tf.random.experimental.stateless_fold_in(
            tf.random.experimental.stateless_fold_in(tf.constant([seed, 0x5EED], tf.int64), epoch), index)
        offset = tf.random.stateless_uniform([], seed=key, minval=0, maxval=max_off + 1, dtype=tf.int64)
        return _crop_element(tf, ex, offset, crop_samples, max_rows)

    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options)
    return ds, n_epoch


def train_batches(files: Sequence[str], *, batch_size: int, seed: int,
                  crop_samples: int = CROP_SAMPLES, max_rows: int | None = None,
                  process_index: int = 0, process_count: int = 1, start_step: int = 0,
                  shuffle_buffer: int | None = None, cache: bool = False) -> Iterator[dict]:
    """Infinite iterator of training batches (NumPy dicts, see module docstring) for this process.

    Args:
      files: record shards of the training split: records.list_shards(data_dir, 'train'), i.e. the
        files dataset_info.json lists (never a glob, which could pick up another run's shards).
      batch_size: examples per batch on this process (the global batch is batch_size * process_count).
      seed: epoch e uses a shuffle seeded with seed + e and crops keyed on (seed, e, index in epoch).
      crop_samples: crop length in samples at 16 kHz (default 64,384 = 4.024 s = 400 spectrogram frames).
      max_rows: size R of the logits window; default max_rows_per_segment(crop_samples).
      process_index, process_count: this host among all; shards by file when the file count divides
        evenly by process_count, else by element.
      start_step: batches already consumed (global step); the iterator starts at batch `start_step`
        exactly as an uninterrupted run would.
      shuffle_buffer: shuffle buffer in tracks (default min(examples per process, 16384)); with
        buffer >= tracks per process each epoch is a uniform permutation.
      cache: keep the parsed whole tracks in RAM after the first epoch.

    Note: the shuffle order uses tf.data's seeded shuffle, so a TF global seed (tf.random.set_seed)
    would change it; crops use stateless RNG and do not depend on it.
    """
    ds, _ = build_train_dataset(files, batch_size=batch_size, seed=seed, crop_samples=crop_samples,
                                max_rows=max_rows, process_index=process_index,
                                process_count=process_count, start_step=start_step,
                                shuffle_buffer=shuffle_buffer, cache=cache)
    return ds.as_numpy_iterator()


# -------------------------------------------------------------------------------------------- eval

def eval_batches(files: Sequence[str], *, batch_size: int, crop_samples: int = CROP_SAMPLES,
                 max_rows: int | None = None, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict]:
    """Every track of this process exactly once, centre-cropped, in file order; finite.

    The centre crop starts at max((num_samples - crop_samples) // 2, 0). The last partial batch is
    padded with zero examples (valid=False, split 0, identity/track_id b''). With several processes,
    every process yields the same number of batches (the largest any process needs; extra batches
    are all-invalid), so collective eval steps stay in lockstep.
    """
    tf = _tf()
    from cmemo_jax.data.records import parse_example

    max_rows = _default_max_rows(crop_samples, max_rows)
    read_files, element_shard, n_mine = _shard_plan(files, process_index, process_count)
    if process_count > 1:
        n_max = max(_per_process_counts(files, process_count))
    else:
        n_max = n_mine
    num_batches = -(-n_max // batch_size)

    def crop(serialized):
        ex = parse_example(serialized)
        num_samples = tf.shape(ex["audio"], out_type=tf.int64)[0]
        offset = tf.maximum((num_samples - crop_samples) // 2, 0)
        out = _crop_element(tf, ex, offset, crop_samples, max_rows)
        out["split"] = tf.cast(ex["split"], tf.int32)
        out["identity"] = ex["identity"]
        out["track_id"] = ex["track_id"]
        return out

    ds = _records(read_files, element_shard)
    ds = ds.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=False, num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True).prefetch(tf.data.AUTOTUNE)

    def gen():
        produced = 0
        for batch in ds.as_numpy_iterator():
            produced += 1
            yield _pad_batch(batch, batch_size)
        for _ in range(num_batches - produced):
            yield _empty_batch(batch_size, crop_samples, max_rows)

    return gen()


def _pad_batch(batch: dict, batch_size: int) -> dict:
    """Pads a partial eval batch to batch_size with zero examples marked valid=False."""
    b = batch["valid"].shape[0]
    if b == batch_size:
        return batch
    out = {}
    for k, v in batch.items():
        pad = np.zeros((batch_size - b,) + v.shape[1:], dtype=v.dtype)
        if v.dtype == object:
            pad[...] = b""
        out[k] = np.concatenate([v, pad], axis=0)
    return out


def _empty_batch(batch_size: int, crop_samples: int, max_rows: int) -> dict:
    ids = np.empty((batch_size,), dtype=object)
    ids[...] = b""
    return {"audio": np.zeros((batch_size, crop_samples), np.int16),
            "logits": np.zeros((batch_size, max_rows, NUM_EMOTIONS), np.float32),
            "num_rows": np.zeros((batch_size,), np.int32),
            "valid": np.zeros((batch_size,), bool),
            "split": np.zeros((batch_size,), np.int32),
            "identity": ids, "track_id": ids.copy()}
