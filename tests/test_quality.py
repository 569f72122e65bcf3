"""Metrics against values computed by hand."""

import warnings

import numpy as np
import pytest
from scipy import linalg

from aigc_jax.imaging import quality
from aigc_jax.data import phantom


def test_psnr_rmse_and_ssim_on_known_cases():
  x = np.zeros((16, 16))
  y = np.full((16, 16), 10.0)
  assert quality.rmse(x, y) == 10.0
  assert quality.psnr(x, y, data_range=1000.0) == pytest.approx(40.0)  # 10·log10(1000² / 100)
  assert quality.psnr(x, x, 1.0) == float('inf')
  assert quality.ssim(y, y, 100.0) == pytest.approx(1.0)
  # Constant images: the structure term is 1 and SSIM is the luminance term (2ab + C1) / (a² + b² + C1).
  a, b, c1 = 20.0, 30.0, (0.01 * 100.0) ** 2
  assert quality.ssim(np.full((16, 16), a), np.full((16, 16), b), 100.0) == pytest.approx(
      (2 * a * b + c1) / (a * a + b * b + c1))
  rng = np.random.default_rng(0)
  img = rng.normal(size=(64, 64))
  noisy = img + rng.normal(scale=0.5, size=img.shape)
  assert quality.ssim(img, noisy, 8.0) < quality.ssim(img, img + 0.1 * (noisy - img), 8.0) < 1.0
  assert quality.ms_ssim(img, img, 8.0) == pytest.approx(1.0)
  assert 0.0 < quality.ms_ssim(img, rng.normal(size=img.shape), 8.0) < 0.2


def test_frechet_and_kernel_distances_on_gaussians():
  rng = np.random.default_rng(0)
  f1 = rng.normal(size=(20_000, 2))
  f2 = rng.normal(size=(20_000, 2)) * 2.0 + np.array([1.0, 0.0])
  # ‖μ1 − μ2‖² + Σ (σ1 − σ2)² for diagonal covariances: 1 + 2 · (1 − 2)² = 3.
  assert quality.frechet_distance(f1, f2) == pytest.approx(3.0, abs=0.1)
  assert quality.frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-6)
  same = quality.kernel_inception_distance(f1[:1000], rng.normal(size=(1000, 2)))
  assert abs(same) < 0.02 and quality.kernel_inception_distance(f1[:1000], f2[:1000]) > 1.0
  # By hand for one point each side twice: unbiased MMD² = k(a,a') + k(b,b') − 2·mean k(a,b).
  a, b = np.array([[1.0], [1.0]]), np.array([[0.0], [0.0]])
  assert quality.kernel_inception_distance(a, b) == pytest.approx(8.0 + 1.0 - 2.0)


def test_frechet_distance_matches_closed_forms_and_the_sqrtm_formula_without_deprecated_calls():
  rng = np.random.default_rng(1)
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # scipy's sqrtm(disp=...) is deprecated and gone in SciPy 1.18
    # Commuting covariances Q·diag(a)·Qᵀ and Q·diag(b)·Qᵀ: ‖μ1 − μ2‖² + Σ (√a − √b)².
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a, b = rng.uniform(0.2, 3.0, 6), rng.uniform(0.2, 3.0, 6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = quality.frechet_from_moments(m1, q @ np.diag(a) @ q.T, m2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(want, rel=1e-9)
    # Random features: the same value as the textbook tr((Σ1 Σ2)^½) through scipy's sqrtm.
    f1 = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
    f2 = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) + 0.5
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    textbook = (np.sum((f1.mean(0) - f2.mean(0)) ** 2)
                + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))
    assert quality.frechet_distance(f1, f2) == pytest.approx(textbook, rel=1e-6)
    # Fewer samples than dimensions (singular covariances): a set against itself is still 0 (to rounding,
    # relative to the total variance, as with sqrtm).
    few = rng.normal(size=(20, 64))
    assert quality.frechet_distance(few, few) == pytest.approx(0.0, abs=1e-7 * np.trace(np.cov(few.T)))
    # …and the samples-side form it takes there equals the moments' form (which rounds the zero
    # eigenvalues of a singular covariance to ~1e-7 each, hence the tolerance).
    other = rng.normal(size=(30, 64)) @ rng.normal(size=(64, 64)) + 0.3
    assert quality.frechet_distance(few, other) == pytest.approx(quality.frechet_from_moments(
        few.mean(0), np.cov(few, rowvar=False), other.mean(0), np.cov(other, rowvar=False)), rel=1e-7)
    assert quality.frechet_distance(f1[:, :1], f2[:, :1]) == pytest.approx(
        (f1[:, 0].mean() - f2[:, 0].mean()) ** 2 + (f1[:, 0].std(ddof=1) - f2[:, 0].std(ddof=1)) ** 2, rel=1e-9)


