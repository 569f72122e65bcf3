"""Low-dose CT restoration on the one trainer: models, task, and the evaluation beside the low-dose input."""

import gzip
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aigc_jax import evaluate
from aigc_jax import models
from aigc_jax import experiment
from aigc_jax import registry
from aigc_jax.imaging import acquisition
from aigc_jax.imaging import geometry
from configs import ct_denoise


def test_restoration_models_map_images_to_images():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 1))
  red = models.build(ct_denoise.get_config('test').model)
  params = red.init(jax.random.PRNGKey(1), x)
  assert red.apply(params, x).shape == x.shape
  # RED-CNN adds its input back: with the decoder zeroed it is exactly the identity.
  zeroed = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.zeros_like(v) if 'ConvTranspose' in jax.tree_util.keystr(p) else v, params)
  np.testing.assert_allclose(red.apply(zeroed, x), x, atol=1e-6)
  cfg = ct_denoise.get_config('test').model
  cfg.name = 'conv_autoencoder'
  with pytest.raises(ValueError, match='does not take'):
    models.build(cfg)  # RED-CNN's fields do not fit the autoencoder: named, not ignored
  ae = models.MODELS['conv_autoencoder'](channels=(8, 16), output='sigmoid')
  out = ae.apply(ae.init(jax.random.PRNGKey(2), x), x)
  assert out.shape == x.shape and float(jnp.max(jnp.abs(out))) <= 1.0


@pytest.fixture(scope='module')
def denoise_run(tmp_path_factory):
  """One trained test run shared by this module's tests (training it is the costly part)."""
  run = tmp_path_factory.mktemp('denoise_run')
  c = ct_denoise.get_config('test')
  c.log_every = 1
  c.data.cache_dir = str(tmp_path_factory.mktemp('bank'))
  experiment.train_and_evaluate(c, str(run))
  return run


def test_denoiser_trains_on_dose_pairs_and_is_evaluated_beside_the_input(denoise_run):
  tmp_path = denoise_run
  report = evaluate.evaluate_restoration(str(tmp_path), num=8)
  for name in ('low_dose_input', 'restored'):
    assert set(report[name]) == {'psnr_db', 'ssim', 'rmse_hu'}
    assert report[name]['psnr_db']['ci95'][0] <= report[name]['psnr_db']['mean'] <= report[name]['psnr_db']['ci95'][1]
  assert np.isfinite(report['psnr_gain_db']) and report['step'] == 4
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  trained = [r for r in rows if 'restoration/psnr_db' in r]
  assert [r['step'] for r in trained] == [4] and 'restoration/psnr_input_db' in trained[0]  # the evaluator's interval
  assert os.path.exists(tmp_path / 'restoration' / 'low_restored_full_0000004.png')
  # `aigc_jax.evaluate` runs the same configured evaluator offline on the checkpoint: the same figures.
  outputs, step = experiment.run_evaluators(str(tmp_path))
  assert step == 4 and set(outputs) == {'restoration'}
  np.testing.assert_allclose(outputs['restoration'].scalars['psnr_db'], trained[0]['restoration/psnr_db'], rtol=1e-5)
  assert os.path.exists(tmp_path / 'eval' / 'restoration' / 'low_restored_full_0000004.png')
  with pytest.raises(ValueError, match='not in the run'):
    experiment.run_evaluators(str(tmp_path), names=('samples',))
  with pytest.raises(ValueError, match='pairs'):
    bad = ct_denoise.get_config('test')
    bad.data.pairs = False
    registry.build_task(bad)


