"""The seq2seq family: cross-attention (shapes, source masking), the cached encoder in decoding, a causal LM
loading into the decoder, the encoder-decoder rows of 'text_pairs', and a test-size translator run."""

import functools
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aigc_jax import experiment
from aigc_jax import registry
from aigc_jax.models import decoding
from aigc_jax import translate
from aigc_jax.models import transformer
from aigc_jax.text import tokenizer
from configs import translate_text

KW = dict(vocab_size=64, max_len=32, width=32, depth=2, heads=4)


def _open_gates(params, value=0.7):
  """The gates start at 0 (the decoder ignores the source until it learns to listen): open them to test."""
  return {k: ({**v, 'gate': jnp.asarray(value)} if k.startswith('cross_') else v) for k, v in params.items()}


def _seq2seq(**kw):
  m = transformer.EncoderDecoder(**KW, encoder_depth=1, **kw)
  source = jax.random.randint(jax.random.PRNGKey(2), (2, 9), 6, 64)
  segment = jnp.array([[1] * 9, [1] * 6 + [0] * 3])       # row 1: 3 padding tokens
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 12), 6, 64)
  params = nn.meta.unbox(m.init(jax.random.PRNGKey(0), tokens, source=source, source_segment=segment)['params'])
  return m, _open_gates(params), tokens, source, segment


def test_cross_attention_shapes_and_source_masking():
  m, params, tokens, source, segment = _seq2seq()
  assert set(params) == {'embed', 'pos_embed', 'ln_final', 'block_0', 'block_1', 'encoder', 'cross_0', 'cross_1'}
  assert params['cross_0']['query']['kernel'].shape == (32, 4, 8)
  out = lambda s, t=tokens: m.apply({'params': params}, t, source=s, source_segment=segment)
  base = out(source)
  assert base.shape == (2, 12, 64)
  padded_changed = out(source.at[1, 7].set(9))           # a padding slot of row 1: nothing may change
  np.testing.assert_array_equal(padded_changed, base)
  real_changed = out(source.at[1, 2].set(9))             # a real source token changes every target position
  assert float(jnp.abs(real_changed[1] - base[1]).max(-1).min()) > 1e-4
  np.testing.assert_array_equal(real_changed[0], base[0])
  future = out(source, tokens.at[:, 7].set(5))           # the decoder stays causal
  np.testing.assert_array_equal(future[:, :7], base[:, :7])
  closed = _open_gates(params, 0.0)                      # closed gates: the source does not matter
  np.testing.assert_allclose(m.apply({'params': closed}, tokens, source=source.at[1, 2].set(9), source_segment=segment),
                             m.apply({'params': closed}, tokens, source=source, source_segment=segment), atol=1e-6)


def test_decoding_with_the_cached_encoder_equals_the_uncached_forward():
  m, params, tokens, source, segment = _seq2seq()
  full = m.apply({'params': params}, tokens, source=source, source_segment=segment)
  logits, cache = m.apply({'params': params}, tokens[:, :3], cache=m.init_cache(2, 12), index=0, source=source,
                          source_segment=segment)
  assert cache['cross_k'].shape == (2, 2, 9, 4, 8) and cache['memory_valid'].shape == (1, 2, 9)
  steps = [logits]
  for i in range(3, 12):    # later steps see no source: the encoder's keys and values are in the cache
    logits, cache = m.apply({'params': params}, tokens[:, i:i + 1], cache=cache, index=i)
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=3e-5)
  context = {'source': source, 'source_segment': segment}
  gen = jax.jit(functools.partial(decoding.generate, m, num_new=6, temperature=0.0))(
      params, tokens[:, :2], jax.random.PRNGKey(0), context=context)
  seq = tokens[:, :2]
  for _ in range(6):   # greedy by full recomputation
    nxt = jnp.argmax(m.apply({'params': params}, seq, source=source, source_segment=segment)[:, -1], -1)
    seq = jnp.concatenate([seq, nxt[:, None]], 1)
  np.testing.assert_array_equal(gen, seq[:, 2:])
  # Beam search: each row's hypotheses keep that row's source (cache rows follow them).
  beams = decoding.beam_search(m, params, tokens[:, :2], num_new=5, beam=3, context=context)[0]
  for r in range(2):
    alone = decoding.beam_search(m, params, tokens[r:r + 1, :2], num_new=5, beam=3,
                                 context={k: v[r:r + 1] for k, v in context.items()})[0]
    np.testing.assert_array_equal(beams[r], alone[0])
  with pytest.raises(ValueError, match='needs a memory'):
    m.apply({'params': params}, tokens)


