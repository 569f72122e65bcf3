"""Restoration at clinical scale: the scan bank, the real CT test slices, the classical peers, and the noise
texture / edge measurements they are compared by."""

import numpy as np
import pytest
from scipy import ndimage

from aigc_jax.data import ct_bank
from aigc_jax.imaging import acquisition
from aigc_jax.imaging import denoisers
from aigc_jax.imaging import nps_mtf
from aigc_jax.imaging import real_ct


def test_real_ct_slices_load_in_hu_with_their_pixel_sizes_and_a_body():
  slices = {s.name: s for s in real_ct.load_all()}
  assert set(slices) == set(real_ct.SLICES)
  pixel = {'head': 0.478516, 'abdomen': 0.859375, 'brain_0': 0.388672, 'brain_1': 0.388672}
  for name, s in slices.items():
    assert s.hu.shape == (512, 512) and s.pixel_mm == pytest.approx(pixel[name])
    assert s.hu.min() >= -1000 and s.hu[0, 0] == -1000  # padding is air; outside the circle too
    body = real_ct.body_mask(s.hu)
    assert 0.1 < body.mean() < 0.8, name
    assert 0 < np.median(s.hu[body]) < 100, name  # soft tissue / brain in HU: the rescale was applied
  assert not np.array_equal(slices['brain_0'].hu, slices['brain_1'].hu)  # two frames, not one twice
  with pytest.raises(ValueError, match='not one of'):
    real_ct.load('knee')


def test_a_missing_real_slice_names_the_install(monkeypatch):
  from pydicom import data as pydicom_data  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(pydicom_data, 'get_testdata_file', lambda *a, **k: None)
  with pytest.raises(FileNotFoundError, match='requirements-data.txt'):
    real_ct.load('head')


def test_noise_index_reads_white_noise_and_ignores_smooth_anatomy():
  rng = np.random.default_rng(0)
  flat = rng.normal(0, 20.0, (256, 256))
  assert denoisers.noise_sigma_hu(flat) == pytest.approx(20.0, rel=0.05)
  ramp = np.add.outer(np.linspace(-300, 300, 256), np.zeros(256)) + flat  # a smooth gradient adds nothing
  assert denoisers.noise_sigma_hu(ramp) == pytest.approx(20.0, rel=0.05)
  mask = np.zeros((256, 256), bool)
  mask[:128] = True
  half = np.where(mask, flat, flat * 3)
  assert denoisers.noise_sigma_hu(half, mask) == pytest.approx(20.0, rel=0.07)
  with pytest.raises(ValueError, match='mask'):
    denoisers.noise_sigma_hu(flat, np.zeros((256, 256), bool))


def test_peers_are_tuned_on_validation_and_remove_noise(monkeypatch):
  rng = np.random.default_rng(1)
  clean = np.zeros((64, 64), np.float32)
  clean[16:48, 16:48] = 100.0
  mask = np.ones_like(clean, bool)
  pairs = [(clean + rng.normal(0, 30, clean.shape).astype(np.float32), clean, mask) for _ in range(2)]
  for method in ('tv', 'nlm', 'bm3d'):
    alpha, scores = denoisers.tune(method, pairs)
    assert set(scores) == set(denoisers.GRIDS[method]) and scores[alpha] == min(scores.values())
    low = pairs[0][0]
    out = denoisers.apply(method, low, alpha, denoisers.noise_sigma_hu(low))
    assert np.sqrt(np.mean((out - clean) ** 2)) < 0.5 * np.sqrt(np.mean((low - clean) ** 2)), method
  monkeypatch.setitem(__import__('sys').modules, 'bm3d', None)  # as if not installed
  assert 'requirements-peers.txt' in denoisers.available('bm3d')
  with pytest.raises(RuntimeError, match='requirements-peers.txt'):
    denoisers.apply('bm3d', clean, 1.0, 10.0)
  with pytest.raises(ValueError, match='unknown classical denoiser'):
    denoisers.available('wiener')


