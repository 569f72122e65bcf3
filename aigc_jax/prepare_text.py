r"""Writes users' own text (notes, reports) as a de-identified TFDS ArrayRecord dataset for the language models.

  python -m aigc_jax.prepare_text --input=/path/to/notes --output=/path/to/tfds --name=my_notes \
      [--text_field=text] [--labels_field=codes] [--group=field:patient_id] \
      [--identifier_fields=patient_name,mrn] [--names_file=names.txt] [--deid_patterns=patterns.json] \
      [--path_identifiers] [--unit=file|line] [--val_fraction=0.05 --test_fraction=0.05] [--salt=SECRET]
  python -m aigc_jax.prepare_text --input=pairs.tsv --output=/path/to/tfds --name=my_pairs \
      --text_field=english --target_field=spanish --language=es     # parallel text (or --language_field=lang)

Pretrain on it with `--config.data.corpora='("tfds:my_notes",)' --config.data.data_dir=/path/to/tfds`
(configs/lm_gpt.py, lm_bert.py); code it with `--config.data.task=tfds:my_notes --config.data.data_dir=...`
(configs/text_coding.py, with --labels_field given here); train a translator on parallel text with
`--config.data.pairs=tfds:my_pairs --config.data.data_dir=/path/to/tfds --config.data.languages='("es",)'`
(configs/translate_text.py; add --config.init_from=RUN --config.data.tokenizer=RUN to fine-tune a trained
translator RUN).

Formats, grouping and what is written: aigc_jax/data/text_prepare.py; the de-identification (dates, names, IDs,
phones, e-mails, ages over 89, your own names and patterns): aigc_jax/text/deid.py. The report
`<output>/<name>/1.0.0/prepare_report.json` counts documents per split, skipped files and lines (by number;
paths only with --report_paths, since folder names are often patient names) and replacements per tag. Exit
code 0 when documents were written, 1 when none were.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from aigc_jax.text import deid
from aigc_jax.data import text_prepare

FLAGS = flags.FLAGS
flags.DEFINE_string('input', None, 'A .txt/.jsonl/.csv/.tsv file or a folder of them (searched recursively).')
flags.DEFINE_string('output', None, 'TFDS data_dir to write into (the dataset goes to OUTPUT/NAME/1.0.0).')
flags.DEFINE_string('name', None, 'Dataset name (snake_case); use it as tfds:NAME in the configs.')
flags.DEFINE_string('text_field', 'text', '.jsonl key / .csv column holding the document.')
flags.DEFINE_string('labels_field', '', '.jsonl key / .csv column holding its codes (list, or ";"-separated).')
flags.DEFINE_string('target_field', '', 'Parallel text: the .jsonl key / .csv/.tsv column holding the translation of '
                    'the text_field.')
flags.DEFINE_string('language_field', '', 'Parallel text: the field naming each pair\'s target language (es, de, …).')
flags.DEFINE_string('language', '', 'Parallel text: the target language of every pair (without --language_field).')
flags.DEFINE_list('identifier_fields', [], 'Fields whose values (names, record numbers) are scrubbed from that '
                  "document's text; never written.")
flags.DEFINE_string('group', 'document', 'What a split keeps together: document, file, folder or field:NAME.')
flags.DEFINE_enum('unit', 'file', list(text_prepare.UNITS), '.txt files: one document per file or per non-empty line.')
flags.DEFINE_bool('path_identifiers', False, "Scrub the words of each file's folder and file names from its "
                  'documents (when folders are named after patients).')
flags.DEFINE_string('names_file', '', 'Names to scrub from every document, one per line.')
flags.DEFINE_string('deid_patterns', '', 'JSON {"TAG": "regex", ...} of extra identifiers, replaced by [TAG].')
flags.DEFINE_float('val_fraction', 0.05, 'Share of groups in the validation split.')
flags.DEFINE_float('test_fraction', 0.05, 'Share of groups in the test split.')
flags.DEFINE_string('salt', '', 'Secret salt of the group hash (random when empty: splits differ per run).')
flags.DEFINE_bool('report_paths', False, 'Write input paths into the report (they may hold identifiers).')


def _scrubber() -> deid.Scrubber:
  for flag in ('names_file', 'deid_patterns'):
    if getattr(FLAGS, flag) and not os.path.isfile(getattr(FLAGS, flag)):
      raise FileNotFoundError(f'--{flag}={getattr(FLAGS, flag)} is not a file.')
  names = ()
  if FLAGS.names_file:
    with open(FLAGS.names_file, encoding='utf-8') as f:
      names = tuple(line.strip() for line in f if line.strip())
  extra = ()
  if FLAGS.deid_patterns:
    with open(FLAGS.deid_patterns, encoding='utf-8') as f:
      try:
        patterns = json.load(f)
      except json.JSONDecodeError as e:
        raise app.UsageError(f'--deid_patterns={FLAGS.deid_patterns} is not JSON ({e.msg}); write '
                             '{"TAG": "regex", ...}.') from None
    if not isinstance(patterns, dict) or not all(isinstance(v, str) for v in patterns.values()):
      raise app.UsageError(f'--deid_patterns={FLAGS.deid_patterns}: write a JSON object {{"TAG": "regex", ...}}.')
    extra = tuple(patterns.items())
  return deid.Scrubber(names=names, extra=extra)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for flag in ('input', 'output', 'name'):
    if not getattr(FLAGS, flag):
      raise app.UsageError(f'--{flag} is required.')
  try:
    opts = text_prepare.Options(text_field=FLAGS.text_field, labels_field=FLAGS.labels_field,
                          identifier_fields=tuple(FLAGS.identifier_fields), group=FLAGS.group, unit=FLAGS.unit,
                          path_identifiers=FLAGS.path_identifiers, target_field=FLAGS.target_field,
                          language_field=FLAGS.language_field, language=FLAGS.language)
    report = text_prepare.prepare(input_path=FLAGS.input, output=FLAGS.output, name=FLAGS.name, opts=opts,
                            scrubber=_scrubber(), val_fraction=FLAGS.val_fraction,
                            test_fraction=FLAGS.test_fraction, salt=FLAGS.salt, report_paths=FLAGS.report_paths)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    logging.error('%s', e)
    return 1
  logging.info('documents %s; %d files read, %d skipped; replaced %s', report['documents'], report['files_read'],
               len(report['skipped']), report['replacements'] or 'nothing')
  return 0


if __name__ == '__main__':
  app.run(main)
