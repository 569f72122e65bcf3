"""Users' own text → de-identified documents in a TFDS ArrayRecord dataset, and back.

Input: a file or a folder (searched recursively, files in sorted path order) of
  .txt    one document per file (`unit='file'`) or per non-empty line (`unit='line'`)
  .jsonl  one JSON object per line: the document in `text_field`, optional codes in `labels_field` (a list,
          or one string split at ';' or '|'), optional identifier fields
  .csv    one row per document, columns named as for .jsonl (a header row is required)
  .tsv    the same, tab-separated
Other files are skipped and counted.

Parallel text (for translation, configs/translate_text.py with config.data.pairs='tfds:NAME'): with
`target_field` each record is a pair, the source in `text_field` and its translation in `target_field`, into
the language in `language_field` (a code: es, de, …) or, without one, `language` for every pair; .txt files
hold no pairs and are skipped. The target is de-identified like the source; 'target' and 'language' are
written beside 'text'.

Every document is de-identified (aigc_jax/text/deid.py) with the values of its `identifier_fields` as known
identifiers (and, with `path_identifiers`, the words of its folder and file names: folders are often named
after the patient); those fields, the group and every other field are never written. What is written per document:
'text' and 'labels' (the codes joined by '\n', de-identified too). The split is drawn whole per group
(`group`: 'document', 'file', 'folder' or 'field:NAME', e.g. field:patient_id) from a salted hash
(aigc_jax/data/prepare.py), so a patient's notes never straddle two splits (a .txt file, having no fields,
is its own group under 'field:NAME').

Nothing that can carry an identifier reaches the report or the log: files are numbered in the order read (paths
only with `report_paths`), skipped lines by number, and the de-identification by counts of each tag.
"""

import csv
import dataclasses
import io
import json
import os
import pathlib

import numpy as np

from aigc_jax.data import prepare as prepare_lib
from aigc_jax.data import records
from aigc_jax.text import corpora
from aigc_jax.text import deid

FORMATS = ('.txt', '.jsonl', '.csv', '.tsv')
UNITS = ('file', 'line')
REPORT = 'prepare_report.json'


@dataclasses.dataclass(frozen=True)
class Options:
  text_field: str = 'text'
  labels_field: str = ''
  identifier_fields: tuple[str, ...] = ()
  group: str = 'document'          # 'document' | 'file' | 'folder' | 'field:NAME'
  unit: str = 'file'               # .txt: one document per file or per line
  path_identifiers: bool = False   # the words of a file's folder and file names are its known identifiers
  target_field: str = ''           # parallel text: the translation's field
  language_field: str = ''         # parallel text: the field naming each pair's target language
  language: str = ''               # parallel text: the target language of every pair (no language_field)

  def __post_init__(self):
    if self.target_field and not (self.language_field or self.language):
      raise ValueError(f'--target_field={self.target_field}: name the target language, --language=es or '
                       '--language_field=<field>.')
    if self.group not in ('document', 'file', 'folder') and not self.group.startswith('field:'):
      raise ValueError(f'--group={self.group!r}: use document, file, folder or field:NAME (e.g. field:patient_id).')
    if self.unit not in UNITS:
      raise ValueError(f'--unit={self.unit!r}: use one of {UNITS}.')


@dataclasses.dataclass
class _Record:
  text: str
  labels: tuple[str, ...]
  known: tuple[str, ...]
  group: str
  target: str = ''
  language: str = ''


def input_files(path: str) -> list[pathlib.Path]:
  p = pathlib.Path(path)
  if p.is_file():
    return [p]
  if not p.is_dir():
    raise FileNotFoundError(f'--input={path} is neither a file nor a folder: give the text to prepare.')
  return sorted(f for f in p.rglob('*') if f.is_file())


def _labels(value) -> tuple[str, ...]:
  if value is None or value == '':
    return ()
  if isinstance(value, (list, tuple)):
    return tuple(str(v).strip() for v in value if str(v).strip())
  text = str(value).replace('|', ';')
  return tuple(v.strip() for v in text.split(';') if v.strip())


