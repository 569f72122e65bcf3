import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from aigc_jax.imaging import acquisition
from aigc_jax.data import phantom
from aigc_jax.data import pipeline
from aigc_jax.data import prepare
from configs import ct


def test_phantom_is_a_deterministic_function_of_seed_and_index():
  a, la = phantom.phantom_slice(0, 7, 64)
  b, lb = phantom.phantom_slice(0, 7, 64)
  np.testing.assert_array_equal(a, b)
  assert la['level'] == lb['level']
  assert not np.array_equal(a, phantom.phantom_slice(0, 8, 64)[0])
  assert not np.array_equal(a, phantom.phantom_slice(1, 7, 64)[0])


def test_phantom_tissues_sit_in_their_published_hu_ranges():
  seen = {name: [] for name in phantom.TISSUES.values()}
  noisy = {name: [] for name in phantom.TISSUES.values()}
  for i in range(24):
    clean, _, tissue = phantom.phantom_slice(0, i, 64, noise_std=0.0, with_tissue=True)
    hu, _ = phantom.phantom_slice(0, i, 64)
    for cls, name in phantom.TISSUES.items():
      seen[name].append(clean[tissue == cls])
      noisy[name].append(hu[tissue == cls])
  for name, (lo, hi) in phantom.HU_RANGES.items():
    clean, hu = np.concatenate(seen[name]), np.concatenate(noisy[name])
    assert clean.size > 20, name
    assert lo <= clean.min() and clean.max() <= hi, (name, clean.min(), clean.max())  # every pure pixel
    assert lo <= np.median(hu) <= hi, name          # with the 12 HU scan noise, the bulk stays in range
  # Published values: air −1000, lung −900..−500 (aerated ≈ −850), fat −120..−80, soft tissue 20..80,
  # bone ≥ 300: the range table itself must not drift.
  assert phantom.HU_RANGES['air'][0] < -1000 < phantom.HU_RANGES['air'][1]
  assert phantom.HU_RANGES['fat'] == (-120, -80) and phantom.HU_RANGES['soft_tissue'] == (20, 80)
  assert phantom.HU_RANGES['lung'] == (-900, -500) and phantom.HU_RANGES['bone'][0] == 300


def test_phantom_anatomy_follows_the_slice_level_and_lesions_carry_labels():
  lung_share, kinds = [], set()
  for i in range(60):
    hu, lab, tissue = phantom.phantom_slice(3, i, 96, noise_std=0.0, with_tissue=True)
    lung_share.append((float(lab['level']), np.mean(tissue == phantom.LUNG)))
    kinds.add(int(lab['lesion_kind']))
    if lab['lesion'] and lab['lesion_radius'] * 48 > 2:  # at least 2 pixels: a pure centre pixel
      cy, cx = lab['lesion_center']
      r, c = int((cy + 1) / 2 * 96), int((cx + 1) / 2 * 96)
      host = phantom.HU_LUNG if lab['lesion_kind'] == phantom.LESION_NODULE else phantom.HU_LIVER
      assert abs(hu[r, c] - (host + lab['lesion_contrast'])) < 1.0  # the label describes the pixels
      assert lab['lesion_radius'] > 0
  levels, share = np.array(lung_share).T
  assert share[levels < 0.3].mean() > 2 * share[levels > 0.8].mean()  # lungs give way to the abdomen
  assert kinds == {phantom.LESION_NONE, phantom.LESION_NODULE, phantom.LESION_MASS}
  assert phantom.phantom_slice(0, 1, 512)[0].shape == (512, 512)


def test_acquisition_noise_follows_the_dose_and_fbp_recovers_the_object():
  hu, _, tissue = phantom.phantom_slice(0, 3, 64, noise_std=0.0, with_tissue=True)
  rng = np.random.default_rng(0)
  ideal = acquisition.simulate(hu, dose=0, rng=rng)
  body = tissue >= phantom.FAT
  interior = np.zeros_like(body)
  for cls in (phantom.AIR, phantom.FAT, phantom.SOFT):  # 2 pixels away from any edge (edges blur in FBP)
    interior |= ndimage.binary_erosion(tissue == cls, iterations=2)
  err = (ideal - hu)[interior]
  assert abs(err.mean()) < 3 and np.median(np.abs(err)) < 12, (err.mean(), np.median(np.abs(err)))
  std = {}
  for dose in (1e8, 4e8, 1.6e9):
    d = [acquisition.simulate(hu, dose=dose, rng=rng) - ideal for _ in range(3)]
    std[dose] = np.mean([x[body].std() for x in d])
  # Poisson noise: 4x the dose halves the noise in HU.
  assert 1.7 < std[1e8] / std[4e8] < 2.3 and 1.7 < std[4e8] / std[1.6e9] < 2.3, std
  low, full = acquisition.dose_pair(hu, low_dose=4e8, full_dose=1.6e9, rng=rng)
  assert (low - ideal)[body].std() > 1.6 * (full - ideal)[body].std()
  with pytest.raises(ValueError, match='square'):
    acquisition.simulate(np.zeros((4, 5)), dose=0, rng=rng)
  with pytest.raises(ValueError, match='dose'):
    acquisition.simulate(hu, dose=-1.0, rng=rng)


