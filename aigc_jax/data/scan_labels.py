"""Labels for users' scans, from a CSV beside them: what a diagnostic classifier trains on.

  path,lesion,kind
  patient_017/series_2,1,2            a folder: every file under it
  patient_018/ct.nii.gz,0,0           a file

`path` is relative to the ingest's --input (a folder or a file; '/' as separator); every other column is a
label, a whole number (a class index; -1 is the usual "unknown"). A series takes the row of the longest path
that covers its files; a series no row covers, or whose files fall under rows with different labels, is left
out with that reason. Only the label values and the column names are written: the paths, which are often
patient names or IDs, never leave the CSV.
"""

import csv
import os

import numpy as np


def read(path: str) -> tuple[tuple[str, ...], dict[str, tuple[int, ...]]]:
  """(label names, {relative path: label values}) of a labels CSV; ValueError naming the file and row."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--labels={path}: no such file. Give a CSV with a header "path,<label>,...".')
  with open(path, newline='', encoding='utf-8-sig') as f:
    rows = list(csv.reader(f))
  if not rows or not rows[0] or rows[0][0].strip() != 'path' or len(rows[0]) < 2:
    raise ValueError(f'--labels={path}: the first row must be a header "path,<label>[,<label>...]" (got '
                     f'{",".join(rows[0]) if rows else "an empty file"!r}).')
  names = tuple(n.strip() for n in rows[0][1:])
  bad = [n for n in names if not n.isidentifier() or n in ('image', 'hu', 'spacing', 'patient', 'slice',
                                                            'num_slices', 'path')]
  if bad:
    raise ValueError(f'--labels={path}: label columns must be plain names other than the scan keys; {bad} '
                     'are not.')
  table = {}
  for line, row in enumerate(rows[1:], start=2):
    if not any(cell.strip() for cell in row):
      continue
    if len(row) != len(rows[0]):
      raise ValueError(f'--labels={path} row {line}: {len(row)} cells, the header has {len(rows[0])}.')
    given = row[0].strip().replace('\\', '/')
    if not given or given.startswith('/') or os.path.isabs(given):
      # An absolute path would never match (series are matched by their path relative to --input), and an
      # empty one means nothing: both would leave series out with no word on why.
      raise ValueError(f'--labels={path} row {line}: {given!r} is not a path relative to --input (e.g. '
                       '"patient_017/series_2").')
    key = os.path.normpath(given).strip('/')
    try:
      values = tuple(int(cell) for cell in row[1:])
    except ValueError:
      raise ValueError(f'--labels={path} row {line}: labels must be whole numbers (class indices), got '
                       f'{row[1:]}.') from None
    if key in table and table[key] != values:
      raise ValueError(f'--labels={path} row {line}: the same path is given twice with different labels.')
    table[key] = values
  if not table:
    raise ValueError(f'--labels={path}: no rows under the header.')
  return names, table


def _row_of(relpath: str, table: dict[str, tuple[int, ...]]) -> str | None:
  """The longest path of the table that is `relpath` or a folder above it."""
  parts = relpath.split('/')
  for n in range(len(parts), 0, -1):
    key = '/'.join(parts[:n])
    if key in table:
      return key
  return None


def of_series(relpaths: list[str], table: dict[str, tuple[int, ...]]) -> tuple[tuple[int, ...] | None, str]:
  """(the labels of a series whose files are at `relpaths`, or None with the reason it has none)."""
  keys = {_row_of(p.replace(os.sep, '/'), table) for p in relpaths}
  if None in keys:
    return None, 'no row of --labels covers its files'
  values = {table[k] for k in keys}
  if len(values) > 1:
    return None, 'its files fall under rows of --labels with different labels'
  return values.pop(), ''


def as_features(names: tuple[str, ...], values: tuple[int, ...]) -> dict[str, np.int32]:
  return {n: np.int32(v) for n, v in zip(names, values)}
