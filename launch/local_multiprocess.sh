#!/usr/bin/env bash
# Starts N JAX processes on this machine, each with D fake CPU devices, as one multi-process run.
# It exercises exactly the multi-host code path of a TPU pod or a SLURM cluster (per-process data shards,
# global arrays, process-0 logging, checkpoints from all processes) on a laptop.
#
#   NUM_PROCESSES=2 DEVICES_PER_PROCESS=4 launch/local_multiprocess.sh \
#       --config=configs/ct.py:test --workdir=runs/mp
#
# Variables: NUM_PROCESSES (default 2), DEVICES_PER_PROCESS (default 4), PORT (default 12355),
# PYTHON (default python3), DRY_RUN=1 prints the commands instead of running them.
# Logs: <workdir>/process_<i>.log for every process but 0, whose log goes to the terminal.
set -euo pipefail

NUM_PROCESSES="${NUM_PROCESSES:-2}"
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-4}"
PORT="${PORT:-12355}"
PYTHON="${PYTHON:-python3}"

workdir=""
for arg in "$@"; do
  case "$arg" in --workdir=*) workdir="${arg#--workdir=}" ;; esac
done
if [[ -z "$workdir" ]]; then
  echo "local_multiprocess.sh: pass --workdir=DIR (and --config=...), as for python -m aigc_jax.main" >&2
  exit 2
fi

cd "$(dirname "$0")/.."
run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then echo "$*"; else "$@"; fi; }
run mkdir -p "$workdir"

export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES_PER_PROCESS}"
export JAX_PLATFORMS=cpu
pids=()
for ((i = 1; i < NUM_PROCESSES; i++)); do
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "$PYTHON -m aigc_jax.main $* --coordinator_address=127.0.0.1:$PORT --num_processes=$NUM_PROCESSES --process_id=$i > $workdir/process_$i.log 2>&1 &"
  else
    "$PYTHON" -m aigc_jax.main "$@" --coordinator_address="127.0.0.1:$PORT" \
      --num_processes="$NUM_PROCESSES" --process_id="$i" >"$workdir/process_$i.log" 2>&1 &
    pids+=("$!")
  fi
done
status=0
run "$PYTHON" -m aigc_jax.main "$@" --coordinator_address="127.0.0.1:$PORT" \
  --num_processes="$NUM_PROCESSES" --process_id=0 || status=$?
for pid in "${pids[@]}"; do
  wait "$pid" || status=$?
done
exit "$status"
