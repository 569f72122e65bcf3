"""Optimizers: optax chains with the weight decay written out as its own transformation.

The decoupled weight decay of Loshchilov & Hutter is

    θ ← θ − η ∇L − η λ θ

with the *same* learning-rate schedule η as the gradient step. `decoupled_weight_decay` adds exactly the
`− η λ θ` term to whatever update the base optimizer produced, so it composes with SGD, Adam or anything
else, and with masks that leave biases and normalization scales alone.

The base direction is named by optax: `config.optim.name = 'adam'` is `optax.scale_by_adam`, 'lion'
`optax.scale_by_lion`, 'rms' `optax.scale_by_rms`, and so on for every `optax.scale_by_<name>`; the fields
b1, b2, eps (and `config.optim.extra`, a dict of further keywords) go to it where it takes them. 'sgd' is
`optax.trace(momentum)` (plain SGD with momentum 0).

`config.optim.frozen` lists parameter paths ('vae', or 'encoder/conv_0'): those leaves get no update and no
optimizer state (a frozen first stage, a pretrained encoder kept fixed).
"""

import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax


class DecoupledWeightDecayState(NamedTuple):
  count: jax.Array  # steps taken, to evaluate the learning-rate schedule at the right step


def decoupled_weight_decay(
    weight_decay: float,
    learning_rate: float | Callable[[jax.Array], jax.Array],
    mask: Any = None,
) -> optax.GradientTransformation:
  """Adds `−η(t) λ θ` to the updates (which must already be the full `−η ∇`-style step).

  Args:
    weight_decay: λ.
    learning_rate: η, a constant or an optax schedule of the step count.
    mask: a pytree of bools like the params, or a function params -> such a tree; False leaves get no decay.

  Returns:
    A GradientTransformation; place it after the learning-rate scaling in a chain.
  """
  schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)

  def init_fn(params):
    del params
    return DecoupledWeightDecayState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('decoupled_weight_decay needs params: call tx.update(grads, state, params).')
    eta = schedule(state.count)
    decay = mask(params) if callable(mask) else mask
    if decay is None:
      decay = jax.tree.map(lambda _: True, params)
    updates = jax.tree.map(
        lambda u, p, m: u - (eta * weight_decay * p).astype(u.dtype) if m else u, updates, params, decay)
    return updates, DecoupledWeightDecayState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def decay_mask(params: Any) -> Any:
  """True for weight matrices and kernels; False for biases and normalization scales (ndim < 2)."""
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def learning_rate_schedule(config: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then cosine decay to `learning_rate * end_lr_factor`."""
  warmup = min(config.warmup_steps, max(num_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.learning_rate, warmup_steps=warmup,
      decay_steps=max(num_steps, warmup + 1), end_value=config.learning_rate * config.end_lr_factor)


def _chain(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """clip → base direction → −η(t) → decoupled weight decay, for one set of optimizer fields."""
  parts = []
  if config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  parts.append(base_direction(config))
  parts.append(optax.scale_by_learning_rate(schedule))
  if config.weight_decay:
    parts.append(decoupled_weight_decay(config.weight_decay, schedule, mask=decay_mask))
  return optax.chain(*parts)


def base_direction(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`optax.scale_by_<config.name>` with the fields it takes (b1, b2, eps, `extra`); 'sgd': momentum."""
  if config.name == 'sgd':
    return optax.trace(decay=config.momentum) if config.momentum else optax.identity()
  fn = getattr(optax, f'scale_by_{config.name}', None)
  if fn is None:
    names = sorted(n[len('scale_by_'):] for n in dir(optax) if n.startswith('scale_by_'))
    raise ValueError(f'config.optim.name={config.name!r}: optax has no scale_by_{config.name}; use "sgd" or one '
                     f'of {names}.')
  accepted = inspect.signature(fn).parameters
  kwargs = {k: config[k] for k in ('b1', 'b2', 'eps') if k in accepted}
  extra = dict(config.get('extra') or {})
  unknown = sorted(set(extra) - set(accepted))
  if unknown:
    raise ValueError(f'config.optim.extra has {unknown}, which optax.scale_by_{config.name} does not take; it '
                     f'takes {sorted(accepted)}.')
  return fn(**{**kwargs, **extra})


def _path(path) -> str:
  return '/'.join(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def labels(params: Any, groups: Any, frozen: tuple[str, ...] = ()) -> Any:
  """Each leaf labelled 'frozen' when its path ('a/b/c') is or lies under one in `frozen`, else its top-level
  key when `groups` names it, else 'default'."""
  def label(path, _):
    p = _path(path)
    if any(p == f or p.startswith(f + '/') for f in frozen):
      return 'frozen'
    top = p.split('/', 1)[0]
    return top if isinstance(params, dict) and top in groups else 'default'
  return jax.tree_util.tree_map_with_path(label, params)


def check_frozen(params: Any, frozen: tuple[str, ...]) -> None:
  """Refuses a frozen path that names no parameter (a typo would silently train everything)."""
  paths = [_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  for f in frozen:
    if not any(p == f or p.startswith(f + '/') for p in paths):
      tops = sorted({p.split('/', 1)[0] for p in paths})
      raise ValueError(f'config.optim.frozen names {f!r}, which is no parameter path; top-level keys: {tops} '
                       '(paths are joined with "/").')


def _group_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  merged = ml_collections.ConfigDict({k: v for k, v in config.items() if k not in ('groups', 'frozen')})
  for key, value in config.groups[name].items():
    if key not in merged:
      raise ValueError(f'config.optim.groups.{name}.{key} is not an optimizer field; use one of '
                       f'{sorted(merged)}.')
    merged[key] = value
  return merged


def make_optimizer(config: ml_collections.ConfigDict, num_steps: int, params: Any = None,
                   frozen: tuple[str, ...] = ()) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer for `config.optim`: clip → base direction → −η(t) → decoupled weight decay.

  `config.optim.groups` ({top-level param key: {field: value}}) gives a subtree its own optimizer, e.g. a GAN's
  `disc` a different learning rate or Adam β₁: each group is a separate chain (its own clipping norm and
  schedule) and all groups update in the same step. Subtrees not named use the shared fields.
  `config.optim.frozen` paths and `frozen` (what a task freezes itself) get `optax.set_to_zero` (no update,
  no state); `params` (a pytree or its shapes), when given, is checked to hold them.
  """
  schedule = learning_rate_schedule(config, num_steps)
  groups = dict(config.get('groups') or {})
  frozen = tuple(config.get('frozen') or ()) + tuple(frozen)
  if params is not None:
    check_frozen(params, frozen)
  if not groups and not frozen:
    return _chain(config, schedule), schedule
  transforms = {'default': _chain(config, schedule)}
  for name in groups:
    group = _group_config(config, name)
    transforms[name] = _chain(group, learning_rate_schedule(group, num_steps))
  if frozen:
    transforms['frozen'] = optax.set_to_zero()
  return optax.multi_transform(transforms, lambda p: labels(p, groups, frozen)), schedule
