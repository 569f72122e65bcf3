"""Multi-label coding tasks on real text: documents with sets of codes, and the label list of each task.

  iu_mesh   Indiana University chest X-ray reports → MeSH major headings (the heading before any '/'
            qualifier: 'Cardiomegaly/mild' → 'Cardiomegaly'), the reports' FINDINGS and IMPRESSION as the
            text. The labels are the headings with at least `min_count` reports in the training split
            (30 by default: 41 headings at the default split, 'normal' among them; 49 over all reports);
            a report may have none of them.

Splits are `corpora.split_of` by report, with the fractions given: use the same fractions as the
pretraining run, so that no held-out report was pretrained on (configs/common.py keeps one pair for both).
"""

import collections

from aigc_jax.text import corpora

TASKS = ('iu_mesh',)


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
  counts = collections.Counter(h for _, heads in out['train'] for h in heads)
  names = tuple(sorted(h for h, c in counts.items() if c >= min_count))
  return out, names


def load(name: str, *, min_count: int, val_fraction: float, test_fraction: float):
  """({split: [(text, codes)]}, label names) of the coding task `name`."""
  if name == 'iu_mesh':
    return iu_mesh(min_count, val_fraction, test_fraction)
  raise ValueError(f'config.data.task={name!r} is not a coding task; choose one of {TASKS}.')
