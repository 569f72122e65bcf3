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


def tiny_diffusion_run(workdir: str):
  """A 2-step run of the tiny diffusion config on one device, no evaluators, 16 training slices: the one that
  the audit and warm-start tests read (the same program, so the compilation cache makes the second cheap)."""
  from aigc_jax import experiment  # after conftest has set up the fake devices
  c = tiny_config(**{'num_steps': 2, 'checkpoint_every': 2, 'evals.samples.every': 0, 'mesh.num_devices': 1,
                     'data.num_train': 16})
  return c, experiment.train_and_evaluate(c, workdir)
