"""The `report` evaluator: a causal language model trained on 'text_pairs' writes the target of every held-out
pair (findings → impression), scored as report-generation papers score (aigc_jax/text/report_metrics.py):
BLEU-1…4, ROUGE-L, CIDEr-D and the clinical precision / recall / F1 of the findings it asserts.

  config.evals.test = evaluator('report', every=…, split='test', beam=4, length_penalty=0.6, batch=32, num=0)

Greedy decoding with beam=0, else beam search (models/decoding.py), jitted once with the KV cache; prompts of
unequal length are left-padded. num > 0 scores the first num pairs only (monitoring while training). The
generated impressions are written beside the references as text.
"""

import functools

import jax
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.data import text_pairs
from aigc_jax.text import report_metrics
from aigc_jax.text import tokenizer as tokenizer_lib


class ReportGeneration(evaluation.Evaluator):

  fields = {'split': 'validation', 'batch': 32, 'beam': 0, 'length_penalty': 0.6, 'num': 0}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('generate')
    if not isinstance(self.data, text_pairs.TextPairs):
      raise ValueError(f'config.evals.{self.name} (type "report") generates from text pairs and needs '
                       f'config.data.name="text_pairs", not {self.config.data.name!r}.')
    if getattr(self.task, 'objective', 'causal') != 'causal':
      raise ValueError(f'config.evals.{self.name}: a masked language model does not generate text.')
    d = self.config.data
    self._generate = jax.jit(functools.partial(self.task.generate, num_new=int(d.target_len), temperature=0.0,
                                               beam=int(self.cfg.beam), length_penalty=float(self.cfg.length_penalty)))

  def generate(self, params, split: str, num: int = 0) -> tuple[list[str], list[str]]:
    """(generated, reference) targets of the first `num` pairs of `split` (0: all)."""
    prompts, start, references = self.data.prompts(split)
    if num:
      prompts, start, references = prompts[:num], start[:num], references[:num]
    n, b = len(prompts), min(int(self.cfg.batch), len(prompts))
    tok, out = self.data.tokenizer, []
    for i in range(0, n, b):
      p, s = prompts[i:i + b], start[i:i + b]
      short = b - len(p)
      if short:  # one compile: repeat the first row into the last batch's empty places
        p, s = np.concatenate([p, np.repeat(p[:1], short, 0)]), np.concatenate([s, np.repeat(s[:1], short)])
      new = np.asarray(jax.device_get(self._generate(params, p, jax.random.key(0), start=s)))[:b - short]
      for row in new:
        stop = np.flatnonzero(row == tokenizer_lib.EOS)
        out.append(tok.decode(row[:stop[0]] if len(stop) else row).strip())
    return out, list(references)

  def run(self, params, rng, ctx):
    del rng, ctx
    generated, references = self.generate(params, self.cfg.split, int(self.cfg.num))
    scores = report_metrics.scores(references, generated)
    scores['distinct_share'] = len(set(generated)) / len(generated)   # 1 / n: one impression for every input
    lines = []
    for i, (g, r) in enumerate(zip(generated, references)):
      lines += [f'## {i}', f'model:     {g}', f'reference: {r}', '']
    return evaluation.Output(scalars=scores, texts={'impressions': '\n'.join(lines)})
