r"""A trained denoiser beside the classical ones, at clinical scale, on held-out phantom slices and on real CT.

  python -m aigc_jax.compare_denoisers --workdir=runs/ct_denoise [--methods=tv,nlm,bm3d] [--seeds=3]
      [--dose_fraction=0.25] [--real=all|none|head,abdomen,...] [--real_dir=FOLDER] [--dihedral]
      [--out=FILE.json]

Test sets, scanned by the acquisition model at `dose_fraction` of the run's full dose (quarter dose: the Mayo
low-dose challenge's), each against the noiseless reconstruction of the same slice, scored in the body:
  phantom  `--test` held-out phantom slices (seed + 1, after the validation ones) at the run's grid
  real     the real CT reconstructions of `aigc_jax/imaging/real_ct.py` (head, abdomen), at their own pixel
           sizes: no training step sees them unless a run is given them as `data.bank_source` (then: below)
  real_processed  its post-processed brain frames (skull stripped, upsampled), apart: see real_ct.py
  user     with `--real_dir`, evenly spaced slices of your own full-dose CT series (DICOM or NIfTI), at their
           own pixel sizes, named by position only (series_<n>_slice_<k>)
A test slice the run trained on (in its `data.bank_source`, recognised by its pixels) is left out and named.
Each `--seeds` draws new quantum noise; figures are the mean ± sd over those draws of each set's mean.

Methods: the low-dose input (FBP), the run's model (`aigc_jax.denoise`'s path: EMA weights, the correction
applied inside the HU window; with `--dihedral` also `model_x8`, its mean over the 8 flips/quarter turns of the
slice), and the classical peers of `aigc_jax/imaging/denoisers.py`, each given the
noise σ it estimates on the slice times a strength α chosen on `--validation` other held-out phantom slices
(never on the test sets). RMSE (HU), PSNR (dB, over the 2000 HU of the −1000…1000 window) and SSIM (in that
window) inside the body, and per slice the RMSE in its soft tissue and in its bone (where a method loses);
seconds per slice on this machine. And on the quality-assurance object of `aigc_jax/imaging/nps_mtf.py` (water
cylinder with a bone rod at the run's grid): the noise σ and the mean frequency of the noise power spectrum (a
waxy output moves it down), and MTF50 / MTF10 of the rod's edge.

Writes `<workdir>/eval/compare_denoisers_step<step>.json` (or `--out`) and prints the tables.
"""

import json
import os
import sys

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from aigc_jax import restorer  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax.data import ct_bank  # noqa: E402
from aigc_jax.data import phantom  # noqa: E402
from aigc_jax.imaging import acquisition  # noqa: E402
from aigc_jax.imaging import denoisers  # noqa: E402
from aigc_jax.imaging import geometry  # noqa: E402
from aigc_jax.imaging import nps_mtf  # noqa: E402
from aigc_jax.imaging import quality  # noqa: E402
from aigc_jax.imaging import real_ct  # noqa: E402
from aigc_jax.imaging import scans  # noqa: E402

FLAGS = flags.FLAGS
WINDOW = (-1000.0, 1000.0)
TISSUES = {'soft': (-200.0, 200.0), 'bone': (300.0, np.inf)}  # HU of the noiseless reference


def define_flags():
  flags.DEFINE_string('workdir', None, 'A trained restoration run (configs/ct_denoise.py).')
  flags.DEFINE_list('methods', ['tv', 'nlm', 'bm3d'], 'Classical peers beside the input and the model.')
  flags.DEFINE_integer('seeds', 3, 'Quantum-noise draws of every test slice.')
  flags.DEFINE_float('dose_fraction', acquisition.LOW_DOSE_FRACTION, 'Test dose, as a fraction of the run\'s '
                     'full dose.')
  flags.DEFINE_integer('validation', 4, 'Held-out phantom slices the peers\' strength is chosen on.')
  flags.DEFINE_integer('test', 4, 'Held-out phantom test slices.')
  flags.DEFINE_list('real', ['all'], 'Real CT slices (aigc_jax/imaging/real_ct.py): all, none, or names.')
  flags.DEFINE_integer('real_size', 0, 'Resample the real slices to this side (same field of view) for a quick '
                       'check; 0 keeps their own grid.')
  flags.DEFINE_bool('dihedral', False, 'Also score the model averaged over the 8 flips/quarter turns (model_x8).')
  flags.DEFINE_string('real_dir', '', 'A folder of your own full-dose CT series: a test set "user" of their slices.')
  flags.DEFINE_integer('real_dir_slices', 4, 'Evenly spaced slices taken from each series of --real_dir.')
  flags.DEFINE_string('out', '', 'JSON path (default <workdir>/eval/compare_denoisers_step<step>.json).')


