"""The tiny `configs/ct.py:test` variant with dotted-key overrides, shared by the trainer tests."""

from configs import ct


def tiny_config(**overrides):
  """E.g. tiny_config(num_steps=8, **{'mesh.fsdp': 2}); keys must exist (the config is locked)."""
  c = ct.get_config('test')
  for key, value in overrides.items():
    target = c
    *path, leaf = key.split('.')
    for p in path:
      target = target[p]
    target[leaf] = value
  return c
