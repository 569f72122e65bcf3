r"""Offline evaluation of a trained run: its configured evaluators, then the full report of its family.

  python -m aigc_jax.evaluate --workdir=runs/ct_local [--num=256] [--audit_train=0] [--seed=0]
      [--reference=tfds:NAME --data_dir=DIR] [--split=SPLIT] [--evals=all|none|NAME,NAME]

First the evaluators of the run's `config.evals` (the ones the trainer ran at intervals: sample grids and
their quick scores, restoration PSNR, reconstruction, classification accuracy) run once on the newest
checkpoint, written to `<workdir>/eval/` (TensorBoard, `<name>/<key>_<step>.png`). Then, for a generator or a
restoration run, the heavy report below; other families stop after their evaluators.

The generator report:

Samples `num` images from the latest EMA parameters (as `aigc_jax.sample`) and compares them with held-out
real slices of the run's own data (`pipeline.held_out_source`), never seen in training: for the phantom,
seed `config.data.seed + 1` (the slices `prepare --phantom` writes as its second split); for a prepared
dataset, its 'test' split, else its 'validation' split (`--split` picks another). A dataset without one is
refused before sampling, with the flags that give a reference: `--reference=tfds:NAME --data_dir=DIR`.
Reports, each with a bootstrap 95% interval where it is a mean over samples:
  realism      W1 between HU distributions (all pixels and per tissue band); share of plausible anatomy
               (body, lungs and bone found by HU thresholds and connected components), beside the reference's
  diversity    MS-SSIM of random sample pairs (lower: more diverse), beside the same for reference pairs
  memorization each sample's nearest training example (pixels) among every one the run was served (the
               whole training split after an epoch; `--audit_train=N` audits a random N of them), read
               in chunks: distance, the ratio nearest / second nearest with the second from another
               patient where the data records patients (adjacent slices of one scan are near-duplicates
               and would hide a copy), the share flagged as copies (ratio < `copy_ratio`), and the same
               distances for the reference images; the worst pairs saved side by side
  features     FID, KID (unbiased), k-NN precision/recall (k = 3) and the nearest training image, in the
               space of the feature network (`aigc_jax/imaging/features.py`; `--features=PATH`), named with its
               SHA-256, fed slices re-windowed to the HU window it was trained on (−1000…1000) whatever
               the run's window; the same FID/KID between held-out and training slices is the floor at
               this count; its nearest training image over the same audit set
  inception    with `--inception=PATH` (local InceptionV3 FID weights, `aigc_jax/imaging/inception.py`): the same
               figures in InceptionV3's pool features, the space FID is published in

An autoencoder (`config.task.name = 'vae'`) is sampled from its prior and also scored on reconstructing the
same held-out slices (PSNR, SSIM, RMSE in HU).

A restoration run (`config.task.name = 'restoration'`, e.g. configs/ct_denoise.py) is evaluated instead on
`num` held-out (low-dose, full-dose) pairs of the run's own data (as above; a prepared dataset's pairs are
its low_dose and image keys): PSNR, SSIM (in the config's HU window) and RMSE in HU of the
restored slice against the full-dose one, always beside the same metrics for the unprocessed low-dose input
(filtered back-projection), so the gain is visible.

Writes `<workdir>/eval/step_<step>[_<override><value>…].json`, TensorBoard scalars and images under `<workdir>/eval/`.
"""

import json
import os

from aigc_jax.core import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from aigc_jax.imaging import features as features_lib  # noqa: E402
from aigc_jax.imaging import inception as inception_lib  # noqa: E402
from aigc_jax.core import reporting  # noqa: E402
from aigc_jax.imaging import quality  # noqa: E402
from aigc_jax import experiment  # noqa: E402
from aigc_jax.core import workdir as workdir_lib  # noqa: E402
from aigc_jax.imaging import acquisition  # noqa: E402
from aigc_jax.core.privacy import accountant  # noqa: E402
from aigc_jax.data import pipeline  # noqa: E402

FLAGS = flags.FLAGS
GENERATORS = ('diffusion', 'gan', 'vae', 'latent_diffusion')  # tasks the generator report applies to


