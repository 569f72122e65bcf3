r"""Offline evaluation of a trained generator: realism, anatomy, diversity and a memorization audit.

  python -m aigc_jax.evaluate --workdir=runs/ct_local [--num=256] [--audit_train=2048] [--seed=0]
      [--reference=tfds:NAME --data_dir=DIR --split=test]

Samples `num` images from the latest EMA parameters (as `aigc_jax.sample`) and compares them with held-out
real slices: by default the phantom at seed `config.data.seed + 1` (never seen in training; the same slices
`prepare --phantom` writes as its second split), or a prepared dataset's split. Reports, each with a
bootstrap 95% interval where it is a mean over samples:
  realism      W1 between HU distributions (all pixels and per tissue band); share of plausible anatomy
               (body, lungs and bone found by HU thresholds and connected components), beside the reference's
  diversity    MS-SSIM of random sample pairs (lower: more diverse), beside the same for reference pairs
  memorization each sample's nearest of `audit_train` training examples the run saw (pixels): distance, the
               ratio nearest / second nearest, the share flagged as copies (ratio < `copy_ratio`), and the
               same distances for the reference images; the worst pairs saved side by side
  features     FID, KID (unbiased), k-NN precision/recall (k = 3) and the nearest training image, in the
               space of the feature network (`aigc_jax/features.py`; `--features=PATH`), named with its
               SHA-256; the same FID/KID between held-out and training slices is the floor at this count
  inception    with `--inception=PATH` (local InceptionV3 FID weights, `aigc_jax/inception.py`): the same
               figures in InceptionV3's pool features, the space FID is published in

An autoencoder (`config.task.name = 'vae'`) is sampled from its prior and also scored on reconstructing the
held-out slices (PSNR, SSIM, RMSE in HU).

A restoration run (`config.task.name = 'restoration'`, e.g. configs/ct_denoise.py) is evaluated instead on
`num` held-out (low-dose, full-dose) pairs: PSNR, SSIM (in the config's HU window) and RMSE in HU of the
restored slice against the full-dose one, always beside the same metrics for the unprocessed low-dose input
(filtered back-projection), so the gain is visible.

Writes `<workdir>/eval/step_<step>[_<override><value>…].json`, TensorBoard scalars and images under `<workdir>/eval/`.
"""

import json
import os

from aigc_jax import runtime

runtime.apply(__name__)  # before jax is imported; a command re-executes itself once (runtime.py)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from aigc_jax import features as features_lib  # noqa: E402
from aigc_jax import inception as inception_lib  # noqa: E402
from aigc_jax import metrics  # noqa: E402
from aigc_jax import quality  # noqa: E402
from aigc_jax import sample  # noqa: E402
from aigc_jax.data import pipeline  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  """Only for the command: importing this module (evaluate imports sample) must not define flags twice."""
  flags.DEFINE_string('workdir', None, 'A training workdir (config.json and checkpoints/).')
  flags.DEFINE_integer('num', 256, 'Generated images (and reference images) to compare.')
  flags.DEFINE_integer('audit_train', 2048, 'Training examples (the first the run saw) for the memorization audit.')
  flags.DEFINE_float('copy_ratio', 0.5, 'Flag a sample as a copy when nearest / second-nearest distance is below.')
  flags.DEFINE_string('reference', '', 'Held-out real images: "" for the phantom at seed+1, or tfds:NAME.')
  flags.DEFINE_string('data_dir', '', 'TFDS data_dir of --reference.')
  flags.DEFINE_string('split', 'test', 'Split of --reference.')
  flags.DEFINE_integer('seed', 0, 'Sampling and bootstrap seed.')
  flags.DEFINE_integer('batch', 16, 'Images per compiled sampling call.')
  flags.DEFINE_string('sampler', '', 'Override config.task.sampler (ddim | ddpm; euler | heun for flow).')
  flags.DEFINE_integer('sample_steps', 0, 'Override config.task.sample_steps; 0 keeps it.')
  flags.DEFINE_float('ddim_eta', -1.0, 'Override config.task.ddim_eta; negative keeps it.')
  flags.DEFINE_string('features', '', 'Feature network for FID/KID/precision/recall (default: the shipped '
                      'aigc_jax/assets/ct_features.msgpack; reports name its SHA-256).')
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


