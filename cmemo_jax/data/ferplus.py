"""Reader of the FERPlus release: FER2013 images with the FERPlus ten-annotator votes (docs/method.md §3).

Two files, paired row by row (the n-th data row of one describes the n-th image of the other)::

    fer2013.csv      emotion,pixels,Usage
                     pixels = 2304 space-separated ints 0-255: a 48x48 grey image, row-major
    fer2013new.csv   Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,
                     unknown,NF       (integer vote counts of 10 annotators)

Usage Training / PublicTest / PrivateTest -> splits train / validation / test. The old FER2013 label
(``emotion``) is read past: FERPlus replaces it.

Cleaning follows the FERPlus authors' "majority"/"probability" preparation (microsoft/FERPlus
``ferplus.py``): vote counts <= 1 are treated as annotator noise and zeroed; then a row is dropped when
it has no image name, when unknown or NF (not a face) outvotes every emotion, when 3 or more emotions
tie for the top vote, or when the (possibly tied) top emotions hold <= 50 % of the cleaned votes.
An emotion that merely ties with unknown/NF is kept, as in the reference code; the 50 % rule then
decides. The hard label is the argmax of the 8 emotion votes; a 2-way tie goes to the emotion that
comes first in ``EMOTIONS`` (the teacher trains on the vote distribution, where ties are kept).

Malformed rows (wrong pixel count, non-numeric or out-of-range values, Usage disagreeing between the
files, missing fields, one file longer than the other) are skipped with a one-line reason naming file
and row; every good row is kept. A file whose header lacks the expected columns is not a FERPlus file at
all: ValueError naming it.

Public API::

    read_ferplus(fer2013_csv, fer2013new_csv) -> FerPlus      load_ferplus(manual_dir) -> FerPlus
    FerPlus: .splits / ['train'|'validation'|'test'] -> FerPlusSplit(image, votes, label, row),
             .skipped [(row, reason)], .dropped_by_cleaning, .num_malformed
    clean_votes(counts) -> (cleaned [10] float32, drop reason or None)
    parse_pixels(text) -> uint8 [48, 48, 1]
    vote_distribution(votes) -> float32 [n, 8]
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import logging
import os
import warnings
from typing import Iterator

import numpy as np

from cmemo_jax.constants import EMOTIONS, NUM_EMOTIONS

FER2013_FILE = "fer2013.csv"
FERPLUS_FILE = "fer2013new.csv"

IMAGE_SIZE = 48
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE

# Vote columns: the 8 emotions (EMOTIONS order) then the two "no emotion" answers.
VOTE_NAMES = EMOTIONS + ("unknown", "NF")
NUM_VOTES = len(VOTE_NAMES)
FER2013_COLUMNS = ("emotion", "pixels", "Usage")
FERPLUS_COLUMNS = ("Usage", "Image name") + VOTE_NAMES

USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
SPLITS = tuple(USAGE_TO_SPLIT.values())

MAX_NOISE_VOTES = 1     # counts <= this are one annotator's outlier: zeroed
MAX_TIED_TOP = 2        # 3+ emotions tied for the top: too ambiguous to keep
MIN_TOP_SHARE = 0.5     # the top emotion(s) must hold more than this share of the votes

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FerPlusSplit:
    """One split's examples, all arrays aligned on the first axis (n examples).

    image  uint8   [n, 48, 48, 1]  grey, 0-255, row 0 = top of the face
    votes  float32 [n, 10]         cleaned vote counts: 8 emotions (EMOTIONS order), unknown, NF
    label  int32   [n]             argmax of the 8 emotion votes, index into EMOTIONS
    row    int64   [n]             0-based data-row index in both csv files (header not counted)
    """
    image: np.ndarray
    votes: np.ndarray
    label: np.ndarray
    row: np.ndarray

    def __len__(self) -> int:
        return int(self.label.shape[0])


@dataclasses.dataclass(frozen=True)
class FerPlus:
    """The cleaned FERPlus release.

    splits               {'train', 'validation', 'test'} -> FerPlusSplit (also ``ferplus['train']``)
    skipped              (row, reason) for every dropped row, in row order: malformed and cleaned-out
    dropped_by_cleaning  how many of ``skipped`` are well-formed rows removed by the cleaning rules
    """
    splits: dict[str, FerPlusSplit]
    skipped: list[tuple[int, str]]
    dropped_by_cleaning: int

    def __getitem__(self, split: str) -> FerPlusSplit:
        return self.splits[split]

    @property
    def num_malformed(self) -> int:
        """Rows skipped because the input was bad (not by a cleaning rule)."""
        return len(self.skipped) - self.dropped_by_cleaning


class _RowError(ValueError):
    """A malformed input row; the message is the skip reason."""


def _open_csv(path: str, columns: tuple[str, ...]):
    """Opens a csv and checks its header; returns (file handle, reader, {column: field index}).

    ValueError naming the file when the header lacks any of `columns`.
    """
    name = os.path.basename(path)
    # utf-8-sig: tolerate a BOM from spreadsheet exports; 'replace': a corrupt byte spoils one row
    # (which then fails to parse and is skipped), not the whole file.
    fh = open(path, newline="", encoding="utf-8-sig", errors="replace")
    reader = csv.reader(fh)
    try:
        header = next(reader, None)
    except csv.Error as e:
        fh.close()
        raise ValueError(
            f"{name} is not the expected FERPlus csv: unreadable header ({e}): {path}") from None
    found = {c.strip(): i for i, c in enumerate(header or [])}
    missing = [c for c in columns if c not in found]
    if missing:
        fh.close()
        raise ValueError(f"{name} is not the expected FERPlus csv: its header lacks "
                         f"{', '.join(missing)} (expected {','.join(columns)}): {path}")
    return fh, reader, {c: found[c] for c in columns}, len(header)


@dataclasses.dataclass(frozen=True)
class _BadRow:
    """A row the csv module could not split into the header's fields."""
    file: str
    line: int
    message: str


