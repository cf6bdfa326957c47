#!/usr/bin/env bash
# Debian's headless browser and its WebDriver for the browser tests (gateway/tests/browser_*.rs).
exec bash "$(dirname "$0")/apt-install.sh" '[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]' chromium chromium-driver fonts-noto-cjk