def test_mtf_of_a_known_blur_and_nps_of_known_noise():
  px = 400.0 / 256
  obj = nps_mtf.test_object(256, 400.0)
  for sigma_mm in (1.5, 3.0):
    blurred = ndimage.gaussian_filter(obj, sigma_mm / px)
    expected = np.sqrt(np.log(2) / (2 * np.pi ** 2)) / sigma_mm  # a Gaussian's MTF falls to 0.5 here
    assert nps_mtf.edge_mtf(blurred, px)['mtf50_per_mm'] == pytest.approx(expected, rel=0.12)
  rng = np.random.default_rng(2)
  white = rng.normal(0, 10.0, (4, 256, 256))
  regions = nps_mtf.noise_regions(256, 400.0)
  assert len(regions) >= 6
  for t, left, s in regions:  # all inside the water, none on the rod
    assert np.all(obj[t:t + s, left:left + s] == 0.0)
  w = nps_mtf.nps(white, regions, px)
  assert w['sigma_hu'] == pytest.approx(10.0, rel=0.05)
  smooth = nps_mtf.nps(np.stack([ndimage.gaussian_filter(x, 1.5) for x in white]), regions, px)
  assert smooth['mean_frequency_per_mm'] < 0.5 * w['mean_frequency_per_mm']  # the "waxy" direction


def test_bank_patches_are_reproducible_and_their_noise_scales_with_dose(tmp_path):
  kw = dict(seed=3, size=64, patch=16, num_examples=100, num_slices=2, fov_mm=400.0,
            full_dose=acquisition.FULL_DOSE, lesion_prob=0.3, noise_draws=1, cache_dir=str(tmp_path))
  a = ct_bank.PhantomPatches(dose_fractions=(0.05, 0.05), **kw)
  b = ct_bank.PhantomPatches(dose_fractions=(0.05, 0.05), **kw)
  for i in (0, 7):
    for k in ('hu', 'hu_low'):
      np.testing.assert_array_equal(a[i][k], b[i][k])  # a pure function of (seed, index), from the cache
  c = ct_bank.PhantomPatches(dose_fractions=(0.8, 0.8), **kw)
  ratio = np.std([a[i]['hu_low'] - a[i]['hu'] for i in range(40)]) / \
      np.std([c[i]['hu_low'] - c[i]['hu'] for i in range(40)])
  assert ratio == pytest.approx(4.0, rel=1e-4)  # the same noise images at √(0.8 / 0.05) times the amplitude
  files = sorted(p.name for p in (tmp_path / 'ct_bank').rglob('*.npz'))
  assert files == ['slice_0.npz', 'slice_1.npz']  # one folder for all three: the dose range is drawn, not banked
  # The banked noise is the acquisition model's at quarter dose: σ of a slice's noise against a direct scan.
  with np.load(next((tmp_path / 'ct_bank').rglob('slice_0.npz'))) as z:
    banked = z['noise'][0].astype(np.float32)
    ref = z['reference']
  clean = ct_bank.phantom.phantom_slice(3, 0, 64, lesion_prob=0.3, noise_std=0.0)[0]
  direct = acquisition.simulate(clean, dose=acquisition.FULL_DOSE * acquisition.LOW_DOSE_FRACTION,
                                rng=np.random.default_rng(9)) - ref
  body = real_ct.body_mask(ref)
  assert banked[body].std() == pytest.approx(direct[body].std(), rel=0.15)
  with pytest.raises(ValueError, match='dose_fractions'):
    ct_bank.PhantomPatches(dose_fractions=(0.5, 0.1), **kw)


def test_tissue_texture_is_added_inside_the_body_of_its_own_bank(tmp_path):
  kw = dict(seed=3, size=64, patch=16, num_examples=10, num_slices=1, fov_mm=400.0, full_dose=acquisition.FULL_DOSE,
            dose_fractions=(0.25, 0.25), lesion_prob=0.3, noise_draws=1, cache_dir=str(tmp_path))
  plain, textured = ct_bank.PhantomPatches(**kw), ct_bank.PhantomPatches(texture_hu=(10.0, 10.0), **kw)
  assert plain.folder != textured.folder  # banks of textured and uniform tissue never mix
  assert plain.folder.endswith(ct_bank.bank_key(3, 1, 64, 400.0, acquisition.FULL_DOSE, 0.3, 1))  # old keys kept
  a, b = plain.bank[0]['reference'], textured.bank[0]['reference']
  clean = ct_bank.phantom.phantom_slice(3, 0, 64, lesion_prob=0.3, noise_std=0.0)[0]
  field = ct_bank.tissue_texture(3, 0, 64, 400.0, (10.0, 10.0))
  assert field.std() == pytest.approx(10.0, rel=1e-4) and abs(field.mean()) < 5.0
  np.testing.assert_array_equal(field, ct_bank.tissue_texture(3, 0, 64, 400.0, (10.0, 10.0)))
  # The scan is linear in the object: the difference of the two references is the scanned texture, in the body.
  diff = b - a
  body, air = real_ct.body_mask(a), ndimage.binary_erosion(clean <= -950.0, iterations=3)
  assert 5.0 < diff[body].std() < 12.0
  assert np.abs(diff[air & (np.hypot(*np.mgrid[-32:32, -32:32]) < 28)]).max() < 0.3 * np.abs(diff[body]).max()
  with pytest.raises(ValueError, match='bank_texture_hu'):
    ct_bank.PhantomPatches(texture_hu=(10.0,), **kw)
  with pytest.raises(ValueError, match='bank_fov_range_mm'):
    ct_bank.PhantomPatches(fov_range_mm=(300.0, 200.0), **kw)


