"""Evaluators of a causal language model or an encoder-decoder trained on 'text_pairs': it writes the target of every held-out pair,
and the targets are scored as their field scores them.

  config.evals.test = evaluator('report', every=…, split='test', beam=4, length_penalty=0.6, batch=32, num=0)
      findings → impression: BLEU-1…4, ROUGE-L, CIDEr-D and the clinical precision / recall / F1 of the
      findings asserted (aigc_jax/text/report_metrics.py).
  config.evals.test = evaluator('image_report', every=…, split='test', beam=4, …)
      CT slice → report (data 'phantom_reports'): the n-gram scores above, and the level, lesions, side and
      size the reports state against the slices' labels (aigc_jax/text/slice_reports.py).
  config.evals.test = evaluator('translation', every=…, split='test', beam=4, …)
      ICD-10 titles: sacrebleu BLEU and chrF per target language (signatures logged) and their means.

Greedy decoding with beam=0, else beam search (models/decoding.py), jitted once with the KV cache; prompts of
unequal length are left-padded; an encoder-decoder gets each pair's source and decodes from its cue. num > 0 scores the first num pairs only (monitoring while training). The
generated targets are written beside the references as text.
"""

import collections
import functools

import jax
import numpy as np

from aigc_jax.core import evaluation
from aigc_jax.core import reporting
from aigc_jax.data import image_reports
from aigc_jax.data import text_pairs
from aigc_jax.text import report_metrics
from aigc_jax.text import slice_reports
from aigc_jax.text import translation


def decoder(task, num_new: int, beam: int, length_penalty: float = 0.6):
  """`task.generate` jitted with its decoding settings bound: greedy (beam 0 or 1) or beam search."""
  return jax.jit(functools.partial(task.generate, num_new=int(num_new), temperature=0.0, beam=int(beam),
                                   length_penalty=float(length_penalty)))


def write(generate, params, data: text_pairs.TextPairs, inputs: dict[str, np.ndarray], batch: int,
          gather=np.asarray) -> list[str]:
  """The texts `generate` (a jitted `task.generate` with its decoding settings bound) writes for
  `data.inputs(…)`, `batch` rows per call; the last call is filled up with repeats of its first row, so
  it compiles once. `gather`: the evaluation context's, when several processes hold parts of the output."""
  inputs = {k: v for k, v in inputs.items() if k != 'truncated'}
  n = len(inputs['prompt'])
  b, out = min(batch, n), []
  for i in range(0, n, b):
    chunk = {k: v[i:i + b] for k, v in inputs.items()}
    short = b - len(chunk['prompt'])
    if short:
      chunk = {k: np.concatenate([v, np.repeat(v[:1], short, 0)]) for k, v in chunk.items()}
    prompt = chunk.pop('prompt')
    out += data.decode(np.asarray(gather(generate(params, prompt, jax.random.key(0), **chunk)))[:b - short])
  return out


class PairGeneration(evaluation.Evaluator):
  """Generation on the held-out pairs; subclasses score (`score`)."""

  fields = {'split': 'validation', 'batch': 32, 'beam': 0, 'length_penalty': 0.6, 'num': 0}
  pairs: tuple[str, ...] = ()   # the config.data.pairs this evaluator scores

  def __init__(self, cfg, **kw):
    super().__init__(cfg, **kw)
    self.needs('generate')
    self.check_data(cfg)
    if getattr(self.task, 'objective', 'causal') != 'causal':
      raise ValueError(f'config.evals.{self.name}: a masked language model does not generate text.')
    self._generate = decoder(self.task, self.config.data.target_len, self.cfg.beam, self.cfg.length_penalty)
    self._signed = False   # the sacrebleu signatures are logged once per run

  def check_data(self, cfg) -> None:
    """Refuses a data source this evaluator does not score."""
    if not isinstance(self.data, text_pairs.TextPairs) or not self.accepts(self.config.data.pairs):
      raise ValueError(f'config.evals.{self.name} (type {cfg.get("type")!r}) scores config.data.name="text_pairs" '
                       f'with pairs in {self.pairs}, not {self.config.data.name!r} / '
                       f'{self.config.data.get("pairs")!r}.')

  def accepts(self, pairs: str) -> bool:
    """Whether this evaluator scores config.data.pairs=`pairs`."""
    return pairs in self.pairs

  def generate(self, params, split: str, ctx: evaluation.Context, num: int = 0
               ) -> tuple[list[str], list[str], list[str]]:
    """(generated, reference, key) of the first `num` pairs of `split` (0: all)."""
    inputs, references, keys = self.data.prompts(split)
    if num:
      inputs, references, keys = {k: v[:num] for k, v in inputs.items()}, references[:num], keys[:num]
    return write(self._generate, params, self.data, inputs, int(self.cfg.batch), ctx.gather), list(references), \
        list(keys)

  def score(self, references: list[str], generated: list[str], keys: list[str]) -> dict[str, float]:
    raise NotImplementedError

  def run(self, params, rng, ctx):
    del rng
    generated, references, keys = self.generate(params, self.cfg.split, ctx, int(self.cfg.num))
    scores = self.score(references, generated, keys)
    scores['distinct_share'] = len(set(generated)) / len(generated)   # 1 / n: one output for every input
    lines = []
    for i, (g, r, k) in enumerate(zip(generated, references, keys)):
      lines += [f'## {i} ({k})', f'model:     {g}', f'reference: {r}', '']
    return evaluation.Output(scalars=scores, texts={'generated': '\n'.join(lines)})


class ReportGeneration(PairGeneration):

  pairs = ('iu_findings_impression',)

  def score(self, references, generated, keys):
    del keys
    return report_metrics.scores(references, generated)


class ImageReportGeneration(PairGeneration):
  """Reports written for held-out CT slices ('phantom_reports'): the n-gram scores against the reference
  reports and what the reports say against what the slices hold (`slice_reports.clinical_scores`)."""

  def check_data(self, cfg) -> None:
    if not isinstance(self.data, image_reports.PhantomReports):
      raise ValueError(f'config.evals.{self.name} (type {cfg.get("type")!r}) scores config.data.name='
                       f'"phantom_reports", not {self.config.data.name!r}.')

  def score(self, references, generated, keys):
    truths = self.data.truths(self.cfg.split)
    return {**report_metrics.ngram_scores(references, generated),
            **slice_reports.clinical_scores([truths[int(k)] for k in keys], generated)}


class Translation(PairGeneration):

  pairs = translation.CORPORA + ('tfds:NAME',)

  def accepts(self, pairs: str) -> bool:
    return translation.is_translation(pairs)

  def score(self, references, generated, keys):
    by_lang = collections.defaultdict(lambda: ([], []))
    for r, g, k in zip(references, generated, keys):
      by_lang[k][0].append(r)
      by_lang[k][1].append(g)
    out = {}
    for lang, (refs, gens) in sorted(by_lang.items()):
      s = translation.scores(refs, gens, lang)
      out[f'bleu_{lang}'], out[f'chrf_{lang}'] = s['bleu'], s['chrf']
      if not self._signed:
        reporting.log(f'{self.name}: sacrebleu {lang}: BLEU {s["bleu_signature"]}; chrF {s["chrf_signature"]}')
    self._signed = True
    out['bleu_mean'] = float(np.mean([out[f'bleu_{k}'] for k in by_lang]))
    out['chrf_mean'] = float(np.mean([out[f'chrf_{k}'] for k in by_lang]))
    return out
