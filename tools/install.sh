#!/usr/bin/env bash
# Installs everything metis needs on a fresh Debian/Ubuntu machine; safe to rerun (does only what is missing).
#
#   bash tools/install.sh                 # CPU profile (torch 2.13.0 CPU, faiss-cpu) + Debian packages
#   bash tools/install.sh --profile gpu   # CUDA torch + faiss-gpu
#   bash tools/install.sh --apt false     # skip Debian packages (e.g. no root; install them yourself)
#   bash tools/install.sh --test true     # also what the tests need (headless Chromium, shellcheck)
#
# Python: $PYTHON (default python3). Use a virtualenv if you do not want a system-wide install.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

profile=cpu
apt=true
test=false
help_message="Usage: bash tools/install.sh [--profile cpu|gpu] [--apt true|false] [--test true|false]"
. utils/parse_options.sh
. utils/log.sh

case $profile in cpu|gpu) ;; *) die "--profile must be cpu or gpu, got '$profile'" ;; esac
python=${PYTHON:-python3}

if $apt; then
  missing=()
  lists=(requirements/apt.txt)
  $test && lists+=(requirements/apt-test.txt)
  while read -r pkg; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done < <(grep -hv '^#' "${lists[@]}")
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    log "Installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

log "Installing Python packages ($profile profile) with $python"
"$python" -m pip install -q --disable-pip-version-check -r "requirements/$profile.txt"
"$python" -m pip install -q --disable-pip-version-check --no-deps -r requirements/nodeps.txt
if $test; then
  "$python" -m pip install -q --disable-pip-version-check -r requirements/test.txt
fi
# --no-deps: the requirements file above already pinned every dependency.
"$python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
command -v metis >/dev/null || die "metis is installed but not on PATH; add the scripts folder of $python to PATH"
log "metis installed: $(command -v metis)"