def test_a_smaller_field_of_view_is_a_smaller_quieter_patient_at_finer_pixels(tmp_path):
  fovs = [ct_bank.slice_fov_mm(3, j, 400.0, (250.0, 500.0)) for j in range(50)]
  assert 250.0 <= min(fovs) < 280.0 and 450.0 < max(fovs) <= 500.0 and ct_bank.slice_fov_mm(3, 0, 400.0) == 400.0
  kw = dict(size=64, full_dose=acquisition.FULL_DOSE, lesion_prob=0.3, noise_draws=1)
  wide = ct_bank.scan_slice(3, 0, fov_mm=500.0, **kw)
  small = ct_bank.scan_slice(3, 0, fov_mm=500.0, fov_range_mm=(250.0, 250.0), **kw)
  np.testing.assert_allclose(small['reference'], wide['reference'], atol=25.0)  # the same object in pixels ...
  body = real_ct.body_mask(wide['reference'])
  ratio = small['noise'][0][body].astype(np.float32).std() / wide['noise'][0][body].astype(np.float32).std()
  # ... at half the size: the shorter paths lose far fewer photons than the finer pixels cost (measured 0.33)
  assert 0.2 < ratio < 0.6


def test_noise_conditioning_feeds_the_estimated_level_and_returns_the_image_channel():
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from aigc_jax import registry  # pylint: disable=g-import-not-at-top
  from aigc_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from aigc_jax.tasks import restoration  # pylint: disable=g-import-not-at-top
  from configs import ct_denoise  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  hu = np.stack([rng.normal(40, s, (64, 64)) for s in (30.0, 8.0)]).astype(np.float32)
  hu[:, :4] = -1000.0  # air: outside the body, not counted
  x = jnp.asarray(pipeline.window(hu, -1000, 1000)[..., None])
  np.testing.assert_allclose(np.asarray(restoration.noise_index(x)) * 1000.0,
                             [denoisers.noise_sigma_hu(h, h > -500) for h in hu], rtol=1e-4)
  c = ct_denoise.get_config('test')
  c.task.noise_conditioning = True
  task = registry.build_task(c)
  params = task.init(jax.random.PRNGKey(0), {'low_dose': x})
  assert task.predict(params, {'low_dose': x}).shape == x.shape  # the image channel only
  level = task._inputs(x)[:, 0, 0, 1]
  np.testing.assert_allclose(level, restoration.noise_index(x) / task.noise_scale, rtol=1e-6)
  assert float(level[0]) == pytest.approx(1.0, rel=0.1)  # 30 HU: the unit of the channel
  # Another window: the same level in HU, measured on the same body (-500 HU, not -0.5 in window units).
  hu[1, :, 4:12] = -300.0  # fat-like tissue in the body: inside at any window
  c.data.window_hi = 3000.0
  wide = registry.build_task(c)
  levels = lambda t, hi: np.asarray(t._inputs(jnp.asarray(pipeline.window(hu, -1000, hi)[..., None]))[:, 0, 0, 1])
  np.testing.assert_allclose(levels(wide, 3000.0), levels(task, 1000.0), rtol=1e-4)
  c.model.name = 'conv_autoencoder'
  with pytest.raises(ValueError, match='red_cnn'):
    registry.build_task(c)


