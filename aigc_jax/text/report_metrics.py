"""Scores of generated reports against reference reports, as report-generation papers give them.

  n-gram overlap   BLEU-1…4 (cumulative, corpus level, 'closest' reference length), ROUGE-L and CIDEr-D,
                   computed by `pycocoevalcap` — the COCO caption scorers that R2Gen and its successors use —
                   on text normalized the way those papers normalize IU reports (`normalize`). METEOR is left
                   out: pycocoevalcap runs it in Java, which a fresh machine does not have.
  clinical         the findings each report asserts (aigc_jax/text/findings.py, negation-aware), generated vs
                   reference: precision, recall and F1, micro over findings and macro over the findings the
                   references name.

CIDEr's document frequencies come from the references scored together, so a CIDEr is comparable only
between systems scored on the same reference set.
"""

import re

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from aigc_jax.text import findings

_NUMBERING = re.compile(r'(?:^|(?<=[\s.]))\d+\.\s+')   # "1. No effusion. 2. …": list numbers, not decimals
_SENTENCE = re.compile(r'\.\s+|\.$')
_DROP = re.compile(r'[^\w\s]')


def normalize(report: str) -> str:
  """Lower case, list numbers dropped, punctuation dropped inside sentences, sentences joined by ' . '
  (R2Gen's IU X-ray cleaning, rewritten): 'No effusion.  1. Clear lungs, no edema.' →
  'no effusion . clear lungs no edema .'"""
  text = _NUMBERING.sub(' ', report.lower().replace('..', '.'))
  sentences = [' '.join(_DROP.sub(' ', s).split()) for s in _SENTENCE.split(text)]
  sentences = [s for s in sentences if s]
  return ' . '.join(sentences) + ' .' if sentences else ''


def ngram_scores(references: list[str], hypotheses: list[str]) -> dict[str, float]:
  """BLEU-1…4, ROUGE-L and CIDEr of hypotheses against one reference each (normalized here)."""
  if len(references) != len(hypotheses) or not references:
    raise ValueError(f'{len(hypotheses)} generated reports for {len(references)} references: they must pair '
                     'up one to one, and there must be some.')
  # An empty hypothesis would break the scorers' tokenized input: score it as one unknown token instead.
  gts = {i: [normalize(r) or '<empty>'] for i, r in enumerate(references)}
  res = {i: [normalize(h) or '<empty>'] for i, h in enumerate(hypotheses)}
  bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
  rouge, _ = Rouge().compute_score(gts, res)
  cider, _ = Cider().compute_score(gts, res)
  out = {f'bleu_{n + 1}': float(b) for n, b in enumerate(bleu)}
  out.update(rouge_l=float(rouge), cider=float(cider))
  return out


def clinical_scores(references: list[str], hypotheses: list[str]) -> dict[str, float]:
  """Finding-level precision / recall / F1 of the generated reports against the references' findings."""
  table = findings.agreement([findings.positives(h) for h in hypotheses],
                             [findings.positives(r) for r in references])
  return {'clinical_precision': table['micro']['precision'], 'clinical_recall': table['micro']['recall'],
          'clinical_f1': table['micro']['f1'], 'clinical_macro_f1': table['macro']['f1']}


def scores(references: list[str], hypotheses: list[str]) -> dict[str, float]:
  return {**ngram_scores(references, hypotheses), **clinical_scores(references, hypotheses)}