def test_a_causal_lm_loads_into_the_decoder_and_is_unchanged_at_the_start():
  lm = transformer.Transformer(**KW)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 12), 6, 64)
  lm_params = nn.meta.unbox(lm.init(jax.random.PRNGKey(3), tokens)['params'])
  m = transformer.EncoderDecoder(**KW)
  source = jax.random.randint(jax.random.PRNGKey(2), (2, 9), 6, 64)
  fresh = nn.meta.unbox(m.init(jax.random.PRNGKey(0), tokens, source=source)['params'])
  assert set(fresh) - set(lm_params) == set(m.fresh_params())
  merged = {**fresh, **lm_params}
  for k in lm_params:   # every LM parameter fits the decoder's by name and shape
    assert jax.tree.map(jnp.shape, fresh[k]) == jax.tree.map(jnp.shape, lm_params[k])
  np.testing.assert_allclose(m.apply({'params': merged}, tokens, source=source), lm.apply({'params': lm_params}, tokens),
                             atol=1e-5)
  task = registry.build_task(translate_text.get_config('test_seq2seq'))
  assert task.new_heads == m.fresh_params()


def test_encoder_decoder_rows_hold_the_source_apart_and_learn_the_target_only():
  c = translate_text.get_config('test_seq2seq')
  data = registry.build_data(c)
  rows = data.rows('train')
  n = len(data.splits['train'])
  assert rows['source'].shape == (n, c.data.prompt_len) and rows['tokens'].shape == (n, c.data.seq_len)
  src, cue, target, _ = data.splits['train'][0]
  ids = data.tokenizer.encode([src])[0][:c.data.prompt_len]
  assert rows['source'][0, :len(ids)].tolist() == ids and rows['source_segment'][0].sum() == len(ids)
  cue_ids = data.tokenizer.encode([cue])[0]
  tgt_ids = data.tokenizer.encode([' ' + target])[0] + [tokenizer.EOS]
  assert rows['tokens'][0, :len(cue_ids) + len(tgt_ids)].tolist() == cue_ids + tgt_ids
  assert np.flatnonzero(rows['loss_mask'][0]).tolist() == list(range(len(cue_ids) - 1, len(cue_ids) + len(tgt_ids) - 1))
  inputs, refs, keys = data.prompts('test')
  prompts, start = inputs['prompt'], inputs['start']
  assert prompts.shape[1] == c.data.seq_len - c.data.target_len
  assert prompts[0, start[0]:].tolist() == data.tokenizer.encode([data.splits['test'][0][1]])[0]
  assert (inputs['source'][0] == data.rows('test')['source'][0]).all()
  assert len(inputs['source']) == len(prompts) == len(refs) == len(keys)
  spec = data.batch_spec(4)
  assert spec['source'].shape == (4, c.data.prompt_len) and spec['tokens'].shape == (4, c.data.seq_len)
  c.data.seq_len = c.data.target_len + 1    # no room for " Spanish:" (2+ tokens)
  with pytest.raises(ValueError, match='cue of'):
    registry.build_data(c).rows('train')


def test_a_test_size_encoder_decoder_translator_trains_and_scores(tmp_path):
  c = translate_text.get_config('test_seq2seq')
  experiment.train_and_evaluate(c, str(tmp_path / 'run'))
  logged = [json.loads(line) for line in open(tmp_path / 'run' / 'metrics.jsonl')]
  test = [r for r in logged if 'test/bleu_es' in r][-1]
  assert 0 <= test['test/bleu_es'] <= 100 and np.isfinite([r['train/loss'] for r in logged if 'train/loss' in r]).all()
  # The command on that run: one line out per line in, blank lines kept, a long line named by number only.
  work = str(tmp_path / 'run')
  translator = translate.Translator(work, beam=2)
  long_line = ' '.join(['fracture of the neck of the femur'] * 12)
  out, cut = translator(['Cholera', '', long_line, 'Acute bronchitis'], 'es', batch=3)
  assert len(out) == 4 and out[1] == '' and cut == [2] and all(isinstance(t, str) for t in out)
  with pytest.raises(ValueError, match="--to='de'.*es only"):
    translator(['Cholera'], 'de')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  proc = subprocess.run([sys.executable, '-m', 'aigc_jax.translate', f'--workdir={work}', '--to=es', '--beam=2'],
                        input=f'Cholera\n\n{long_line}\nAcute bronchitis\n', cwd=root, env=env,
                        capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split('\n')[:4] == out and proc.stdout.count('\n') == 4
  assert 'line 3 is longer' in proc.stderr and 'fracture' not in proc.stderr
  with pytest.raises(FileNotFoundError, match='a training run wrote'):
    translate.Translator(str(tmp_path / 'nothing'))
