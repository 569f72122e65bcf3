"""A CT acquisition model: parallel-beam projection, Poisson photon noise at a given dose, filtered
back-projection. It turns a noiseless slice in HU into what a scanner at that dose would reconstruct, and so
gives (low-dose, full-dose) pairs for restoration models.

Physics, simplified on purpose (mono-energetic, no scatter, no beam hardening, an ideal detector without
electronic noise): HU → linear attenuation μ = μ_water (1 + HU/1000); line integrals p = ∫μ dl; detected counts
N ~ Poisson(I0 · e^(−p)) with I0 the incident photons per ray; p̂ = −log(N / I0); FBP with a ramp filter; back to
HU. Uses scikit-image's `radon`/`iradon` (about 20 ms for both at 64×64 with 101 views, 0.6 s at 256×256 on one
CPU core).

The dose. It is given as a fluence, in photons per mm² at the isocentre summed over all views of the scan
(for a 1 mm slice), so that it does not depend on the grid. Noise in an FBP image goes as
σ² ∝ 1 / (views · I0 · pixel²) (ramp filter up to the grid's Nyquist frequency). A physical detector bin as wide
as the pixel would see I0 = dose / views · pixel · 1 mm, and then σ ∝ pixel^(−3/2) (Brooks & Di Chiro 1976): the
same dose would look 8× less noisy at 64² than at 256² over one field of view, since big pixels average the
noise away. So the model gives every grid the noise of a reference reconstruction with 1 mm pixels, 1 mm slice:

    I0 = dose · (1 mm)² / views · (1 mm / pixel)²,

which is the physical count at 1 mm pixels, and makes σ independent of the image size and of the view count at a
fixed field of view (tested within 10% at 64², 128², 256²). Grid-independent does not mean patient-independent:
σ grows with the attenuation along the rays, roughly e^(μ_water · diameter / 2) in the centre of a water cylinder.

Calibration (`FULL_DOSE`, `LOW_DOSE_FRACTION`): in the central 150 mm of a 300 mm water cylinder, the
cross-section of a typical adult abdomen, full dose gives σ ≈ 15 HU (clinical full dose: about 10–20 HU) and
quarter dose σ ≈ 30 HU (the Mayo low-dose CT challenge's quarter dose: about 25–45 HU); see `water_noise_hu`.
A smaller patient is less noisy at the same dose, a larger one noisier. For scale: at the model's 70 keV, 1 mGy of
air kerma is about 3.3e7 photons/mm²; the calibrated fluence is an effective one (ideal detector, one energy),
not a prediction of a scanner's CTDI.
"""

import numpy as np
from skimage import transform

MU_WATER_PER_MM = 0.0192  # water at about 70 keV, the effective energy of a 120 kVp beam
REFERENCE_PIXEL_MM = 1.0  # every grid gets the noise of a reconstruction with this pixel and slice thickness
FULL_DOSE = 1.25e9        # photons/mm² over the scan: σ ≈ 15 HU in a 300 mm water cylinder (calibrated above)
LOW_DOSE_FRACTION = 0.25  # quarter dose, as in the Mayo low-dose CT challenge: σ ≈ 30 HU


def hu_to_mu(hu: np.ndarray) -> np.ndarray:
  return np.maximum(MU_WATER_PER_MM * (1.0 + np.asarray(hu, np.float64) / 1000.0), 0.0)


def mu_to_hu(mu: np.ndarray) -> np.ndarray:
  return 1000.0 * (mu / MU_WATER_PER_MM - 1.0)


def _angles(size: int, num_views: int) -> np.ndarray:
  # About π/2 · size views over 180° sample the object without view aliasing.
  return np.linspace(0.0, 180.0, num_views or max(int(np.ceil(size * np.pi / 2)), 16), endpoint=False)


def _check(hu: np.ndarray) -> np.ndarray:
  hu = np.asarray(hu)
  if hu.ndim != 2 or hu.shape[0] != hu.shape[1]:
    raise ValueError(f'simulate expects one square slice, got shape {hu.shape}.')
  return hu


def photons_per_ray(dose: float, *, pixel_mm: float, num_views: int) -> float:
  """Incident photons per detector ray (I0) that give `dose` (photons/mm² over the scan) the noise of the
  reference reconstruction (module docstring): I0 = dose · ref² / views · (ref / pixel)²."""
  return dose * REFERENCE_PIXEL_MM ** 2 / num_views * (REFERENCE_PIXEL_MM / pixel_mm) ** 2


