#!/usr/bin/env bash
# A Cloud TPU VM slice: create (or reuse) it, install on every worker, run the same command on all workers
# with their logs streamed here, and delete it when asked. JAX finds the other workers by itself.
#
#   TPU_NAME=ct-v5e ZONE=us-west4-a PROJECT=my-proj ACCELERATOR_TYPE=v5litepod-16 \
#   RUNTIME_VERSION=v2-alpha-tpuv5-lite launch/tpu_pod.sh create
#   TPU_NAME=ct-v5e ZONE=us-west4-a PROJECT=my-proj launch/tpu_pod.sh install
#   TPU_NAME=ct-v5e ZONE=us-west4-a PROJECT=my-proj launch/tpu_pod.sh run \
#       --config=configs/ct.py --workdir=/mnt/shared/runs/ct
#   TPU_NAME=ct-v5e ZONE=us-west4-a PROJECT=my-proj launch/tpu_pod.sh delete
#
# Variables: TPU_NAME, ZONE, PROJECT (always); ACCELERATOR_TYPE, RUNTIME_VERSION (create only);
# SPOT=1 (create a preemptible Spot slice: the run checkpoints on the preemption notice, rerun resumes);
# DRY_RUN=1 prints every command instead of running it.
# The workdir must be one folder that every worker sees (a Filestore/NFS or gcsfuse mount): orbax writes
# from all of them. gs:// URLs are not supported as workdirs yet.
set -euo pipefail

usage() {
  echo "usage: launch/tpu_pod.sh create|install|run|delete [main flags...]" >&2
  exit 2
}
need() {
  local missing=()
  for v in "$@"; do [[ -n "${!v:-}" ]] || missing+=("$v"); done
  if ((${#missing[@]})); then
    echo "launch/tpu_pod.sh: set ${missing[*]} (see the header of this script for an example)" >&2
    exit 2
  fi
}
run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }

[[ $# -ge 1 ]] || usage
action="$1"
shift
need TPU_NAME ZONE PROJECT
cd "$(dirname "$0")/.."
where=(--zone="$ZONE" --project="$PROJECT")
JAX_VERSION="$(sed -n 's/^jax==//p' requirements.txt)"

case "$action" in
  create)
    need ACCELERATOR_TYPE RUNTIME_VERSION
    if [[ "${DRY_RUN:-0}" != 1 ]] && gcloud compute tpus tpu-vm describe "$TPU_NAME" "${where[@]}" >/dev/null 2>&1; then
      echo "TPU VM $TPU_NAME exists: reusing it."
      exit 0
    fi
    extra=()
    [[ "${SPOT:-0}" == 1 ]] && extra+=(--spot)
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${where[@]}" \
      --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" "${extra[@]}"
    ;;
  install)
    # The committed tree (no local venv or runs), copied to every worker, installed with jax[tpu].
    run git archive --format=tar.gz -o /tmp/aigc_jax.tgz HEAD
    run gcloud compute tpus tpu-vm scp /tmp/aigc_jax.tgz "$TPU_NAME":aigc_jax.tgz --worker=all "${where[@]}"
    run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${where[@]}" --command \
      "rm -rf aigc_jax && mkdir aigc_jax && tar xzf aigc_jax.tgz -C aigc_jax && python3 -m venv venv && venv/bin/pip install -q -r aigc_jax/requirements.txt 'jax[tpu]==$JAX_VERSION'"
    ;;
  run)
    [[ $# -ge 1 ]] || { echo "launch/tpu_pod.sh run: pass the main flags (--config=... --workdir=...)" >&2; exit 2; }
    args="$(printf '%q ' "$@")"
    run gcloud compute tpus tpu-vm ssh "$TPU_NAME" --worker=all "${where[@]}" --command \
      "cd aigc_jax && ../venv/bin/python -m aigc_jax.main --distributed $args"
    ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${where[@]}" --quiet
    ;;
  *) usage ;;
esac
