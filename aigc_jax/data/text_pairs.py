"""Source → target text pairs for a conditional generator, a causal language model or an encoder-decoder
(registered as 'text_pairs'): the IU chest X-ray reports' FINDINGS → IMPRESSION (aigc_jax/text/reports.py), or
ICD-10 / ICD-11 titles, or a user's parallel text (prepared: tfds:NAME with config.data.data_dir), English →
other languages (aigc_jax/text/translation.py).

  config.data.name = 'text_pairs'
  config.data.pairs = 'iu_findings_impression'     # or 'icd10_translation', 'icd11_translation', 'tfds:NAME'
  config.data.languages = ('es', 'de', 'fr')       # translation: the target languages, one model
  config.data.prompt_len = 96      # source tokens kept (the start of the findings; 99% fit a BPE of 4,096)
  config.data.target_len = 32      # target tokens kept, [EOS] included
  config.data.seq_len = prompt_len + target_len
  config.data.layout = 'decoder'   # or 'encoder_decoder' (config.model.name = 'encoder_decoder')

A training row is the prompt "FINDINGS: <findings> IMPRESSION:" — the layout of the IU documents the language
models pretrain on, so a pretrained model already continues it with an impression — followed by " <impression>"
and [EOS], right-padded (segment 0). For translation the prompt is "English: <title> Spanish:" (the target
language named last acts as the target-language token of a multilingual model). A source longer than
prompt_len keeps its start and the closing cue ("IMPRESSION:", "Spanish:"), which the target must follow.
'loss_mask' marks the positions whose next token belongs to the target, so only the impression is learned
(tasks/language_model.py). For generation, `inputs(pairs)` gives the prompts left-padded to prompt_len with
each row's first real slot (models/decoding.py's `start`); `prompts(split)` those of a split with the
reference targets; `decode` turns generated tokens back into text.

With layout 'encoder_decoder' the source ("English: <title>", "FINDINGS: <findings>"; its first prompt_len
tokens) is its own row, 'source' / 'source_segment' [N, prompt_len], for the encoder, and the decoder's row
[N, seq_len] is the cue (" Spanish:", " IMPRESSION:": the target-language token of a multilingual model),
the target and [EOS]: seq_len = target_len + room for the longest cue (checked). Generation inputs then hold
the encoder's rows too, and the prompts are the cues alone.

The tokenizer follows `text.resolve_tokenizer` (a pretraining run's, when fine-tuning; else one trained on
the training pairs).
"""

import jax
import ml_collections
import numpy as np

from aigc_jax.data import serving
from aigc_jax.data import text
from aigc_jax.data import text_prepare
from aigc_jax.text import corpora
from aigc_jax.text import reports
from aigc_jax.text import tokenizer as tokenizer_lib
from aigc_jax.text import translation

PAIRS = ('iu_findings_impression',) + translation.CORPORA
LAYOUTS = ('decoder', 'encoder_decoder')
KEYS = text.KEYS + ('loss_mask',)
SOURCE_KEYS = ('source', 'source_segment')
Example = tuple[str, str, str, str]   # (source text, closing cue, target, key: 'report' or the language)


def translation_example(english: str, lang: str, target: str = '') -> Example:
  """An English text to translate into `lang` (a language code), as the translators read it."""
  return (f'English: {english}', f' {translation.language_name(lang)}:', target, lang)


def translation_pairs(corpus: str, lang: str, val_fraction: float, test_fraction: float, data_dir: str = ''
                      ) -> dict[str, list[translation.Pair]]:
  """{split: [(source, translation)]} of `corpus` (one of translation.CORPORA, or 'tfds:NAME' prepared under
  data_dir: text_prepare.load_pairs) into `lang`."""
  if corpus == 'icd10_translation':
    return translation.icd10_pairs(lang, val_fraction, test_fraction)
  if corpus == 'icd11_translation':
    return translation.icd11_pairs(lang, val_fraction, test_fraction)
  if corpus.startswith('tfds:'):
    return text_prepare.load_pairs(corpus[5:], data_dir, lang)
  raise ValueError(f'{corpus!r} is not translation pairs: use one of {translation.CORPORA} or tfds:NAME (python -m '
                   'aigc_jax.prepare_text --target_field=...).')


