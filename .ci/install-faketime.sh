#!/usr/bin/env bash
# libfaketime (Debian's `faketime` package): the clock-step tests run the real binary with its
# wall clock stepped while it serves (gateway/tests/clock_steps.rs, reliability clock_steps).
# Idempotent; a test that needs it fails when it is missing.
set -euo pipefail
if ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get install -y -q faketime >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q faketime >/dev/null; }
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null
