"""A user's own labelled clips: a CSV manifest ``path,label[,speaker]``.

* The header row is required; columns are found by name (case-insensitive, any order); other
  columns are ignored.
* Relative paths are relative to the CSV's folder; absolute paths are kept.
* Labels may be any names (not only the emotions of cmemo_jax.constants): they are returned as given,
  stripped and lower-cased, so 'Happy' and 'happy' are one class.
* speaker is optional (column absent or cell empty -> "").

A row naming a missing file, with an empty label or with too few cells is reported as a problem
(one line naming the CSV line) and skipped; the other rows are kept, in file order.
"""
from __future__ import annotations

import csv
import os

from cmemo_jax.data.clips import Clip

DATASET = "manifest"
REQUIRED_COLUMNS = ("path", "label")


def _header_columns(csv_path: str, header: list[str]) -> dict[str, int]:
    """Column name -> index; ValueError naming the file when path or label is missing."""
    columns = {}
    for i, name in enumerate(header):
        columns.setdefault(name.strip().lower(), i)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"{csv_path}: the header row must name the columns path,label[,speaker]; "
                         f"missing {', '.join(missing)} in {','.join(header)!r}")
    return columns


def _row_clip(row: list[str], columns: dict[str, int], base: str, where: str) -> tuple[Clip | None, str | None]:
    """One data row -> (clip, None) or (None, problem)."""
    needed = max(columns["path"], columns["label"])
    if len(row) <= needed:
        return None, f"{where}: too few cells ({len(row)}) for path,label"
    rel, label = row[columns["path"]].strip(), row[columns["label"]].strip().lower()
    if not rel:
        return None, f"{where}: empty path"
    path = os.path.normpath(os.path.join(base, os.path.expanduser(rel)))
    if not label:
        return None, f"{where}: {path}: empty label"
    if not os.path.isfile(path):
        return None, f"{where}: {path}: no such file"
    s = columns.get("speaker")
    speaker = row[s].strip() if s is not None and s < len(row) else ""
    return Clip(path=path, label=label, speaker=speaker, dataset=DATASET), None


def list_clips(csv_path: str) -> tuple[list[Clip], list[str]]:
    """Clips listed in a CSV manifest (see the module docstring for the format).

    Returns:
      (clips, problems): clips in file order; problems one line each ('FILE:LINE: ...').
    Raises:
      FileNotFoundError: no such CSV file. ValueError: no header row naming path and label.
    """
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"manifest not found: {csv_path}")
    base = os.path.dirname(os.path.abspath(csv_path))
    clips, problems = [], []
    # utf-8-sig: spreadsheets often write a byte-order mark that would stick to the first column name.
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{csv_path}: empty manifest (expected a header row path,label[,speaker])")
        columns = _header_columns(csv_path, header)
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue                               # blank lines carry nothing
            clip, problem = _row_clip(row, columns, base, f"{csv_path}:{reader.line_num}")
            if clip is not None:
                clips.append(clip)
            else:
                problems.append(problem)
    return clips, problems
