#!/usr/bin/env bash
# Side-by-side generation throughput on one GGUF with 2 threads: medalign-model (candle),
# PyTorch + transformers (../shared/peers/torch_peer.py) and llama.cpp (llamacpp_peer.py).
# Usage: bench_peers.sh GGUF [VENV]   (VENV has torch, transformers, gguf, llama-cpp-python)
# Build first: cargo build --release --bin medalign
set -euo pipefail
GGUF=${1:?GGUF path}
VENV=${2:-/work/venv-peer}
HERE=$(cd "$(dirname "$0")" && pwd)
PEERS=${PEERS:-$HERE/../../../shared/peers}
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/medalign-target}/release/medalign}
export RAYON_NUM_THREADS=2 CANDLE_NUM_THREADS=2 OMP_NUM_THREADS=2
for i in 1 2; do
  echo "{\"peer\": \"medalign-model\", \"run\": $i, \"result\": $("$BIN" bench generate --model "$GGUF" --prompt-tokens 512 --new-tokens 64 --json 2>/dev/null)}"
done
"$VENV/bin/python" "$PEERS/llamacpp_peer.py" "$GGUF" --threads 2 --prompt-tokens 512 --new-tokens 64
"$VENV/bin/python" "$PEERS/torch_peer.py" "$GGUF" --threads 2 --gen 64 --only generate 2>/dev/null | grep '^{'
