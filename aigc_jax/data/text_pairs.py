"""Source → target text pairs for a causal language model trained as a conditional generator (registered as
'text_pairs'): the IU chest X-ray reports' FINDINGS → IMPRESSION (aigc_jax/text/reports.py).

  config.data.name = 'text_pairs'
  config.data.pairs = 'iu_findings_impression'
  config.data.prompt_len = 96      # source tokens kept (the start of the findings; 99% fit a BPE of 4,096)
  config.data.target_len = 32      # target tokens kept, [EOS] included
  config.data.seq_len = prompt_len + target_len

A training row is the prompt "FINDINGS: <findings> IMPRESSION:" — the layout of the IU documents the language
models pretrain on, so a pretrained model already continues it with an impression — followed by " <impression>"
and [EOS], right-padded (segment 0). 'loss_mask' marks the positions whose next token belongs to the target,
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
from aigc_jax.text import reports
from aigc_jax.text import tokenizer as tokenizer_lib

PAIRS = ('iu_findings_impression',)
KEYS = text.KEYS + ('loss_mask',)


def prompt_text(source: str) -> str:
  return f'FINDINGS: {source} IMPRESSION:'


class TextPairs:

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | None = None):
    if config.pairs not in PAIRS:
      raise ValueError(f'config.data.pairs={config.pairs!r}; choose one of {PAIRS}.')
    if config.seq_len != config.prompt_len + config.target_len:
      raise ValueError(f'config.data.seq_len={config.seq_len} must be prompt_len + target_len = '
                       f'{config.prompt_len + config.target_len}.')
    self.config = config
    self.splits = {s: [(f, i) for f, i, _ in v] for s, v in
                   reports.iu_findings_impression(config.val_fraction, config.test_fraction).items()}
    self.tokenizer = text.resolve_tokenizer(
        config, workdir, lambda: [f'{prompt_text(f)} {i}' for f, i in self.splits['train']])
    self._rows, self._prompts = {}, {}

  def _encode(self, split: str) -> tuple[list[list[int]], list[list[int]]]:
    pairs = self.splits[split]
    if not pairs:
      raise ValueError(f'config.data.pairs={self.config.pairs!r} has no {split} pairs: raise '
                       'config.data.val_fraction / test_fraction.')
    sources = self.tokenizer.encode([prompt_text(f) for f, _ in pairs])
    targets = self.tokenizer.encode([' ' + i for _, i in pairs])
    cut = self.config.prompt_len
    # A long source keeps its start and the closing "IMPRESSION:" cue, which the target must follow.
    cue = self.tokenizer.encode([' IMPRESSION:'])[0]
    sources = [s if len(s) <= cut else s[:cut - len(cue)] + cue for s in sources]
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

  def prompts(self, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(prompts [N, prompt_len] left-padded with [PAD], start [N] (the first real slot), reference targets)."""
    if split not in self._prompts:
      sources, _ = self._encode(split)
      tokens = np.full((len(sources), self.config.prompt_len), tokenizer_lib.PAD, np.int32)
      start = np.zeros(len(sources), np.int32)
      for i, s in enumerate(sources):
        start[i] = self.config.prompt_len - len(s)
        tokens[i, start[i]:] = s
      self._prompts[split] = (tokens, start, [i for _, i in self.splits[split]])
    return self._prompts[split]

  def batch_spec(self, batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct((batch_size, self.config.seq_len), np.float32 if k == 'loss_mask' else np.int32)
            for k in KEYS}

  def make_dataset(self, *, batch_size: int, process_index: int, process_count: int):
    ds = serving.stream(serving.Rows(self.rows(self.config.split)), self.config)
    return serving.serve(ds, self.config, batch_size=batch_size, process_index=process_index,
                         process_count=process_count)
