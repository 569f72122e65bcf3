"""Parts of another run's parameters loaded into a fresh model of another architecture: pretrain one model,
fine-tune a different one that contains a piece of it (a classifier on the autoencoder's encoder).

  config.init_from = 'runs/ct_vae'                      # the pretrained run (a workdir or its checkpoints/)
  config.init_parts = {'encoder': 'vae/encoder'}        # this model's top-level parameter ← a path in that run's
  config.init_parts = {'unet': ''}                      # '' is that run's whole tree: only what this part has

With `init_parts` empty, `init_from` loads the whole parameter tree (core/checkpoint.py). With it, only the
named parts are read (params and EMA params, the newest checkpoint that restores), each must have exactly the
shapes this model gives the part, and every other parameter keeps its fresh initialization. A part reads only
the entries it has: a U-Net's encoder takes the down path and middle of a whole U-Net's tree. As with
`init_from`, this happens only when the workdir has no checkpoint: a resumed run continues its own state.
"""

from typing import Any

import jax

from aigc_jax.core import checkpoint

TREES = ('params', 'ema_params')


def _at(tree: dict, path: str, flag: str) -> Any:
  node = tree
  for key in path.split('/') if path else ():
    if not isinstance(node, dict) or key not in node:
      raise checkpoint.CheckpointMismatch(f'{flag}: {path!r} is not in the parameters read from there.')
    node = node[key]
  return node


def load_parts(path: str, state: Any, abstract_state: Any, parts: dict[str, str]) -> Any:
  """`state` (a fresh TrainState) with each top-level parameter `dst` of `parts` replaced by the subtree at
  `parts[dst]` ('a/b/c') of the params (and EMA params) of the run at `path`."""
  flag = f'config.init_parts from config.init_from={path!r}'
  unknown = sorted(set(parts) - set(abstract_state.params))
  if unknown:
    raise checkpoint.CheckpointMismatch(
        f'config.init_parts names {unknown}, which this model does not have; its top-level parameters are '
        f'{sorted(abstract_state.params)}.')
  roots = [dst for dst, src in parts.items() if not str(src).strip('/')]
  if roots and len(parts) > 1:
    raise checkpoint.CheckpointMismatch(f'{flag}: {roots[0]!r} takes that run\'s whole tree (path \'\'), so it '
                                        'must be the only part named.')
  target = {t: {} for t in TREES}
  for dst, src in parts.items():
    keys = str(src).strip('/').split('/')
    for t in TREES:
      if roots:
        target[t] = getattr(abstract_state, t)[dst]
        continue
      node = target[t]
      for key in keys[:-1]:
        node = node.setdefault(key, {})
      node[keys[-1]] = getattr(abstract_state, t)[dst]
  try:
    loaded = checkpoint.restore_params(path, target, flag='config.init_from')
  except checkpoint.CheckpointMismatch as e:
    raise checkpoint.CheckpointMismatch(f'{flag}: the parts do not fit this model ({e}).') from None
  # A partial restore hands back the target's ShapeDtypeStruct where the checkpoint has no such entry.
  missing = [jax.tree_util.keystr(p) for p, x in jax.tree_util.tree_leaves_with_path({t: loaded[t] for t in TREES})
             if isinstance(x, jax.ShapeDtypeStruct)]
  if missing:
    raise checkpoint.CheckpointMismatch(f'{flag}: {", ".join(missing[:3])} not there'
                                        f'{" (and more)" if len(missing) > 3 else ""}: check the paths.')
  new = {}
  for t in TREES:
    tree = dict(getattr(state, t))
    for dst, src in parts.items():
      part = _at(loaded[t], str(src).strip('/'), flag)
      tree[dst] = jax.tree.map(lambda x, fresh: jax.device_put(x, fresh.sharding), part, tree[dst])
    new[t] = tree
  return state.replace(params=new['params'], ema_params=new['ema_params'])