def define_flags():
  """Only for the command: importing this module (evaluate imports sample) must not define flags twice."""
  flags.DEFINE_string('workdir', None, 'A training workdir (config.json and checkpoints/).')
  flags.DEFINE_integer('num', 256, 'Generated images (and reference images) to compare.')
  flags.DEFINE_integer('audit_train', 0, 'Memorization audit: 0 compares with every training example the run '
                       'was served (the whole split after an epoch); N > 0 with a seeded random N of them.')
  flags.DEFINE_float('copy_ratio', 0.5, 'Flag a sample as a copy when nearest / second-nearest distance is below.')
  flags.DEFINE_string('reference', '', 'Held-out real images: "" for the run\'s own held-out data (phantom at '
                      'seed + 1, or the prepared dataset\'s test/validation split), or tfds:NAME.')
  flags.DEFINE_string('data_dir', '', 'TFDS data_dir of --reference (default: the run\'s config.data.data_dir).')
  flags.DEFINE_string('split', '', 'Split of the reference dataset (default: test, else validation).')
  flags.DEFINE_integer('seed', 0, 'Sampling and bootstrap seed.')
  flags.DEFINE_integer('batch', 16, 'Images per compiled sampling call.')
  flags.DEFINE_string('sampler', '', 'Override config.task.sampler (ddim | ddpm; euler | heun for flow).')
  flags.DEFINE_integer('sample_steps', 0, 'Override config.task.sample_steps; 0 keeps it.')
  flags.DEFINE_float('ddim_eta', -1.0, 'Override config.task.ddim_eta; negative keeps it.')
  flags.DEFINE_string('features', '', 'Feature network for FID/KID/precision/recall (default: the shipped '
                      'aigc_jax/imaging/assets/ct_features.msgpack; reports name its SHA-256).')
  flags.DEFINE_string('evals', 'all', 'The run\'s configured evaluators to run first: all, none, or names '
                      'from its config.evals separated by commas.')
  flags.DEFINE_string('inception', '', 'Local InceptionV3 FID weights (.npz of the PyTorch state dict, or .pth '
                      'with torch installed): adds FID/KID in its pool features. Nothing is downloaded.')


def _mean_ci(values, seed):
  values = np.asarray(values, np.float64)
  lo, hi = quality.bootstrap_ci(values, seed=seed)
  return {'mean': float(values.mean()), 'ci95': [lo, hi]}


