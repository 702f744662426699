#!/usr/bin/env bash
# One entry point for a fresh clone: it makes its own virtual environment, installs the pinned
# packages (and the system packages it needs when missing: PortAudio, the Arm toolchain and QEMU for the
# firmware, for tests sshd and rsync), then runs what you asked for.
#
#   ./run.sh demo [kit demo options]   distil FSDD (1, 10 per class) vs random, ship int8, stream held-out clips
#                                      (data: ../shared/data or $KIT_DATA_DIR, as for the tests)
#   ./run.sh test [pytest options]     the test suite (reads ../shared/data or $KIT_DATA_DIR)
#   ./run.sh bench [bench options]     the distillation benchmark (writes bench/results/)
#   ./run.sh kit ARGS...               any kit command inside the environment
set -euo pipefail
cd "$(dirname "$0")"

VENV="${KIT_VENV:-.venv}"
PYTHON="${KIT_PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

say() { printf '\033[1m[run.sh]\033[0m %s\n' "$*" >&2; }

missing_system_packages() {
  # PortAudio (libportaudio2) for microphone input in `kit live`; for the test suite also
  # openssh-server + rsync (the `kit deploy --to user@host:PATH` test starts a local sshd).
  ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' || echo libportaudio2
  # The C firmware (kit firmware build/run): a C compiler for the host build, the Arm toolchain,
  # newlib and QEMU for the Cortex-M builds and the emulated Cortex-M4F board.
  command -v cc >/dev/null 2>&1 || echo gcc
  command -v make >/dev/null 2>&1 || echo make
  command -v arm-none-eabi-gcc >/dev/null 2>&1 || echo gcc-arm-none-eabi
  [ -f /usr/lib/arm-none-eabi/newlib/librdimon.a ] || ls /usr/lib/arm-none-eabi/newlib/*/librdimon.a >/dev/null 2>&1 \
    || echo libnewlib-arm-none-eabi
  command -v qemu-system-arm >/dev/null 2>&1 || echo qemu-system-arm
  # Text-to-speech engines for `kit finetune --add-keyword NAME --synthetic N` (synthetic clips of the word).
  command -v espeak-ng >/dev/null 2>&1 || echo espeak-ng
  command -v flite >/dev/null 2>&1 || echo flite
  if [ "${1:-}" = test ]; then
    [ -x /usr/sbin/sshd ] || echo openssh-server
    command -v rsync >/dev/null 2>&1 || echo rsync
  fi
}

ensure_system_packages() {
  local packages
  packages=$(missing_system_packages "${1:-}" | tr '\n' ' ')
  [ -n "${packages// /}" ] || return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing system packages ($packages) and no apt-get: install them yourself"; return 0
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      say "missing system packages and no root: run 'sudo apt-get install $packages'"; return 0
    fi
  fi
  say "installing $packages with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
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

use_shared_data() {
  # The recordings beside the checkout (../shared/data), as the tests and benchmarks read them,
  # unless KIT_DATA_DIR already names a folder.
  if [ -z "${KIT_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
    KIT_DATA_DIR="$(cd ../shared/data && pwd)"; export KIT_DATA_DIR
  fi
}

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)  ensure_system_packages; ensure_venv; use_shared_data; exec "$VENV/bin/kit" demo "$@" ;;
  test)  ensure_system_packages test; ensure_venv; exec "$VENV/bin/python" -m pytest "$@" ;;
  bench) ensure_venv; use_shared_data; exec "$VENV/bin/python" -m bench "$@" ;;
  kit)   ensure_venv; use_shared_data; exec "$VENV/bin/kit" "$@" ;;
  *) sed -n '2,9p' "$0"; exit 1 ;;
esac
