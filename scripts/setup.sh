#!/usr/bin/env bash
# One-time, idempotent set-up of everything comolive needs on a Debian/Ubuntu machine:
# system packages (MBROLA singing voices, JACK, PortAudio, Qt runtime libraries) and a
# .venv with pinned Python packages. Safe to run again; it only does what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  python3-venv python3-dev build-essential
  libsndfile1 libportaudio2 jackd2 sox
  mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4
  mbrola-de5 mbrola-de6 mbrola-de7 mbrola-fr1 mbrola-fr4 mbrola-it3 mbrola-it4 mbrola-es2 mbrola-nl2 mbrola-pl1
  mbrola-br3 mbrola-cz2 mbrola-sw1 mbrola-hu1
  mbrola-fr2 mbrola-fr3 mbrola-fr5 mbrola-fr6 mbrola-fr7 mbrola-ca1 mbrola-es1 mbrola-pt1 mbrola-sw2
  mbrola-cr1 mbrola-lt1 mbrola-lt2 mbrola-ee1
  espeak-ng festival festvox-kallpc16k flite alsa-utils
  libgl1 libegl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing system packages: ${missing[*]}"
  # MBROLA lives in contrib (engine) and non-free (voices): enable both components.
  if [ -f /etc/debian_version ] && ! grep -rqs "contrib non-free" /etc/apt/sources.list.d/comolive.sources; then
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
    if grep -qi ubuntu /etc/os-release; then
      $SUDO add-apt-repository -y multiverse || true
    else
      printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$codename" | $SUDO tee /etc/apt/sources.list.d/comolive.sources >/dev/null
    fi
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python environment: pinned versions in requirements.lock; re-installed only when it changes.
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
STAMP=.venv/.comolive-lock.sha
want="$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-64)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python packages (first time: several minutes, torch is large)"
  .venv/bin/pip install -q --upgrade pip wheel
  # torch first and alone, so that no other package drags in a different build.
  .venv/bin/pip install -q "torch==2.9.1" "torchaudio==2.9.1"
  .venv/bin/pip install -q -r requirements.lock
  .venv/bin/pip install -q --no-deps -e .
  echo "$want" > "$STAMP"
fi
