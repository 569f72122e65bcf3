r"""Command line: the classical baselines of a coding, risk or report-generation config, on the config's own
splits and labels.

  python -m aigc_jax.baseline --config=configs/text_coding.py:runlocal [--coding_baseline=nearest] [--out=FILE.json]
  python -m aigc_jax.baseline --config=configs/risk.py:runlocal [--out=FILE.json]
  python -m aigc_jax.baseline --config=configs/report_text.py:runlocal [--out=FILE.json]
  python -m aigc_jax.baseline --config=configs/report_image.py:runlocal [--out=FILE.json]

Coding: TF-IDF + logistic regression (aigc_jax/text/baselines.py), C chosen on validation, or retrieval of
the nearest training document (--coding_baseline=nearest); thresholds tuned on validation, scored on test
with the `coding` evaluator's report. Risk: logistic regression and gradient boosting
(aigc_jax/tabular/baselines.py), chosen by validation log loss, scored on test with the `risk` evaluator's
report. Report generation (findings → impression): the most frequent training impression, the impression of
the nearest training report by TF-IDF of the findings, and the findings copied (aigc_jax/text/reports.py),
scored on test with the `report` evaluator's metrics; also how the findings extractor behind the clinical
scores agrees with the test reports' MeSH headings. Translation (configs/translate_text.py): the source
copied and the translation memory (aigc_jax/text/translation.py), sacrebleu BLEU / chrF per language. Image →
report (configs/report_image.py): the most frequent training report, the report of the nearest training slice
by pixels, and the test slices' true labels worded by other draws (the ceiling of a model that reads every slice
right), scored as the `image_report` evaluator scores. Either way the numbers sit beside a run's test/*.
"""

import json
import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A coding config (config.data.name="text_labels"), a risk '
                                'config ("tabular") or a report-generation config ("text_pairs").', lock_config=True)
flags.DEFINE_string('out', '', 'Also write the scores here as JSON.')
flags.DEFINE_enum('coding_baseline', 'logistic', ['logistic', 'nearest'], 'Coding: TF-IDF + logistic regression, '
                  'or the nearest training document by TF-IDF (for thousands of labels).')
flags.mark_flags_as_required(['config'])


def coding(config) -> dict:
  from aigc_jax.data import text  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import baselines  # pylint: disable=g-import-not-at-top
  data = text.LabelledText(config.data)   # no workdir: its tokenizer is not used, nothing is written
  from aigc_jax.evals import multilabel  # pylint: disable=g-import-not-at-top
  splits = {s: ([t for t, _ in v], data.rows(s)['labels']) for s, v in data.splits.items() if v}
  if FLAGS.coding_baseline == 'nearest':
    scores, probs = baselines.tfidf_nearest(splits)
    head = {'baseline': 'tfidf_nearest'}
  else:
    scores, probs, c = baselines.tfidf_logistic(splits, seed=config.seed)
    head = {'baseline': 'tfidf_logistic_regression', 'C': c}
  for s in sorted(set(splits) - {'train', 'validation', 'test'}):   # e.g. PadChest's test_unseen
    extra = multilabel.report(splits['validation'][1], probs['validation'], splits[s][1], probs[s])
    scores.update({f'{s}/{k}': v for k, v in extra.items()})
  return {**head, 'task': config.data.task, 'labels': len(data.label_names),
          'documents': {s: len(v[0]) for s, v in splits.items()}, **scores}


def risk(config) -> dict:
  from aigc_jax.data import tabular  # pylint: disable=g-import-not-at-top
  from aigc_jax.tabular import baselines  # pylint: disable=g-import-not-at-top
  data = tabular.TabularRows(config.data)
  return {'cohort': config.data.cohort, 'outcomes': list(data.label_names),
          'patients': {s: len(data.patients(s).ids) for s in ('train', 'validation', 'test')},
          **baselines.run(data, seed=config.seed)}


def report(config) -> dict:
  from aigc_jax.text import translation  # pylint: disable=g-import-not-at-top
  if translation.is_translation(config.data.pairs):
    return translate(config)
  from aigc_jax.text import findings  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import report_metrics  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import reports  # pylint: disable=g-import-not-at-top
  pairs = reports.iu_findings_impression(config.data.val_fraction, config.data.test_fraction)
  train, test = pairs['train'], pairs['test']
  sources, references = [f for f, _, _ in test], [i for _, i, _ in test]
  generated = {
      'most_frequent': reports.most_frequent([i for _, i, _ in train], len(test)),
      'nearest_tfidf': reports.nearest([f for f, _, _ in train], [i for _, i, _ in train], sources),
      'copy_findings': sources,
  }
  check = findings.agreement([findings.positives(f'{f} {i}') for f, i, _ in test],
                             [findings.mesh_findings(h) for _, _, h in test])
  return {'pairs': config.data.pairs, 'documents': {s: len(v) for s, v in pairs.items()},
          **{name: report_metrics.scores(references, hyps) for name, hyps in generated.items()},
          'extractor_vs_mesh': {k: {m: round(x, 4) for m, x in v.items()} for k, v in check.items()}}


def translate(config) -> dict:
  from aigc_jax.data import text_pairs  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import translation  # pylint: disable=g-import-not-at-top
  out = {'pairs': config.data.pairs}
  for lang in config.data.languages:
    pairs = text_pairs.translation_pairs(config.data.pairs, lang, config.data.val_fraction,
                                         config.data.test_fraction, config.data.get('data_dir', ''))
    sources, references = [s for s, _ in pairs['test']], [t for _, t in pairs['test']]
    out[lang] = {'documents': {s: len(v) for s, v in pairs.items()},
                 'copy_source': translation.scores(references, sources, lang),
                 'translation_memory': translation.scores(
                     references, translation.translation_memory(pairs['train'], sources), lang)}
  return out


def image_report(config) -> dict:
  from aigc_jax.data import image_reports  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import report_metrics  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import reports  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import slice_reports  # pylint: disable=g-import-not-at-top
  data = image_reports.PhantomReports(config.data)   # no workdir: its tokenizer is not used, nothing is written
  train, test = data.rows('train')['image'], data.rows('test')['image']
  references = data.reports('test')
  generated = {
      'most_frequent': reports.most_frequent(data.reports('train'), len(references)),
      'nearest_image': image_reports.nearest_reports(train, data.reports('train'), test),
      'true_labels_other_wording': image_reports.redrawn_reports(data, 'test'),
  }
  truths = data.truths('test')
  return {'data': config.data.name, 'slices': {s: len(data.reports(s)) for s in image_reports.SPLITS},
          **{name: {**report_metrics.ngram_scores(references, hyps), **slice_reports.clinical_scores(truths, hyps)}
             for name, hyps in generated.items()}}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  config = FLAGS.config
  kinds = {'text_labels': coding, 'tabular': risk, 'text_pairs': report, 'phantom_reports': image_report}
  if config.data.name not in kinds:
    raise app.UsageError(f'--config gives config.data.name={config.data.name!r}; the baselines need a coding '
                         '(text_labels), risk (tabular), report (text_pairs) or image-report (phantom_reports) '
                         'config, e.g. configs/text_coding.py:runlocal, configs/risk.py:runlocal, '
                         'configs/report_text.py:runlocal or configs/report_image.py:runlocal.')
  result = kinds[config.data.name](config)
  print(json.dumps(result, indent=1))
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  app.run(main)
