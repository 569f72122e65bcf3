"""Evaluation inputs without a trained model: the held-out reference, the memorization audit set and its
copy test, and the CT feature net's input window."""

import numpy as np
import pytest

from aigc_jax import evaluate
from aigc_jax.imaging import features
from aigc_jax.imaging import quality
from aigc_jax.data import phantom
from aigc_jax.data import pipeline
from aigc_jax.data import records
from configs import ct

SIZE = 16  # the test config's image size


def _write(tmp_path, name: str, splits: dict[str, list[dict]]):
  """A tiny prepared dataset as `prepare` lays it out: int16 HU slices with a patient key per example."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  keys = set().union(*(ex.keys() for exs in splits.values() for ex in exs))
  img = tfds.features.Tensor(shape=(SIZE, SIZE), dtype=np.int16, encoding='zlib')
  feats = {'image': img, 'patient': tfds.features.Tensor(shape=(), dtype=np.int64)}
  if 'low_dose' in keys:
    feats['low_dose'] = img
  as_record = lambda ex: {k: (np.int64(v) if k == 'patient' else np.round(v).astype(np.int16)) for k, v in ex.items()}
  records.write(name, str(tmp_path), feats,
                {s: (lambda exs=exs: iter([as_record(e) for e in exs])) for s, exs in splits.items()},
                {'modality': 'CT', 'units': 'HU'})


def _run_config(tmp_path, name: str):
  c = ct.get_config('test')
  c.data.name, c.data.data_dir = f'tfds:{name}', str(tmp_path)
  return c


def _slices(seed: int, num: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [{'image': rng.normal(0.0, 300.0, (SIZE, SIZE)), 'patient': 100 + i} for i in range(num)]


def test_reference_is_the_runs_own_held_out_split_or_the_command_refuses(tmp_path):
  _write(tmp_path, 'real_ct', {'train': _slices(0, 6), 'test': _slices(1, 4)})
  c = _run_config(tmp_path, 'real_ct')
  test_split = records.TfdsSource('real_ct', data_dir=str(tmp_path), split='test')
  expected = np.stack([test_split[i]['hu'] for i in range(3)])
  np.testing.assert_array_equal(pipeline.held_out_hu(c.data, 3), expected)  # the data's slices, not phantom
  _, name = pipeline.held_out_source(c.data)
  assert 'real_ct' in name and 'test' in name and 'phantom' not in name
  assert not np.allclose(pipeline.held_out_hu(ct.get_config('test').data, 3), expected)
  # An explicit reference still wins, and --data_dir defaults to the run's.
  _write(tmp_path, 'other_ct', {'validation': _slices(2, 3)})
  other = records.TfdsSource('other_ct', data_dir=str(tmp_path), split='validation')
  np.testing.assert_array_equal(pipeline.held_out_hu(c.data, 2, 'tfds:other_ct'),
                                np.stack([other[i]['hu'] for i in range(2)]))  # validation: the only held-out
  with pytest.raises(ValueError, match='fewer than'):
    pipeline.held_out_hu(c.data, 5)
  with pytest.raises(ValueError, match="training split"):
    pipeline.held_out_hu(c.data, 2, 'tfds:real_ct', split='train')

  _write(tmp_path, 'train_only', {'train': _slices(3, 4)})
  c = _run_config(tmp_path, 'train_only')
  with pytest.raises(ValueError, match=r'no held-out split.*--reference=tfds:NAME --data_dir=DIR.*--split='):
    pipeline.held_out_hu(c.data, 2)
  with pytest.raises(ValueError, match=r'no held-out split.*--reference=tfds:NAME'):
    pipeline.held_out_pairs(c.data, 2)
  # Training-time monitors do not refuse to start: they fall back to training slices and say so.
  hu, source = pipeline.monitor_hu(c.data, 2)
  train_split = records.TfdsSource('train_only', data_dir=str(tmp_path), split='train')
  np.testing.assert_array_equal(hu, np.stack([train_split[i]['hu'] for i in range(2)]))
  assert 'training split' in source
  hu, source = pipeline.monitor_hu(_run_config(tmp_path, 'real_ct').data, 3)
  np.testing.assert_array_equal(hu, expected)
  assert 'held out' in source
  # Asked for more than there is, a monitor measures on all there is and says so (offline evaluation refuses).
  hu, source = pipeline.monitor_hu(_run_config(tmp_path, 'real_ct').data, 8)
  np.testing.assert_array_equal(hu, np.stack([test_split[i]['hu'] for i in range(4)]))
  assert 'held out' in source and 'all 4 of its examples (fewer than the 8 asked for)' in source
  batch, source = pipeline.monitor_examples(c.data, 8)
  assert batch['image'].shape == (4, SIZE, SIZE, 1) and 'training split' in source and 'all 4' in source


def test_restoration_pairs_come_from_the_runs_held_out_split(tmp_path):
  rng = np.random.default_rng(4)
  pairs = [{'image': rng.normal(0, 300, (SIZE, SIZE)), 'low_dose': rng.normal(0, 300, (SIZE, SIZE)),
            'patient': i} for i in range(5)]
  _write(tmp_path, 'dose_ct', {'train': pairs[:3], 'validation': pairs[3:]})
  c = _run_config(tmp_path, 'dose_ct')
  low, full = pipeline.held_out_pairs(c.data, 2)
  src = records.TfdsSource('dose_ct', data_dir=str(tmp_path), split='validation')
  np.testing.assert_array_equal(low, np.stack([src[i]['hu_low'] for i in range(2)]))
  np.testing.assert_array_equal(full, np.stack([src[i]['hu'] for i in range(2)]))
  _write(tmp_path, 'single_ct', {'train': _slices(5, 3), 'test': _slices(6, 2)})
  with pytest.raises(ValueError, match='low_dose'):
    pipeline.held_out_pairs(_run_config(tmp_path, 'single_ct').data, 2)


def test_audit_covers_the_training_split_and_flags_a_copy_of_one_of_two_adjacent_near_duplicates(tmp_path):
  rng = np.random.default_rng(0)
  body = rng.normal(0.0, 300.0, (SIZE, SIZE))
  # Patient 7: two adjacent slices 20 HU apart (noise level), then six other patients.
  train = [{'image': body, 'patient': 7}, {'image': body + rng.normal(0, 20, body.shape), 'patient': 7}]
  train += [{'image': rng.normal(0.0, 300.0, (SIZE, SIZE)), 'patient': p} for p in range(20, 26)]
  _write(tmp_path, 'vols', {'train': train, 'test': _slices(1, 2)})
  c = _run_config(tmp_path, 'vols')
  indices = evaluate.audit_indices('', c, step=4)  # 4 steps of batch 8 served every one of the 8 slices
  assert sorted(indices.tolist()) == list(range(8))
  assert len(evaluate.audit_indices('', c, step=4, limit=5)) == 5
  lo, hi = c.data.window_lo, c.data.window_hi
  copy = pipeline.window(body + rng.normal(0, 20, body.shape), lo, hi)
  fresh = pipeline.window(rng.normal(0.0, 300.0, (SIZE, SIZE)), lo, hi)
  queries = np.stack([copy, fresh])
  found, _, groups = evaluate.nearest_training(c, indices, {'pixels': queries}, {'pixels': lambda x: x},
                                               num_floor=0, chunk=1)  # one slice a chunk: merged across chunks
  assert groups == 'patient'
  idx, dist, ratio = found['pixels']
  src = records.TfdsSource('vols', data_dir=str(tmp_path), split='train')
  assert int(src[int(indices[idx[0]])]['patient']) == 7
  assert ratio[0] < 0.5 and ratio[1] > 0.5  # the copy is flagged, the new image is not
  # Without the patient grouping the near-duplicate slice is the second nearest and hides the copy.
  images = np.concatenate([x for x, _ in pipeline.training_examples(c.data, indices)])
  assert images.shape == (8, SIZE, SIZE)
  assert quality.nearest_neighbours(queries, images)[2][0] > 0.5


def test_phantom_audit_set_is_what_the_run_was_served():
  c = ct.get_config('test')  # the phantom's nominal epoch is 2^20: 2 steps of 8 served 16 of them
  indices = evaluate.audit_indices('', c, step=2)
  assert len(set(indices.tolist())) == 16
  served = pipeline.first_images(c.data, 16, c.batch_size)
  np.testing.assert_array_equal(np.concatenate([x for x, _ in pipeline.training_examples(c.data, indices)]),
                                served)
  groups = np.concatenate([g for _, g in pipeline.training_examples(c.data, indices)])
  np.testing.assert_array_equal(groups, indices)  # independent slices: each is its own group
  subset = evaluate.audit_indices('', c, step=2, limit=5, seed=1)
  assert len(subset) == 5 and set(subset.tolist()) <= set(indices.tolist())


def test_ct_feature_net_sees_hu_in_its_training_window_whatever_the_runs_window():
  c = ct.get_config('test')
  c.data.window_lo, c.data.window_hi = -160.0, 240.0
  hu = np.clip(np.stack([phantom.phantom_slice(3, i, 32)[0] for i in range(4)]), -160.0, 240.0)
  spaces = evaluate.feature_spaces(c)
  run = spaces['features'](pipeline.window(hu, -160.0, 240.0))
  trained = features.Features()(pipeline.window(hu, -1000.0, 1000.0))
  np.testing.assert_allclose(run, trained, rtol=1e-4, atol=1e-5)
  assert not np.allclose(features.Features()(pipeline.window(hu, -160.0, 240.0)), trained, rtol=1e-2)