def evaluate_restoration(workdir: str, *, num: int = 256, seed: int = 0) -> dict:
  """PSNR / SSIM / RMSE of restored and of low-dose slices against full dose, on held-out phantom pairs."""
  config, task, params, step = sample.load_run(workdir)
  d = config.data
  low, full = pipeline.held_out_pairs(d, num)
  lo, hi = d.window_lo, d.window_hi
  restore = jax.jit(lambda p, x: task.restore(p, x))
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
  report = {'workdir': os.path.abspath(workdir), 'step': step, 'num_pairs': num,
            'held_out': f'phantom_ct seed {d.seed + 1}', 'dose_photons': [d.low_photons, d.full_photons],
            'window_hu': [lo, hi], **rows,
            'psnr_gain_db': rows['restored']['psnr_db']['mean'] - rows['low_dose_input']['psnr_db']['mean']}
  out_dir = os.path.join(workdir, 'eval')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f'step_{step}.json'), 'w') as f:
    json.dump(report, f, indent=1)
  writer = metrics.Writer(out_dir)
  writer.scalars(step, {f'eval/{n}_{k}': v['mean'] for n, r in rows.items() for k, v in r.items()})
  writer.close()
  return report


def _reconstruction(workdir: str, real_hu: np.ndarray, seed: int) -> dict:
  """An autoencoder's PSNR / SSIM (in the window) and RMSE (HU) on the held-out slices it reconstructs."""
  config, task, params, _ = sample.load_run(workdir)
  lo, hi = config.data.window_lo, config.data.window_hi
  recon_fn = jax.jit(task.reconstruct)
  x = pipeline.window(real_hu, lo, hi)[..., None]
  out = np.concatenate([np.asarray(recon_fn(params, x[i:i + 16])) for i in range(0, len(x), 16)])[..., 0]
  recon = pipeline.unwindow(out, lo, hi)
  return {'psnr_db': _mean_ci([quality.psnr(a, b, hi - lo) for a, b in zip(recon, real_hu)], seed),
          'ssim': _mean_ci([quality.ssim(a, b, hi - lo) for a, b in zip(recon, real_hu)], seed),
          'rmse_hu': _mean_ci([quality.rmse(a, b) for a, b in zip(recon, real_hu)], seed)}


def _feature_metrics(net, gen: np.ndarray, real: np.ndarray, train: np.ndarray, seed: int) -> dict:
  """FID, KID, precision/recall and the nearest training image in `net`'s space (windowed slices in [0, 1]
  → features); the same FID/KID between the held-out slices and as many training slices shows the floor at
  this sample count."""
  fg, fr, ft = net(gen), net(real), net(train)
  floor = ft[:len(fr)]
  precision, recall = quality.precision_recall(fr, fg, k=3)
  _, dist, ratio = quality.nearest_neighbours(fg, ft)
  _, ref_dist, _ = quality.nearest_neighbours(fr, ft)
  return {'network': net.name, 'path': os.path.abspath(net.path), 'sha256': net.sha256,
          'fid': quality.frechet_distance(fg, fr), 'fid_real_vs_train': quality.frechet_distance(floor, fr),
          'kid': quality.kernel_inception_distance(fg, fr),
          'kid_real_vs_train': quality.kernel_inception_distance(floor, fr),
          'precision': precision, 'recall': recall, 'k': 3,
          'nn_distance': _mean_ci(dist, seed), 'nn_distance_reference': _mean_ci(ref_dist, seed),
          'nn_ratio': _mean_ci(ratio, seed)}


