"""Reports for the built-in CT slices, whose findings are known exactly: the paired data of image → report.

A phantom slice (aigc_jax/data/phantom.py) knows its level, whether it holds a lesion, its kind (lung nodule or
liver mass), its centre and radius. Its report says those in radiologists' words:

  1. the level, in one fixed sentence of ours ("Axial CT slice at the level of the upper chest.");
  2. the lesion: a lung nodule in a sentence mined from the IU chest X-ray reports, its size, side and zone
     filled in from the labels; a liver mass in one of three sentences of ours (IU reports chest films and
     never describes a liver mass);
  3. normal statements from the IU reports, one per topic (the lungs, unless a nodule is reported; the heart
     and mediastinum; the pleura), each drawn with its frequency among the IU findings.

The IU text (torchxrayvision's wheel, CC BY-NC-ND 4.0) is read where pip put it: the sentences are selected
and turned into templates by the rules below at run time, never copied into this repository.

`read(report)` goes the other way, negation-aware (aigc_jax/text/findings.py): the level, the lesions asserted,
the nodule's side and the stated size, so a generated report is scored on what it says against the slice's
labels (`clinical_scores`).
"""

import collections
import functools
import re

import numpy as np

from aigc_jax.text import corpora
from aigc_jax.text import findings

FOV_MM = 400.0   # the phantom's field of view (the acquisition model's default): 1 unit = 200 mm
LEVELS = ('upper chest', 'lower chest', 'upper abdomen')
LEVEL_EDGES = (0.4, 0.75)    # phantom level z: < 0.4 upper chest, < 0.75 lower chest, else upper abdomen
LEVEL_SENTENCE = 'Axial CT slice at the level of the {}.'
MASS_SENTENCES = ('There is a {size} hypodense mass in the liver.',
                  'A {size} hypodense lesion is present in the liver.',
                  'Hypodense hepatic mass measuring {size}.')
TOPICS = {'lungs': r'\b(?:lungs?|pulmonary|airspace|consolidation|clear)\b',
          'heart': r'\b(?:heart|cardiac|cardiomediastinal|cardio mediastinal|mediastinum|mediastinal)\b',
          'pleura': r'\b(?:pleural|effusions?|pneumothorax|pneumothoraces)\b'}
# Normal statements must hold for any slice: nothing about an earlier study, the radiograph's views, devices,
# degree words, sides, or a finding (asserted or denied lesions: a denied nodule contradicts a reported one).
_NOT_NORMAL = re.compile(
    r'xxxx|\d|prior|previous|compar|interval|stable|unchanged|again|view|lateral|frontal|radiograph|film|exam|'
    r'study|patient|since|\bnow\b|remain|post|surg|sternotomy|clip|catheter|tube|pacer|device|limits|otherwise|'
    r'degenerative|calcif|tortuous|aort|hyperexpan|hyperinfl|flatten|mild|minimal|small|\blow\b|right|left|'
    r'nodul|mass|lesion|granulom|bone|bony|osseous', re.I)
_MIN_COUNT = 5           # a phrasing radiologists used at least this often
SIZE = re.compile(r'\b(\d+(?:\.\d+)?)(?: ?x ?\d+(?:\.\d+)?)? ?(mm|cm)\b', re.I)
_SIDE = re.compile(r'\b(right|left)\b', re.I)
_ZONE = re.compile(r'\b(?:(upper|lower|middle) (lobe|lung)|(mid) ?(lung))\b', re.I)
# Nodule sentences: one nodule, one side, one size, placed by lung zone, stated without hedging or history.
_NOT_NODULE = re.compile(r'xxxx|nodules|multiple|numerous|bilateral|scattered|calcif|granulom|prior|interval|'
                         r'stable|unchanged|previous|increas|decreas|develop|\brib|interspace|view|hil(?:um|ar)|'
                         r'ap(?:ex|ical)|base|segment|\band\b|\bmay\b|could|which|question|vague|poorly|'
                         r'approximately|worrisome|\bor\b', re.I)


def _sentences(text: str) -> list[str]:
  return [s.strip() for s in re.split(r'(?<=\.)\s+', text or '') if s.strip()]


@functools.lru_cache(maxsize=1)
def phrasebook() -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
  """{topic: (sentences, their frequencies as probabilities)} for 'lungs', 'heart', 'pleura' (normal
  statements) and 'nodule' (templates with {size}, {side}, {zone}), mined from the installed IU reports."""
  counts = collections.Counter()
  for doc in corpora.iu_reports():
    for field in ('findings', 'impression'):
      counts.update(_sentences(doc.fields.get(field)))
  book = collections.defaultdict(collections.Counter)
  for s, c in counts.items():
    if not s.endswith('.'):
      continue
    if c >= _MIN_COUNT and not _NOT_NORMAL.search(s) and not findings.positives(s):
      topics = [t for t, p in TOPICS.items() if re.search(p, s, re.I)]
      if len(topics) == 1:
        book[topics[0]][s] += c
    template = nodule_template(s)
    if template:
      book['nodule'][template] += c
  out = {}
  for topic in tuple(TOPICS) + ('nodule',):
    if not book[topic]:
      raise ValueError(f'No IU report sentence passed the rules for {topic!r}: is torchxrayvision\'s wheel the '
                       'pinned one (requirements-data.txt)?')
    items = sorted(book[topic].items())
    freq = np.array([c for _, c in items], np.float64)
    out[topic] = (tuple(s for s, _ in items), freq / freq.sum())
  return out


