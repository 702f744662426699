#!/usr/bin/env bash
# Keyword spotting with the bundle in this folder (written by `kit deploy`).
#
#   ./run.sh --setup                  create .venv here and install requirements.txt (first run)
#   ./run.sh --setup --input mic      the same, then listen
#   ./run.sh --input mic              listen to the default microphone
#   ./run.sh --input clip.wav         run over a WAV file
#   ./run.sh --verify                 check every file against manifest.json
#   ./run.sh --help                   all options of the listener
#
# KIT_VENV=DIR uses another virtual environment; KIT_PYTHON=python3.x picks the interpreter that
# creates it. Without a venv the system python3 is used (it needs the packages in requirements.txt).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${KIT_VENV:-$HERE/.venv}"
PYTHON="${KIT_PYTHON:-python3}"
STAMP="$VENV/.kit-requirements.sha256"

want_stamp() { sha256sum "$HERE/requirements.txt" | cut -d' ' -f1; }

if [ "${1:-}" = "--setup" ]; then
  shift
  if [ ! -x "$VENV/bin/python" ]; then
    echo "run.sh: creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi
  echo "run.sh: installing requirements.txt into $VENV" >&2
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$HERE/requirements.txt"
  want_stamp > "$STAMP"
  [ $# -eq 0 ] && { echo "run.sh: ready; now run ./run.sh --input mic" >&2; exit 0; }
fi

if [ "${1:-}" = "--verify" ]; then
  exec "$PYTHON" "$HERE/verify.py"
fi

if [ -x "$VENV/bin/python" ]; then
  PY="$VENV/bin/python"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" != "$(want_stamp)" ]; then
    echo "run.sh: requirements.txt changed since the last setup; run ./run.sh --setup" >&2
  fi
else
  PY="$PYTHON"
fi

# Only this folder on the import path: the runtime must not pick up another copy of itself.
export PYTHONPATH="$HERE"
exec "$PY" -m kit_runtime listen "$HERE/bundle.kit" "$@"