def water_cylinder(size: int, *, diameter_mm: float = 300.0, fov_mm: float = 400.0) -> np.ndarray:
  """[size, size] HU: a centred water cylinder (0 HU) in air, the standard object for CT noise."""
  c = (np.arange(size) + 0.5 - size / 2) * (fov_mm / size)
  inside = c[:, None] ** 2 + c[None, :] ** 2 <= (diameter_mm / 2) ** 2
  return np.where(inside, 0.0, -1000.0).astype(np.float32)


def project(hu: np.ndarray, *, fov_mm: float = 400.0, num_views: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Noiseless line integrals (sinogram [detectors, views], dimensionless) and the view angles."""
  hu = _check(hu)
  theta = _angles(hu.shape[0], num_views)
  return transform.radon(hu_to_mu(hu) * (fov_mm / hu.shape[0]), theta, circle=True), theta


def reconstruct(sino: np.ndarray, theta: np.ndarray, *, dose: float, rng: np.random.Generator | None, size: int,
                fov_mm: float = 400.0) -> np.ndarray:
  """Poisson counts at `dose` photons/mm² over the scan (0: none), log, ramp-filtered back-projection, HU."""
  if not dose >= 0:  # also catches NaN
    raise ValueError(f'dose={dose} must be >= 0 photons/mm² (0 disables quantum noise; the default full dose '
                     f'is {FULL_DOSE:.3g}).')
  if dose:
    photons = photons_per_ray(dose, pixel_mm=fov_mm / size, num_views=len(theta))
    counts = rng.poisson(photons * np.exp(-sino))
    # A ray that detects no photon has an unbounded log; clinical scanners clamp it the same way.
    sino = -np.log(np.maximum(counts, 0.5) / photons)
  mu = transform.iradon(sino, theta, circle=True, filter_name='ramp', output_size=size) / (fov_mm / size)
  out = mu_to_hu(mu)
  c = (np.arange(size) + 0.5) - size / 2
  out[(c[:, None] ** 2 + c[None, :] ** 2) > (size / 2) ** 2] = -1000.0  # outside the scanned circle: air
  return out.astype(np.float32)


def simulate(hu: np.ndarray, *, dose: float, rng: np.random.Generator | None, fov_mm: float = 400.0,
             num_views: int = 0) -> np.ndarray:
  """Reconstructs a square slice as scanned at `dose`.

  Args:
    hu: [N, N] noiseless object in HU; everything outside the inscribed circle must be air.
    dose: photons per mm² at the isocentre over the whole scan (module docstring; `FULL_DOSE` is a clinical
      full dose); 0 means no quantum noise (projection + FBP only).
    rng: the source of the Poisson noise (unused, may be None, when dose is 0).
    fov_mm: the reconstructed field of view (sets the pixel size, so the attenuation path lengths).
    num_views: projection angles over 180°; 0 picks ⌈π/2 · N⌉. The noise does not depend on it at a given dose.

  Returns:
    [N, N] float32 reconstruction in HU, air (−1000) outside the scanned circle.
  """
  sino, theta = project(hu, fov_mm=fov_mm, num_views=num_views)
  return reconstruct(sino, theta, dose=dose, rng=rng, size=hu.shape[0], fov_mm=fov_mm)


def dose_pair(hu: np.ndarray, *, low_dose: float, full_dose: float, rng: np.random.Generator,
              fov_mm: float = 400.0, num_views: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(low-dose, full-dose) reconstructions of the same object with independent noise (one projection)."""
  sino, theta = project(hu, fov_mm=fov_mm, num_views=num_views)
  size = np.asarray(hu).shape[0]
  low = reconstruct(sino, theta, dose=low_dose, rng=rng, size=size, fov_mm=fov_mm)
  full = reconstruct(sino, theta, dose=full_dose, rng=rng, size=size, fov_mm=fov_mm)
  return low, full


def water_noise_hu(dose: float, *, size: int = 64, diameter_mm: float = 300.0, fov_mm: float = 400.0,
                   seeds: int = 8) -> float:
  """σ (HU) of the quantum noise in the central half (by radius) of a water cylinder scanned at `dose`, averaged
  over `seeds` scans: the figure the defaults are calibrated on (module docstring)."""
  hu = water_cylinder(size, diameter_mm=diameter_mm, fov_mm=fov_mm)
  c = (np.arange(size) + 0.5 - size / 2) * (fov_mm / size)
  centre = c[:, None] ** 2 + c[None, :] ** 2 <= (diameter_mm / 4) ** 2
  sino, theta = project(hu, fov_mm=fov_mm)
  ideal = reconstruct(sino, theta, dose=0, rng=None, size=size, fov_mm=fov_mm)
  return float(np.mean([(reconstruct(sino, theta, dose=dose, rng=np.random.default_rng(s), size=size,
                                     fov_mm=fov_mm) - ideal)[centre].std() for s in range(seeds)]))
