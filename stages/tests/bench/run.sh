#!/usr/bin/env bash
# Runs every throughput figure of the ingest and dedupe stages in one go, side by side:
#   1. ingest + exact dedupe of 1,000,000 synthetic MedMCQA records (records/s, wall and per CPU-second);
#   2. MinHash LSH over a 22,000-document corpus with planted near-duplicates, then datasketch's
#      MinHashLSH on the same corpus, shingles, permutations and threshold (speedup, recall of its pairs).
# Usage: stages/tests/bench/run.sh [PYTHON]   (PYTHON: an interpreter with datasketch; default: python3)
# Figures and the commands behind them are recorded in stages/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../../.."
python="${1:-python3}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
MEDALIGN_BENCH_DIR="$out" cargo nextest run --release -p medalign-stages --run-ignored only \
    -E 'binary(bench) & (test(ingest_and_exact_dedupe_1m) | test(minhash_lsh_corpus))' --no-capture --test-threads 1 \
    2>&1 | grep -E '^(1M synthetic|MinHash LSH)'
"$python" stages/tests/bench/datasketch_lsh.py "$out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
