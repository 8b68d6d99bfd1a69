#!/usr/bin/env bash
# End-to-end check of `herd serve` with the official `openai` Python client: builds herd,
# makes a virtual environment outside the repository if missing, starts the server on a free
# port with the stories260K GGUF from ../shared/data, runs openai_e2e.py, stops the server.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

data="${HERD_SHARED_DATA:-$root/../shared/data}"
model="$data/stories260K/stories260K.gguf"
if [ ! -f "$model" ]; then
  echo "skip: openai e2e: $model not found"
  exit 0
fi

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "skip: openai e2e: no python3"
  exit 0
fi
venv="${HERD_E2E_VENV:-$root/../.herd-e2e-venv}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import openai" 2>/dev/null; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q openai
fi

cargo build --bin herd
target="${CARGO_TARGET_DIR:-$root/target}"
herd="$target/debug/herd"

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="e2e-$RANDOM$RANDOM"
log=$(mktemp)
HERD_API_KEY="$key" "$herd" serve "$model" --port "$port" --ctx 512 --max-seqs 8 >"$log" 2>&1 &
pid=$!
stop() {
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -f "$log"
}
trap stop EXIT

for _ in $(seq 1 100); do
  if "$venv/bin/python" -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port/health')" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$log"
    echo "openai e2e: the server did not start" >&2
    exit 1
  fi
  sleep 0.1
done

"$venv/bin/python" tools/e2e/openai_e2e.py --base-url "http://127.0.0.1:$port/v1" \
  --model stories260K --api-key "$key"

# SIGTERM ends the server cleanly (exit 0).
kill -TERM "$pid"
if ! wait "$pid"; then
  cat "$log"
  echo "openai e2e: the server did not exit 0 on SIGTERM" >&2
  exit 1
fi
