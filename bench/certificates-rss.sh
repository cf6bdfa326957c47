#!/usr/bin/env bash
# Memory of certificate records: the real binary imports N certificates through
# `POST /v1/admin/certificates` (CSV, 200,000 per request), then restarts over the same folder.
# Prints RSS before and after the import and after the restart, and the time to ready.
#
#   bench/certificates-rss.sh PLATEPOOL_BINARY [N]      (N: 1000000 by default)
set -euo pipefail

bin=${1:?platepool binary}
n=${2:-1000000}
per=200000
port=${PORT:-18473}
token=bench-$(date +%s%N)
work=$(mktemp -d /tmp/platepool-certs-XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT

rss() { awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status"; }

start() {
    local began
    began=$(date +%s.%N)
    PLATEPOOL_OPERATOR_TOKEN=$token PLATEPOOL_TOKEN_SECRET=bench-secret-0123456789abcdef0123 \
        "$bin" serve --addr "127.0.0.1:$port" --data-dir "$work/data" \
        >>"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 1200); do
        if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
            echo "ready in $(echo "$(date +%s.%N) - $began" | bc | sed 's/^\./0./') s"
            return 0
        fi
        sleep 0.05
    done
    echo "not ready" >&2
    cat "$work/server.log" >&2
    exit 1
}

# Valid VINs: 8 characters of prefix, the check digit, 8 of serial (ISO 3779 weights).
python3 - "$n" "$per" "$work" <<'EOF'
import sys
n, per, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
values = {str(d): d for d in range(10)}
for letters, start in (("ABCDEFGH", 1), ("JKLMN", 1), ("P", 7), ("R", 9), ("STUVWXYZ", 2)):
    for i, c in enumerate(letters):
        values[c] = start + i
weights = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
alphabet = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
def vin(i):
    tail = ""
    for _ in range(8):
        tail = alphabet[i % len(alphabet)] + tail
        i //= len(alphabet)
    raw = "LSVAU218" + "0" + tail
    s = sum(values[c] * w for c, w in zip(raw, weights)) % 11
    return raw[:8] + ("X" if s == 10 else str(s)) + raw[9:]
for part in range((n + per - 1) // per):
    with open(f"{work}/part{part}.csv", "w") as f:
        f.write("vin,voucher,class,energy\n")
        for i in range(part * per, min(n, (part + 1) * per)):
            f.write(f"{vin(i)},HGZ{i:09d},small,fuel\n")
EOF

start
echo "RSS empty: $(rss $pid)"
for f in "$work"/part*.csv; do
    curl -fsS -X POST "http://127.0.0.1:$port/v1/admin/certificates" \
        -H "Authorization: Bearer $token" -H "Content-Type: text/csv" \
        --data-binary "@$f" -o "$work/answer.json"
    python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); print("  imported", a["imported"], "rejected", len(a["rejected"]))' "$work/answer.json"
done
echo "RSS after importing $n certificates: $(rss $pid)"
du -sh "$work/data" | sed 's/^/data folder: /'
kill -TERM $pid
wait $pid || true
start
echo "RSS after the restart: $(rss $pid)"
