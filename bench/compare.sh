#!/usr/bin/env bash
# The whole side-by-side comparison in one command: installs Redis and PostgreSQL from Debian's
# packages if they are missing, starts them on loopback in a temporary folder, runs the
# comparison (which writes BENCHMARKS.md and bench/compare-throughput.svg), stops them.
#
#   bench/compare.sh            the full run (about ten minutes with the builds)
#   bench/compare.sh --quick    a smoke run with short rounds
set -euo pipefail
cd "$(dirname "$0")/.."

bench/services.sh install
bench/services.sh stop
trap 'bench/services.sh stop' EXIT
eval "$(bench/services.sh start | sed 's/^\([A-Z_]*\)=\(.*\)$/export \1="\2"/')"
cargo build --release -p platepool-bench --bin compare
cargo run --release -p platepool-bench --bin compare -- --write "$@"
