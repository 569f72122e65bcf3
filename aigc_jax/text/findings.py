"""Chest radiograph findings read from report text, negation-aware: the clinical accuracy of generated reports.

Report-generation papers score what a report says, not only its n-grams: a labeller is run over the generated
and the reference report and the findings are compared (precision / recall / F1 per finding). Ours is a
NegEx-style rule set written for the IU / PadChest kind of English report:

  - a finding is named by one of its phrases (`FINDINGS`), matched on word boundaries, plural or not;
  - it is negated when a negation cue ("no", "without", "negative for", "free of", "no evidence of", …)
    comes before it in the same clause, or a post-cue ("is not seen", "has resolved", "absent") after it.
    A clause ends at '.', ';', ':' or a turn ("but", "however", "although", "except", "otherwise"), so
    "No pneumothorax, effusion or consolidation" negates all three and "no effusion but a nodule" does not
    negate the nodule;
  - "cannot exclude", "possible", "may represent" count as mentions (uncertain findings are positives here,
    as the U-ones policy of CheXpert-labelled work does).

How well it reads real reports is measured against the IU reports' MeSH major headings, which radiologists'
indexers assigned (`MESH`; docs/text.md gives the agreement per finding). It is a rule set: it misses what
its phrases do not cover ("the heart is large") and is checked on hand-written negations in the tests.
"""

import re

# finding → phrases (lower case; a trailing 's' or 'es' is also accepted on the last word).
FINDINGS = {
    'cardiomegaly': ('cardiomegaly', 'enlarged heart', 'heart is enlarged', 'enlarged cardiac silhouette',
                     'cardiac silhouette is enlarged', 'heart size is enlarged', 'cardiac enlargement',
                     'enlargement of the cardiac silhouette', 'heart is mildly enlarged',
                     'heart is moderately enlarged', 'heart is markedly enlarged'),
    'pleural_effusion': ('pleural effusion', 'effusion', 'pleural fluid', 'blunting of the costophrenic angle',
                         'costophrenic blunting'),
    'pneumothorax': ('pneumothorax', 'pneumothoraces'),
    'atelectasis': ('atelectasis', 'atelectatic', 'volume loss'),
    'opacity': ('opacity', 'opacities', 'airspace disease', 'air space disease', 'consolidation', 'infiltrate',
                'airspace opacity', 'opacification'),
    'edema': ('edema', 'pulmonary vascular congestion', 'vascular congestion', 'interstitial edema'),
    'nodule': ('nodule', 'nodular opacity', 'nodular density'),
    'granuloma': ('granuloma', 'granulomata', 'granulomatous disease', 'granulomatous'),
    'fracture': ('fracture', 'fractured'),
    # Not hyperinflation: the IU indexers code it apart ('Lung/hyperdistention'), and so do radiologists.
    'emphysema': ('emphysema', 'emphysematous', 'copd', 'chronic obstructive pulmonary disease',
                  'chronic obstructive lung disease'),
    'pneumonia': ('pneumonia',),
    'scoliosis': ('scoliosis', 'scoliotic', 'levoscoliosis', 'dextroscoliosis', 'levocurvature', 'dextrocurvature',
                  'spine curvature', 'spinal curvature', 'curvature of the spine', 'curvature of the thoracic spine'),
    'hiatal_hernia': ('hiatal hernia', 'hiatus hernia'),
}
# The IU MeSH major headings (before any '/') that stand for each finding: the extractor's check on real text.
MESH = {
    'cardiomegaly': ('Cardiomegaly',),
    'pleural_effusion': ('Pleural Effusion',),
    'pneumothorax': ('Pneumothorax',),
    'atelectasis': ('Pulmonary Atelectasis',),
    'opacity': ('Opacity', 'Airspace Disease', 'Infiltrate', 'Consolidation'),
    'edema': ('Pulmonary Edema', 'Pulmonary Congestion', 'Edema'),
    'nodule': ('Nodule',),
    'granuloma': ('Calcified Granuloma', 'Granulomatous Disease', 'Granuloma'),
    'fracture': ('Fractures, Bone',),
    'emphysema': ('Emphysema', 'Pulmonary Emphysema', 'Pulmonary Disease, Chronic Obstructive'),
    'pneumonia': ('Pneumonia',),
    'scoliosis': ('Scoliosis',),
    'hiatal_hernia': ('Hernia, Hiatal',),
}
NAMES = tuple(FINDINGS)

