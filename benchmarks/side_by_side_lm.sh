#!/usr/bin/env bash
# The language models, ours and Hugging Face transformers (PyTorch), interleaved in rounds on this machine.
#   bash benchmarks/side_by_side_lm.sh [rounds=2] [peer python=/tmp/peer/bin/python] [cpus=all, e.g. 0 for one]
# Each round: GPT (configs/lm_gpt.py:runlocal) ours then peer, BERT (lm_bert.py:runlocal) ours then peer.
# With cpus given, every process runs under `taskset -c <cpus>` and the peer with that many torch threads, so
# both sides get the same cores. Results land in runs/side_by_side_lm/*.json; a few minutes a round.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
PEER=${2:-/tmp/peer/bin/python}
CPUS=${3:-}
PY=${PYTHON:-python}
OUT=runs/side_by_side_lm
PIN=()
THREADS=()
if [ -n "$CPUS" ]; then
  PIN=(taskset -c "$CPUS")
  THREADS=(--threads="$(taskset -c "$CPUS" nproc)")
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.json
for r in $(seq "$ROUNDS"); do
  for m in gpt bert; do
    echo "round $r/$ROUNDS: $m ours" >&2
    "${PIN[@]}" "$PY" -m aigc_jax.benchmark --config="configs/lm_$m.py:runlocal" --steps=10 | tail -n 1 \
      > "$OUT/ours_${m}_$r.json"
    echo "round $r/$ROUNDS: $m peer" >&2
    hf=$([ "$m" = gpt ] && echo gpt2 || echo bert)
    "${PIN[@]}" "$PEER" benchmarks/hf_peer.py --model="$hf" --steps=10 "${THREADS[@]}" 2>/dev/null | tail -n 1 \
      > "$OUT/peer_${m}_$r.json"
  done
done
"$PY" - "$OUT" <<'PYEOF'
import glob, json, statistics, sys
out = sys.argv[1]
load = lambda kind: [json.load(open(f)) for f in sorted(glob.glob(f'{out}/{kind}_*.json'))]
med = lambda rows, k: statistics.median(r[k] for r in rows)
for m in ('gpt', 'bert'):
  ours, peer = load(f'ours_{m}'), load(f'peer_{m}')
  keys = ['train_tokens_per_s'] + (['generate_tokens_per_s'] if m == 'gpt' else [])
  print(f'{m}: {ours[0]["params"]:,} parameters (peer {peer[0]["params"]:,}), batch {ours[0]["batch"]} x '
        f'{ours[0]["seq_len"]} tokens; peer {peer[0]["peer"]}, {peer[0]["threads"]} threads')
  for k in keys:
    print(f'  {k:24s} ours {med(ours, k):9,.0f}  peer {med(peer, k):9,.0f}  ratio {med(ours, k) / med(peer, k):.2f}x'
          f'   per round: ' + ', '.join(f'{a[k]:,.0f}/{b[k]:,.0f}' for a, b in zip(ours, peer)))
PYEOF