class _Slice:
  """A test object: its noiseless reconstruction, its sinogram (new noise per seed), its body and pixel."""

  def __init__(self, name, hu, fov_mm, fingerprint=''):
    self.name, self.size, self.fov_mm = name, hu.shape[0], fov_mm
    self.fingerprint = fingerprint  # of the slice as read (before any --real_size): is it one the run trained on?
    self.sino, self.theta = acquisition.project(hu, fov_mm=fov_mm)
    self.reference = acquisition.reconstruct(self.sino, self.theta, dose=0, rng=None, size=self.size, fov_mm=fov_mm)
    self.body = real_ct.body_mask(self.reference)

  def scan(self, dose, seed):
    return acquisition.reconstruct(self.sino, self.theta, dose=dose, rng=np.random.default_rng(seed),
                                   size=self.size, fov_mm=self.fov_mm)


def phantom_slices(d, first, count):
  return [_Slice(f'phantom_{i}', phantom.phantom_slice(d.seed + 1, i, d.image_size, lesion_prob=d.lesion_prob,
                                                       noise_std=0.0)[0], d.fov_mm) for i in range(first, first + count)]


def real_slices(names, size):
  out = []
  for s in real_ct.load_all(names):
    hu = s.hu if not size else real_ct.in_circle(geometry.fit_square(s.hu, size, fill=-1000.0)[0])
    out.append(_Slice(s.name, hu, s.fov_mm, real_ct.fingerprint(s.hu)))
  return out


def folder_slices(folder, per_series):
  """Evenly spaced slices of the series under `folder` as test objects (their own pixel sizes); slices without
  square pixels of known size are left out with a log line."""
  out = []
  for name, hu, spacing in scans.spaced_slices(folder, per_series):
    try:
      obj, pixel_mm = real_ct.as_object(hu, spacing)
    except ValueError as e:
      reporting.log(f'compare_denoisers: {name} of --real_dir left out: {e}')
      continue
    out.append(_Slice(name, obj, obj.shape[0] * pixel_mm, real_ct.fingerprint(obj)))
  return out


def trained_on(d) -> set[str]:
  """Fingerprints of the slices the run's bank_source gave its training (none without one)."""
  if not d.get('bank_source', ''):
    return set()
  try:
    objects = ct_bank.source_objects(d.bank_source, d.bank_source_slices, d.patch_size)
  except (OSError, ValueError) as e:
    reporting.log(f'compare_denoisers: cannot tell which test slices the run trained on ({e}); a test slice '
                  'from its bank_source would be scored as held out.')
    return set()
  return {real_ct.fingerprint(hu) for hu, _ in objects}


def _tissue_rmse(out, s) -> dict[str, float]:
  """RMSE in the body's soft tissue and in its bone (NaN where the slice has none): where a method loses."""
  out_rmse = {}
  for tissue, (lo, hi) in TISSUES.items():
    inside = s.body & (s.reference > lo) & (s.reference <= hi)
    out_rmse[tissue] = float(np.sqrt(np.mean((out[inside] - s.reference[inside]) ** 2))) if inside.any() else np.nan
  return out_rmse


def _finite_or_none(x) -> float | None:
  return float(x) if np.isfinite(x) else None  # JSON has no NaN: a tissue the slice lacks is null


def _scores(out, s):
  lo, hi = WINDOW
  err = out[s.body] - s.reference[s.body]
  rmse = float(np.sqrt(np.mean(err ** 2)))
  return {'rmse_hu': rmse, 'tissue': _tissue_rmse(out, s),
          'psnr_db': float(20 * np.log10((hi - lo) / max(rmse, 1e-9))),
          'ssim': quality.ssim(np.clip(out, lo, hi), np.clip(s.reference, lo, hi), hi - lo, mask=s.body)}


