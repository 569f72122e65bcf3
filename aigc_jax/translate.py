r"""Translates the user's English medical text with a trained translator (configs/translate_text.py): one
line in, one line out.

  python -m aigc_jax.translate --workdir=runs/translate_s2s --to=es < titles.txt > titulos.txt
  python -m aigc_jax.translate --workdir=runs/translate_s2s --to=de --input=titles.txt --output=titel.txt

Each line is read as the model was trained to read a source ("English: <line>", then the target language's
cue) and translated by beam search (--beam, --length_penalty) with the newest checkpoint's parameters; a blank
line stays blank, so line numbers keep lining up. A line longer than the model's source length
(config.data.prompt_len tokens) is translated from its start only: the command says which lines (by number,
never by content) on stderr. The models are trained on ICD-10 titles: short diagnosis names translate best;
running prose is outside what they have seen.
"""

import sys

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from aigc_jax import experiment  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax.data import text_pairs  # noqa: E402
from aigc_jax.evals import generation  # noqa: E402
from aigc_jax.text import translation  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained translation run (configs/translate_text.py).')
  flags.DEFINE_string('to', None, 'Target language: one the run was trained for (es, de, …).')
  flags.DEFINE_string('input', '-', 'A UTF-8 text file, one text per line; - reads stdin.')
  flags.DEFINE_string('output', '-', 'Where the translations go, one per line; - writes stdout.')
  flags.DEFINE_integer('beam', 4, 'Beam width (1: greedy).')
  flags.DEFINE_float('length_penalty', 0.6, 'GNMT length normalization of the beam\'s final choice.')
  flags.DEFINE_integer('batch', 32, 'Lines per compiled decoding call.')


class Translator:
  """The newest parameters of a translation run, as a function of English lines → `lang` lines."""

  def __init__(self, workdir: str, *, beam: int = 4, length_penalty: float = 0.6):
    config, self.task, self.params, self.step, self.data = experiment.load_run(workdir, with_data=True)
    if config.data.name != 'text_pairs' or not translation.is_translation(config.data.get('pairs', '')):
      raise ValueError(f'--workdir={workdir!r} trained {config.data.name!r} / {config.data.get("pairs")!r}; give a '
                       'translation run (python -m aigc_jax.main --config=configs/translate_text.py ...).')
    self.languages = tuple(config.data.languages)
    self._generate = generation.decoder(self.task, config.data.target_len, beam, length_penalty)

  def __call__(self, lines: list[str], lang: str, batch: int = 32) -> tuple[list[str], list[int]]:
    """(translations, the indices of the lines cut to the model's source length)."""
    if lang not in self.languages:
      raise ValueError(f'--to={lang!r}: this run translates into {", ".join(self.languages)} only.')
    todo = [i for i, line in enumerate(lines) if line.strip()]
    out = [''] * len(lines)
    if not todo:
      return out, []
    inputs = self.data.inputs([text_pairs.translation_example(lines[i].strip(), lang) for i in todo])
    for i, text in zip(todo, generation.write(self._generate, self.params, self.data, inputs, batch)):
      out[i] = text
    return out, [todo[j] for j in inputs['truncated'].nonzero()[0]]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  translator = Translator(FLAGS.workdir, beam=FLAGS.beam, length_penalty=FLAGS.length_penalty)
  if FLAGS.to not in translator.languages:   # before reading a possibly long stdin
    raise app.UsageError(f'--to={FLAGS.to!r}: this run translates into {", ".join(translator.languages)} only.')
  try:
    source = sys.stdin if FLAGS.input == '-' else open(FLAGS.input, encoding='utf-8')
    with source:
      lines = source.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise app.UsageError(f'--input={FLAGS.input}: cannot read it as UTF-8 text ({e}).') from None
  translations, cut = translator(lines, FLAGS.to, FLAGS.batch)
  if cut:
    which = f'line {cut[0] + 1} is' if len(cut) == 1 else f'lines {", ".join(str(i + 1) for i in cut)} are'
    print(f'translate: {which} longer than the model reads '
          f'({translator.data.config.prompt_len} tokens): translated from their start only.', file=sys.stderr)
  text = ''.join(t + '\n' for t in translations)
  if FLAGS.output == '-':
    sys.stdout.write(text)
  else:
    with open(FLAGS.output, 'w', encoding='utf-8') as f:
      f.write(text)


if __name__ == '__main__':
  define_flags()
  flags.mark_flag_as_required('workdir')
  flags.mark_flag_as_required('to')
  app.run(runtime.exits_cleanly(main))
