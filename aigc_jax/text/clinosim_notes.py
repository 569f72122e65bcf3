"""Clinical notes with ICD-10-CM codes, generated offline by `clinosim` (MIT; synthetic patients, no real person).

clinosim simulates a catchment population and its encounters (check-ups, chronic follow-up, ED visits,
admissions) and writes SOAP notes (subjective, objective, assessment, plan) with each encounter's
diagnosis. We run its command once per setting (patients, seed, dates) into a cache folder, then read, per
encounter with notes and an ICD-10-CM diagnosis:

  text    its notes in order, each note's sections joined, every diagnosis name masked (below);
  codes   ICD-10-CM categories (3 characters): the encounter's diagnosis, plus those of the patient's
          chronic conditions that its notes name — the conditions it addresses;
  group   the patient (for the split: a patient's encounters stay on one side).

Labels are categories because the simulation codes one condition at several depths (Z00 and Z00.00, J44 and
J44.1) for reasons no note shows. The notes name their diagnoses verbatim ("Follow-up of chronic conditions:
Essential (primary) hypertension, …"), which would make coding a lookup, so every name the simulation can
give a diagnosis (its own code tables, its diagnosis files) and every ICD-10-CM title in the categories it
uses is replaced by [DX], matched word by word ignoring case and spacing. What is left to code from is what a
coder reads besides the names: complaints, vitals, labs, medications, procedures and plans.

The simulation is deterministic for a seed (its output differs only in a manifest's time stamps); 2,000
patients over a year take about 75 s on 2 cores and 250 MB of cache.
"""

import csv
import functools
import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys

import yaml

from aigc_jax.text import corpora

SECTIONS = ('subjective', 'objective', 'assessment', 'plan')
MASK = '[DX]'
# clinosim's own code tables: the names its notes use (the WHO ICD-10 wording as well as the CM one).
CODE_TABLES = ('codes/data/icd-10-cm.yaml', 'codes/data/icd-10.yaml')
_TOKEN = re.compile(r'\w+|[^\w\s]')
_END = ''   # the trie key that marks a complete name (no token is empty)


def category(code: str) -> str:
  return code.split('.')[0]


