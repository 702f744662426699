#!/usr/bin/env bash
# One entry point for a fresh clone: it makes its own virtual environment, installs the pinned
# packages (and the system library PortAudio when missing), then runs what you asked for.
#
#   ./run.sh demo [kit demo options]   distil FSDD to 10 per class, train a ConvNet, compare with random
#   ./run.sh test [pytest options]     the test suite (reads ../shared/data or $KIT_DATA_DIR)
#   ./run.sh bench [bench options]     the FSDD benchmark (writes bench/results/)
#   ./run.sh kit ARGS...               any kit command inside the environment
set -euo pipefail
cd "$(dirname "$0")"

VENV="${KIT_VENV:-.venv}"
PYTHON="${KIT_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

say() { printf '\033[1m[run.sh]\033[0m %s\n' "$*" >&2; }

ensure_portaudio() {
  # sounddevice needs the PortAudio shared library (Debian: libportaudio2) for `kit live`.
  if ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2'; then return 0; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "PortAudio not found and no apt-get: install PortAudio yourself for microphone input"; return 0
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      say "PortAudio missing and no root: run 'sudo apt-get install libportaudio2' for microphone input"; return 0
    fi
  fi
  say "installing libportaudio2 (PortAudio) with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  $sudo apt-get install -y -qq --no-install-recommends libportaudio2 >/dev/null
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when the dependency files changed since the last install.
  local stamp="$VENV/.kit-install-stamp"
  local want
  want=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing pinned packages into $VENV (first run takes a few minutes)"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -c requirements/constraints.txt -e ".[test]"
    echo "$want" > "$stamp"
  fi
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)  ensure_portaudio; ensure_venv; exec "$VENV/bin/kit" demo "$@" ;;
  test)  ensure_portaudio; ensure_venv; exec "$VENV/bin/python" -m pytest "$@" ;;
  bench) ensure_venv; exec "$VENV/bin/python" -m bench "$@" ;;
  kit)   ensure_venv; exec "$VENV/bin/kit" "$@" ;;
  *) sed -n '2,9p' "$0"; exit 1 ;;
esac