def _nifti_folder(folder, slices, pixel_mm):
  """A NIfTI volume of `slices` [N, n, n] in HU at `pixel_mm` pixels, as a user's full-dose series."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  folder.mkdir()
  vol = np.round(np.stack(slices).transpose(2, 1, 0)).astype(np.int16)
  nib.save(nib.Nifti1Image(vol, np.diag([pixel_mm, pixel_mm, 5.0, 1.0])), str(folder / 'series.nii.gz'))
  return str(folder)


def test_a_folder_of_real_scans_is_banked_at_its_own_pixel_size_beside_the_phantom(tmp_path, capsys):
  head = real_ct.load('head')
  small = real_ct.in_circle(ndimage.zoom(head.hu, 64 / 512, order=1))  # the real head at 64², 3.8 mm pixels
  folder = _nifti_folder(tmp_path / 'scans', [small, np.roll(small, 5, axis=1)], head.fov_mm / 64)
  kw = dict(seed=3, size=64, patch=16, num_examples=400, num_slices=1, fov_mm=400.0, full_dose=acquisition.FULL_DOSE,
            dose_fractions=(0.25, 0.25), lesion_prob=0.3, noise_draws=1, cache_dir=str(tmp_path / 'cache'))
  plain = ct_bank.PhantomPatches(**kw)
  mixed = ct_bank.PhantomPatches(source=folder, source_share=0.5, **kw)
  assert len(mixed.sources) == 2 and plain.sources == []
  # Half of the examples from the scans (their own stream: the phantom's examples are the ones it had before).
  picks = [any(mixed._pick(i, np.random.default_rng([3, i, 2])) is s for s in mixed.sources) for i in range(400)]
  assert 0.4 < np.mean(picks) < 0.6
  i = picks.index(False)
  np.testing.assert_array_equal(mixed[i]['hu'], plain[i]['hu'])
  # Scanned at the series' own pixel size: the same object scanned directly, noiseless and at quarter dose.
  obj, pixel_mm = ct_bank.source_objects(folder, 2)[0]
  assert pixel_mm == pytest.approx(head.fov_mm / 64, rel=1e-3)
  direct = ct_bank.scan_object(obj, pixel_mm, acquisition.FULL_DOSE, 1, np.random.default_rng(0))
  np.testing.assert_allclose(mixed.sources[0]['reference'], direct['reference'], atol=1e-3)
  body = real_ct.body_mask(direct['reference'])
  banked = mixed.sources[0]['noise'][0].astype(np.float32)
  assert banked[body].std() == pytest.approx(direct['noise'][0].astype(np.float32)[body].std(), rel=0.15)
  # Its bank holds pixels only, keyed by them; the test slice is recognised whichever reader decoded it.
  files = sorted(p.relative_to(tmp_path / 'cache' / 'ct_bank').as_posix() for p in (tmp_path / 'cache').rglob('*.npz'))
  assert [f.split('/')[1] for f in files if f.startswith('source_')] == ['slice_0.npz', 'slice_1.npz']
  with np.load(next((tmp_path / 'cache').rglob('source_*/slice_0.npz'))) as z:
    assert sorted(z.files) == ['noise', 'reference']
  assert real_ct.fingerprint(obj) == real_ct.fingerprint(ct_bank.source_objects(folder, 2)[0][0])
  other_seed = ct_bank.PhantomPatches(source=folder, source_share=0.5, **{**kw, 'seed': 4})
  assert other_seed.source_folder != mixed.source_folder  # its own noise draws, not the first run's
  with pytest.raises(FileNotFoundError, match='bank_source'):
    _ = ct_bank.PhantomPatches(source=str(tmp_path / 'nowhere'), **kw).sources
  with pytest.raises(ValueError, match='bank_source_share'):
    ct_bank.PhantomPatches(source=folder, source_share=0.0, **kw)
  # A DICOM series with identifiers planted in its header: none reaches the bank's files or the log.
  import scan_files  # pylint: disable=g-import-not-at-top
  from test_prepare import PLANTED  # pylint: disable=g-import-not-at-top
  scan_files.ct_series(str(tmp_path / 'dicom' / 'patient_a'), 2, PLANTED)
  dicom = ct_bank.PhantomPatches(source=str(tmp_path / 'dicom'), **{**kw, 'cache_dir': str(tmp_path / 'c2')})
  assert [s['reference'].shape for s in dicom.sources] == [(128, 128)] * 2 and dicom[0]['hu'].shape == (16, 16)
  blob = b''.join(p.read_bytes() for p in (tmp_path / 'c2').rglob('*') if p.is_file()) + \
      str(sorted((tmp_path / 'c2').rglob('*'))).encode() + capsys.readouterr().out.encode()
  for value in list(PLANTED.values()) + ['patient_a']:
    assert value.encode() not in blob, value


def test_photographs_are_banked_as_objects_beside_the_phantom(tmp_path):
  from aigc_jax.data import photos  # pylint: disable=g-import-not-at-top
  objs = photos.objects((150.0, 1000.0), size=32)
  assert len(objs) == 2 * len(photos.NAMES)
  for (narrow, px), (wide, px2) in zip(objs[0::2], objs[1::2]):
    assert narrow.shape[0] == narrow.shape[1] <= 32 and px == px2 and 0.5 <= px <= 0.9
    inside = real_ct.in_circle(np.zeros_like(narrow)) == 0  # the object; air outside its circle
    assert (narrow[~inside] == -1000).all() and narrow[inside].std() > 1.0
    np.testing.assert_allclose(wide[inside] - 40.0, (narrow[inside] - 40.0) * 1000 / 150, rtol=1e-4, atol=1e-2)
  assert {px for _, px in objs} >= {0.5, 0.9}  # small quiet objects and large ones
  kw = dict(seed=3, size=32, patch=16, num_examples=200, num_slices=1, fov_mm=400.0, full_dose=acquisition.FULL_DOSE,
            dose_fractions=(0.25, 0.25), lesion_prob=0.3, noise_draws=1, cache_dir=str(tmp_path / 'cache'))
  plain = ct_bank.PhantomPatches(**kw)
  mixed = ct_bank.PhantomPatches(photo_share=0.5, **kw)
  assert len(mixed.photos) == len(objs) and plain.photos == []
  picks = [any(mixed._pick(i, np.random.default_rng([3, i, 2])) is s for s in mixed.photos) for i in range(200)]
  assert 0.35 < np.mean(picks) < 0.65
  i = picks.index(False)
  np.testing.assert_array_equal(mixed[i]['hu'], plain[i]['hu'])  # the phantom's examples are the ones it had
  j = picks.index(True)
  assert mixed[j]['hu'].shape == (16, 16) and mixed[j]['hu'].std() > 5.0
  np.testing.assert_allclose(mixed.photos[0]['reference'], ct_bank.scan_object(
      objs[0][0], objs[0][1], acquisition.FULL_DOSE, 1, np.random.default_rng(0))['reference'], atol=1e-3)
  assert [p.name for p in (tmp_path / 'cache' / 'ct_bank').iterdir() if p.name.startswith('photos_')]
  with pytest.raises(ValueError, match='bank_photo_share'):
    ct_bank.PhantomPatches(photo_share=1.5, **kw)
  with pytest.raises(ValueError, match='bank_photo_spans_hu'):
    photos.objects((0.0,), size=32)
  with pytest.raises(FileNotFoundError, match='astronaut.png.*bank_photo_share=0'):
    photos.objects(folder=str(tmp_path))


def test_the_error_split_tells_anatomy_changed_from_noise_left():
  import types  # pylint: disable=g-import-not-at-top
  from aigc_jax import compare_denoisers  # pylint: disable=g-import-not-at-top
  ref = np.full((64, 64), 40.0, np.float32)
  ref[20:40, 20:40] = 700.0  # bone
  s = types.SimpleNamespace(reference=ref, body=np.ones_like(ref, bool))
  rng = np.random.default_rng(0)
  shifted = np.stack([ref + 5.0] * 6)                                       # anatomy changed, no noise
  noisy = np.stack([ref + rng.normal(0, 3.0, ref.shape) for _ in range(6)])  # noise left, anatomy kept
  a, b = compare_denoisers.error_split(shifted, s), compare_denoisers.error_split(noisy, s)
  for tissue in ('soft', 'bone'):
    assert a[tissue]['changed'] == pytest.approx(5.0) and a[tissue]['noise'] == 0.0
    assert b[tissue]['changed'] < 0.3 and b[tissue]['noise'] == pytest.approx(3.0, rel=0.05)
  ref[20:40, 20:40] = 40.0
  assert compare_denoisers.error_split(shifted, s)['bone'] == {'changed': None, 'noise': None}  # no bone there