def _rows(reader, index: dict[str, int], num_fields: int, name: str) -> Iterator[dict | _BadRow]:
    """Yields each data row as {column: text}, or a _BadRow if it cannot be split into the columns."""
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # e.g. a field beyond csv.field_size_limit: skip that row only
            yield _BadRow(name, reader.line_num, f"unreadable csv row ({e})")
            continue
        if len(fields) != num_fields:
            yield _BadRow(name, reader.line_num, f"{len(fields)} fields, the header has {num_fields}")
            continue
        yield {c: fields[i] for c, i in index.items()}


def parse_pixels(text: str) -> np.ndarray:
    """'70 80 82 ...' (2304 ints 0-255) -> uint8 [48, 48, 1], row-major; ValueError if malformed."""
    try:
        with warnings.catch_warnings():
            # numpy < 2.3 warns (and returns a partial array) where newer numpy raises.
            warnings.simplefilter("error", DeprecationWarning)
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise _RowError("pixels are not all integers") from None
    if not text.strip():  # numpy parses a blank string as [0]
        raise _RowError("no pixel values")
    if values.shape[0] != NUM_PIXELS:
        raise _RowError(f"{values.shape[0]} pixel values, expected {NUM_PIXELS}")
    if values.min() < 0 or values.max() > 255:
        raise _RowError(f"pixel values outside 0-255 (min {values.min()}, max {values.max()})")
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE, 1)


def _parse_votes(row: dict) -> np.ndarray:
    """The 10 vote columns of a fer2013new.csv row -> int64 [10]; _RowError if not counts."""
    votes = np.zeros(NUM_VOTES, np.int64)
    for k, col in enumerate(VOTE_NAMES):
        text = row[col].strip()
        try:
            votes[k] = int(text)
        except (ValueError, OverflowError):
            raise _RowError(f"vote {col}={text!r} is not an integer count") from None
        if votes[k] < 0:
            raise _RowError(f"vote {col}={votes[k]} is negative")
    return votes


