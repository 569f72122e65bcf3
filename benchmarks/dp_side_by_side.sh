#!/usr/bin/env bash
# What DP-SGD costs: the step-time ratio DP / non-DP of ours, beside Opacus on the same PyTorch network.
#   bash benchmarks/dp_side_by_side.sh [rounds=3] [peer python=/tmp/peer/bin/python]
# Each round, interleaved so that a busy spell of the machine hits every side alike:
#   1. ours non-DP, configs/ct_classify.py:runlocal at batch 256 (runlocal_dp's expected batch);
#   2. ours DP, the same with --config.privacy.enabled=True --config.privacy.noise_multiplier=1.0 (C = 1);
#      num_steps is 300 in both so that the padded capacity is runlocal_dp's (357 rows);
#   3. Opacus (benchmarks/opacus_peer.py): the same network non-DP and DP, 256 rows, with the huge-page malloc
#      tunable our commands set (aigc_jax/runtime.py), so that neither side wins on the allocator alone;
#   4.–5. ours non-DP and DP on the diffusion U-Net, configs/ct.py:runlocal (batch 16; δ = 1e-7, since its
#      2^20 phantom slices need δ < 1/N; capacity 52 rows). No PyTorch peer for this one.
# Fair comparison: ours' DP step always processes the Poisson batch padded to its capacity (357 rows for an
# expected 256, 52 for 16), Opacus exactly the 256 rows it is given. So the table gives s/step, s per expected
# example (s/step ÷ expected batch: what a run pays per example it trains on; Opacus' rows are its expected
# batch) and, for ours, s per processed row (÷ capacity: the per-example mechanism without the padding).
# Results land in runs/dp_side_by_side/*.json; 4-5 minutes a round on 2 cores, most of it compiles (the DP
# U-Net alone ~75 s).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PEER=${2:-/tmp/peer/bin/python}
PY=${PYTHON:-python}
OUT=runs/dp_side_by_side
DP=(--config.privacy.enabled=True --config.privacy.noise_multiplier=1.0)
CLS=(--config=configs/ct_classify.py:runlocal --config.batch_size=256 --config.num_steps=300)
CT=(--config=configs/ct.py:runlocal --config.privacy.delta=1e-7)
OURS=(-m aigc_jax.benchmark --steps=8 --warmup=2 --sample_images=0)  # sampling is no part of the question
mkdir -p "$OUT"
rm -f "$OUT"/*.json
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS: ours, ct_classify non-DP" >&2
  "$PY" "${OURS[@]}" "${CLS[@]}" | tail -n 1 > "$OUT/cls_nondp_$r.json"
  echo "round $r/$ROUNDS: ours, ct_classify DP" >&2
  "$PY" "${OURS[@]}" "${CLS[@]}" "${DP[@]}" | tail -n 1 > "$OUT/cls_dp_$r.json"
  echo "round $r/$ROUNDS: Opacus, non-DP and DP" >&2
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "$PEER" benchmarks/opacus_peer.py --batch=256 --steps=8 --warmup=2 \
    | tail -n 1 > "$OUT/opacus_$r.json"
  echo "round $r/$ROUNDS: ours, ct diffusion non-DP" >&2
  "$PY" "${OURS[@]}" "${CT[@]}" | tail -n 1 > "$OUT/ct_nondp_$r.json"
  echo "round $r/$ROUNDS: ours, ct diffusion DP" >&2
  "$PY" "${OURS[@]}" "${CT[@]}" "${DP[@]}" | tail -n 1 > "$OUT/ct_dp_$r.json"
done
"$PY" - "$OUT" <<'PYEOF'
import glob, json, statistics, sys
from aigc_jax.core.privacy import accountant
out = sys.argv[1]
load = lambda kind: [json.load(open(f)) for f in sorted(glob.glob(f'{out}/{kind}_*.json'))]
med = lambda rows, k: statistics.median(r[k] for r in rows)
print(f'{"":30s} {"rows":>5s} {"s/step":>8s} {"ms/expected ex.":>16s} {"ms/row":>8s}   s/step per round')
def line(name, rows, s, expected, per_round):
  print(f'{name:30s} {rows:5d} {s:8.3f} {s / expected * 1e3:16.3f} {s / rows * 1e3:8.3f}   '
        + ', '.join(f'{x:.3f}' for x in per_round))
def ours(kind, label):
  nondp, dp = load(f'{kind}_nondp'), load(f'{kind}_dp')
  a, b = med(nondp, 'train_s_per_step'), med(dp, 'train_s_per_step')
  cap, exp = dp[0]['rows_per_step'], dp[0]['expected_batch']
  line(f'{label}, non-DP', nondp[0]['rows_per_step'], a, nondp[0]['expected_batch'],
       [r['train_s_per_step'] for r in nondp])
  line(f'{label}, DP', cap, b, exp, [r['train_s_per_step'] for r in dp])
  print(f'{"  DP / non-DP":30s} per step (= per expected example) {b / a:.2f}x, per processed row '
        f'{(b / cap) / (a / exp):.2f}x ({cap} rows for {exp} expected)')
  return a, b
cls_a, cls_b = ours('cls', 'ours ct_classify')
peer = load('opacus')
pa, pb = med(peer, 'nondp_s_per_step'), med(peer, 'dp_s_per_step')
line('Opacus, non-DP', peer[0]['batch'], pa, peer[0]['batch'], [r['nondp_s_per_step'] for r in peer])
line('Opacus, DP', peer[0]['batch'], pb, peer[0]['batch'], [r['dp_s_per_step'] for r in peer])
print(f'{"  DP / non-DP":30s} {pb / pa:.2f}x ({peer[0]["framework"]}, opacus {peer[0]["opacus"]}, '
      f'{peer[0]["threads"]} threads, {peer[0]["grad_sample_mode"]})')
print(f'{"  Opacus s / ours s":30s} per expected example: non-DP {pa / cls_a:.2f}x, DP {pb / cls_b:.2f}x')
ours('ct', 'ours ct diffusion')
eps = accountant.epsilon(256 / 4096, 1.0, 300, 1e-5, 'rdp')
print(f'epsilon at q=256/4096, sigma=1, 300 steps, delta=1e-5: ours (dp_accounting RDP) {eps:.3f}, '
      f'Opacus RDPAccountant {peer[0]["opacus_rdp_epsilon"]:.3f}')
PYEOF