def examples(config: ml_collections.ConfigDict) -> dict[str, list[Example]]:
  """{split: [(source, cue, target, key)]} of the configured pairs."""
  if config.pairs == 'iu_findings_impression':
    return {s: [(f'FINDINGS: {f}', ' IMPRESSION:', i, 'report') for f, i, _ in v] for s, v in
            reports.iu_findings_impression(config.val_fraction, config.test_fraction).items()}
  if translation.is_translation(config.pairs):
    languages = tuple(config.get('languages') or ())
    offered = {'icd10_translation': translation.LANGUAGES, 'icd11_translation': translation.ICD11_LANGUAGES}
    if not languages or set(languages) - set(offered.get(config.pairs, languages)):
      known = sorted(offered.get(config.pairs, ['the languages of the prepared pairs']))
      raise ValueError(f'config.data.languages={languages!r}: name one or more of {known}.')
    out = {s: [] for s in corpora.SPLITS}
    for lang in languages:
      for s, v in translation_pairs(config.pairs, lang, config.val_fraction, config.test_fraction,
                                    config.get('data_dir', '')).items():
        out[s] += [translation_example(en, lang, tr) for en, tr in v]
    return out
  raise ValueError(f'config.data.pairs={config.pairs!r}; choose one of {PAIRS}, or tfds:NAME (parallel text '
                   'prepared by python -m aigc_jax.prepare_text --target_field=...).')