def _water_sigma(dose, size, seeds, num_views=0):
  """σ (HU) of the quantum noise in the central 150 mm of a 300 mm water cylinder (400 mm field of view)."""
  hu = acquisition.water_cylinder(size, diameter_mm=300.0, fov_mm=400.0)
  c = (np.arange(size) + 0.5 - size / 2) * 400.0 / size
  centre = c[:, None] ** 2 + c[None, :] ** 2 <= 75.0 ** 2
  assert hu[centre].max() == hu[centre].min() == 0.0  # water, not air
  ideal = acquisition.simulate(hu, dose=0, rng=None, num_views=num_views)
  return np.mean([(acquisition.simulate(hu, dose=dose, rng=np.random.default_rng(s), num_views=num_views)
                   - ideal)[centre].std() for s in range(seeds)])


def test_default_doses_give_clinical_noise_in_an_adult_sized_water_cylinder():
  d = ct.get_config().data
  for size, seeds in ((64, 6), (128, 2)):
    full = _water_sigma(d.full_dose, size, seeds)
    low = _water_sigma(d.full_dose * d.low_dose_fraction, size, seeds)
    # Clinical full dose ~10–20 HU; the Mayo LDCT quarter dose ~25–45 HU, twice the full-dose noise.
    assert 12.0 < full < 18.0 and 25.0 < low < 35.0 and 1.8 < low / full < 2.2, (size, full, low)
  # The figure evaluate reports beside the doses is this one.
  assert acquisition.water_noise_hu(d.full_dose, size=64, seeds=6) == pytest.approx(_water_sigma(d.full_dose, 64, 6))


def test_noise_at_a_given_dose_does_not_depend_on_the_grid_or_the_view_count():
  dose = 1e9
  sigma = {64: _water_sigma(dose, 64, 6), 128: _water_sigma(dose, 128, 2), 256: _water_sigma(dose, 256, 1),
           '64, 2x views': _water_sigma(dose, 64, 6, num_views=2 * 101)}
  ref = sigma[64]
  assert all(abs(s / ref - 1) < 0.1 for s in sigma.values()), sigma


def test_dose_settings_are_checked_and_old_keys_are_named():
  with pytest.raises(ValueError, match='low_dose_fraction'):
    phantom.PhantomCT(seed=0, size=16, num_examples=1, dose=(2.5e4, 1e5, 400.0))  # the old (low, full) photons
  old = _data_config(pairs=True)
  old = ml_collections.ConfigDict({k: v for k, v in old.items() if k not in ('full_dose', 'low_dose_fraction')})
  old.low_photons, old.full_photons = 2.5e4, 1e5
  for fn in (pipeline.make_source, lambda c: pipeline.held_out_pairs(c, 1)):
    with pytest.raises(ValueError, match='full_dose.*low_dose_fraction'):
      fn(old)


def _data_config(**kw):
  c = ct.get_config('test').data
  c.update(kw)
  return c


def test_window_maps_hu_linearly_onto_minus_one_to_one():
  hu = np.array([-2000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0])
  np.testing.assert_allclose(pipeline.window(hu, -1000, 1000), [-1, -1, 0, 0.5, 1, 1])
  np.testing.assert_allclose(pipeline.unwindow(pipeline.window(hu, -1000, 1000), -1000, 1000),
                             [-1000, -1000, 0, 500, 1000, 1000])


def test_dataset_batches_and_resumes_exactly_from_its_state():
  cfg = _data_config()
  it = iter(pipeline.make_dataset(cfg, batch_size=4, process_index=0, process_count=1))
  first = next(it)
  assert first['image'].shape == (4, 16, 16, 1) and first['image'].dtype == np.float32
  assert first['image'].min() >= -1 and first['image'].max() <= 1
  state = it.get_state()
  expected = [next(it)['image'] for _ in range(3)]
  it2 = iter(pipeline.make_dataset(cfg, batch_size=4, process_index=0, process_count=1))
  it2.set_state(state)
  for e in expected:
    np.testing.assert_array_equal(next(it2)['image'], e)