def nodule_template(sentence: str) -> str | None:
  """The sentence with its size, side and zone as {size}, {side}, {zone} slots, if it reports one lung
  nodule by all three and nothing else; else None."""
  if 'nodule' not in findings.positives(sentence) or _NOT_NODULE.search(sentence):
    return None
  if len(SIZE.findall(sentence)) != 1 or len(_SIDE.findall(sentence)) != 1 or len(_ZONE.findall(sentence)) != 1:
    return None
  unit = SIZE.search(sentence).group(2).lower()
  t = SIZE.sub('{size_' + unit + '}', sentence)
  t = _SIDE.sub(lambda m: '{Side}' if m.group(1)[0].isupper() else '{side}', t)
  t = _ZONE.sub(lambda m: ('{Zone}' if (m.group(1) or m.group(3))[0].isupper() else '{zone}') + ' ' +
                (m.group(2) or m.group(4)).lower(), t)
  return t


def size_text(mm: float, unit: str) -> str:
  return f'{mm / 10:.1f} cm' if unit == 'cm' else f'{round(mm)} mm'


def truth(labels: dict) -> dict:
  """What a report of the slice should say: {'level', 'kind' ('none', 'nodule', 'mass'), 'side', 'size_mm'}.
  Side (a nodule's: the liver is on the right) is the patient's: the phantom puts the patient's right on the
  image left (x < 0)."""
  z = float(labels['level'])
  kind = ('none', 'nodule', 'mass')[int(labels['lesion_kind'])]
  center = np.asarray(labels['lesion_center'], np.float64)
  return {'level': LEVELS[int(np.searchsorted(LEVEL_EDGES, z, side='right'))], 'kind': kind,
          'side': ('right' if center[1] < 0 else 'left') if kind == 'nodule' else '',
          'size_mm': float(labels['lesion_radius']) * FOV_MM if kind != 'none' else 0.0}


def compose(labels: dict, rng: np.random.Generator) -> str:
  """A report of the slice with `labels`, its wording drawn by `rng` (see the module doc)."""
  book, t = phrasebook(), truth(labels)

  def draw(topic):
    sentences, p = book[topic]
    return sentences[rng.choice(len(sentences), p=p)]

  out = [LEVEL_SENTENCE.format(t['level'])]
  if t['kind'] == 'nodule':
    template = draw('nodule')
    zone = 'upper' if t['level'] == 'upper chest' else 'lower'
    out.append(template.format(side=t['side'], Side=t['side'].capitalize(), zone=zone, Zone=zone.capitalize(),
                               size_mm=size_text(t['size_mm'], 'mm'), size_cm=size_text(t['size_mm'], 'cm')))
  else:
    out.append(draw('lungs'))
  if t['kind'] == 'mass':
    out.append(MASS_SENTENCES[rng.integers(len(MASS_SENTENCES))].format(
        size=size_text(t['size_mm'], 'cm' if rng.uniform() < 0.5 else 'mm')))
  out += [draw('heart'), draw('pleura')]
  return ' '.join(out)


_MASS = re.compile(r'\b(?:mass|masses|lesion|lesions)\b')
_LIVER = re.compile(r'\b(?:liver|hepatic)\b')


def read(report: str) -> dict:
  """What a report says, in `truth`'s terms (side '' and size_mm 0 when it does not say)."""
  text = report.lower()
  level = next((lv for lv in LEVELS if f'level of the {lv}' in text), '')
  nodule = 'nodule' in findings.positives(report)
  mass = any(_LIVER.search(c) and _MASS.search(c) and not findings.negated(c, _MASS.search(c))
             for c in findings.clauses(report))
  kind = 'nodule' if nodule else 'mass' if mass else 'none'
  side, size = '', 0.0
  for sentence in _sentences(report):
    s = sentence.lower()
    if kind == 'nodule' and 'nodule' in findings.positives(sentence) or kind == 'mass' and _LIVER.search(s):
      m = _SIDE.search(s)
      side = side or (m.group(1) if m and kind == 'nodule' else '')
      m = SIZE.search(s)
      if m and not size:
        size = float(m.group(1)) * (10.0 if m.group(2).lower() == 'cm' else 1.0)
  return {'level': level, 'kind': kind, 'side': side, 'size_mm': size}


def clinical_scores(truths: list[dict], reports: list[str]) -> dict[str, float]:
  """What the reports say against what the slices hold: level accuracy; precision / recall / F1 of each
  lesion kind; the side right among the nodules found; the size error (mm) among the lesions found with a
  size stated, and how many of those state one (each left out when there is nothing to measure it on)."""
  said = [read(r) for r in reports]
  out = {'level_accuracy': float(np.mean([s['level'] == t['level'] for s, t in zip(said, truths)]))}
  for kind in ('nodule', 'mass'):
    tp = sum(s['kind'] == kind and t['kind'] == kind for s, t in zip(said, truths))
    fp = sum(s['kind'] == kind and t['kind'] != kind for s, t in zip(said, truths))
    fn = sum(s['kind'] != kind and t['kind'] == kind for s, t in zip(said, truths))
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    out.update({f'{kind}_precision': p, f'{kind}_recall': r, f'{kind}_f1': 2 * p * r / max(p + r, 1e-12)})
  out['lesion_f1_macro'] = (out['nodule_f1'] + out['mass_f1']) / 2
  found = [(s, t) for s, t in zip(said, truths) if s['kind'] == t['kind'] != 'none']
  nodules = [(s, t) for s, t in found if t['kind'] == 'nodule']
  sized = [(s, t) for s, t in found if s['size_mm']]
  # Undefined where nothing was found: left out rather than NaN (which would read as a failure).
  if nodules:
    out['side_accuracy'] = float(np.mean([s['side'] == t['side'] for s, t in nodules]))
  if found:
    out['size_stated_share'] = len(sized) / len(found)
  if sized:
    out['size_error_mm'] = float(np.mean([abs(s['size_mm'] - t['size_mm']) for s, t in sized]))
  return out