def _field_records(rows, opts: Options, file_key: str, folder_key: str, path_known, skip):
  """(line number, mapping) rows of a .jsonl/.csv file → records."""
  for line, row in rows:
    if not isinstance(row, dict):
      skip(line, 'not a JSON object')
      continue
    text = row.get(opts.text_field)
    if not isinstance(text, str):
      skip(line, f'no text in field {opts.text_field!r} (--text_field)')
      continue
    pair = {}
    if opts.target_field:
      target, lang = row.get(opts.target_field), row.get(opts.language_field) if opts.language_field else opts.language
      if not isinstance(target, str) or not target.strip():
        skip(line, f'no translation in field {opts.target_field!r} (--target_field)')
        continue
      if not isinstance(lang, str) or not lang.strip():
        skip(line, f'no language in field {opts.language_field!r} (--language_field)')
        continue
      pair = {'target': target, 'language': lang.strip()}
    known = tuple(str(row[f]) for f in opts.identifier_fields if row.get(f) not in (None, '')) + path_known
    if opts.group.startswith('field:'):
      key = row.get(opts.group[6:])
      if key in (None, ''):
        skip(line, f'no value in the group field {opts.group[6:]!r} (--group)')
        continue
      group = f'field:{key}'
    else:
      group = {'file': file_key, 'folder': folder_key}.get(opts.group, f'{file_key}:{line}')
    yield _Record(text, _labels(row.get(opts.labels_field)) if opts.labels_field else (), known, group, **pair)


def read(path: str, opts: Options, report_paths: bool = False):
  """(records, skipped, files_read) of the input; `skipped`: [{'file': number, 'line'?: n, 'reason'}]."""
  root = pathlib.Path(path)
  out, skipped, files_read = [], [], 0
  for number, f in enumerate(input_files(path)):
    where = {'file': number, **({'path': str(f)} if report_paths else {})}
    skip = lambda line, reason, where=where: skipped.append({**where, 'line': line, 'reason': reason})
    if f.suffix.lower() not in FORMATS:
      skipped.append({**where, 'reason': f'not {"/".join(FORMATS)}'})
      continue
    try:
      content = f.read_bytes().decode('utf-8-sig')
    except UnicodeDecodeError:
      skipped.append({**where, 'reason': 'not UTF-8 text: convert it (iconv -t UTF-8)'})
      continue
    except OSError as e:
      skipped.append({**where, 'reason': f'unreadable ({type(e).__name__})'})
      continue
    files_read += 1
    rel = f.relative_to(root) if root.is_dir() else pathlib.Path(f.name)
    file_key, folder_key = f'file:{rel}', f'folder:{rel.parent}'
    path_known = tuple(p for p in (*rel.parent.parts, rel.stem) if p) if opts.path_identifiers else ()
    suffix = f.suffix.lower()
    if suffix == '.txt' and opts.target_field:
      skipped.append({**where, 'reason': 'a .txt file holds no pairs: write .jsonl, .csv or .tsv'})
      continue
    if suffix == '.txt':
      docs = [(1, content)] if opts.unit == 'file' else \
          [(i + 1, line) for i, line in enumerate(content.splitlines()) if line.strip()]
      for line, text in docs:   # .txt has no fields: with group='field:…' each file is its own group
        group = {'file': file_key, 'folder': folder_key}.get(opts.group, f'{file_key}:{line}')
        out.append(_Record(text, (), path_known, group))
      continue
    if suffix == '.jsonl':
      rows = []
      for i, line in enumerate(content.splitlines()):
        if line.strip():
          try:
            rows.append((i + 1, json.loads(line)))
          except json.JSONDecodeError as e:
            skip(i + 1, f'not JSON ({e.msg})')
    else:
      reader = csv.DictReader(io.StringIO(content, newline=''), delimiter='\t' if suffix == '.tsv' else ',')
      if opts.text_field not in (reader.fieldnames or ()):
        skipped.append({**where, 'reason': f'no column {opts.text_field!r} (--text_field) in its header of '
                                           f'{len(reader.fieldnames or ())} columns'})
        continue
      rows = [(i + 2, row) for i, row in enumerate(reader)]
    out.extend(_field_records(rows, opts, file_key, folder_key, path_known, skip))
  return out, skipped, files_read