_PRE = (r'no', r'not', r'without', r'negative for', r'free of', r'clear of', r'no evidence of', r'absence of',
        r'resolution of', r'resolved', r'rather than', r'no definite', r'no visible', r'no acute', r'nor',
        r'neither')
_POST = (r'is not (?:seen|identified|present|visualized|evident|appreciated)',
         r'are not (?:seen|identified|present|visualized|evident|appreciated)',
         r'(?:has|have) resolved', r'resolved', r'absent', r'not seen', r'no longer (?:seen|present|visualized)')
_CLAUSE = re.compile(r'[.;:!?]|\b(?:but|however|although|though|except|otherwise|whereas)\b')
_PRE_RE = re.compile(r'\b(?:' + '|'.join(_PRE) + r')\b')
_POST_RE = re.compile(r'^\s*(?:' + '|'.join(_POST) + r')\b')


def _phrase_pattern(phrases) -> re.Pattern:
  alternatives = sorted(phrases, key=len, reverse=True)
  return re.compile(r'\b(?:' + '|'.join(re.escape(p) + r'(?:e?s)?' for p in alternatives) + r')\b')


_PATTERNS = {name: _phrase_pattern(phrases) for name, phrases in FINDINGS.items()}


def clauses(text: str) -> list[str]:
  return [c.strip() for c in _CLAUSE.split(text.lower()) if c.strip()]


def extract(text: str) -> dict[str, bool]:
  """{finding: True if the text asserts it somewhere, False if it only denies it}; unmentioned findings are
  absent from the dict."""
  out: dict[str, bool] = {}
  for clause in clauses(text):
    for name, pattern in _PATTERNS.items():
      for m in pattern.finditer(clause):
        out[name] = out.get(name, False) or not negated(clause, m)
  return out


def negated(clause: str, match: re.Match) -> bool:
  """Whether the mention `match` (of a pattern over the lower-cased `clause`, one of `clauses(text)`) is
  denied: a negation cue before it in the clause, or a post-cue right after it."""
  return bool(_PRE_RE.search(clause[:match.start()])) or bool(_POST_RE.search(clause[match.end():]))


def positives(text: str) -> frozenset[str]:
  """The findings the text asserts (negated and unmentioned ones are not)."""
  return frozenset(k for k, v in extract(text).items() if v)


def mesh_findings(headings) -> frozenset[str]:
  """The findings named by an IU report's MeSH major headings ('Opacity/lung/base/left' → 'opacity')."""
  heads = {h.split('/')[0].strip() for h in headings}
  return frozenset(name for name, mesh in MESH.items() if heads & set(mesh))


def agreement(predicted: list[frozenset[str]], reference: list[frozenset[str]]) -> dict[str, dict[str, float]]:
  """Per finding and micro over all: precision, recall, F1 and the reference count (support)."""
  out = {}
  tp_all = fp_all = fn_all = 0
  for name in NAMES:
    tp = sum(name in p and name in r for p, r in zip(predicted, reference))
    fp = sum(name in p and name not in r for p, r in zip(predicted, reference))
    fn = sum(name not in p and name in r for p, r in zip(predicted, reference))
    out[name] = _prf(tp, fp, fn)
    tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
  out['micro'] = _prf(tp_all, fp_all, fn_all)
  scored = [out[n]['f1'] for n in NAMES if out[n]['support'] > 0]
  out['macro'] = {'f1': sum(scored) / len(scored) if scored else 0.0, 'support': float(len(scored))}
  return out


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / (tp + fn) if tp + fn else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {'precision': precision, 'recall': recall, 'f1': f1, 'support': float(tp + fn)}