def clean_votes(counts) -> tuple[np.ndarray, str | None]:
    """Applies the FERPlus vote cleaning to one row's counts.

    counts: [10] vote counts (8 emotions in EMOTIONS order, unknown, NF).
    Returns (cleaned float32 [10] with counts <= 1 zeroed, None if the row is kept, else the reason).
    """
    cleaned = np.asarray(counts, np.float32).copy()
    if cleaned.shape != (NUM_VOTES,):
        raise ValueError(f"expected {NUM_VOTES} vote counts, got shape {cleaned.shape}")
    cleaned[cleaned <= MAX_NOISE_VOTES] = 0.0
    total = float(cleaned.sum())
    if total == 0:
        return cleaned, f"no votes left after zeroing counts <= {MAX_NOISE_VOTES}"
    emotions = cleaned[:NUM_EMOTIONS]
    top = float(emotions.max())
    for k in range(NUM_EMOTIONS, NUM_VOTES):
        if cleaned[k] > top:
            return cleaned, f"top vote is {VOTE_NAMES[k]} ({cleaned[k]:g} of {total:g})"
    tied = int(np.count_nonzero(emotions == top))
    if tied > MAX_TIED_TOP:
        return cleaned, f"{tied} emotions tie for the top vote ({top:g} each)"
    if tied * top <= MIN_TOP_SHARE * total:
        return cleaned, (f"top emotion{'s hold' if tied > 1 else ' holds'} {tied * top:g} of {total:g} "
                         f"votes (<= {MIN_TOP_SHARE:.0%})")
    return cleaned, None


def vote_distribution(votes) -> np.ndarray:
    """The teacher's training target: the 8 emotion votes normalised to sum 1.

    votes: [n, 10] (or [n, 8]) vote counts, emotions first in EMOTIONS order -> float32 [n, 8].
    ValueError if a row has no emotion votes (never the case after cleaning).
    """
    votes = np.asarray(votes, np.float64)
    if votes.ndim != 2 or votes.shape[1] not in (NUM_EMOTIONS, NUM_VOTES):
        raise ValueError(f"votes must be [n, {NUM_VOTES}] or [n, {NUM_EMOTIONS}], got {votes.shape}")
    emotions = votes[:, :NUM_EMOTIONS]
    totals = emotions.sum(axis=1, keepdims=True)
    empty = np.flatnonzero(totals[:, 0] <= 0)
    if empty.size:
        raise ValueError(f"{empty.size} rows have no emotion votes (first: index {empty[0]})")
    return (emotions / totals).astype(np.float32)


def _read_row(row_index: int, fer: dict | _BadRow | None, new: dict | _BadRow | None,
              fer_name: str, new_name: str):
    """Checks one pair of rows. Returns (split, image, votes) or raises _RowError with the reason."""
    if fer is None:
        raise _RowError(f"{fer_name} has no row {row_index}: {new_name} has more rows")
    if new is None:
        raise _RowError(f"{new_name} has no row {row_index}: {fer_name} has more rows")
    for bad in (fer, new):
        if isinstance(bad, _BadRow):
            raise _RowError(f"{bad.file} row {row_index} (line {bad.line}): {bad.message}")
    usage = fer["Usage"].strip()
    if new["Usage"].strip() != usage:
        raise _RowError(f"row {row_index}: Usage {usage!r} in {fer_name} but "
                        f"{new['Usage'].strip()!r} in {new_name}")
    if usage not in USAGE_TO_SPLIT:
        raise _RowError(f"{fer_name} row {row_index}: unknown Usage {usage!r} "
                        f"(expected {', '.join(USAGE_TO_SPLIT)})")
    try:
        votes = _parse_votes(new)
    except _RowError as e:
        raise _RowError(f"{new_name} row {row_index}: {e}") from None
    try:
        image = parse_pixels(fer["pixels"])
    except _RowError as e:
        raise _RowError(f"{fer_name} row {row_index}: {e}") from None
    return USAGE_TO_SPLIT[usage], image, votes


