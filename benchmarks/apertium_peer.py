r"""The rule-based peer of our translators: Debian's apertium on the same held-out titles, scored the same way.

  apt-get install apertium apertium-eng-spa apertium-fr-es apertium-es-pt     # Debian; not a Python dependency
  PYTHONPATH=. .venv/bin/python benchmarks/apertium_peer.py [--config=configs/translate_text.py:runlocal]
      [--languages=es,fr,pt] [--pairs=icd10_translation] [--out=apertium.json]

The test split is the one `python -m aigc_jax.baseline` and the translators' `test` evaluator score
(`text_pairs.translation_pairs` with the config's fractions: ICD-10 held out by block, ICD-11 by code stem),
and the scores are `translation.scores` (sacrebleu BLEU and chrF, signatures printed), so the rows sit beside
docs/reports.md's. apertium ships English ↔ Spanish only (`eng-spa`); French and Brazilian Portuguese are
reached through Spanish (`eng-spa` then `es-fr` / `es-pt_BR`), a pivot, reported as such. `-u` drops the '*'
apertium puts before a word it does not know (the word itself is kept, as the English).

One title per line goes through one apertium process per language; the number of lines out must equal the
number in (checked: a title with a line break would shift every later one). Also counted: the share of titles
with a word the first stage does not know, and of its output words that are such (run again without -u, where
apertium marks them '*'). Prints one JSON object.
"""

import argparse
import collections
import importlib.util
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time

# our language code → the apertium modes to chain, and whether that is a pivot through Spanish
MODES = {'es': (('eng-spa',), False), 'fr': (('eng-spa', 'es-fr'), True), 'pt': (('eng-spa', 'es-pt_BR'), True)}


def translate_lines(lines: list[str], commands: list[list[str]]) -> list[str]:
  """`lines` through the chained `commands` (each reads stdin, writes stdout), one line out per line in."""
  if any('\n' in s for s in lines):
    raise ValueError('A title holds a line break: it would shift every later line.')
  text = '\n'.join(lines) + '\n'
  for cmd in commands:
    text = subprocess.run(cmd, input=text, capture_output=True, text=True, check=True).stdout
  out = text.rstrip('\n').split('\n') if lines else []
  if len(out) != len(lines):
    raise RuntimeError(f'{" | ".join(map(" ".join, commands))} gave {len(out)} lines for {len(lines)}.')
  return [s.strip() for s in out]


def apertium_commands(lang: str) -> list[list[str]]:
  if lang not in MODES:
    raise SystemExit(f'apertium has no mode for {lang!r} here; choose from {", ".join(MODES)}.')
  if not shutil.which('apertium'):
    raise SystemExit('apertium is not installed: apt-get install apertium apertium-eng-spa apertium-fr-es '
                     'apertium-es-pt (Debian).')
  return [['apertium', '-u', mode] for mode in MODES[lang][0]]


def load_config(spec: str):
  path, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('peer_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant or None)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--config', default='configs/translate_text.py:runlocal')
  p.add_argument('--languages', default='es,fr,pt')
  p.add_argument('--pairs', default='', help='override config.data.pairs (e.g. icd11_translation)')
  p.add_argument('--out', default='')
  args = p.parse_args()
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
  from aigc_jax.data import text_pairs  # pylint: disable=g-import-not-at-top
  from aigc_jax.text import translation  # pylint: disable=g-import-not-at-top
  config = load_config(args.config)
  corpus = args.pairs or config.data.pairs
  version = subprocess.run(['dpkg-query', '-W', '-f', '${Package} ${Version}; ', 'apertium', 'apertium-eng-spa',
                            'apertium-fr-es', 'apertium-es-pt'], capture_output=True, text=True, check=False).stdout
  result = {'pairs': corpus, 'apertium_versions': version}
  for lang in args.languages.split(','):
    commands = apertium_commands(lang)
    pairs = text_pairs.translation_pairs(corpus, lang, config.data.val_fraction, config.data.test_fraction,
                                         config.data.get('data_dir', ''))
    sources, references = [s for s, _ in pairs['test']], [t for _, t in pairs['test']]
    t0 = time.perf_counter()
    hypotheses = translate_lines(sources, commands)
    seconds = time.perf_counter() - t0
    # How much it does not know: the first stage again without -u, its unknown words marked '*'.
    marked = translate_lines(sources, [[a for a in commands[0] if a != '-u']])
    unknown_words = [w.lower() for m in marked for w in re.findall(r'(?:^|\s)\*(\w+)', m)]
    unknown = len(unknown_words)
    result[lang] = {'test_pairs': len(sources), 'modes': ' | '.join(' '.join(c) for c in commands),
                    'pivot': MODES[lang][1], 'seconds': round(seconds, 2),
                    'titles_with_an_unknown_word': round(sum('*' in m for m in marked) / max(len(marked), 1), 4),
                    'unknown_word_share': round(unknown / max(sum(len(m.split()) for m in marked), 1), 4),
                    'most_frequent_unknown_words': collections.Counter(unknown_words).most_common(5),
                    'apertium': translation.scores(references, hypotheses, lang),
                    'examples': [[s, h, r] for s, h, r in list(zip(sources, hypotheses, references))[:3]]}
    print(f'{lang}: apertium BLEU {result[lang]["apertium"]["bleu"]:.1f} chrF '
          f'{result[lang]["apertium"]["chrf"]:.1f} on {len(sources)} titles ({seconds:.1f} s)', file=sys.stderr)
  text = json.dumps(result, ensure_ascii=False, indent=1)
  if args.out:
    pathlib.Path(args.out).write_text(text + '\n', encoding='utf-8')
  print(text)


if __name__ == '__main__':
  main()
