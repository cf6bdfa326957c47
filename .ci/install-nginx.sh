#!/usr/bin/env bash
# Installs Debian's nginx package (nginx), which the gateway's tests need; idempotent.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
if command -v nginx >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q nginx >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q nginx >/dev/null; }
command -v nginx >/dev/null 2>&1 || { echo "nginx is still missing after installing nginx" >&2; exit 1; }
