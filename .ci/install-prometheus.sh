#!/usr/bin/env bash
# promtool (Debian's prometheus package): the alert rules' check and test.
exec bash "$(dirname "$0")/apt-install.sh" 'command -v promtool' prometheus
