"""A trained restoration run as a function of HU slices, for the commands that apply it (`aigc_jax.denoise`,
`aigc_jax.compare_denoisers`): the latest EMA parameters, the HU window, and the noise the model was trained for.
"""

import functools

import jax
import numpy as np

from aigc_jax import experiment
from aigc_jax.core import workdir as workdir_lib
from aigc_jax.data import pipeline
from aigc_jax.imaging import acquisition
from aigc_jax.imaging import denoisers
from aigc_jax.imaging import export
from aigc_jax.imaging import geometry
from aigc_jax.imaging import real_ct


class Denoiser:
  """The latest EMA parameters of a restoration run, as a function of HU slices [N, H, W] → HU."""

  def __init__(self, workdir: str):
    name = workdir_lib.load_config(workdir).task.name
    if name != 'restoration':
      raise ValueError(f'--workdir={workdir!r} trained a {name!r} task; give a restoration run '
                       '(python -m aigc_jax.main --config=configs/ct_denoise.py ...).')
    self.config, self.task, self.params, self.step = experiment.load_run(workdir)
    self.pixel_mm = pipeline.pixel_mm(self.config.data)
    self.description = export.provenance(workdir, self.step, self.config.to_json_best_effort())
    self._restore = jax.jit(lambda p, x: self.task.predict(p, {'low_dose': x}))
    self._multiple = 2 ** len(self.config.model.get('channels', ())) if self.config.model.name == \
        'conv_autoencoder' else 1

  @functools.cached_property
  def trained_noise(self) -> tuple[float, float] | None:
    """(lowest, highest) noise index of the training inputs: a 300 mm water cylinder on the run's grid at its
    highest and lowest training dose (with `bank_fov_range_mm`, scaled as the bank scales its slices: the
    smallest field at the highest dose, the largest at the lowest); None where the run did not simulate its
    doses (a prepared dataset)."""
    d = self.config.data
    if d.name != 'phantom_ct' or not d.pairs:
      return None
    fractions = tuple(d.get('dose_fractions', ())) or (d.low_dose_fraction,)
    fovs = tuple(d.get('bank_fov_range_mm', ())) or (d.fov_mm,)

    def index(fraction, fov):
      water = acquisition.water_cylinder(d.image_size, diameter_mm=300.0 * fov / d.fov_mm, fov_mm=fov)
      sino, theta = acquisition.project(water, fov_mm=fov)
      ref = acquisition.reconstruct(sino, theta, dose=0, rng=None, size=d.image_size, fov_mm=fov)
      return denoisers.noise_sigma_hu(acquisition.reconstruct(
          sino, theta, dose=d.full_dose * fraction, rng=np.random.default_rng(0), size=d.image_size, fov_mm=fov),
          real_ct.body_mask(ref))

    return index(max(fractions), min(fovs)), index(min(fractions), max(fovs))

  def noise_note(self, hu: np.ndarray) -> tuple[float | None, str]:
    """(the noise index of a series [N, H, W] in HU, or None where no slice shows a body; a warning or '')."""
    values = []
    for x in hu[::max(len(hu) // 8, 1)]:
      try:
        values.append(denoisers.noise_sigma_hu(x, real_ct.body_mask(x)))
      except ValueError:  # a slice of air (or a sliver of body): nothing to measure the noise on
        continue
    if not values:
      return None, ''
    index = float(np.median(values))
    trained = self.trained_noise
    if trained and not 0.5 * trained[0] <= index <= 1.5 * trained[1]:
      return index, (f'noise index {index:.1f} HU is far outside the {trained[0]:.1f}–{trained[1]:.1f} HU of the '
                     'doses the model was trained at: check the result')
    return index, ''

  def __call__(self, hu: np.ndarray, batch: int = 8, dihedral: bool = False) -> np.ndarray:
    """Restored HU of slices [N, H, W]; with `dihedral`, the mean of the model over the eight flips and quarter
    turns of each slice, each turned back (8× the time: a network's errors differ between orientations, its
    estimate of the image does not)."""
    if dihedral:
      return np.mean([geometry.dihedral(self(np.ascontiguousarray(geometry.dihedral(hu, t)), batch), t, undo=True)
                      for t in range(geometry.DIHEDRAL)], axis=0).astype(np.float32)
    lo, hi = self.config.data.window_lo, self.config.data.window_hi
    n, h, w = hu.shape
    m = self._multiple  # strided encoders need sides divisible by their total stride: pad, then crop
    ph, pw = -h % m, -w % m
    x = pipeline.window(hu, lo, hi)
    xp = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode='edge')[..., None]
    out = np.concatenate([np.asarray(self._restore(self.params, xp[i:i + batch])) for i in range(0, n, batch)])
    correction = (out[:, :h, :w, 0] - x) * (hi - lo) / 2.0
    inside = (hu > lo) & (hu < hi)
    return np.where(inside, hu + correction, hu).astype(np.float32)
