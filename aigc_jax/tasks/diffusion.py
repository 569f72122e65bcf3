"""Image diffusion and flow matching, optionally conditioned on a label with classifier-free guidance.

`config.task.objective`: 'diffusion' (DDPM/DDIM; the model predicts `prediction` = eps | v | x0 on a linear or
cosine schedule, optionally rescaled to zero terminal SNR) or 'flow' (rectified flow; the model predicts the
velocity). Samplers: ddim | ddpm for diffusion, euler | heun for flow; all are jitted `lax.scan` loops.

Conditioning (`config.task.condition_on`, a label key that `config.data.labels` puts in the batch, and
`config.model.num_classes`): during training the label is replaced by the "no label" token with probability
`cond_dropout`, so one network learns both p(x | y) and p(x); sampling mixes them with `guidance` w:
out = out(∅) + w · (out(y) − out(∅)) (Ho & Salimans 2022). w = 1 is plain conditional sampling.
"""

import jax
import jax.numpy as jnp
import ml_collections

from aigc_jax.objectives import diffusion
from aigc_jax.objectives import flow
from aigc_jax import models
from aigc_jax.tasks import task


def drop_labels(y: jax.Array, rng: jax.Array, p: float, null: int) -> jax.Array:
  """Each label replaced by the `null` token with probability p (classifier-free guidance training)."""
  return jnp.where(jax.random.uniform(rng, y.shape) < p, null, y)


def guided(apply, x: jax.Array, t: jax.Array, y: jax.Array, null: int, scale: float) -> jax.Array:
  """Classifier-free guidance: one batched call for the conditional and unconditional outputs."""
  if scale == 1.0:
    return apply(x, t, y)
  both = apply(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
               jnp.concatenate([y, jnp.full_like(y, null)]))
  cond, uncond = jnp.split(both, 2)
  return uncond + scale * (cond - uncond)