def test_processes_read_their_rows_of_the_same_global_batches():
  cfg = _data_config(num_train=64)
  one = iter(pipeline.make_dataset(cfg, batch_size=8, process_index=0, process_count=1))
  p0 = iter(pipeline.make_dataset(cfg, batch_size=8, process_index=0, process_count=2))
  p1 = iter(pipeline.make_dataset(cfg, batch_size=8, process_index=1, process_count=2))
  for _ in range(3):
    a, b, whole = next(p0)['image'], next(p1)['image'], next(one)['image']
    assert a.shape == b.shape == (4, 16, 16, 1)
    np.testing.assert_array_equal(np.concatenate([a, b]), whole)  # the run does not depend on process count
  plain = _data_config(num_train=64, shuffle=False)
  b = next(iter(pipeline.make_dataset(plain, batch_size=8, process_index=1, process_count=2)))['image']
  src = pipeline.make_source(plain)
  np.testing.assert_array_equal(b[1, ..., 0], pipeline.window(src[5]['hu'], plain.window_lo, plain.window_hi))


def test_hflip_augmentation_flips_some_images_only():
  cfg = _data_config(num_train=64, shuffle=False, hflip=True)
  batch = next(iter(pipeline.make_dataset(cfg, batch_size=16, process_index=0, process_count=1)))['image']
  src = pipeline.make_source(cfg)
  flipped = [not np.array_equal(batch[i, ..., 0], pipeline.window(src[i]['hu'], -1000, 1000)) for i in range(16)]
  assert 0 < sum(flipped) < 16


def test_pairs_labels_and_affine_augmentation_travel_together():
  cfg = _data_config(num_train=64, shuffle=False, pairs=True, labels=('lesion', 'level'), affine_deg=10.0,
                     affine_scale=0.1, affine_shift=0.05)
  batch = next(iter(pipeline.make_dataset(cfg, batch_size=8, process_index=0, process_count=1)))
  assert batch['image'].shape == batch['low_dose'].shape == (8, 16, 16, 1)
  assert batch['lesion'].dtype == np.int32 and batch['level'].dtype == np.float32
  plain = pipeline.make_source(_data_config(num_train=64, pairs=True))
  np.testing.assert_allclose(batch['level'], [plain[i]['level'] for i in range(8)])
  # The same warp for both images: air stays air in both where the full-dose image is air.
  air = batch['image'] < -0.99
  assert np.mean(batch['low_dose'][air] < -0.9) > 0.95
  unwarped = np.stack([pipeline.window(plain[i]['hu'], -1000, 1000) for i in range(8)])[..., None]
  assert not np.allclose(batch['image'], unwarped)
  with pytest.raises(ValueError, match='labels asks for'):
    next(iter(pipeline.make_dataset(_data_config(labels=('stage',)), batch_size=2, process_index=0,
                                    process_count=1)))


def test_prepared_dataset_feeds_the_pipeline_and_worker_processes_change_nothing(tmp_path):
  prepare.prepare_phantom(output=str(tmp_path), name='ph32', size=32, counts={'train': 24})
  cfg = _data_config(name='tfds:ph32', data_dir=str(tmp_path), num_threads=1)  # image_size 16: fitted
  batches = pipeline.make_dataset(cfg, batch_size=4, process_index=0, process_count=1)
  it = iter(batches)
  first = [next(it)['image'] for _ in range(3)]
  assert first[0].shape == (4, 16, 16, 1) and -1 <= first[0].min() and first[0].max() <= 1
  cfg.num_workers = 2
  it = iter(pipeline.make_dataset(cfg, batch_size=4, process_index=0, process_count=1))
  np.testing.assert_array_equal(next(it)['image'], first[0])
  state = it.get_state()  # what a checkpoint saves, taken with workers running
  for b in first[1:]:
    np.testing.assert_array_equal(next(it)['image'], b)
  resumed = iter(pipeline.make_dataset(cfg, batch_size=4, process_index=0, process_count=1))
  resumed.set_state(state)
  np.testing.assert_array_equal(next(resumed)['image'], first[1])
  assert pipeline.throughput(_data_config(), batch_size=8, num_batches=4, warmup=1) > 0
  with pytest.raises(ValueError, match='data_dir'):
    pipeline.make_source(_data_config(name='tfds:ph32'))
  with pytest.raises(FileNotFoundError, match='aigc_jax.prepare'):
    pipeline.make_source(_data_config(name='tfds:nothing_here', data_dir=str(tmp_path)))
  with pytest.raises(ValueError, match='no split'):
    pipeline.make_source(_data_config(name='tfds:ph32', data_dir=str(tmp_path), split='test'))


def test_bad_source_and_batch_are_named():
  with pytest.raises(ValueError, match='config.data.name'):
    pipeline.make_source(ml_collections.ConfigDict({'name': 'lidc'}))
  with pytest.raises(ValueError, match='not divisible'):
    pipeline.make_dataset(_data_config(), batch_size=5, process_index=0, process_count=2)