def test_denoise_applies_a_trained_run_to_dicom_and_nifti_keeping_geometry_and_no_identifiers(tmp_path, denoise_run):
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  import pydicom  # pylint: disable=g-import-not-at-top
  import scan_files  # pylint: disable=g-import-not-at-top
  from aigc_jax import denoise  # pylint: disable=g-import-not-at-top
  from aigc_jax.data import phantom  # pylint: disable=g-import-not-at-top
  from test_prepare import PLANTED  # pylint: disable=g-import-not-at-top

  run = denoise_run
  inp, out = tmp_path / 'scans' / 'patient_a', tmp_path / 'out'
  scan_files.ct_series(str(inp), 3, PLANTED)
  # A NIfTI in LPS voxel order (x → patient's left), 3 phantom slices of 24 × 20: not the training size.
  hu = np.stack([phantom.PhantomCT(seed=5, size=24, num_examples=3)[i]['hu'][:, 2:22] for i in range(3)])
  lps = np.diag([-0.8, -0.8, 2.0, 1.0])
  nib.save(nib.Nifti1Image(np.round(hu.transpose(2, 1, 0)).astype(np.int16), lps), str(inp / 'vol.nii.gz'))

  report = denoise.denoise(str(run), str(tmp_path / 'scans'), str(out))
  assert sorted(w['kind'] for w in report['written']) == ['dicom', 'nifti'] and not report['problems']
  # The noise it estimated, beside the range of the doses it was trained at (tenth to half dose: a range).
  low, high = report['trained_noise_index_hu']
  assert 0 < low < high and all(w['noise_index_hu'] > 0 for w in report['written'])
  n_dicom = [w['kind'] for w in report['written']].index('dicom')
  d = denoise.Denoiser(str(run))

  originals = sorted((pydicom.dcmread(p) for p in (inp.glob('*.dcm'))), key=lambda ds: ds.ImagePositionPatient[2])
  written = [pydicom.dcmread(p) for p in sorted((out / f'series_{n_dicom}').glob('*.dcm'))]
  assert len(written) == 3
  hu_in = np.stack([pydicom.pixels.apply_modality_lut(ds.pixel_array, ds) for ds in originals]).astype(np.float32)
  hu_out = np.stack([pydicom.pixels.apply_modality_lut(ds.pixel_array, ds) for ds in written])
  np.testing.assert_allclose(hu_out, np.round(d(hu_in)), atol=1.0)  # the model's output, stored to 1 HU
  outside = (hu_in <= -1000) | (hu_in >= 1000)
  np.testing.assert_array_equal(hu_out[outside], hu_in[outside])  # beyond the window: kept as it was
  assert np.any(hu_out[~outside] != hu_in[~outside])
  for a, b in zip(originals, written):
    for tag in ('ImagePositionPatient', 'ImageOrientationPatient', 'PixelSpacing', 'Rows', 'Columns',
                'SliceThickness', 'RescaleSlope', 'RescaleIntercept'):
      assert a.get(tag) == b.get(tag), tag
    assert b.ImageType[:2] == ['DERIVED', 'SECONDARY'] and 'DENOISED' in b.SeriesDescription
    assert b.SeriesInstanceUID != a.SeriesInstanceUID and b.SOPInstanceUID != a.SOPInstanceUID
  assert len({ds.SeriesInstanceUID for ds in written}) == 1 and len({ds.FrameOfReferenceUID for ds in written}) == 1
  blob = b''.join(p.read_bytes() for p in out.rglob('*') if p.is_file())
  blob += b''.join(gzip.decompress(p.read_bytes()) for p in out.rglob('*.gz'))  # a .nii.gz would hide a value
  for value in list(PLANTED.values()) + ['patient_a']:
    assert value.encode() not in blob, value
    assert value not in str(sorted(out.rglob('*')))

  vol = nib.load(str(out / f'volume_{1 - n_dicom}.nii.gz'))
  np.testing.assert_allclose(vol.affine, lps, atol=1e-6)  # stored as float32
  assert vol.shape == (20, 24, 3) and vol.get_data_dtype() == np.int16
  # LPS voxels are already the radiological view (columns toward the left, rows posterior): the model's
  # output on those slices, in the file's own voxel order.
  np.testing.assert_allclose(vol.get_fdata().transpose(2, 1, 0), d(np.round(hu).astype(np.float32)), atol=1.0)
  # --dihedral: the mean over the eight flips/quarter turns, each turned back (also on 24 × 20, not square).
  x = np.round(hu).astype(np.float32)
  for t in range(8):
    np.testing.assert_array_equal(geometry.dihedral(geometry.dihedral(x, t), t, undo=True), x)
  assert len({geometry.dihedral(x, t).tobytes() for t in range(8)}) == 8
  report = denoise.denoise(str(run), str(tmp_path / 'scans'), str(tmp_path / 'out8'), dihedral=True)
  x8 = nib.load(str(tmp_path / 'out8' / f'volume_{1 - n_dicom}.nii.gz')).get_fdata().transpose(2, 1, 0)
  np.testing.assert_allclose(x8, d(x, dihedral=True), atol=1.0)
  np.testing.assert_allclose(d(x, dihedral=True), np.mean([d(x[:, ::-1, ::-1])[:, ::-1, ::-1]] * 1 + [
      geometry.dihedral(d(np.ascontiguousarray(geometry.dihedral(x, t))), t, undo=True) for t in range(8) if t != 2],
      axis=0), atol=1e-3)  # turn 2 (half a turn) is flipping both axes
  assert report['dihedral_average'] and np.abs(x8 - vol.get_fdata().transpose(2, 1, 0)).max() > 0.5

  with pytest.raises(ValueError, match='restoration'):
    diffusion_run = tmp_path / 'not_a_denoiser'
    diffusion_run.mkdir()
    (diffusion_run / 'config.json').write_text(json.dumps(json.loads((run / 'config.json').read_text()) | {
        'task': {'name': 'diffusion'}}))
    denoise.Denoiser(str(diffusion_run))