class DiffusionTask(task.Generator):
  """Learns p(image) (or p(image | label)) from batches {'image': [B, H, W, C] in [-1, 1], label: [B]}."""

  # Where samples live decides whether the samplers may clip: windowed pixels are in [-1, 1], so clipping
  # each x_0 estimate there keeps the chain on the data's range. A subclass sampling another space (latent
  # diffusion's unit-variance latents, ~30% of which lie beyond ±1) sets this False.
  bounded = True

  def __init__(self, config: ml_collections.ConfigDict):
    t = config.task
    self.model = models.build(config.model)
    self.objective, self.sampler, self.prediction = t.objective, t.sampler, t.prediction
    samplers = {'diffusion': ('ddim', 'ddpm'), 'flow': ('euler', 'heun')}
    if self.objective not in samplers:
      raise ValueError(f'config.task.objective={self.objective!r}; use "diffusion" or "flow".')
    if self.sampler not in samplers[self.objective]:
      raise ValueError(f'config.task.sampler={self.sampler!r} does not sample a {self.objective} model; use one '
                       f'of {samplers[self.objective]}.')
    self.schedule = diffusion.make_schedule(t.schedule, t.timesteps, zero_terminal_snr=t.zero_terminal_snr)
    if self.objective == 'diffusion':
      diffusion.check_prediction(self.prediction, self.schedule)
      diffusion.timesteps(t.timesteps, t.sample_steps, t.timestep_spacing)  # fail now, not at the first sample
    self.spacing = t.timestep_spacing
    self.sample_steps, self.ddim_eta = t.sample_steps, t.ddim_eta
    self.cond_key, self.num_classes = t.condition_on, config.model.num_classes
    self.cond_dropout, self.guidance = t.cond_dropout, t.guidance
    if self.num_classes and not self.cond_key:
      raise ValueError(f'config.model.num_classes={self.num_classes} but config.task.condition_on is empty: the '
                       'class embedding would never be trained and sampling would use random embeddings. Set '
                       'config.task.condition_on (and config.data.labels), or config.model.num_classes=0.')
    if self.guidance != 1.0 and not self.cond_key:
      raise ValueError(f'config.task.guidance={self.guidance} needs a conditional model (config.task.condition_on '
                       'and config.model.num_classes); an unconditional model samples with guidance 1.')
    if self.cond_key and self.guidance != 1.0 and not self.cond_dropout > 0:
      raise ValueError(f'config.task.guidance={self.guidance} needs config.task.cond_dropout > 0 in training: '
                       f'with cond_dropout={self.cond_dropout} the "no label" embedding is never trained, so the '
                       'unconditional half of guidance is random. Train with cond_dropout (e.g. 0.1) or sample '
                       'with guidance 1.')
    if self.cond_key:
      if self.num_classes < 1:
        raise ValueError(f'config.task.condition_on={self.cond_key!r} needs config.model.num_classes >= 1 '
                         '(the number of label values).')
      if self.cond_key not in config.data.labels:
        raise ValueError(f'config.task.condition_on={self.cond_key!r} is not in config.data.labels='
                         f'{tuple(config.data.labels)}; add it so that batches carry it.')

  def _labels(self, batch):
    return batch[self.cond_key].astype(jnp.int32) if self.cond_key else None

  def init(self, rng, batch):
    x = jnp.zeros((1,) + tuple(batch['image'].shape[1:]), jnp.float32)
    y = jnp.zeros((1,), jnp.int32) if self.num_classes else None
    return self.model.init({'params': rng}, x, jnp.zeros((1,), jnp.int32), y)['params']

  def per_example_loss(self, params, batch, rng, timestep=None):
    """The training loss per example; `timestep` (a step of 0…T−1; a flow model's time is step / (T − 1))
    fixes the timestep the loss otherwise draws, as the membership audit's chosen timesteps do."""
    model_rng, dropout_rng, label_rng = jax.random.split(rng, 3)
    y = self._labels(batch)
    if y is not None and self.cond_dropout:
      y = drop_labels(y, label_rng, self.cond_dropout, self.num_classes)
    model_fn = lambda x, t: self.model.apply({'params': params}, x, t, y, train=True,
                                             rngs={'dropout': dropout_rng})
    if self.objective == 'flow':
      t = None if timestep is None else timestep / (self.schedule.timesteps - 1)
      per_example = flow.loss(model_fn, batch['image'], model_rng, t)
    else:
      per_example = diffusion.loss(model_fn, self.schedule, batch['image'], model_rng,
                                   prediction=self.prediction, t=timestep)
    return per_example, {}

  def model_fn(self, params, n: int, labels=None):
    """The network as the samplers call it, (x, t) → prediction, with guidance for a conditional model;
    `labels` [n] (default: cycling through the classes)."""
    apply = lambda x, t, y: self.model.apply({'params': params}, x, t, y)
    if not self.num_classes:
      return lambda x, t: apply(x, t, None)
    y = jnp.arange(n) % self.num_classes if labels is None else jnp.asarray(labels, jnp.int32)
    return lambda x, t: guided(apply, x, t, y, self.num_classes, self.guidance)

  def draw(self, model_fn, rng, shape):
    """Runs the configured sampler on `model_fn` from noise of `shape`; clips only in a `bounded` space."""
    if self.objective == 'flow':
      return flow.sample(model_fn, rng, shape, num_steps=self.sample_steps, method=self.sampler,
                         clip=self.bounded)
    if self.sampler == 'ddpm':
      return diffusion.ddpm_sample(model_fn, self.schedule, rng, shape, prediction=self.prediction,
                                   clip_x0=self.bounded)
    return diffusion.ddim_sample(model_fn, self.schedule, rng, shape, num_steps=self.sample_steps,
                                 eta=self.ddim_eta, prediction=self.prediction, spacing=self.spacing,
                                 clip_x0=self.bounded)

  def sample(self, params, rng, shape, labels=None):
    """Images of `shape` [N, H, W, C] in [-1, 1]; `labels` [N] (default: cycling through the classes)."""
    return self.draw(self.model_fn(params, shape[0], labels), rng, shape)
