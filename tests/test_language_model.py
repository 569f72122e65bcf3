"""The language models: masks, packing, the KV cache, BERT's corruption, and a run through the one trainer."""

import functools
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from aigc_jax import experiment
from aigc_jax import registry
from aigc_jax.core import train
from aigc_jax.data import text
from aigc_jax.models import decoding
from aigc_jax.models import transformer
from aigc_jax.tasks import language_model
from aigc_jax.text import tokenizer
from configs import lm_bert
from configs import lm_gpt


def _model(causal=True, **kw):
  m = transformer.Transformer(vocab_size=64, max_len=32, width=32, depth=2, heads=4, causal=causal, **kw)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 12), 6, 64)
  return m, nn.meta.unbox(m.init(jax.random.PRNGKey(0), tokens)['params']), tokens


def test_causal_model_never_sees_the_future():
  m, params, tokens = _model()
  base = m.apply({'params': params}, tokens)
  changed = m.apply({'params': params}, tokens.at[:, 7].set(5))
  np.testing.assert_array_equal(changed[:, :7], base[:, :7])
  assert float(jnp.abs(changed[:, 7:] - base[:, 7:]).max()) > 1e-3
  m2, p2, _ = _model(causal=False)   # the encoder does look ahead
  assert float(jnp.abs(m2.apply({'params': p2}, tokens.at[:, 7].set(5))[:, :7]
                       - m2.apply({'params': p2}, tokens)[:, :7]).max()) > 1e-3


@pytest.mark.parametrize('causal', [True, False])
def test_packed_documents_do_not_attend_to_each_other(causal):
  m, params, _ = _model(causal)
  a, b = [7, 8, 9, 10, 11], [20, 21, 22, 23]
  rows = text.pack([a, b], 12, tokenizer.EOS, pad_last=True)
  assert rows['tokens'].shape == (1, 12) and rows['segment_ids'][0, -1] == 0
  packed = m.apply({'params': params}, rows['tokens'], rows['positions'], rows['segment_ids'])
  for doc, start in ((a, 0), (b, 6)):
    alone = m.apply({'params': params}, jnp.array([doc + [tokenizer.EOS]]))
    np.testing.assert_allclose(packed[0, start:start + len(doc) + 1], alone[0], atol=2e-5)


def test_kv_cache_decoding_equals_the_uncached_forward():
  m, params, tokens = _model()
  full = m.apply({'params': params}, tokens)
  cache = m.init_cache(2, 12)
  logits, cache = m.apply({'params': params}, tokens[:, :5], cache=cache, index=0)
  steps = [logits]
  for i in range(5, 12):
    logits, cache = m.apply({'params': params}, tokens[:, i:i + 1], cache=cache, index=i)
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, 1), full, atol=2e-5)
  gen = jax.jit(functools.partial(decoding.generate, m, num_new=6, temperature=0.0))(
      params, tokens[:, :4], jax.random.PRNGKey(0))
  seq = tokens[:, :4]
  for _ in range(6):   # greedy by full recomputation
    seq = jnp.concatenate([seq, jnp.argmax(m.apply({'params': params}, seq)[:, -1], -1)[:, None]], 1)
  np.testing.assert_array_equal(gen, seq[:, 4:])


def test_left_padded_prompts_decode_as_if_alone():
  m, params, tokens = _model()
  short, long = tokens[0, :3], tokens[1, :7]
  padded = jnp.stack([jnp.concatenate([jnp.zeros(4, tokens.dtype), short]), long])   # left-padded to 7
  start = jnp.array([4, 0])
  kw = dict(num_new=5, temperature=0.0)
  together = jax.jit(functools.partial(decoding.generate, m, **kw))(params, padded, jax.random.PRNGKey(0),
                                                                      start=start)
  for row, prompt in enumerate((short, long)):
    alone = decoding.generate(m, params, prompt[None], jax.random.PRNGKey(0), **kw)
    np.testing.assert_array_equal(together[row], alone[0])
  logits, _ = m.apply({'params': params}, padded, cache=m.init_cache(2, 7), index=0, start=start)
  np.testing.assert_allclose(logits[0, 4:], m.apply({'params': params}, short[None])[0], atol=2e-5)
  assert np.isfinite(np.asarray(logits)).all()                          # padding queries see themselves
  beams = decoding.beam_search(m, params, padded, num_new=5, beam=3, start=start)[0]
  np.testing.assert_array_equal(beams[0], decoding.beam_search(m, params, short[None], num_new=5, beam=3)[0][0])