def test_copy_test_takes_the_second_nearest_from_another_group_in_any_chunking():
  rng = np.random.default_rng(2)
  body = rng.normal(size=(8, 8))
  # Group 0 holds two near-duplicate adjacent slices; groups 1..9 one image each.
  train = np.concatenate([body[None], body[None] + rng.normal(0, 0.05, (1, 8, 8)), rng.normal(size=(9, 8, 8))])
  groups = np.array([0, 0] + list(range(1, 10)))
  samples = np.stack([body + rng.normal(0, 0.05, (8, 8)), rng.normal(size=(8, 8))])
  _, _, plain = quality.nearest_neighbours(samples, train)
  assert plain[0] > 0.5  # per image, the neighbouring slice hides the copy
  index, dist, ratio = quality.nearest_neighbours(samples, train, groups)
  assert index[0] in (0, 1) and ratio[0] < 0.2 and ratio[1] > 0.5  # per group: flagged; a new image is not
  np.testing.assert_allclose(dist, np.sqrt(((samples[:, None] - train[None]) ** 2).sum((2, 3))).min(1))
  for chunk in (1, 2, 3, 5):  # a group split over chunks, groups revisited: the same answer
    order = rng.permutation(len(train))
    i, d, r = quality.nearest_neighbours(samples, train[order], groups[order], chunk=chunk)
    np.testing.assert_array_equal(order[i], index)
    np.testing.assert_allclose(d, dist, rtol=1e-12)
    np.testing.assert_allclose(r, ratio, rtol=1e-12)
  # One group only: there is no second group to compare with, so no ratio (and no flag).
  assert np.all(np.isnan(quality.nearest_neighbours(samples, train[:2], groups[:2])[2]))


def test_hu_wasserstein_anatomy_memorization_and_bootstrap():
  rng = np.random.default_rng(0)
  real = rng.normal(-100, 10, 50_000)
  w = quality.hu_wasserstein(real + 30.0, real)
  assert w['all'] == pytest.approx(30.0, abs=0.5) and np.isnan(w['bone'])
  slices = [phantom.phantom_slice(1, i, 64)[0] for i in range(20)]
  found = [quality.anatomy(s) for s in slices]
  assert all(f['body'] and f['bone'] for f in found) and np.mean([f['plausible'] for f in found]) > 0.8
  assert not any(quality.anatomy(rng.normal(0, 500, (64, 64))).values())  # noise: no body clear of the corners
  assert not any(quality.anatomy(np.full((64, 64), -1000.0)).values())    # air
  train = rng.normal(size=(50, 8, 8))
  samples = np.concatenate([train[7:8] + 1e-3, rng.normal(size=(3, 8, 8))])
  index, dist, ratio = quality.nearest_neighbours(samples, train)
  assert index[0] == 7 and dist[0] < 0.01 and ratio[0] < 0.01  # a copy
  assert np.all(ratio[1:] > 0.5)                                 # new images: no single close neighbour
  values = rng.normal(5.0, 1.0, 400)
  lo, hi = quality.bootstrap_ci(values)
  # Around the sample mean, as wide as the normal-theory interval 2 · 1.96 · σ/√n.
  assert lo < values.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * values.std() / 20, rel=0.15)


def test_precision_recall_on_hand_built_manifolds():
  real = np.array([[0.0], [1.0], [2.0], [3.0]])
  # k=1: each real point's ball reaches its neighbour (radius 1); fakes at 0.5 and 3.5 are inside, 10 is not.
  fake = np.array([[0.5], [3.5], [10.0], [10.5]])
  p, r = quality.precision_recall(real, fake, k=1)
  assert p == 0.5
  # Fake radii (k=1): 3.0, 3.0, 0.5, 0.5 → the balls around 0.5 and 3.5 cover every real point.
  assert r == 1.0
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
  p, r = quality.precision_recall(a, b)
  assert p > 0.9 and r > 0.9                       # the same distribution
  p, r = quality.precision_recall(a, 0.2 * b)      # a collapsed generator: faithful, not covering
  assert p > 0.95 and r < 0.5