class TextPairs(serving.RowsSource):

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | None = None):
    self.layout = config.get('layout', 'decoder')
    if self.layout not in LAYOUTS:
      raise ValueError(f'config.data.layout={self.layout!r}; choose one of {LAYOUTS}.')
    self.seq2seq = self.layout == 'encoder_decoder'
    if self.seq2seq and config.seq_len <= config.target_len:
      raise ValueError(f'config.data.seq_len={config.seq_len} (the decoder\'s row) must leave room for the cue '
                       f'before the target_len={config.target_len} target tokens.')
    if not self.seq2seq and config.seq_len != config.prompt_len + config.target_len:
      raise ValueError(f'config.data.seq_len={config.seq_len} must be prompt_len + target_len = '
                       f'{config.prompt_len + config.target_len}.')
    self.config = config
    self.splits = examples(config)
    self.tokenizer = text.resolve_tokenizer(
        config, workdir, lambda: [f'{s}{c} {t}' for s, c, t, _ in self.splits['train']])
    self._rows, self._prompts = {}, {}

  def _encode(self, pairs: list[Example]) -> tuple[list[list[int]], np.ndarray]:
    """(prompts, truncated [N] bool): prompt token lists, for the decoder layout the source's start and its
    cue, for encoder_decoder the cues (the source is `_sources`)."""
    bodies = self.tokenizer.encode([s for s, _, _, _ in pairs])
    cues = self.tokenizer.encode([c for _, c, _, _ in pairs])
    if self.seq2seq:
      room = self.config.seq_len - self.config.target_len
      if max(map(len, cues)) > room:
        raise ValueError(f'config.data.seq_len={self.config.seq_len}: a cue of {max(map(len, cues))} tokens does not fit '
                         f'before target_len={self.config.target_len}; raise seq_len.')
      return cues, np.array([len(b) > self.config.prompt_len for b in bodies])
    cut = self.config.prompt_len
    return ([b[:cut - len(c)] + c for b, c in zip(bodies, cues)],
            np.array([len(b) + len(c) > cut for b, c in zip(bodies, cues)]))

  def _sources(self, pairs: list[Example]) -> dict[str, np.ndarray]:
    """The encoder's rows (encoder_decoder): {'source', 'source_segment'} [N, prompt_len], the first
    prompt_len tokens of each source, right-padded."""
    bodies = self.tokenizer.encode([s for s, _, _, _ in pairs])
    out = {k: np.zeros((len(bodies), self.config.prompt_len), np.int32) for k in SOURCE_KEYS}
    for i, b in enumerate(bodies):
      b = b[:self.config.prompt_len]
      out['source'][i, :len(b)] = b
      out['source_segment'][i, :len(b)] = 1
    return out

  def _pairs(self, split: str) -> list[Example]:
    if not self.splits[split]:
      raise ValueError(f'config.data.pairs={self.config.pairs!r} has no {split} pairs: raise '
                       'config.data.val_fraction / test_fraction.')
    return self.splits[split]

  def rows(self, split: str) -> dict[str, np.ndarray]:
    """{'tokens', 'segment_ids', 'positions', 'loss_mask'} [N, seq_len]: prompt, then target, then padding
    (and the encoder's 'source', 'source_segment' [N, prompt_len] for encoder_decoder)."""
    if split not in self._rows:
      pairs = self._pairs(split)
      prompts, _ = self._encode(pairs)
      targets = text.target_tokens(self.tokenizer, [t for _, _, t, _ in pairs], self.config.target_len,
                                   f'{split} targets')
      n, length = len(prompts), self.config.seq_len
      out = {k: np.zeros((n, length), np.float32 if k == 'loss_mask' else np.int32) for k in KEYS}
      for i, (s, t) in enumerate(zip(prompts, targets)):
        ids = s + t
        out['tokens'][i, :len(ids)] = ids
        out['segment_ids'][i, :len(ids)] = 1
        out['loss_mask'][i, len(s) - 1:len(ids) - 1] = 1.0   # position j predicts token j + 1
      out['positions'][:] = np.arange(length, dtype=np.int32)
      if self.seq2seq:
        out.update(self._sources(pairs))
      self._rows[split] = out
    return self._rows[split]

  def inputs(self, pairs: list[Example]) -> dict[str, np.ndarray]:
    """What `task.generate` needs to write the targets of `pairs` (their targets are not read):
    'prompt' [N, P] left-padded with [PAD] and 'start' [N] (each row's first real slot), plus 'source' and
    'source_segment' [N, prompt_len] for encoder_decoder, whose prompts are the cues (P: seq_len -
    target_len; else prompt_len); 'truncated' [N]: the source was cut to fit."""
    prompts, truncated = self._encode(pairs)
    width = self.config.seq_len - self.config.target_len if self.seq2seq else self.config.prompt_len
    out = {'prompt': np.full((len(prompts), width), tokenizer_lib.PAD, np.int32),
           'start': np.zeros(len(prompts), np.int32), 'truncated': truncated}
    for i, s in enumerate(prompts):
      out['start'][i] = width - len(s)
      out['prompt'][i, out['start'][i]:] = s
    if self.seq2seq:
      out.update(self._sources(pairs))
    return out

  def prompts(self, split: str) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """(`inputs` of the pairs of `split`, their reference targets, their keys: 'report' or each pair's target
    language)."""
    if split not in self._prompts:
      pairs = self._pairs(split)
      self._prompts[split] = (self.inputs(pairs), [t for _, _, t, _ in pairs], [k for _, _, _, k in pairs])
    return self._prompts[split]

  def decode(self, rows: np.ndarray) -> list[str]:
    """Generated token rows [N, L] → texts, each up to its first [EOS]."""
    return text.decode_rows(self.tokenizer, rows)

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    spec = {k: jax.ShapeDtypeStruct((batch_size, self.config.seq_len), np.float32 if k == 'loss_mask' else np.int32)
            for k in KEYS}
    if self.seq2seq:
      spec.update({k: jax.ShapeDtypeStruct((batch_size, self.config.prompt_len), np.int32) for k in SOURCE_KEYS})
    return spec
