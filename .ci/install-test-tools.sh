#!/usr/bin/env bash
# Every program the tests start for real, from Debian's packages (idempotent): promtool, nginx,
# headless Chromium and its WebDriver (browser tests), faketime (clock steps), strace (power
# loss, keyed retries) and PostgreSQL (cluster tests). The README's test command runs this first.
set -euo pipefail
cd "$(dirname "$0")"
for topic in prometheus nginx browser faketime strace postgres; do
  bash "./install-$topic.sh"
done
