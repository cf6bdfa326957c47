#!/usr/bin/env bash
# Installs Debian's headless browser and its WebDriver for the browser tests
# (gateway/tests/browser_*.rs): /usr/bin/chromium and /usr/bin/chromedriver.
# Idempotent; uses sudo only when not root. The tests fail (never skip) without them.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q chromium chromium-driver fonts-noto-cjk >/dev/null \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium chromium-driver fonts-noto-cjk >/dev/null; }
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { echo "chromium/chromedriver missing after install" >&2; exit 1; }