def cache_root(cache_dir: str = '') -> pathlib.Path:
  """Where simulations are kept: `cache_dir`, else $XDG_CACHE_HOME/aigc_jax, else ~/.cache/aigc_jax."""
  if cache_dir:
    return pathlib.Path(cache_dir)
  return pathlib.Path(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')) / 'aigc_jax'


def simulate(*, patients: int, seed: int, start: str, end: str, cache_dir: str = '') -> pathlib.Path:
  """The folder of a clinosim run with these settings, simulated now unless it is in the cache."""
  try:
    version = importlib.metadata.version('clinosim')
  except importlib.metadata.PackageNotFoundError:
    raise FileNotFoundError('The clinosim notes need the clinosim package: pip install -r requirements.txt '
                            '(it pins clinosim).') from None
  out = cache_root(cache_dir) / f'clinosim-{version}-p{patients}-s{seed}-{start}-{end}'
  if (out / 'DONE').exists():
    return out
  tmp = out.with_name(f'{out.name}.tmp{os.getpid()}')
  tmp.parent.mkdir(parents=True, exist_ok=True)
  cmd = [sys.executable, '-m', 'clinosim.simulator.cli', 'simulate', '--country', 'US', '-p', str(patients),
         '--seed', str(seed), '--start', start, '--end', end, '--format', 'csv', '-o', str(tmp)]
  run = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if run.returncode != 0:
    raise RuntimeError(f'clinosim failed (exit {run.returncode}) for config.data.clinosim patients={patients} '
                       f'seed={seed} start={start} end={end}: {run.stderr.strip()[-800:]}')
  (tmp / 'DONE').write_text(version)
  if out.exists():   # another process finished the same simulation first: keep its copy
    return out
  tmp.rename(out)
  return out


def _read_csv(path: pathlib.Path) -> list[dict]:
  if not path.exists():
    raise FileNotFoundError(f'{path} is missing: the clinosim output is incomplete. Delete {path.parent.parent} '
                            'and run again to simulate it anew.')
  with open(path, newline='', encoding='utf-8') as f:
    return list(csv.DictReader(f))


def _note_text(document: dict) -> str:
  narrative = document.get('narrative') or {}
  sections = narrative.get('sections') or {}
  parts = [f'{s.upper()}: {sections[s]}' for s in SECTIONS if sections.get(s)]
  if narrative.get('text'):
    parts.append(narrative['text'])
  return corpora.normalize_space(' '.join(parts))


@functools.lru_cache(maxsize=1)
def code_table_names() -> tuple[tuple[str, str], ...]:
  """(code, English name) from clinosim's code tables, read from the installed package."""
  root = corpora.package_dir('clinosim', 'pip install -r requirements.txt')
  out = []
  for rel in CODE_TABLES:
    table = yaml.safe_load((root / rel).read_text(encoding='utf-8')) or {}
    out += [(code, entry['en']) for code, entry in (table.get('codes') or {}).items()
            if isinstance(entry, dict) and entry.get('en')]
  return tuple(out)


class PhraseMasker:
  """Replaces known phrases with a mask, longest first, matched token by token (case and spacing ignored),
  and says which keys the replaced phrases stood for. A token trie: linear in the text, where one regex of
  thousands of alternatives takes minutes on the notes."""

  def __init__(self, phrases: dict[str, str], mask: str = MASK):
    self.mask, self.trie = mask, {}
    for phrase, key in phrases.items():
      node = self.trie
      for token in _TOKEN.findall(phrase.lower()):
        node = node.setdefault(token, {})
      if node is not self.trie:
        node.setdefault(_END, key)

  def __call__(self, text: str) -> tuple[str, set[str]]:
    tokens = [(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    pieces, keys, done, i = [], set(), 0, 0
    while i < len(tokens):
      node, match = self.trie, None
      for j in range(i, len(tokens)):
        node = node.get(tokens[j][0])
        if node is None:
          break
        if _END in node:
          match = (j, node[_END])
      if match is None:
        i += 1
        continue
      j, key = match
      pieces += [text[done:tokens[i][1]], self.mask]
      keys.add(key)
      done, i = tokens[j][2], j + 1
    return ''.join(pieces) + text[done:], keys


@functools.lru_cache(maxsize=4)
def encounters(folder: pathlib.Path) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
  """(patient group, masked text, categories) per encounter with notes and an ICD-10-CM diagnosis."""
  titles = corpora.icd10cm_titles()
  diagnoses = {r['encounter_id']: r for r in _read_csv(folder / 'csv' / 'diagnoses.csv')}
  chronic = {r['patient_id']: {category(c) for c in r.get('chronic_conditions', '').split('|') if c in titles}
             for r in _read_csv(folder / 'csv' / 'patients.csv')}
  used = {category(r['discharge_diagnosis_code']) for r in diagnoses.values()} | set().union(*chronic.values())
  # name → category. A note may name a subcode ("… of unspecified female breast") where the code is the
  # category, or use the simulation's WHO wording ("Recurrent depressive disorder" for F33).
  names = {t: category(c) for c, t in titles.items() if category(c) in used}
  names.update((n, category(c)) for c, n in code_table_names())
  for r in diagnoses.values():
    names.update((r[k + '_name'], category(r[k + '_code'])) for k in ('admission_diagnosis', 'discharge_diagnosis')
                 if r.get(k + '_name'))
  mask = PhraseMasker({n: c for n, c in names.items() if len(n) >= 3})
  docs_root = folder / 'cif' / 'narratives' / 'template' / 'documents'
  if not docs_root.is_dir():
    raise FileNotFoundError(f'{docs_root} is missing: the clinosim output has no notes. Delete {folder} and run '
                            'again to simulate it anew.')
  out = []
  for enc_dir in sorted(p for p in docs_root.iterdir() if p.is_dir()):
    row = diagnoses.get(enc_dir.name)
    if row is None or row['discharge_diagnosis_code'] not in titles:
      continue   # no diagnosis, or one that is not an ICD-10-CM code (the simulation's WHO-only F00)
    text = ' '.join(_note_text(json.loads(f.read_text(encoding='utf-8'))) for f in sorted(enc_dir.glob('*.json')))
    if not text:
      continue
    masked, named = mask(text)
    codes = {category(row['discharge_diagnosis_code'])} | (chronic.get(row['patient_id'], set()) & named)
    out.append((f'clinosim:{row["patient_id"]}', masked, tuple(sorted(codes))))
  return tuple(out)


def splits(*, val_fraction: float, test_fraction: float, patients: int, seed: int, start: str, end: str,
           cache_dir: str = '') -> dict[str, list[tuple[str, tuple[str, ...]]]]:
  """{split: [(text, codes)]} of the clinosim encounters, split by patient."""
  folder = simulate(patients=patients, seed=seed, start=start, end=end, cache_dir=cache_dir)
  out = {s: [] for s in corpora.SPLITS}
  for group, text, codes in encounters(folder):
    out[corpora.split_of(group, val_fraction, test_fraction)].append((text, codes))
  return out
