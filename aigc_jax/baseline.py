r"""Command line: the classical baseline of a coding config, on the config's own splits and labels.

  python -m aigc_jax.baseline --config=configs/text_coding.py:runlocal [--out=FILE.json]

TF-IDF + logistic regression (aigc_jax/text/baselines.py), C chosen on validation, thresholds tuned on
validation, scored on test with the `coding` evaluator's report: the numbers sit beside a run's test/*.
"""

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A coding config (config.data.name="text_labels").',
                                lock_config=True)
flags.DEFINE_string('out', '', 'Also write the scores here as JSON.')
flags.mark_flags_as_required(['config'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from aigc_jax.data import text  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import baselines  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  if config.data.name != 'text_labels':
    raise app.UsageError(f'--config gives config.data.name={config.data.name!r}; the baseline needs a coding '
                         'config (text_labels), e.g. configs/text_coding.py:runlocal.')
  data = text.LabelledText(config.data)   # no workdir: its tokenizer is not used, nothing is written
  splits = {s: ([t for t, _ in data.splits[s]], data.rows(s)['labels']) for s in ('train', 'validation', 'test')}
  scores, _, c = baselines.tfidf_logistic(splits, seed=config.seed)
  result = {'baseline': 'tfidf_logistic_regression', 'C': c, 'task': config.data.task,
            'labels': len(data.label_names), 'documents': {s: len(v[0]) for s, v in splits.items()}, **scores}
  print(json.dumps(result, indent=1))
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
