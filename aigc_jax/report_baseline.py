r"""Command line: the baselines of findings → impression generation on the IU chest X-ray reports, scored as
report-generation papers score (BLEU-1…4, ROUGE-L, CIDEr-D; clinical precision / recall / F1 of the findings).

  python -m aigc_jax.report_baseline [--split=test] [--out=FILE.json]

Baselines (aigc_jax/text/reports.py): the most frequent training impression, the impression of the nearest
training report by TF-IDF of the findings, and the findings copied as the impression. Also printed: how the
findings extractor that the clinical scores rest on agrees with the reports' MeSH headings on the same split
(aigc_jax/text/findings.py). The split is the language models' (configs/common.py TEXT_HELD_OUT).
"""

import json
import os
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_enum('split', 'test', ['validation', 'test'], 'The held-out reports to score.')
flags.DEFINE_string('out', '', 'Also write the scores here as JSON.')


def run(split: str) -> dict:
  from aigc_jax.text import findings  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import report_metrics  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import reports  # pylint: disable=g-import-not-at-top
  from configs import common  # pylint: disable=g-import-not-at-top
  pairs = reports.iu_findings_impression(*common.TEXT_HELD_OUT)
  train, held = pairs['train'], pairs[split]
  sources, references = [f for f, _, _ in held], [i for _, i, _ in held]
  generated = {
      'most_frequent': reports.most_frequent([i for _, i, _ in train], len(held)),
      'nearest_tfidf': reports.nearest([f for f, _, _ in train], [i for _, i, _ in train], sources),
      'copy_findings': sources,
  }
  check = findings.agreement([findings.positives(f'{f} {i}') for f, i, _ in held],
                             [findings.mesh_findings(h) for _, _, h in held])
  return {
      'split': split, 'pairs': {s: len(v) for s, v in pairs.items()},
      'baselines': {name: report_metrics.scores(references, hyps) for name, hyps in generated.items()},
      'extractor_vs_mesh': {k: {m: round(x, 4) for m, x in v.items()} for k, v in check.items()},
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = run(FLAGS.split)
  print(json.dumps(result, indent=1))
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
