"""Jitted autoregressive decoding for a causal `Transformer` with its KV cache: greedy, temperature, top-k
and top-p (nucleus) sampling, and beam search. Pure: (params, prompt, key) → tokens, one compile per shape.

The prompt (same length for every row) fills the cache in one forward pass; then each step feeds one token
at the next cache slot. Prompts of unequal length are left-padded to one length and `start` [B] gives each
row's first real token (the model then ignores the padding and counts positions from there). A row that has produced `stop_id` keeps producing padding, and its later tokens are
reported as `pad_id`.

An encoder-decoder model (`transformer.EncoderDecoder`) gets its source through `context` ({'source',
'source_segment'}), given to the prompt pass only: the encoder runs once and its keys and values stay in the
cache for every later step (and follow their hypotheses in beam search).
"""

import jax
import jax.numpy as jnp


def filter_logits(logits: jax.Array, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Logits [B, V] with everything outside the top `top_k` tokens and outside the smallest set whose
  probability reaches `top_p` set to -inf (0 and 1.0: no filter). The most likely token always survives."""
  if top_k and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs   # mass of the tokens ranked above each one
    sorted_logits = jnp.where(before >= top_p, -jnp.inf, sorted_logits)
    logits = jnp.full_like(logits, -jnp.inf).at[jnp.arange(logits.shape[0])[:, None], order].set(sorted_logits)
  return logits


def generate(model, params, prompt: jax.Array, rng: jax.Array, *, num_new: int, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, stop_id: int = -1, pad_id: int = 0,
             start: jax.Array | None = None, context: dict | None = None) -> jax.Array:
  """[B, num_new] tokens continuing `prompt` [B, P] (temperature 0: greedy). Call it under jax.jit with the
  keyword arguments static (functools.partial)."""
  b, p = prompt.shape
  if p + num_new > model.max_len:
    raise ValueError(f'prompt {p} + {num_new} new tokens exceed the model\'s max_len={model.max_len}.')
  cache = model.init_cache(b, p + num_new)
  padded = {} if start is None else {'start': start}   # only models that take left-padded prompts see it
  logits, cache = model.apply({'params': params}, prompt, cache=cache, index=0, **padded, **(context or {}))

  def pick(logits, key):
    if temperature == 0:
      return jnp.argmax(logits, -1).astype(jnp.int32)
    return jax.random.categorical(key, filter_logits(logits / temperature, top_k, top_p)).astype(jnp.int32)

  def step(carry, i):
    cache, last_logits, done, key = carry
    key, sub = jax.random.split(key)
    tok = pick(last_logits, sub)
    tok = jnp.where(done, pad_id, tok)
    done = done | (tok == stop_id)
    logits, cache = model.apply({'params': params}, tok[:, None], cache=cache, index=p + i, **padded)
    return (cache, logits[:, -1], done, key), tok

  init = (cache, logits[:, -1], jnp.zeros((b,), bool), rng)
  _, tokens = jax.lax.scan(step, init, jnp.arange(num_new))
  return tokens.T


def beam_search(model, params, prompt: jax.Array, *, num_new: int, beam: int, length_penalty: float = 0.0,
                stop_id: int = -1, pad_id: int = 0, start: jax.Array | None = None, context: dict | None = None
                ) -> tuple[jax.Array, jax.Array]:
  """The most likely continuation of each row of `prompt` [B, P] found by a beam of `beam` hypotheses:
  ([B, num_new] tokens, [B] their summed log-probability). Call it under jax.jit with the keyword arguments
  static.

  Each step extends every live hypothesis by every token and keeps the `beam` best by summed log-probability;
  the KV cache rows follow their hypotheses. A hypothesis that produced `stop_id` is finished: it goes on with
  `pad_id` at no cost, so it competes with the live ones on its final score. At the end the best hypothesis
  is chosen by score / ((5 + length) / 6) ** length_penalty (GNMT's normalization; 0: the raw score, which
  favours short outputs when hypotheses can stop). With beam = 1 this is greedy decoding."""
  b, p = prompt.shape
  if p + num_new > model.max_len:
    raise ValueError(f'prompt {p} + {num_new} new tokens exceed the model\'s max_len={model.max_len}.')
  padded = {} if start is None else {'start': start}
  logits, cache = model.apply({'params': params}, prompt, cache=model.init_cache(b, p + num_new), index=0,
                              **padded, **(context or {}))
  cache = jax.tree.map(lambda c: jnp.repeat(c, beam, axis=1), cache)   # [depth, B*beam, …]: row i*beam + j
  padded = {} if start is None else {'start': jnp.repeat(start, beam)}   # hypotheses keep their row's start
  last = jnp.repeat(logits[:, -1], beam, axis=0)
  vocab = last.shape[-1]
  # Only the first hypothesis is live at the start: the others would duplicate it.
  scores = jnp.where(jnp.arange(beam) == 0, 0.0, -jnp.inf)[None].repeat(b, 0)
  pad_only = jnp.where(jnp.arange(vocab) == pad_id, 0.0, -jnp.inf)

  def step(carry, i):
    cache, last, scores, finished, lengths, seqs = carry
    logp = jax.nn.log_softmax(last.astype(jnp.float32)).reshape(b, beam, vocab)
    logp = jnp.where(finished[..., None], pad_only, logp)
    top, index = jax.lax.top_k((scores[..., None] + logp).reshape(b, beam * vocab), beam)
    src, tok = index // vocab, (index % vocab).astype(jnp.int32)
    was_finished = jnp.take_along_axis(finished, src, 1)
    lengths = jnp.take_along_axis(lengths, src, 1) + (~was_finished)
    seqs = jnp.take_along_axis(seqs, src[..., None], 1).at[:, :, i].set(tok)
    finished = was_finished | (tok == stop_id)
    rows = (jnp.arange(b)[:, None] * beam + src).reshape(-1)
    cache = jax.tree.map(lambda c: c[:, rows], cache)
    logits, cache = model.apply({'params': params}, tok.reshape(-1, 1), cache=cache, index=p + i, **padded)
    return (cache, logits[:, -1], top, finished, lengths, seqs), None

  init = (cache, last, scores, jnp.zeros((b, beam), bool), jnp.zeros((b, beam), jnp.int32),
          jnp.full((b, beam, num_new), pad_id, jnp.int32))
  (_, _, scores, _, lengths, seqs), _ = jax.lax.scan(step, init, jnp.arange(num_new))
  normalized = scores / ((5.0 + lengths) / 6.0) ** length_penalty
  best = jnp.argmax(normalized, axis=1)
  return (jnp.take_along_axis(seqs, best[:, None, None], 1)[:, 0],
          jnp.take_along_axis(scores, best[:, None], 1)[:, 0])
