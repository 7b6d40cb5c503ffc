#!/usr/bin/env bash
# The 30-minute prose ablation of the README: eight rows, four at a time with one torch
# thread each (so every row gets the same share, half a core, of a 2-core machine), about
# 65 minutes.  The shipped recipe's row is export/prose's own run (two threads, whole machine).
# Results: one JSON line per row in runs/ablation30/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/ablation30}
mkdir -p "$OUT"
for slot in "lstm lnlstm sru qrnn" "rwa lnlstm-rd lnlstm-rd-ss lstm-ss"; do
  for row in $slot; do
    OMP_NUM_THREADS=1 PYTHONPATH=. $PY scripts/ablation_prose.py "$row" --runs-dir "$OUT" > "$OUT/$row.log" 2>&1 &
  done
  wait
  for row in $slot; do tail -1 "$OUT/$row.log" >> "$OUT/results.jsonl"; done
done