class _Trigram:
  """A decoder with known scores for the beam-search tests: the next token's logits are table[t-2, t-1], read
  from its cache, so a hypothesis that got another's cache rows would score wrongly."""

  def __init__(self, table, max_len=16):
    self.table, self.max_len = table, max_len

  def init_cache(self, batch, length):
    return {'k': jnp.zeros((1, batch, length, 1, 1), jnp.int32), 'v': jnp.zeros((1, batch, length, 1, 1))}

  def apply(self, variables, tokens, cache, index):
    del variables
    k = jax.lax.dynamic_update_slice_in_dim(cache['k'], tokens[None, :, :, None, None], index, axis=2)
    hist = k[0, :, :, 0, 0]
    t = tokens.shape[1]
    end = index + t
    prev2 = jax.lax.dynamic_slice_in_dim(hist, end - 2, 1, axis=1)[:, 0]
    prev1 = jax.lax.dynamic_slice_in_dim(hist, end - 1, 1, axis=1)[:, 0]
    logits = self.table[prev2, prev1][:, None].repeat(t, 1)   # only the last position is read
    return logits, {'k': k, 'v': cache['v']}


def _sequence_logp(table, prompt, seq):
  logp, hist = 0.0, list(prompt)
  for tok in seq:
    logp += float(jax.nn.log_softmax(table[hist[-2], hist[-1]])[tok])
    hist.append(tok)
  return logp


def test_beam_search_finds_the_best_sequence_that_greedy_misses():
  import itertools  # pylint: disable=g-import-not-at-top
  vocab, n = 4, 3
  found_better = 0
  for seed in range(6):
    table = 2.0 * jax.random.normal(jax.random.PRNGKey(seed), (vocab, vocab, vocab))
    model = _Trigram(table)
    prompt = jnp.array([[1, 2], [3, 0]], jnp.int32)
    run = lambda k: jax.jit(functools.partial(decoding.beam_search, model, num_new=n, beam=k))(None, prompt)
    best, score = run(vocab ** (n - 1))   # a beam this wide keeps every prefix: exact
    greedy, greedy_score = run(1)
    for r in range(2):
      p = [int(x) for x in prompt[r]]
      brute = max(itertools.product(range(vocab), repeat=n), key=lambda s: _sequence_logp(table, p, s))
      assert tuple(int(x) for x in best[r]) == brute
      np.testing.assert_allclose(float(score[r]), _sequence_logp(table, p, brute), rtol=1e-5)
      np.testing.assert_allclose(float(greedy_score[r]), _sequence_logp(table, p, [int(x) for x in greedy[r]]),
                                 rtol=1e-5)
      found_better += float(score[r]) > float(greedy_score[r]) + 1e-6
  assert found_better   # on some of these tables greedy's first choice is a dead end


def test_beam_of_one_is_greedy_and_stopped_hypotheses_pad():
  m, params, tokens = _model()
  greedy = jax.jit(functools.partial(decoding.generate, m, num_new=6, temperature=0.0))(
      params, tokens[:, :4], jax.random.PRNGKey(0))
  beam1, _ = jax.jit(functools.partial(decoding.beam_search, m, num_new=6, beam=1))(params, tokens[:, :4])
  np.testing.assert_array_equal(beam1, greedy)
  # Token 3 ends a hypothesis: from then on it is padded (pad 0) at no cost.
  table = jnp.zeros((4, 4, 4)).at[:, :, 3].set(5.0)   # stopping is by far the likeliest
  out, score = jax.jit(functools.partial(decoding.beam_search, _Trigram(table), num_new=4, beam=3, stop_id=3))(
      None, jnp.array([[1, 2]], jnp.int32))
  assert out[0].tolist() == [3, 0, 0, 0]
  np.testing.assert_allclose(float(score[0]), float(jax.nn.log_softmax(table[1, 2])[3]), rtol=1e-6)


def test_top_k_and_top_p_filters():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
  keep = lambda x: np.isfinite(np.asarray(x))[0].tolist()
  assert keep(decoding.filter_logits(logits, top_k=2)) == [True, True, False, False]
  assert keep(decoding.filter_logits(logits, top_p=0.7)) == [True, True, False, False]
  assert keep(decoding.filter_logits(logits, top_p=0.1)) == [True, False, False, False]
  assert keep(decoding.filter_logits(logits)) == [True] * 4


