#!/usr/bin/env bash
# Ours and the PyTorch peer, interleaved in rounds on this machine, then the ratios of the medians.
#   bash benchmarks/side_by_side.sh [rounds=2] [peer python=/tmp/peer/bin/python]
# Each round: aigc_jax.benchmark (configs/ct.py:monai), the peer with glibc's defaults, and the peer with
# the same huge-page malloc tunable our commands set (aigc_jax/runtime.py), so neither side wins on the
# allocator alone. Results land in runs/side_by_side/*.json; about 10 minutes a round on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
PEER=${2:-/tmp/peer/bin/python}
PY=${PYTHON:-python}
OUT=runs/side_by_side
mkdir -p "$OUT"
rm -f "$OUT"/*.json
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS: ours" >&2
  "$PY" -m aigc_jax.benchmark --config=configs/ct.py:monai --steps=8 | tail -n 1 > "$OUT/ours_$r.json"
  echo "round $r/$ROUNDS: peer (glibc defaults)" >&2
  env -u GLIBC_TUNABLES "$PEER" benchmarks/monai_peer.py --steps=8 | tail -n 1 > "$OUT/peer_$r.json"
  echo "round $r/$ROUNDS: peer (GLIBC_TUNABLES=glibc.malloc.hugetlb=1)" >&2
  GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "$PEER" benchmarks/monai_peer.py --steps=8 | tail -n 1 \
    > "$OUT/peerhuge_$r.json"
done
"$PY" - "$OUT" <<'PYEOF'
import glob, json, statistics, sys
out = sys.argv[1]
def load(kind):
  return [json.load(open(f)) for f in sorted(glob.glob(f'{out}/{kind}_*.json'))]
ours = load('ours')
med = lambda rows, k: statistics.median(r[k] for r in rows)
print(f'{"":34s} {"train img/s":>12s} {"DDIM-50 of 16 (s)":>18s}   per round')
print(f'{"aigc_jax (XLA)":34s} {med(ours, "train_img_per_s"):12.2f} {med(ours, "sample_s"):18.1f}   '
      + ', '.join(f'{r["train_img_per_s"]:.2f}/{r["sample_s"]:.1f}' for r in ours))
for kind, name in (('peer', 'MONAI (PyTorch), glibc defaults'), ('peerhuge', 'MONAI (PyTorch), huge pages')):
  rows = load(kind)
  print(f'{name:34s} {med(rows, "train_img_per_s"):12.2f} {med(rows, "sample_s"):18.1f}   '
        + ', '.join(f'{r["train_img_per_s"]:.2f}/{r["sample_s"]:.1f}' for r in rows))
  print(f'{"  ours / this":34s} {med(ours, "train_img_per_s") / med(rows, "train_img_per_s"):11.2f}x '
        f'{med(rows, "sample_s") / med(ours, "sample_s"):17.2f}x')
PYEOF
