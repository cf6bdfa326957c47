#!/usr/bin/env bash
# strace (Debian's package): the power-loss test and campaign record the binary's file system
# calls with it (gateway/tests/power_loss.rs, reliability/src/power_loss.rs). Idempotent.
set -euo pipefail
if command -v strace >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get install -y -q strace >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q strace >/dev/null; }
command -v strace >/dev/null 2>&1 || { echo "strace could not be installed" >&2; exit 1; }