def evaluate(workdir: str, *, num: int = 256, audit_train: int = 2048, copy_ratio: float = 0.5,
             reference: str = '', data_dir: str = '', split: str = 'test', seed: int = 0, batch: int = 16,
             features: str = '', inception: str = '', overrides: dict | None = None) -> dict:
  """The generator report (see the module doc); `overrides` replace config.task fields for sampling."""
  hu, step, config = sample.generate(workdir, num=num, seed=seed, batch=batch, overrides=overrides)
  d = config.data
  lo, hi = d.window_lo, d.window_hi
  real = np.clip(pipeline.held_out_hu(d, num, reference, data_dir, split), lo, hi)
  train = pipeline.first_images(config.data, audit_train, config.batch_size)
  win = lambda x: pipeline.window(x, lo, hi)

  anat_gen = [quality.anatomy(x) for x in hu]
  anat_ref = [quality.anatomy(x) for x in real]
  idx, dist, ratio = quality.nearest_neighbours(win(hu), train)
  _, ref_dist, _ = quality.nearest_neighbours(win(real), train)
  copies = ratio < copy_ratio
  report = {
      'workdir': os.path.abspath(workdir), 'step': step, 'num_samples': num, 'sampling': dict(overrides or {}),
      'reference': reference or f'phantom_ct seed {d.seed + 1} (held out)',
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
          'space': 'pixels (windowed to [-1, 1])', 'train_examples': int(len(train)),
          'nn_distance': _mean_ci(dist, seed), 'nn_distance_reference': _mean_ci(ref_dist, seed),
          'nn_ratio': _mean_ci(ratio, seed), 'copy_ratio_threshold': copy_ratio,
          'flagged_share': float(copies.mean()), 'flagged': [int(i) for i in np.nonzero(copies)[0]],
      },
  }
  report['features'] = _feature_metrics(features_lib.Features(features), win(hu), win(real), train, seed)
  if inception:
    report['inception'] = _feature_metrics(inception_lib.InceptionFeatures(inception), win(hu), win(real), train,
                                           seed)
  if config.task.name == 'vae':
    report['reconstruction'] = _reconstruction(workdir, real, seed)
  out = os.path.join(workdir, 'eval')
  os.makedirs(out, exist_ok=True)
  # Another sampler's report goes beside the default one, named after what it changed.
  tag = ''.join(f'_{k}{v}' for k, v in sorted((overrides or {}).items()))
  with open(os.path.join(out, f'step_{step}{tag}.json'), 'w') as f:
    json.dump(report, f, indent=1)
  worst = np.argsort(ratio)[:8]  # closest to a single training image: sample beside its neighbour
  side = np.concatenate([win(hu)[worst], train[idx[worst]]], axis=2)[..., None]
  metrics.save_png(os.path.join(out, f'nearest_pairs_{step}{tag}.png'), metrics.image_grid(side, cols=2))
  writer = metrics.Writer(out)
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
  writer.image(step, 'eval/nearest_pairs', metrics.image_grid(side, cols=2))
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
  metrics.quiet_library_logs()
  fmt = lambda m: f'{m["mean"]:.3f} [{m["ci95"][0]:.3f}, {m["ci95"][1]:.3f}]'
  if sample.load_config(FLAGS.workdir).task.name == 'restoration':
    r = evaluate_restoration(FLAGS.workdir, num=FLAGS.num, seed=FLAGS.seed)
    print(f'step {r["step"]}, {r["num_pairs"]} held-out pairs ({r["held_out"]}), photons/ray '
          f'{r["dose_photons"][0]:g} vs {r["dose_photons"][1]:g}, window {r["window_hu"]} HU')
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
  print(f'nearest training image: distance {fmt(mem["nn_distance"])} (reference {fmt(mem["nn_distance_reference"])}), '
        f'ratio {fmt(mem["nn_ratio"])}, flagged as copies {mem["flagged_share"]:.1%}')
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
  app.run(main)
