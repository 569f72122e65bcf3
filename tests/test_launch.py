"""The launch scripts: dry runs print the commands they would run; a missing variable fails fast, by name."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bash(script, *args, **env):
  clean = {k: v for k, v in os.environ.items() if k not in ('TPU_NAME', 'ZONE', 'PROJECT', 'CONFIG', 'WORKDIR')}
  return subprocess.run(['bash', script, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                        timeout=60)


TPU = dict(TPU_NAME='ct-v5e', ZONE='us-west4-a', PROJECT='proj', DRY_RUN='1')


def test_tpu_pod_dry_run_prints_create_install_run_delete():
  create = _bash('launch/tpu_pod.sh', 'create', ACCELERATOR_TYPE='v5litepod-16', RUNTIME_VERSION='v2-alpha', **TPU)
  assert create.returncode == 0, create.stderr
  assert 'gcloud compute tpus tpu-vm create ct-v5e --zone=us-west4-a --project=proj' in create.stdout
  assert '--accelerator-type=v5litepod-16' in create.stdout
  install = _bash('launch/tpu_pod.sh', 'install', **TPU)
  assert '--worker=all' in install.stdout and 'jax\\[tpu\\]==0.10.2' in install.stdout
  run = _bash('launch/tpu_pod.sh', 'run', '--config=configs/ct.py', '--workdir=/mnt/r', **TPU)
  assert 'aigc_jax.main\\ --distributed\\ --config=configs/ct.py\\ --workdir=/mnt/r' in run.stdout
  assert 'tpu-vm delete ct-v5e' in _bash('launch/tpu_pod.sh', 'delete', **TPU).stdout


def test_tpu_pod_names_missing_variables():
  out = _bash('launch/tpu_pod.sh', 'create', TPU_NAME='x', DRY_RUN='1')
  assert out.returncode == 2 and 'set ZONE PROJECT' in out.stderr
  out = _bash('launch/tpu_pod.sh', 'create', **TPU)
  assert out.returncode == 2 and 'set ACCELERATOR_TYPE RUNTIME_VERSION' in out.stderr


def test_slurm_dry_run_and_missing_variables():
  out = _bash('launch/slurm.sbatch', '--config.batch_size=64', CONFIG='configs/ct.py', WORKDIR='/shared/r',
              DRY_RUN='1')
  assert out.returncode == 0, out.stderr
  assert out.stdout.startswith('srun --kill-on-bad-exit=1 .venv/bin/python -m aigc_jax.main --distributed '
                               '--config=configs/ct.py --workdir=/shared/r --config.batch_size=64')
  out = _bash('launch/slurm.sbatch', CONFIG='configs/ct.py')
  assert out.returncode == 2 and 'set WORKDIR' in out.stderr


def test_local_multiprocess_dry_run_and_missing_workdir():
  out = _bash('launch/local_multiprocess.sh', '--config=configs/ct.py:test', '--workdir=/tmp/mp', DRY_RUN='1',
              NUM_PROCESSES='3')
  assert out.returncode == 0, out.stderr
  assert out.stdout.count('aigc_jax.main') == 3 and '--process_id=2' in out.stdout
  out = _bash('launch/local_multiprocess.sh', '--config=configs/ct.py:test')
  assert out.returncode == 2 and '--workdir' in out.stderr
