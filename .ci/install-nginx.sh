#!/usr/bin/env bash
# nginx in front of the binary (gateway/tests/behind_nginx.rs).
exec bash "$(dirname "$0")/apt-install.sh" 'command -v nginx' nginx