def test_noise_far_outside_the_trained_doses_is_warned_about(denoise_run):
  from aigc_jax import denoise  # pylint: disable=g-import-not-at-top
  d = denoise.Denoiser(str(denoise_run))
  low, high = d.trained_noise
  # A bank of smaller and larger patients (bank_fov_range_mm) was trained on quieter and noisier inputs.
  wide = denoise.Denoiser(str(denoise_run))
  wide.config = ml_collections.ConfigDict(d.config.to_dict())
  wide.config.data.bank_fov_range_mm = (0.5 * d.config.data.fov_mm, 1.25 * d.config.data.fov_mm)
  wide_low, wide_high = wide.trained_noise
  assert wide_low < 0.8 * low and wide_high > 1.1 * high
  water = acquisition.water_cylinder(64)
  scan = lambda fraction, seed: acquisition.simulate(water, dose=d.config.data.full_dose * fraction,
                                                     rng=np.random.default_rng(seed))
  inside = np.stack([scan(0.25, s) for s in range(2)])
  index, warning = d.noise_note(inside)
  assert low <= index <= high and not warning
  noisier = np.stack([scan(0.01, s) for s in range(2)])  # a hundredth of full dose: 5× the noise of quarter dose
  index, warning = d.noise_note(noisier)
  assert index > 1.5 * high and 'far outside' in warning
  assert d.noise_note(np.full((2, 64, 64), -1000.0, np.float32)) == (None, '')  # all air: nothing to measure


