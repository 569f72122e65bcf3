"""Source → target text pairs for a causal language model trained as a conditional generator (registered as
'text_pairs'): the IU chest X-ray reports' FINDINGS → IMPRESSION (aigc_jax/text/reports.py), or ICD-10 titles
English → other languages (aigc_jax/text/translation.py).

  config.data.name = 'text_pairs'
  config.data.pairs = 'iu_findings_impression'     # or 'icd10_translation'
  config.data.languages = ('es', 'de', 'fr')       # icd10_translation: the target languages, one model
  config.data.prompt_len = 96      # source tokens kept (the start of the findings; 99% fit a BPE of 4,096)
  config.data.target_len = 32      # target tokens kept, [EOS] included
  config.data.seq_len = prompt_len + target_len

A training row is the prompt "FINDINGS: <findings> IMPRESSION:" — the layout of the IU documents the language
models pretrain on, so a pretrained model already continues it with an impression — followed by " <impression>"
and [EOS], right-padded (segment 0). For translation the prompt is "English: <title> Spanish:" (the target
language named last acts as the target-language token of a multilingual model). A source longer than
prompt_len keeps its start and the closing cue ("IMPRESSION:", "Spanish:"), which the target must follow. 'loss_mask' marks the positions whose next token belongs to the target,
so only the impression is learned (tasks/language_model.py). For generation, `prompts(split)` gives the
prompts left-padded to prompt_len with each row's first real slot (models/decoding.py's `start`), and the
reference impressions.

The tokenizer follows `text.resolve_tokenizer` (a pretraining run's, when fine-tuning; else one trained on
the training pairs).
"""

import jax
import ml_collections
import numpy as np

from aigc_jax.data import serving
from aigc_jax.data import text
from aigc_jax.text import corpora
from aigc_jax.text import reports
from aigc_jax.text import tokenizer as tokenizer_lib
from aigc_jax.text import translation

PAIRS = ('iu_findings_impression', 'icd10_translation')
KEYS = text.KEYS + ('loss_mask',)
Example = tuple[str, str, str, str]   # (source text, closing cue, target, key: 'report' or the language)


def examples(config: ml_collections.ConfigDict) -> dict[str, list[Example]]:
  """{split: [(source, cue, target, key)]} of the configured pairs."""
  if config.pairs == 'iu_findings_impression':
    return {s: [(f'FINDINGS: {f}', ' IMPRESSION:', i, 'report') for f, i, _ in v] for s, v in
            reports.iu_findings_impression(config.val_fraction, config.test_fraction).items()}
  if config.pairs == 'icd10_translation':
    languages = tuple(config.get('languages') or ())
    if not languages or set(languages) - set(translation.LANGUAGES):
      raise ValueError(f'config.data.languages={languages!r}: name one or more of {sorted(translation.LANGUAGES)}.')
    out = {s: [] for s in corpora.SPLITS}
    for lang in languages:
      name = translation.LANGUAGES[lang][1]
      for s, v in translation.icd10_pairs(lang, config.val_fraction, config.test_fraction).items():
        out[s] += [(f'English: {en}', f' {name}:', tr, lang) for en, tr in v]
    return out
  raise ValueError(f'config.data.pairs={config.pairs!r}; choose one of {PAIRS}.')


class TextPairs:

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | None = None):
    if config.seq_len != config.prompt_len + config.target_len:
      raise ValueError(f'config.data.seq_len={config.seq_len} must be prompt_len + target_len = '
                       f'{config.prompt_len + config.target_len}.')
    self.config = config
    self.splits = examples(config)
    self.tokenizer = text.resolve_tokenizer(
        config, workdir, lambda: [f'{s}{c} {t}' for s, c, t, _ in self.splits['train']])
    self._rows, self._prompts = {}, {}

  def _encode(self, split: str) -> tuple[list[list[int]], list[list[int]]]:
    pairs = self.splits[split]
    if not pairs:
      raise ValueError(f'config.data.pairs={self.config.pairs!r} has no {split} pairs: raise '
                       'config.data.val_fraction / test_fraction.')
    bodies = self.tokenizer.encode([s for s, _, _, _ in pairs])
    cues = self.tokenizer.encode([c for _, c, _, _ in pairs])
    targets = self.tokenizer.encode([' ' + t for _, _, t, _ in pairs])
    cut = self.config.prompt_len
    sources = [b[:cut - len(c)] + c for b, c in zip(bodies, cues)]
    targets = [(t + [tokenizer_lib.EOS])[:self.config.target_len] for t in targets]
    return sources, targets
  def rows(self, split: str) -> dict[str, np.ndarray]:
    """{'tokens', 'segment_ids', 'positions', 'loss_mask'} [N, seq_len]: prompt, then target, then padding."""
    if split not in self._rows:
      sources, targets = self._encode(split)
      n, length = len(sources), self.config.seq_len
      out = {k: np.zeros((n, length), np.float32 if k == 'loss_mask' else np.int32) for k in KEYS}
      for i, (s, t) in enumerate(zip(sources, targets)):
        ids = s + t
        out['tokens'][i, :len(ids)] = ids
        out['segment_ids'][i, :len(ids)] = 1
        out['loss_mask'][i, len(s) - 1:len(ids) - 1] = 1.0   # position j predicts token j + 1
      out['positions'][:] = np.arange(length, dtype=np.int32)
      self._rows[split] = out
    return self._rows[split]

  def prompts(self, split: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(prompts [N, prompt_len] left-padded with [PAD], start [N] (the first real slot), reference targets,
    keys: 'report' or each pair's target language)."""
    if split not in self._prompts:
      sources, _ = self._encode(split)
      tokens = np.full((len(sources), self.config.prompt_len), tokenizer_lib.PAD, np.int32)
      start = np.zeros(len(sources), np.int32)
      for i, s in enumerate(sources):
        start[i] = self.config.prompt_len - len(s)
        tokens[i, start[i]:] = s
      self._prompts[split] = (tokens, start, [t for _, _, t, _ in self.splits[split]],
                              [k for _, _, _, k in self.splits[split]])
    return self._prompts[split]

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((batch_size, self.config.seq_len), np.float32 if k == 'loss_mask' else np.int32)
            for k in KEYS}

  def make_dataset(self, *, batch_size: int, process_index: int, process_count: int):
    ds = serving.stream(serving.Rows(self.rows(self.config.split)), self.config)
    return serving.serve(ds, self.config, batch_size=batch_size, process_index=process_index,
                         process_count=process_count)
