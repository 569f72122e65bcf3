"""The command line as a user runs it, in a subprocess (flags, config overrides, resume)."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pydicom
from pydicom import pixels
import scan_files

from aigc_jax.imaging import features

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args):
  return subprocess.run([sys.executable, '-m', 'aigc_jax.main', *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)


def test_main_trains_then_resumes(tmp_path):
  workdir = str(tmp_path / 'run')
  first = _main('--config=configs/ct.py:test', f'--workdir={workdir}', '--config.num_steps=2',
                '--config.log_every=1')
  assert first.returncode == 0, first.stderr[-3000:]
  assert 'scratch at step 0' in first.stderr and 'step 2/2  loss' in first.stderr
  assert os.path.exists(os.path.join(workdir, 'samples', 'samples_0000002.png'))
  # Library chatter is filtered: a run's log is our lines plus warnings, not orbax's 40 lines a save.
  assert 'orbax' not in first.stderr.split('Config:')[-1].split('scratch at step 0')[-1].lower()
  again = _main('--config=configs/ct.py:test', f'--workdir={workdir}', '--config.num_steps=3')
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'resumed at step 2' in again.stderr and 'step 3/3' in again.stderr

  # The sampling command on that run: EMA params of the latest checkpoint → a synthetic DICOM series.
  out = subprocess.run([sys.executable, '-m', 'aigc_jax.sample', f'--workdir={workdir}', '--num=3', '--batch=4',
                        '--format=dicom', '--sample_steps=2'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  folder = os.path.join(workdir, 'exports', 'step_3_dicom')
  files = sorted(f for f in os.listdir(folder) if f.endswith('.dcm'))
  assert files == ['IMG0000.dcm', 'IMG0001.dcm', 'IMG0002.dcm']
  ds = pydicom.dcmread(os.path.join(folder, files[0]))
  hu = pixels.apply_modality_lut(ds.pixel_array, ds)
  assert ds.Rows == 16 and -1000 <= hu.min() and hu.max() <= 1000  # the config's window, back in HU
  assert 'step 3' in ds.ImageComments and json.load(open(os.path.join(folder, 'provenance.json')))['synthetic']
  # The evaluation command on the same run: a JSON report with every section, and the audit's image.
  ev = subprocess.run([sys.executable, '-m', 'aigc_jax.evaluate', f'--workdir={workdir}', '--num=4', '--batch=4',
                       '--audit_train=16', '--sample_steps=2'], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert ev.returncode == 0, ev.stderr[-3000:]
  report = json.load(open(os.path.join(workdir, 'eval', 'step_3_sample_steps2.json')))  # named by the override
  assert set(report) >= {'realism', 'diversity', 'memorization', 'features'}
  assert report['sampling'] == {'sample_steps': 2}
  feat = report['features']
  assert feat['sha256'] == hashlib.sha256(open(features.DEFAULT_PATH, 'rb').read()).hexdigest()
  assert np.isfinite(feat['fid']) and 0 <= feat['precision'] <= 1 and 0 <= feat['recall'] <= 1
  assert report['memorization']['train_examples'] == 16 and 0 <= report['memorization']['flagged_share'] <= 1
  assert report['realism']['hu_w1']['all'] > 0 and 'FID' in ev.stdout
  assert os.path.exists(os.path.join(workdir, 'eval', 'nearest_pairs_3_sample_steps2.png'))
  missing = subprocess.run([sys.executable, '-m', 'aigc_jax.sample', f'--workdir={tmp_path / "nothing"}'],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert missing.returncode != 0 and 'config.json not found' in missing.stderr


def test_unknown_config_key_fails_at_once_and_names_it(tmp_path):
  out = _main('--config=configs/ct.py:test', f'--workdir={tmp_path}', '--config.model.chanels=8')
  assert out.returncode != 0
  assert 'chanels' in out.stderr
  assert not os.listdir(tmp_path)  # nothing started


def test_unknown_variant_is_named(tmp_path):
  out = _main('--config=configs/ct.py:runlokal', f'--workdir={tmp_path}')
  assert out.returncode != 0 and "unknown variant 'runlokal'" in out.stderr


def test_main_trains_on_a_prepared_dicom_dataset(tmp_path):
  scan_files.ct_series(str(tmp_path / 'scans' / 'patient'), 3)
  prep = subprocess.run([sys.executable, '-m', 'aigc_jax.prepare', f'--input={tmp_path / "scans"}',
                         f'--output={tmp_path / "tfds"}', '--name=my_ct', '--size=16', '--val_fraction=0',
                         '--test_fraction=0'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert prep.returncode == 0, prep.stderr[-3000:]
  assert 'train' in prep.stdout and '3 examples' in prep.stdout
  out = _main('--config=configs/ct.py:test', f'--workdir={tmp_path / "run"}', '--config.num_steps=2',
              '--config.data.name=tfds:my_ct', f'--config.data.data_dir={tmp_path / "tfds"}')
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'step 2/2' in out.stderr
  missing = _main('--config=configs/ct.py:test', f'--workdir={tmp_path / "run2"}',
                  '--config.data.name=tfds:not_prepared', f'--config.data.data_dir={tmp_path / "tfds"}')
  assert missing.returncode != 0 and 'aigc_jax.prepare' in missing.stderr


def test_data_benchmark_prints_examples_per_second():
  out = subprocess.run([sys.executable, '-m', 'aigc_jax.benchmark_data', '--config=configs/ct.py:test',
                        '--batches=3'], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert json.loads(out.stdout.strip().splitlines()[-1])['data_examples_per_s'] > 0
