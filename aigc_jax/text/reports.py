"""Report generation from the doctor's findings: IU chest X-ray FINDINGS → IMPRESSION pairs and the baselines
a generated impression must beat.

  pairs          the IU reports that have both sections (3,419 of 3,955), split by report with the shares of
                 the pretraining text (configs/common.py TEXT_HELD_OUT), so no validation or test report was
                 pretrained on: train 2,769 / validation 318 / test 332 at (0.1, 0.1).
  most_frequent  every impression is the training set's most frequent one ("No acute cardiopulmonary
                 abnormality.", 9% of them): what a generator that ignores its input scores.
  nearest        the impression of the training report whose findings are nearest by TF-IDF cosine (word
                 1–2-grams, sublinear tf): retrieval, which report-generation models are measured against.
"""

import collections

from sklearn.feature_extraction.text import TfidfVectorizer

from aigc_jax.text import baselines
from aigc_jax.text import corpora

Pair = tuple[str, str, tuple[str, ...]]   # (findings, impression, MeSH major headings)


def iu_findings_impression(val_fraction: float, test_fraction: float) -> dict[str, list[Pair]]:
  """{split: [(findings, impression, headings)]} of the IU reports that have both sections."""
  out = {s: [] for s in corpora.SPLITS}
  for doc in corpora.iu_reports():
    f = doc.fields
    if f['findings'] and f['impression']:
      out[corpora.split_of(doc.group, val_fraction, test_fraction)].append((f['findings'], f['impression'],
                                                                           doc.labels))
  return out


def most_frequent(train_targets: list[str], n: int) -> list[str]:
  """The most frequent training target, n times (ties: the first in training order)."""
  if not train_targets:
    raise ValueError('No training targets: the most frequent one is undefined.')
  # most_common sorts stably, and a Counter keeps first-seen order: ties go to the earliest.
  return [collections.Counter(train_targets).most_common(1)[0][0]] * n


def nearest(train_sources: list[str], train_targets: list[str], sources: list[str]) -> list[str]:
  """The target of the training source nearest to each source, by TF-IDF cosine."""
  best = baselines.nearest_rows(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), train_sources, sources)
  return [train_targets[i] for i in best]