def _methods(model, peers, alphas, dihedral=False):
  fns = {'input': lambda x, s: x, 'model': lambda x, s: model(x[None])[0]}
  if dihedral:
    fns['model_x8'] = lambda x, s: model(x[None], dihedral=True)[0]
  for m in peers:
    fns[m] = lambda x, s, m=m: denoisers.apply(m, x, alphas[m], denoisers.noise_sigma_hu(x, s.body))
  return fns


def score_set(slices, fns, dose, seeds, salt):
  """{method: {metric: [mean over slices, one per seed], 'seconds': [...], 'per_slice': {name: [RMSE per seed]}},
  'input_noise_hu': [the noise index of each scanned input]}."""
  res = {m: {'rmse_hu': [], 'psnr_db': [], 'ssim': [], 'seconds': [], 'per_slice': {s.name: [] for s in slices},
             'tissue': {s.name: {t: [] for t in TISSUES} for s in slices}} for m in fns}
  res['input_noise_hu'] = []  # the noise index of every scanned input: what the peers are told
  outs = {m: {s.name: [] for s in slices} for m in fns}  # every output, for the split of the error below
  for seed in range(seeds):
    per = {m: [] for m in fns}
    for i, s in enumerate(slices):
      low = s.scan(dose, [salt, seed, i])
      res['input_noise_hu'].append(denoisers.noise_sigma_hu(low, s.body))
      for m, fn in fns.items():
        out, sec = denoisers.timed(fn, low, s)
        outs[m][s.name].append(out)
        per[m].append(_scores(out, s))
        res[m]['seconds'].append(sec)
        res[m]['per_slice'][s.name].append(per[m][-1]['rmse_hu'])
        for t, v in per[m][-1]['tissue'].items():
          res[m]['tissue'][s.name][t].append(v)
    for m in fns:
      for k in ('rmse_hu', 'psnr_db', 'ssim'):
        res[m][k].append(float(np.mean([p[k] for p in per[m]])))
  for m in fns:
    res[m]['split'] = {s.name: error_split(np.stack(outs[m][s.name]), s) for s in slices} if seeds > 1 else {}
  return res


def error_split(outs, s) -> dict[str, dict[str, float | None]]:
  """Per tissue, a method's error split over noise draws [D, H, W]: `changed`, the RMSE of its mean output
  against the reference (anatomy it alters: blur, shifted levels; the mean's own leftover noise, var / D, taken
  out), and `noise`, the sd it leaves from draw to draw. changed² + noise² ≈ RMSE²."""
  out = {}
  for tissue, (lo, hi) in TISSUES.items():
    inside = s.body & (s.reference > lo) & (s.reference <= hi)
    if not inside.any():
      out[tissue] = {'changed': None, 'noise': None}
      continue
    x = outs[:, inside]
    var = float(np.mean(x.var(axis=0, ddof=1)))
    bias2 = float(np.mean((x.mean(axis=0) - s.reference[inside]) ** 2)) - var / len(outs)
    out[tissue] = {'changed': float(np.sqrt(max(bias2, 0.0))), 'noise': float(np.sqrt(var))}
  return out


def texture_and_edges(fns, size, fov_mm, dose, seeds):
  """NPS σ and mean frequency, MTF50/10 of each method on the QA object (`nps_mtf`)."""
  qa = _Slice('qa_object', nps_mtf.test_object(size, fov_mm), fov_mm)
  qa.body = qa.reference > -500.0
  regions, px = nps_mtf.noise_regions(size, fov_mm), fov_mm / size
  outs = {m: [] for m in fns}
  for seed in range(seeds):
    low = qa.scan(dose, [7, seed])
    for m, fn in fns.items():
      outs[m].append(fn(low, qa))
  res = {}
  for m, o in outs.items():
    n = nps_mtf.nps(np.stack(o) - qa.reference, regions, px)
    edges = [nps_mtf.edge_mtf(x, px) for x in o]
    res[m] = {'noise_sigma_hu': n['sigma_hu'], 'nps_mean_frequency_per_mm': n['mean_frequency_per_mm'],
              'mtf50_per_mm': float(np.mean([e['mtf50_per_mm'] for e in edges])),
              'mtf10_per_mm': float(np.mean([e['mtf10_per_mm'] for e in edges]))}
  return res