def prepare(*, input_path: str, output: str, name: str, opts: Options, scrubber: deid.Scrubber,
            val_fraction: float = 0.05, test_fraction: float = 0.05, salt: str = '',
            report_paths: bool = False) -> dict:
  """Writes the de-identified documents of `input_path` as TFDS `name` under `output`; returns the report
  (also saved as <output>/<name>/1.0.0/prepare_report.json). Raises ValueError when nothing is usable."""
  prepare_lib.check_name(name)
  if os.path.exists(records.dataset_dir(output, name)):
    raise FileExistsError(f'{records.dataset_dir(output, name)} already exists: choose another --name or delete '
                          'it (nothing was changed).')
  salt = salt or os.urandom(16).hex()
  recs, skipped, files_read = read(input_path, opts, report_paths)
  splits = {s: [] for s in corpora.SPLITS}
  empty = 0
  for r in recs:
    text = corpora.normalize_space(scrubber.scrub(r.text, r.known))
    if not text:
      empty += 1
      continue
    labels = tuple(scrubber.scrub(label, r.known) for label in r.labels)
    pair = (corpora.normalize_space(scrubber.scrub(r.target, r.known)), r.language) if opts.target_field else ()
    if pair and not pair[0]:
      empty += 1
      continue
    digest = prepare_lib.patient_hash(r.group, salt)
    splits[prepare_lib.assign_split(digest, val_fraction, test_fraction)].append((text, labels) + pair)
  report = {'files_read': files_read, 'documents': {s: len(v) for s, v in splits.items()},
            'empty_documents': empty, 'skipped': skipped, 'replacements': dict(sorted(scrubber.counts.items())),
            'group': opts.group,
            'deid': 'pattern-based (aigc_jax/text/deid.py): read a sample before sharing anything trained on it'}
  if not splits['train']:
    raise ValueError(f'--input={input_path}: no usable training document ({len(recs)} read, {len(skipped)} '
                     f'skipped: {_reasons(skipped)}). Check --text_field/--unit and the files.')
  labels = sorted({c for _, ys, *_ in splits['train'] for c in ys})
  tfds = records.tfds_api()
  features = {'text': tfds.features.Text(), 'labels': tfds.features.Text()}
  written = {s: (lambda v=v: ({'text': t, 'labels': '\n'.join(y)} for t, y in v)) for s, v in splits.items() if v}
  metadata = {'documents': report['documents'], 'training_labels': len(labels), 'kind': 'text'}
  if opts.target_field:
    features.update({'target': tfds.features.Text(), 'language': tfds.features.Text()})
    written = {s: (lambda v=v: ({'text': t, 'labels': '\n'.join(y), 'target': g, 'language': lang}
                                for t, y, g, lang in v)) for s, v in splits.items() if v}
    languages = sorted({lang for v in splits.values() for *_, lang in v})
    metadata.update(kind='pairs', languages=languages)
    report['languages'] = {lang: {s: sum(r[-1] == lang for r in v) for s, v in splits.items()} for lang in languages}
  path = records.write(name, output, features, written, metadata,
                       description='De-identified text prepared by python -m aigc_jax.prepare_text')
  with open(os.path.join(path, REPORT), 'w') as f:
    json.dump(report, f, indent=1)
  return report


def _reasons(skipped) -> str:
  counts = {}
  for s in skipped:
    counts[s['reason']] = counts.get(s['reason'], 0) + 1
  return '; '.join(f'{n}× {r}' for r, n in counts.items()) or 'none'


def load(name: str, data_dir: str, split: str) -> list[tuple[str, tuple[str, ...]]]:
  """[(text, labels)] of one split of a dataset written by `prepare` (empty when it has no such split)."""
  info = _info(name, data_dir)
  if 'text' not in info.features:
    raise ValueError(f'tfds:{name} under {data_dir} is not a text dataset (it has {sorted(info.features)}); '
                     'prepare text with python -m aigc_jax.prepare_text.')
  if split not in info.splits:
    return []
  source = records.tfds_api().data_source(name, split=split, data_dir=os.path.abspath(data_dir), download=False)
  out = []
  for i in range(len(source)):
    ex = source[i]
    labels = _decode(ex['labels'])
    out.append((_decode(ex['text']), tuple(labels.split('\n')) if labels else ()))
  return out


def load_pairs(name: str, data_dir: str, lang: str) -> dict[str, list[tuple[str, str]]]:
  """{split: [(source, translation into `lang`)]} of a parallel-text dataset written by `prepare`."""
  info = _info(name, data_dir)
  if 'target' not in info.features:
    raise ValueError(f'tfds:{name} under {data_dir} holds no pairs (prepared without --target_field): prepare '
                     'the parallel text with python -m aigc_jax.prepare_text --target_field=... --language=...')
  languages = list(info.metadata.get('languages', ())) if info.metadata else []
  if lang not in languages:
    raise ValueError(f'config.data.languages names {lang!r}; tfds:{name} holds pairs into {", ".join(languages)}.')
  out = {}
  for split in corpora.SPLITS:
    rows = []
    if split in info.splits:
      source = records.tfds_api().data_source(name, split=split, data_dir=os.path.abspath(data_dir), download=False)
      for i in range(len(source)):
        ex = source[i]
        if _decode(ex['language']) == lang:
          rows.append((_decode(ex['text']), _decode(ex['target'])))
    out[split] = rows
  return out


def _info(name: str, data_dir: str):
  if not data_dir:
    raise ValueError(f'tfds:{name} needs config.data.data_dir: the --output given to python -m '
                     'aigc_jax.prepare_text.')
  try:
    return records.info(name, data_dir)
  except FileNotFoundError:
    raise FileNotFoundError(f'No prepared text tfds:{name} under data_dir={data_dir!r}: write it with python -m '
                            f'aigc_jax.prepare_text --name={name} --output={data_dir} --input=...') from None


def _decode(value) -> str:
  value = np.asarray(value).item() if not isinstance(value, (bytes, str)) else value
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)