def _pair_ms_ssim(images, data_range, seed, max_pairs=100):
  rng = np.random.default_rng(seed)
  n = len(images)
  pairs = [tuple(rng.choice(n, 2, replace=False)) for _ in range(min(max_pairs, n * (n - 1) // 2))]
  return [quality.ms_ssim(images[i], images[j], data_range) for i, j in pairs]


def evaluate_restoration(workdir: str, *, num: int = 256, seed: int = 0, reference: str = '', data_dir: str = '',
                         split: str = '') -> dict:
  """PSNR / SSIM / RMSE of restored and of low-dose slices against full dose, on held-out pairs of the run's
  own data (`pipeline.held_out_source`; refused, naming the flags, where it has none)."""
  d = workdir_lib.load_config(workdir).data
  low, full = pipeline.held_out_pairs(d, num, reference, data_dir, split)
  held_out = pipeline.held_out_source(d, reference, data_dir, split, num=num, pairs=True)[1]
  config, task, params, step = experiment.load_run(workdir)
  d = config.data
  lo, hi = d.window_lo, d.window_hi
  restore = jax.jit(lambda p, x: task.predict(p, {'low_dose': x}))
  x = pipeline.window(low, lo, hi)[..., None]
  out = np.concatenate([np.asarray(restore(params, x[i:i + 16])) for i in range(0, num, 16)])
  restored = pipeline.unwindow(np.clip(out[..., 0], -1, 1), lo, hi)
  clip = lambda a: np.clip(a, lo, hi)  # metrics in the window the model sees (the data range of PSNR/SSIM)
  rows = {}
  for name, img in (('low_dose_input', low), ('restored', restored)):
    per = {'psnr_db': [quality.psnr(clip(a), clip(b), hi - lo) for a, b in zip(img, full)],
           'ssim': [quality.ssim(clip(a), clip(b), hi - lo) for a, b in zip(img, full)],
           'rmse_hu': [quality.rmse(clip(a), clip(b)) for a, b in zip(img, full)]}
    rows[name] = {k: _mean_ci(v, seed) for k, v in per.items()}
  # The simulated dose describes the pairs only when they are the phantom's (not a prepared dataset's).
  simulated = not reference and d.name == 'phantom_ct'
  report = {'workdir': os.path.abspath(workdir), 'step': step, 'num_pairs': num,
            'held_out': held_out,
            **({'dose_per_mm2': [d.full_dose * d.low_dose_fraction, d.full_dose],  # [low, full], photons/mm²
                # What those doses mean: σ in the centre of a 300 mm water cylinder (an adult abdomen), this grid.
                'water_noise_hu': [acquisition.water_noise_hu(x, size=d.image_size, fov_mm=d.fov_mm)
                                   for x in (d.full_dose * d.low_dose_fraction, d.full_dose)]}
               if simulated else {}),
            'window_hu': [lo, hi], **rows,
            'psnr_gain_db': rows['restored']['psnr_db']['mean'] - rows['low_dose_input']['psnr_db']['mean']}
  out_dir = os.path.join(workdir, 'eval')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f'step_{step}.json'), 'w') as f:
    json.dump(report, f, indent=1)
  writer = reporting.Writer(out_dir)
  writer.scalars(step, {f'eval/{n}_{k}': v['mean'] for n, r in rows.items() for k, v in r.items()})
  writer.close()
  return report


def _reconstruction(workdir: str, real_hu: np.ndarray, seed: int) -> dict:
  """An autoencoder's PSNR / SSIM (in the window) and RMSE (HU) on the held-out slices it reconstructs."""
  config, task, params, _ = experiment.load_run(workdir)
  lo, hi = config.data.window_lo, config.data.window_hi
  recon_fn = jax.jit(task.reconstruct)
  x = pipeline.window(real_hu, lo, hi)[..., None]
  out = np.concatenate([np.asarray(recon_fn(params, x[i:i + 16])) for i in range(0, len(x), 16)])[..., 0]
  recon = pipeline.unwindow(out, lo, hi)
  return {'psnr_db': _mean_ci([quality.psnr(a, b, hi - lo) for a, b in zip(recon, real_hu)], seed),
          'ssim': _mean_ci([quality.ssim(a, b, hi - lo) for a, b in zip(recon, real_hu)], seed),
          'rmse_hu': _mean_ci([quality.rmse(a, b) for a, b in zip(recon, real_hu)], seed)}


def audit_indices(workdir: str, config: ml_collections.ConfigDict, step: int, limit: int = 0, seed: int = 0
                  ) -> np.ndarray:
  """Training-source indices of the memorization audit: every distinct example the run in `workdir` was served
  in its `step` steps (`pipeline.trained_indices`: the whole training split once it has passed an epoch; a
  private run's Poisson draws; examples never served cannot have been memorized); `limit` > 0 keeps a seeded
  random `limit` of them, in served order (quicker, may miss a copy)."""
  served = pipeline.trained_indices(workdir, config, step)
  if limit and limit < len(served):
    served = served[np.sort(np.random.default_rng(seed).choice(len(served), limit, replace=False))]
  if not len(served):
    raise ValueError(f'Step {step}: the run has not been served any training example; nothing to audit.')
  return served


class FeatureSpace:
  """A feature network as a function of slices in the run's window ([-1, 1]); `.net` names it in reports."""

  def __init__(self, net, window: tuple[float, float] | None = None):
    self.net, self.window = net, window

  def __call__(self, images: np.ndarray) -> np.ndarray:
    # The CT feature net re-windows to the HU window it was trained on; InceptionV3 sees the run's window.
    return self.net(images, window=self.window) if self.window else self.net(images)


def feature_spaces(config: ml_collections.ConfigDict, features: str = '', inception: str = '') -> dict:
  """{'features': the CT feature net (`features`, default the shipped one)[, 'inception': InceptionV3]}."""
  spaces = {'features': FeatureSpace(features_lib.Features(features),
                                     (config.data.window_lo, config.data.window_hi))}
  if inception:
    spaces['inception'] = FeatureSpace(inception_lib.InceptionFeatures(inception))
  return spaces


def nearest_training(config: ml_collections.ConfigDict, indices: np.ndarray, queries: dict, spaces: dict,
                     num_floor: int, chunk: int = 256) -> tuple[dict, dict, str]:
  """The nearest training examples at `indices` to each query, in each space, in one pass over the data.

  Args:
    config: the run's config.
    indices: training-source indices (`audit_indices`).
    queries: space name → query features (windowed slices for 'pixels').
    spaces: space name → function of windowed training slices [n, H, W] → that space.
    num_floor: also keep the features of the first `num_floor` audited examples (the FID/KID floor).
    chunk: training examples read and compared at a time (bounds memory, not the answer).

  Returns:
    (space → (index into `indices`, distance, nearest / second-nearest ratio) per query, with the second
    from another patient where the data records patients (`quality.nearest_neighbours`); space → floor
    features; what the examples are grouped by).
  """
  states = dict.fromkeys(spaces)
  floor = {name: [] for name in spaces}
  offset = 0
  for images, groups in pipeline.training_examples(config.data, indices, chunk):
    for name, fn in spaces.items():
      feats = fn(images)
      states[name] = quality.nearest_update(states[name], queries[name], feats, groups, offset)
      if offset < num_floor:
        floor[name].append(np.asarray(feats)[:num_floor - offset])
    offset += len(images)
  return ({k: quality.nearest_result(v) for k, v in states.items()},
          {k: np.concatenate(v) for k, v in floor.items() if v}, pipeline.example_groups(config.data))


def _feature_metrics(space: FeatureSpace, fg: np.ndarray, fr: np.ndarray, floor: np.ndarray, found, seed: int
                     ) -> dict:
  """FID, KID, precision/recall and the nearest training image in `space` (generated features `fg`, held-out
  `fr`); the same FID/KID between the held-out slices and as many training slices (`floor`) shows the floor
  at this sample count."""
  net, n = space.net, len(fg)
  precision, recall = quality.precision_recall(fr, fg, k=3)
  _, dist, ratio = found
  return {'network': net.name, 'path': os.path.abspath(net.path), 'sha256': net.sha256,
          **({'input_window_hu': list(features_lib.WINDOW_HU)} if space.window else {}),
          'fid': quality.frechet_distance(fg, fr), 'fid_real_vs_train': quality.frechet_distance(floor, fr),
          'kid': quality.kernel_inception_distance(fg, fr),
          'kid_real_vs_train': quality.kernel_inception_distance(floor, fr),
          'precision': precision, 'recall': recall, 'k': 3,
          'nn_distance': _mean_ci(dist[:n], seed), 'nn_distance_reference': _mean_ci(dist[n:], seed),
          'nn_ratio': _mean_ci(ratio[:n], seed)}


def evaluate(workdir: str, *, num: int = 256, audit_train: int = 0, copy_ratio: float = 0.5,
             reference: str = '', data_dir: str = '', split: str = '', seed: int = 0, batch: int = 16,
             features: str = '', inception: str = '', overrides: dict | None = None) -> dict:
  """The generator report (see the module doc); `overrides` replace config.task fields for sampling."""
  d = workdir_lib.load_config(workdir).data
  # The reference first: a run without held-out data is refused before any sampling.
  real = np.clip(pipeline.held_out_hu(d, num, reference, data_dir, split), d.window_lo, d.window_hi)
  reference_name = pipeline.held_out_source(d, reference, data_dir, split, num=num)[1]
  hu, step, config = experiment.generate(workdir, num=num, seed=seed, batch=batch, overrides=overrides)
  d = config.data
  lo, hi = d.window_lo, d.window_hi
  win = lambda x: pipeline.window(x, lo, hi)

  indices = audit_indices(workdir, config, step, audit_train, seed)
  spaces = {'pixels': lambda x: x, **feature_spaces(config, features, inception)}
  queries = np.concatenate([win(hu), win(real)])  # samples, then the reference (its distances for scale)
  q = {k: fn(queries) for k, fn in spaces.items()}
  found, floor, groups = nearest_training(config, indices, q, spaces, num_floor=len(real))
  idx, dist, ratio = (a[:num] for a in found['pixels'])
  ref_dist = found['pixels'][1][num:]
  copies = ratio < copy_ratio  # NaN (a single training patient: no second to compare) is not flagged

  anat_gen = [quality.anatomy(x) for x in hu]
  anat_ref = [quality.anatomy(x) for x in real]
  report = {
      'workdir': os.path.abspath(workdir), 'step': step, 'num_samples': num, 'sampling': dict(overrides or {}),
      'reference': reference_name,
      'realism': {
          'hu_w1': quality.hu_wasserstein(hu, real, seed=seed),
          'anatomy_plausible': _mean_ci([a['plausible'] for a in anat_gen], seed),
          'anatomy_plausible_reference': _mean_ci([a['plausible'] for a in anat_ref], seed),
          'found': {k: float(np.mean([a[k] for a in anat_gen])) for k in ('body', 'lungs', 'bone')},
      },
      'diversity': {
          'ms_ssim_pairs': _mean_ci(_pair_ms_ssim(win(hu), 2.0, seed), seed),
          'ms_ssim_pairs_reference': _mean_ci(_pair_ms_ssim(win(real), 2.0, seed), seed),
      },
      'memorization': {
          'space': 'pixels (windowed to [-1, 1])', 'train_examples': int(len(indices)),
          'served_examples': int(min(len(pipeline.make_source(d)), step * config.batch_size)),
          'second_nearest_from': f'another {groups}',
          'nn_distance': _mean_ci(dist, seed), 'nn_distance_reference': _mean_ci(ref_dist, seed),
          'nn_ratio': _mean_ci(ratio, seed), 'copy_ratio_threshold': copy_ratio,
          'flagged_share': float(copies.mean()), 'flagged': [int(i) for i in np.nonzero(copies)[0]],
      },
  }
  for name in ('features', 'inception'):
    if name in spaces:
      report[name] = _feature_metrics(spaces[name], q[name][:num], q[name][num:], floor[name], found[name], seed)
  if config.task.name == 'vae':
    report['reconstruction'] = _reconstruction(workdir, real, seed)
  out = os.path.join(workdir, 'eval')
  os.makedirs(out, exist_ok=True)
  # Another sampler's report goes beside the default one, named after what it changed.
  tag = ''.join(f'_{k}{v}' for k, v in sorted((overrides or {}).items()))
  with open(os.path.join(out, f'step_{step}{tag}.json'), 'w') as f:
    json.dump(report, f, indent=1)
  worst = np.argsort(ratio)[:8]  # closest to a single training patient: sample beside its neighbour
  nearest = np.concatenate([x for x, _ in pipeline.training_examples(d, indices[idx[worst]])])
  side = np.concatenate([win(hu)[worst], nearest], axis=2)[..., None]
  reporting.save_png(os.path.join(out, f'nearest_pairs_{step}{tag}.png'), reporting.image_grid(side, cols=2))
  writer = reporting.Writer(out)
  writer.scalars(step, {
      'eval/hu_w1': report['realism']['hu_w1']['all'],
      'eval/anatomy_plausible': report['realism']['anatomy_plausible']['mean'],
      'eval/ms_ssim_pairs': report['diversity']['ms_ssim_pairs']['mean'],
      'eval/nn_ratio': report['memorization']['nn_ratio']['mean'],
      'eval/flagged_share': report['memorization']['flagged_share'],
      'eval/fid': report['features']['fid'], 'eval/kid': report['features']['kid'],
      'eval/precision': report['features']['precision'], 'eval/recall': report['features']['recall'],
      **({'eval/inception_fid': report['inception']['fid'], 'eval/inception_kid': report['inception']['kid']}
         if inception else {})})
  writer.image(step, 'eval/nearest_pairs', reporting.image_grid(side, cols=2))
  writer.close()
  return report


def _sampling_overrides() -> dict:
  out = {}
  if FLAGS.sampler:
    out['sampler'] = FLAGS.sampler
  if FLAGS.sample_steps:
    out['sample_steps'] = FLAGS.sample_steps
  if FLAGS.ddim_eta >= 0:
    out['ddim_eta'] = FLAGS.ddim_eta
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  reporting.quiet_library_logs()
  if FLAGS.evals != 'none':
    names = () if FLAGS.evals == 'all' else tuple(n for n in FLAGS.evals.split(',') if n)
    outputs, step = experiment.run_evaluators(FLAGS.workdir, names=names)
    for name, out in outputs.items():
      print(f'{name} (step {step}): ' + ', '.join(f'{k} {v:.4g}' for k, v in out.scalars.items())
            + (f'; images {", ".join(out.images)} in {FLAGS.workdir}/eval/{name}/' if out.images else ''))
    record = accountant.read_record(FLAGS.workdir)
    if record:  # what the evaluated parameters promise, beside what they score
      print(accountant.statement(record, step))
  kind = workdir_lib.load_config(FLAGS.workdir).task.name
  if kind not in GENERATORS + ('restoration',):
    return
  fmt = lambda m: f'{m["mean"]:.3f} [{m["ci95"][0]:.3f}, {m["ci95"][1]:.3f}]'
  if kind == 'restoration':
    r = evaluate_restoration(FLAGS.workdir, num=FLAGS.num, seed=FLAGS.seed, reference=FLAGS.reference,
                             data_dir=FLAGS.data_dir, split=FLAGS.split)
    dose = (f', dose {r["dose_per_mm2"][0]:.3g} vs {r["dose_per_mm2"][1]:.3g} photons/mm² (σ '
            f'{r["water_noise_hu"][0]:.1f} vs {r["water_noise_hu"][1]:.1f} HU in 300 mm of water)'
            if 'dose_per_mm2' in r else '')
    print(f'step {r["step"]}, {r["num_pairs"]} held-out pairs ({r["held_out"]}){dose}, window {r["window_hu"]} HU')
    for name in ('low_dose_input', 'restored'):
      print(f'{name:15s} PSNR {fmt(r[name]["psnr_db"])} dB  SSIM {fmt(r[name]["ssim"])}  '
            f'RMSE {fmt(r[name]["rmse_hu"])} HU')
    print(json.dumps({'step': r['step'], 'psnr_gain_db': r['psnr_gain_db'],
                      'psnr_restored': r['restored']['psnr_db']['mean'],
                      'psnr_input': r['low_dose_input']['psnr_db']['mean']}))
    return
  r = evaluate(FLAGS.workdir, num=FLAGS.num, audit_train=FLAGS.audit_train, copy_ratio=FLAGS.copy_ratio,
               reference=FLAGS.reference, data_dir=FLAGS.data_dir, split=FLAGS.split, seed=FLAGS.seed,
               batch=FLAGS.batch, features=FLAGS.features, inception=FLAGS.inception, overrides=_sampling_overrides())
  real, div, mem, feat = r['realism'], r['diversity'], r['memorization'], r['features']
  print(f'step {r["step"]}, {r["num_samples"]} samples vs {r["reference"]}'
        + (f' (sampling {r["sampling"]})' if r['sampling'] else ''))
  print('HU W1 (HU): ' + ', '.join(f'{k} {v:.1f}' for k, v in real['hu_w1'].items()))
  print(f'plausible anatomy: {fmt(real["anatomy_plausible"])}  (reference {fmt(real["anatomy_plausible_reference"])})')
  print(f'MS-SSIM of pairs: {fmt(div["ms_ssim_pairs"])}  (reference {fmt(div["ms_ssim_pairs_reference"])})')
  print(f'nearest of {mem["train_examples"]} training images: distance {fmt(mem["nn_distance"])} (reference '
        f'{fmt(mem["nn_distance_reference"])}), ratio to the nearest of {mem["second_nearest_from"]} '
        f'{fmt(mem["nn_ratio"])}, flagged as copies {mem["flagged_share"]:.1%}')
  if 'reconstruction' in r:
    rec = r['reconstruction']
    print(f'reconstruction of the held-out slices: PSNR {fmt(rec["psnr_db"])} dB  SSIM {fmt(rec["ssim"])}  '
          f'RMSE {fmt(rec["rmse_hu"])} HU')
  for f in (feat, r.get('inception')):
    if f:
      print(f'in the features of {f["network"]}: FID {f["fid"]:.3f} (held-out vs training slices: '
            f'{f["fid_real_vs_train"]:.3f}), KID {f["kid"]:.4f} ({f["kid_real_vs_train"]:.4f}), '
            f'precision {f["precision"]:.3f}, recall {f["recall"]:.3f}, nearest training image ratio '
            f'{fmt(f["nn_ratio"])}')
  print(json.dumps({'step': r['step'], 'hu_w1': real['hu_w1']['all'],
                    'anatomy_plausible': real['anatomy_plausible']['mean'],
                    'ms_ssim_pairs': div['ms_ssim_pairs']['mean'], 'flagged_share': mem['flagged_share'],
                    'fid': feat['fid'], 'kid': feat['kid'], 'precision': feat['precision'],
                    'recall': feat['recall'], 'features_sha256': feat['sha256'],
                    **({'inception_fid': r['inception']['fid'], 'inception_kid': r['inception']['kid'],
                        'inception_sha256': r['inception']['sha256']} if 'inception' in r else {})}))


if __name__ == '__main__':
  define_flags()
  flags.mark_flag_as_required('workdir')
  app.run(runtime.exits_cleanly(main))