def compare(workdir, *, methods, seeds, dose_fraction, validation, test, real, real_size=0, real_dir='',
            real_dir_slices=4, dihedral=False) -> dict:
  names = [] if real == ['none'] else (list(real_ct.SLICES) if real == ['all'] else real)
  unknown = sorted(set(names) - set(real_ct.NATIVE) - set(real_ct.PROCESSED))
  if unknown:
    raise ValueError(f'--real={",".join(unknown)}: not real CT slices of aigc_jax/imaging/real_ct.py; use all, none '
                     f'or some of {",".join(real_ct.SLICES)}.')
  model = restorer.Denoiser(workdir)
  d = model.config.data
  dose = d.full_dose * dose_fraction
  peers = []
  for m in methods:
    why = denoisers.available(m)
    if why:
      reporting.log(f'compare_denoisers: {m} left out: {why}')
    else:
      peers.append(m)
  val = phantom_slices(d, 0, validation)
  alphas, tuning = {}, {}
  for m in peers:
    pairs = [(s.scan(dose, [1, i]), s.reference, s.body) for i, s in enumerate(val)]
    alphas[m], tuning[m] = denoisers.tune(m, pairs)
    reporting.log(f'compare_denoisers: {m} strength α = {alphas[m]} on {validation} validation slices {tuning[m]}')
  fns = _methods(model, peers, alphas, dihedral)
  sets = {'phantom': phantom_slices(d, validation, test)}
  for key, group in (('real', real_ct.NATIVE), ('real_processed', real_ct.PROCESSED)):
    chosen = [n for n in names if n in group]
    if chosen:
      sets[key] = real_slices(chosen, real_size)
  if real_dir:
    sets['user'] = folder_slices(real_dir, real_dir_slices)
  seen, left_out = trained_on(d), []
  for key in list(sets):
    left_out += [s.name for s in sets[key] if s.fingerprint in seen]
    sets[key] = [s for s in sets[key] if s.fingerprint not in seen]
    if not sets[key]:
      del sets[key]
  if left_out:
    reporting.log(f'compare_denoisers: {", ".join(left_out)} left out: the run trained on them (data.bank_source)')
  report = {'workdir': os.path.abspath(workdir), 'step': model.step, 'dose_fraction': dose_fraction,
            'dose_per_mm2': dose, 'seeds': seeds, 'alpha': alphas, 'tuning_rmse_hu': tuning,
            'water_noise_hu': acquisition.water_noise_hu(dose, size=d.image_size, fov_mm=d.fov_mm, seeds=2),
            'left_out_trained_on': left_out, 'sets': {}}
  for name, slices in sets.items():
    res = score_set(slices, fns, dose, seeds, salt=2 + len(report['sets']))
    report['sets'][name] = {
        'slices': [f'{s.name} ({s.size}², {s.fov_mm / s.size:.2f} mm)' for s in slices],
        'input_noise_hu': float(np.mean(res.pop('input_noise_hu'))),
        **{m: {**{k: {'mean': float(np.mean(v)), 'sd': float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                  for k, v in r.items() if k not in ('seconds', 'per_slice', 'tissue', 'split')},
               'rmse_hu_per_slice': {n: float(np.mean(v)) for n, v in r['per_slice'].items()},
               'tissue_rmse_hu_per_slice': {n: {t: _finite_or_none(np.mean(x)) for t, x in v.items()}
                                            for n, v in r['tissue'].items()},
               'tissue_error_split_hu_per_slice': r['split'],
               'seconds_per_slice': float(np.median(r['seconds']))} for m, r in res.items()}}
    for m in fns:
      report['sets'][name][m]['gain_db'] = 20 * np.log10(report['sets'][name]['input']['rmse_hu']['mean'] /
                                                         report['sets'][name][m]['rmse_hu']['mean'])
  report['texture_and_edges'] = texture_and_edges(fns, d.image_size, d.fov_mm, dose, seeds)
  return report


def print_report(r):
  print(f'step {r["step"]}, dose {r["dose_fraction"]:g} of full ({r["dose_per_mm2"]:.3g} photons/mm²: σ '
        f'{r["water_noise_hu"]:.1f} HU in 300 mm of water), {r["seeds"]} noise draws; peers\' α {r["alpha"]}')
  for name, s in r['sets'].items():
    print(f'\n{name}: {", ".join(s["slices"])}')
    print('| method | RMSE in body (HU) | gain (dB) | PSNR (dB) | SSIM | s / slice |')
    print('| --- | --- | --- | --- | --- | --- |')
    for m, v in s.items():
      if isinstance(v, dict) and 'rmse_hu' in v:
        f = lambda k, p: f'{v[k]["mean"]:.{p}f} ± {v[k]["sd"]:.{p}f}'
        print(f'| {m} | {f("rmse_hu", 1)} | {v["gain_db"]:+.2f} | {f("psnr_db", 2)} | {f("ssim", 3)} | '
              f'{v["seconds_per_slice"]:.2f} |')
    methods = [m for m, v in s.items() if isinstance(v, dict) and 'rmse_hu' in v]
    print(f'\nRMSE in body (HU) per slice, mean over draws:\n| slice | {" | ".join(methods)} |\n|'
          + ' --- |' * (len(methods) + 1))
    for n in s[methods[0]]['rmse_hu_per_slice']:
      print(f'| {n} | ' + ' | '.join(f'{s[m]["rmse_hu_per_slice"][n]:.1f}' for m in methods) + ' |')
    print(f'\nRMSE (HU) in soft tissue ({TISSUES["soft"][0]:g}…{TISSUES["soft"][1]:g} HU) / bone (above '
          f'{TISSUES["bone"][0]:g} HU) per slice:\n| slice | {" | ".join(methods)} |\n|' + ' --- |' * (len(methods) + 1))
    cell = lambda v: '—' if v is None else f'{v:.1f}'  # None: the slice has none of that tissue
    for n, tissue in s[methods[0]]['tissue_rmse_hu_per_slice'].items():
      print(f'| {n} | ' + ' | '.join(' / '.join(cell(s[m]['tissue_rmse_hu_per_slice'][n][t]) for t in tissue)
                                      for m in methods) + ' |')
    if s[methods[0]]['tissue_error_split_hu_per_slice']:
      print('\nThat error split (HU), soft tissue; bone: anatomy changed (RMSE of the mean over draws) / noise left '
            f'(sd between draws):\n| slice | {" | ".join(methods)} |\n|' + ' --- |' * (len(methods) + 1))
      for n, tissue in s[methods[0]]['tissue_error_split_hu_per_slice'].items():
        print(f'| {n} | ' + ' | '.join('; '.join(
            '/'.join(cell(s[m]['tissue_error_split_hu_per_slice'][n][t][k]) for k in ('changed', 'noise'))
            for t in tissue) for m in methods) + ' |')
  print('\nQA object (noise in water, bone-rod edge):')
  print('| method | noise σ (HU) | NPS mean frequency (1/mm) | MTF50 (1/mm) | MTF10 (1/mm) |')
  print('| --- | --- | --- | --- | --- |')
  for m, v in r['texture_and_edges'].items():
    print(f'| {m} | {v["noise_sigma_hu"]:.1f} | {v["nps_mean_frequency_per_mm"]:.3f} | {v["mtf50_per_mm"]:.3f} | '
          f'{v["mtf10_per_mm"]:.3f} |')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  r = compare(FLAGS.workdir, methods=FLAGS.methods, seeds=FLAGS.seeds, dose_fraction=FLAGS.dose_fraction,
              validation=FLAGS.validation, test=FLAGS.test, real=FLAGS.real, real_size=FLAGS.real_size,
              real_dir=FLAGS.real_dir, real_dir_slices=FLAGS.real_dir_slices, dihedral=FLAGS.dihedral)
  path = FLAGS.out or os.path.join(FLAGS.workdir, 'eval', f'compare_denoisers_step{r["step"]}.json')
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(r, f, indent=1)
  print_report(r)
  print(f'\nwritten to {path}')
  sys.stdout.flush()


if __name__ == '__main__':
  define_flags()
  flags.mark_flag_as_required('workdir')
  app.run(runtime.exits_cleanly(main))
