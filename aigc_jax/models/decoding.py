"""Jitted autoregressive decoding for a causal `Transformer` with its KV cache: greedy, temperature, top-k
and top-p (nucleus) sampling. Pure: (params, prompt, key) → tokens, one compile per shape.

The prompt (same length for every row) fills the cache in one forward pass; then each step feeds one token
at the next cache slot. A row that has produced `stop_id` keeps producing padding, and its later tokens are
reported as `pad_id`.
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
             top_k: int = 0, top_p: float = 1.0, stop_id: int = -1, pad_id: int = 0) -> jax.Array:
  """[B, num_new] tokens continuing `prompt` [B, P] (temperature 0: greedy). Call it under jax.jit with the
  keyword arguments static (functools.partial)."""
  b, p = prompt.shape
  if p + num_new > model.max_len:
    raise ValueError(f'prompt {p} + {num_new} new tokens exceed the model\'s max_len={model.max_len}.')
  cache = model.init_cache(b, p + num_new)
  logits, cache = model.apply({'params': params}, prompt, cache=cache, index=0)

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
    logits, cache = model.apply({'params': params}, tok[:, None], cache=cache, index=p + i)
    return (cache, logits[:, -1], done, key), tok

  init = (cache, logits[:, -1], jnp.zeros((b,), bool), rng)
  _, tokens = jax.lax.scan(step, init, jnp.arange(num_new))
  return tokens.T
