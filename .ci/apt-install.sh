#!/usr/bin/env bash
# Installs Debian packages unless CHECK already succeeds: .ci/apt-install.sh 'CHECK' PACKAGE...
# Idempotent; uses sudo only when not root; refreshes the package lists only if the first try
# fails; fails (exit 1) when CHECK still fails afterwards, so a test never runs without its tool.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin" DEBIAN_FRONTEND=noninteractive
check="$1"; shift
if bash -c "$check" >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get install -y -q "$@" >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q "$@" >/dev/null; }
bash -c "$check" >/dev/null 2>&1 || { echo "still missing after installing $*: $check" >&2; exit 1; }