def _stack(images: list, votes: list, rows: list) -> FerPlusSplit:
    """Per-example lists -> one FerPlusSplit (labels from the cleaned votes)."""
    vote_arr = np.asarray(votes, np.float32).reshape(-1, NUM_VOTES)
    return FerPlusSplit(
        image=(np.stack(images) if images
               else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8)),
        votes=vote_arr,
        label=vote_arr[:, :NUM_EMOTIONS].argmax(axis=1).astype(np.int32),
        row=np.asarray(rows, np.int64))


def read_ferplus(fer2013_csv: str, fer2013new_csv: str) -> FerPlus:
    """Reads and cleans the FERPlus release (see the module docstring for formats and rules).

    Streams both files (the real fer2013.csv is ~300 MB, 35,887 rows); pixels are parsed by numpy.
    ValueError naming the file if either is not the expected csv; malformed rows are skipped.
    """
    fer_name, new_name = os.path.basename(fer2013_csv), os.path.basename(fer2013new_csv)
    fer_fh, fer_reader, fer_idx, fer_n = _open_csv(fer2013_csv, FER2013_COLUMNS)
    try:
        new_fh, new_reader, new_idx, new_n = _open_csv(fer2013new_csv, FERPLUS_COLUMNS)
    except ValueError:
        fer_fh.close()
        raise
    kept = {s: ([], [], []) for s in SPLITS}   # split -> (images, votes, rows)
    skipped: list[tuple[int, str]] = []
    malformed: list[str] = []
    n_cleaned = 0
    with fer_fh, new_fh:
        pairs = itertools.zip_longest(_rows(fer_reader, fer_idx, fer_n, fer_name),
                                      _rows(new_reader, new_idx, new_n, new_name))
        for row_index, (fer, new) in enumerate(pairs):
            try:
                split, image, counts = _read_row(row_index, fer, new, fer_name, new_name)
            except _RowError as e:
                skipped.append((row_index, str(e)))
                malformed.append(str(e))
                continue
            cleaned, reason = clean_votes(counts)
            if not new["Image name"].strip():  # FERPlus' mark of an image it removed
                reason = "no Image name"
            if reason is not None:
                skipped.append((row_index, f"{new_name} row {row_index}: {reason}"))
                n_cleaned += 1
                continue
            images, votes, rows = kept[split]
            images.append(image)
            votes.append(cleaned)
            rows.append(row_index)
    result = FerPlus(splits={s: _stack(*kept[s]) for s in SPLITS}, skipped=skipped,
                     dropped_by_cleaning=n_cleaned)
    _report(result, malformed)
    return result


def _report(data: FerPlus, malformed: list[str]) -> None:
    """Logs the split sizes and, if any, the first few reasons for skipping malformed rows."""
    sizes = ", ".join(f"{s} {len(data[s])}" for s in SPLITS)
    _log.info("FERPlus: %s; %d rows dropped by cleaning", sizes, data.dropped_by_cleaning)
    if malformed:
        _log.warning("FERPlus: %d malformed rows skipped, e.g. %s", len(malformed),
                     " | ".join(malformed[:3]))


def load_ferplus(manual_dir: str) -> FerPlus:
    """Reads fer2013.csv and fer2013new.csv from one folder; FileNotFoundError naming what is missing."""
    if not os.path.isdir(manual_dir):
        raise FileNotFoundError(f"FERPlus folder {manual_dir} does not exist")
    paths = [os.path.join(manual_dir, f) for f in (FER2013_FILE, FERPLUS_FILE)]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"no {' or '.join(missing)} in {manual_dir} (fer2013.csv: the Kaggle FER2013 release; "
            f"fer2013new.csv: github.com/microsoft/FERPlus)")
    return read_ferplus(*paths)
