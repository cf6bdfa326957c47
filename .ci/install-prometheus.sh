#!/usr/bin/env bash
# Installs Debian's prometheus package (promtool), which the gateway's tests need; idempotent.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q prometheus >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q prometheus >/dev/null; }
command -v promtool >/dev/null 2>&1 || { echo "promtool is still missing after installing prometheus" >&2; exit 1; }