def test_masking_statistics_follow_bert():
  tokens = jax.random.randint(jax.random.PRNGKey(3), (64, 512), 0, 1000)
  seg = jnp.where(jnp.arange(512) < 480, 1, 0)[None].repeat(64, 0)
  inputs, w = language_model.mask_tokens(jax.random.PRNGKey(4), tokens, seg, 0.15, 1000)
  inputs, w, tokens, seg = map(np.asarray, (inputs, w, tokens, seg))
  real = (seg != 0) & (tokens >= len(tokenizer.SPECIALS))
  assert not w[~real].any()                              # never padding or special tokens
  assert abs(w[real].mean() - 0.15) < 0.005
  chosen = w > 0
  as_mask = np.mean(inputs[chosen] == tokenizer.MASK)
  kept = np.mean(inputs[chosen] == tokens[chosen])
  assert abs(as_mask - 0.8) < 0.01 and abs(kept - 0.1) < 0.01   # kept includes ~0.01% random = same
  np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])
  assert (inputs[chosen & (inputs != tokenizer.MASK)] >= len(tokenizer.SPECIALS)).all()


def test_causal_targets_skip_document_boundaries():
  tokens = jnp.array([[1, 2, 3, 4, 0]])
  seg = jnp.array([[1, 1, 2, 2, 0]])
  targets, w = language_model.causal_targets(tokens, seg)
  np.testing.assert_array_equal(targets, [[2, 3, 4, 0, 0]])
  np.testing.assert_array_equal(w, [[1, 0, 1, 0, 0]])


def test_gpt_trains_keeps_its_tokenizer_and_evaluates_offline(tmp_path):
  workdir = str(tmp_path / 'gpt')
  config = lm_gpt.get_config('test')
  experiment.train_and_evaluate(config, workdir)
  saved = os.path.join(workdir, 'tokenizer.json')
  assert os.path.exists(saved)
  logged = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  val = [r for r in logged if 'val/perplexity' in r][-1]
  assert 1 < val['val/perplexity'] < 1.5 * config.data.vocab_size and val['val/bigram_kn_perplexity'] > 1
  assert open(os.path.join(workdir, 'samples', 'samples_0000004.txt')).read().count('## sample') == 2
  outputs, step = experiment.run_evaluators(workdir, names=('val',))
  assert step == 4 and outputs['val'].scalars['perplexity'] == pytest.approx(val['val/perplexity'], rel=1e-5)
  # A different tokenizer for the same run is refused: its ids would mean other words.
  other = str(tmp_path / 'other.json')
  tokenizer.train(['a b c d e f'] * 10, 'bpe', 300).save(other)
  config.data.tokenizer = other
  with pytest.raises(ValueError, match='differs from the tokenizer this run was trained with'):
    experiment.train_and_evaluate(config, workdir)


def test_bert_trains_with_wordpiece(tmp_path):
  workdir = str(tmp_path / 'bert')
  experiment.train_and_evaluate(lm_bert.get_config('test'), workdir)
  assert tokenizer.load(os.path.join(workdir, 'tokenizer.json')).kind == 'wordpiece'
  logged = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  assert any('val/token_accuracy' in r for r in logged)
  with pytest.raises(ValueError, match='needs config.model.causal=True'):
    bad = lm_gpt.get_config('test')
    bad.model.causal = False
    experiment.train_and_evaluate(bad, str(tmp_path / 'bad'))


def test_transformer_kernels_shard_by_their_logical_names():
  config = lm_gpt.get_config('test')
  config.mesh.fsdp, config.mesh.tensor, config.mesh.fsdp_min_size = 2, 2, 16
  s = train._setup(config, registry.build_task(config), registry.build_data(config))  # pylint: disable=protected-access
  params = s.state_shardings.params
  assert params['embed']['embedding'].spec == P('tensor', 'fsdp')               # (vocab, embed)
  assert params['block_0']['query']['kernel'].spec == P('fsdp', 'tensor', None)  # (embed, heads, kv)
  assert params['block_0']['mlp_out']['kernel'].spec == P('tensor', 'fsdp')      # (mlp, embed)
  assert params['block_0']['ln_attn']['scale'].spec == P()                        # no names: replicated