def test_compare_denoisers_scores_model_and_peers_on_phantom_and_real_ct(denoise_run, tmp_path, capsys):
  from aigc_jax import compare_denoisers  # pylint: disable=g-import-not-at-top
  r = compare_denoisers.compare(str(denoise_run), methods=['tv', 'bm3d'], seeds=2, dose_fraction=0.25,
                                validation=1, test=1, real=['abdomen'], real_size=64)
  assert set(r['sets']) == {'phantom', 'real'} and r['sets']['real']['slices'][0].startswith('abdomen (64²')
  for name, s in r['sets'].items():
    for m in ('input', 'model', 'tv', 'bm3d'):
      assert s[m]['rmse_hu']['mean'] > 0 and s[m]['rmse_hu']['sd'] >= 0 and 0 < s[m]['ssim']['mean'] <= 1, (name, m)
    assert s['input']['gain_db'] == 0.0 and s['input_noise_hu'] > 0
    soft = [v['soft'] for v in s['tv']['tissue_rmse_hu_per_slice'].values()]
    assert None not in soft and min(soft) > 0  # every slice has soft tissue; bone may be None (none there)
    split = [v['soft'] for v in s['input']['tissue_error_split_hu_per_slice'].values()]
    assert all(v['noise'] > 2 * v['changed'] for v in split)  # the input: all noise, its anatomy unchanged
  assert r['sets']['phantom']['tv']['rmse_hu']['mean'] != r['sets']['phantom']['input']['rmse_hu']['mean']
  for m in ('tv', 'bm3d'):  # each peer's strength: the best on the validation slice (not on the test ones)
    assert r['tuning_rmse_hu'][m][r['alpha'][m]] == min(r['tuning_rmse_hu'][m].values())
  qa = r['texture_and_edges']
  assert qa['tv']['noise_sigma_hu'] < qa['input']['noise_sigma_hu'] and qa['input']['mtf50_per_mm'] > 0
  compare_denoisers.print_report(r)
  table = capsys.readouterr().out
  assert '| model |' in table and '| bm3d |' in table and 'MTF50' in table and 'in soft tissue' in table
  assert 'anatomy changed' in table
  with pytest.raises(ValueError, match='unknown classical denoiser'):
    compare_denoisers.compare(str(denoise_run), methods=['wiener'], seeds=1, dose_fraction=0.25, validation=1,
                              test=1, real=['none'])


def test_compare_denoisers_scores_a_users_series_and_leaves_out_what_the_run_trained_on(denoise_run, tmp_path,
                                                                                        monkeypatch):
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  from aigc_jax import compare_denoisers  # pylint: disable=g-import-not-at-top
  from aigc_jax.imaging import real_ct  # pylint: disable=g-import-not-at-top
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  abdomen = real_ct.load('abdomen')
  small = real_ct.in_circle(ndimage.zoom(abdomen.hu, 64 / 512, order=1))
  (tmp_path / 'mine').mkdir()
  vol = np.round(np.stack([small, small[::-1]]).transpose(2, 1, 0)).astype(np.int16)
  nib.save(nib.Nifti1Image(vol, np.diag([6.9, 6.9, 5.0, 1.0])), str(tmp_path / 'mine' / 'ct.nii.gz'))
  kw = dict(methods=[], seeds=1, dose_fraction=0.25, validation=1, test=1, real=['none'],
            real_dir=str(tmp_path / 'mine'), real_dir_slices=4, dihedral=True)
  r = compare_denoisers.compare(str(denoise_run), **kw)
  assert r['sets']['user']['slices'] == ['series_0_slice_0 (64², 6.90 mm)', 'series_0_slice_1 (64², 6.90 mm)']
  assert r['sets']['user']['model']['rmse_hu']['mean'] > 0 and r['left_out_trained_on'] == []
  assert r['sets']['user']['model_x8']['rmse_hu']['mean'] != r['sets']['user']['model']['rmse_hu']['mean']
  # A run whose bank_source held a test slice: that slice is left out and named, whichever folder it came from.
  seen = compare_denoisers.trained_on(ml_collections.ConfigDict(dict(
      bank_source=str(tmp_path / 'mine'), bank_source_slices=1, patch_size=16)))
  assert len(seen) == 1
  monkeypatch.setattr(compare_denoisers, 'trained_on', lambda d: seen)
  r = compare_denoisers.compare(str(denoise_run), **kw)
  assert r['left_out_trained_on'] == ['series_0_slice_0']
  assert r['sets']['user']['slices'] == ['series_0_slice_1 (64², 6.90 mm)']
  with pytest.raises(FileNotFoundError, match='nowhere'):
    compare_denoisers.compare(str(denoise_run), **{**kw, 'real_dir': str(tmp_path / 'nowhere')})
