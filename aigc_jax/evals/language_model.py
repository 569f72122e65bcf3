"""Evaluators of the language models, on held-out text of the run's own data source (its tokenizer, its split).

  perplexity    cross-entropy per predicted token on every row of a held-out split (`split`, default
                'validation'; `max_rows` > 0 takes the first rows only): loss (nats/token), perplexity,
                token accuracy, and the number of tokens scored. A causal model is scored on every
                within-document next token; beside it, the Kneser–Ney bigram fit on the training rows
                (`baseline=True`) on the very same tokens. A masked model is scored on BERT-style masks
                drawn with the evaluation's fixed key: MLM accuracy and the perplexity of the masked tokens.
  text_samples  continuations of the first `prompt_tokens` tokens of the first `num` held-out documents
                (temperature / top-k / top-p sampling, or beam search with `beam` > 0, with the KV cache), written as text beside the
                reference, for reading in TensorBoard or <workdir>/<name>/samples_<step>.txt.
"""

import functools

import jax
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import text as text_data
from aigc_jax.text import ngram
from aigc_jax.text import tokenizer as tokenizer_lib


def _needs_text(ev: evaluation.Evaluator) -> None:
  if not isinstance(ev.data, text_data.TextRows):
    raise ValueError(f'config.evals.{ev.name} (type {ev.cfg.get("type")!r}) scores text and needs the text data '
                     f'source (config.data.name="text"), not {ev.config.data.name!r}.')


class Perplexity(evaluation.Evaluator):

  fields = {'split': 'validation', 'batch': 16, 'max_rows': 0, 'baseline': True}

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('token_losses')
    _needs_text(self)

    def sums(params, batch, rng):
      ce, w, correct = self.task.token_losses(params, batch, rng)
      return (ce * w).sum(), w.sum(), (correct * w).sum()
    self._sums = jax.jit(sums)

  @functools.cached_property
  def rows(self) -> dict[str, np.ndarray]:
    rows = self.data.rows(self.cfg.split)
    if self.cfg.max_rows:
      rows = {k: v[:self.cfg.max_rows] for k, v in rows.items()}
    reporting.log(f'{self.name}: scores {len(rows["tokens"])} rows of the {self.cfg.split} split')
    return rows

  @functools.cached_property
  def baseline(self) -> dict[str, float]:
    if not (self.cfg.baseline and self.task.objective == 'causal'):
      return {}
    train = self.data.rows(self.config.data.split)
    model = ngram.KneserNeyBigram(*ngram.pairs(train), self.task.model.vocab_size)
    logp = model.log_prob(*ngram.pairs(self.rows))
    return {'bigram_kn_perplexity': float(np.exp(-logp.mean()))}

  def run(self, params, rng, ctx):
    rows, n = self.rows, len(self.rows['tokens'])
    b = min(int(self.cfg.batch), n)
    total = np.zeros(3)
    for i in range(0, n, b):
      batch = {k: v[i:i + b] for k, v in rows.items()}
      short = b - len(batch['tokens'])
      if short:  # padding rows (segment 0) predict nothing: one compile for every batch
        batch = {k: np.concatenate([v, np.zeros((short,) + v.shape[1:], v.dtype)]) for k, v in batch.items()}
      total += np.array([float(x) for x in ctx.gather(self._sums(params, batch, jax.random.fold_in(rng, i)))])
    ce, count, correct = total
    count = max(count, 1.0)
    return evaluation.Output(scalars={'loss': ce / count, 'perplexity': float(np.exp(ce / count)),
                                      'token_accuracy': correct / count, 'tokens': count, **self.baseline})


class TextSamples(evaluation.Evaluator):

  fields = {'split': 'validation', 'num': 4, 'prompt_tokens': 16, 'new_tokens': 48, 'temperature': 0.8,
            'top_k': 0, 'top_p': 0.95, 'beam': 0, 'length_penalty': 0.6}   # beam > 0: beam search

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('generate')
    _needs_text(self)
    if self.task.objective != 'causal':
      raise ValueError(f'config.evals.{self.name}: a masked language model does not generate text; drop the '
                       'text_samples evaluator or train a causal one.')
    c = self.cfg
    if c.prompt_tokens + c.new_tokens > self.task.model.max_len:
      raise ValueError(f'config.evals.{self.name}: prompt_tokens={c.prompt_tokens} + new_tokens={c.new_tokens} '
                       f'exceed the model\'s max_len={self.task.model.max_len} (config.data.seq_len): lower them.')
    self._generate = jax.jit(functools.partial(
        self.task.generate, num_new=int(c.new_tokens), temperature=float(c.temperature), top_k=int(c.top_k),
        top_p=float(c.top_p), beam=int(c.beam), length_penalty=float(c.length_penalty)))

  @functools.cached_property
  def prompts(self) -> tuple[np.ndarray, list[str]]:
    docs = text_data.documents(self.config.data, self.cfg.split)
    tok = self.data.tokenizer
    p = int(self.cfg.prompt_tokens)
    ids = [x for x in tok.encode([d.text for d in docs[:8 * self.cfg.num]]) if len(x) > p][:self.cfg.num]
    if not ids:
      raise ValueError(f'config.evals.{self.name}: no {self.cfg.split} document has more than prompt_tokens={p} '
                       'tokens; lower prompt_tokens.')
    return np.array([x[:p] for x in ids], np.int32), [tok.decode(x[p:]) for x in ids]

  def run(self, params, rng, ctx):
    prompts, references = self.prompts
    out = np.asarray(ctx.gather(self._generate(params, prompts, rng)))
    tok = self.data.tokenizer
    lines, ended = [], 0
    for i, (prompt, new) in enumerate(zip(prompts, out)):
      stop = np.flatnonzero(new == tokenizer_lib.EOS)
      ended += bool(len(stop))
      new = new[:stop[0]] if len(stop) else new
      lines += [f'## sample {i}', f'prompt:    {tok.decode(prompt)}', f'model:     {tok.decode(new)}',
                f'reference: {references[i]}', '']
    return evaluation.Output(scalars={'ended_share': ended / len(prompts)}, texts={'samples': '\n'.join(lines)})
