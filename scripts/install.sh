#!/usr/bin/env bash
# Everything raydub needs on a fresh Debian/Ubuntu machine: system tools, then a project virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v apertium >/dev/null || need+=(apertium)
# Apertium pairs (mode file -> Debian package): English to Spanish and Catalan directly, and from Spanish to
# Portuguese, Italian and French, which raydub reaches from English through Spanish (a pivot).
for pair in eng-spa:apertium-eng-spa eng-cat:apertium-eng-cat es-pt:apertium-es-pt spa-ita:apertium-spa-ita \
            es-fr:apertium-fr-es; do
  [ -e "/usr/share/apertium/modes/${pair%%:*}.mode" ] || need+=("${pair#*:}")
done
# the font of the burned-in disclosure label (disclosure.burn_in)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.raydub-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing Python packages into .venv (torch pinned to 2.13.0)"
  .venv/bin/pip install -q --upgrade pip
  # torch first and pinned, so nothing after it can pull a CUDA build.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[test]"
  # resemblyzer's declared `webrtcvad` no longer imports; pyproject brings webrtcvad-wheels instead.
  .venv/bin/pip install -q --no-deps "resemblyzer==0.1.4"
  touch "$stamp"
fi
