import ml_collections
import numpy as np
import pytest

from aigc_jax.data import phantom
from aigc_jax.data import pipeline
from configs import ct


def test_phantom_is_a_deterministic_function_of_seed_and_index():
  a, la = phantom.phantom_slice(0, 7, 64)
  b, lb = phantom.phantom_slice(0, 7, 64)
  np.testing.assert_array_equal(a, b)
  assert la['level'] == lb['level']
  assert not np.array_equal(a, phantom.phantom_slice(0, 8, 64)[0])
  assert not np.array_equal(a, phantom.phantom_slice(1, 7, 64)[0])


def test_phantom_has_air_lung_soft_tissue_and_bone_in_their_hu_ranges():
  hu = np.stack([phantom.phantom_slice(0, i, 64)[0] for i in range(8)])
  assert hu.shape == (8, 64, 64) and hu.dtype == np.float32
  corners = hu[:, :4, :4]
  assert abs(corners.mean() - (-1000)) < 10                       # air, with ~12 HU noise
  frac = lambda lo, hi: np.mean((hu >= lo) & (hu <= hi))
  assert frac(-950, -750) > 0.02                                   # lung parenchyma near -850
  assert frac(-150, -50) > 0.03                                    # subcutaneous fat near -100
  assert frac(0, 100) > 0.05                                       # muscle, blood, organs 20..80
  assert frac(300, 2000) > 0.005                                   # bone >= 300


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


def test_bad_source_and_batch_are_named():
  with pytest.raises(ValueError, match='config.data.name'):
    pipeline.make_source(ml_collections.ConfigDict({'name': 'lidc'}))
  with pytest.raises(ValueError, match='not divisible'):
    pipeline.make_dataset(_data_config(), batch_size=5, process_index=0, process_count=2)
