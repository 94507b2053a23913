#!/usr/bin/env bash
# bench-conns.sh measures connection scale on one node: CONNS registered
# devices connect to gridwatch serve (clients in a second process, gridsim
# load, spread over loopback source addresses), each publishes one message,
# and all stay connected for HOLD. It reports the connect rate cold (every
# secret checked by argon2id) and warm (the verifier's cache: a device that
# reconnects), gridwatch's RSS before and while holding them, and the memory
# per connection. The same is measured beside it for the bare mochi broker
# (no authentication, no ingest): the floor of the broker gridwatch embeds.
#
#   CONNS=100000 deploy/bench-conns.sh
#
# Each connection is a file descriptor in each process: the script raises
# the open-files limit as far as the system allows and lowers CONNS to fit
# (a sandbox may cap the hard limit; the report says so).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-100000}
HOLD=${HOLD:-10s}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
if [ "$limit" != unlimited ] && [ "$CONNS" -gt $((limit - 1000)) ]; then
  echo "bench-conns: the open-files limit is $limit here (hard limit $(ulimit -Hn), not raisable in this environment): measuring $((limit - 1000)) connections instead of $CONNS"
  CONNS=$((limit - 1000))
fi
free_port() {
  while :; do
    p=$((20000 + RANDOM % 12000))
    (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
json_field() { grep -o "\"$2\":[0-9.e+]*" "$1" | head -1 | cut -d: -f2; }
wait_http() { for _ in $(seq 1 1200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.25; done; echo "bench-conns: $1 never answered" >&2; return 1; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
hwm_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# About 28k ephemeral ports per source address: spread over enough of them.
addrs=$(seq -s, -f '127.0.0.%g' 2 $((2 + CONNS / 25000)))

make -s build
echo "== $CONNS devices (argon2id-hashed secrets: the import takes a while)"
./bin/gridsim city --devices "$CONNS" --grids 50 -o "$work/devices.csv" >/dev/null
# connect NAME PORT: all devices connect, publish one message each, hold.
connect() {
  ./bin/gridsim load --devices-file "$work/devices.csv" --addr "127.0.0.1:$2" --messages "$CONNS" \
    --local-addr "$addrs" --connect-concurrency 256 --connect-timeout 60s --hold "$HOLD" --quiet --json > "$work/$1.json" &
  lpid=$!
}
# held PID [METRICS_URL]: peak RSS while the connections are held (sampled
# in the hold); with METRICS_URL, the Go runtime's stack and heap in use at
# the end of the hold go to $work/runtime.
held() {
  local peak=0 r
  while kill -0 "$lpid" 2>/dev/null; do
    r=$(rss_mib "$1")
    peak=$(awk -v a="$peak" -v b="$r" 'BEGIN { print (b > a ? b : a) }')
    if [ -n "${2:-}" ]; then
      curl -fs "$2" | grep -E '^go_memstats_(stack|heap)_inuse_bytes' > "$work/runtime.new" && mv "$work/runtime.new" "$work/runtime" || true
    fi
    sleep 0.5
  done
  wait "$lpid" || true
  echo "$peak"
}

echo "== bare mochi broker"
bport=$(free_port)
./bin/gridsim broker --listen "127.0.0.1:$bport" --quiet > /dev/null 2> "$work/bare.log" &
bpid=$!; pids+=("$bpid")
sleep 1
bare0=$(rss_mib "$bpid")
connect bare "$bport"
bare1=$(held "$bpid")
kill -TERM "$bpid"; wait "$bpid" 2>/dev/null || true

echo "== gridwatch serve"
gport=$(free_port); hport=$(free_port)
./bin/gridwatch serve --data_dir "$work/gw" --devices.file "$work/devices.csv" \
  --mqtt.listen "127.0.0.1:$gport" --http.listen "127.0.0.1:$hport" --log.level warn \
  --mqtt.conn_rate_per_ip -1 2> "$work/gridwatch.log" &
gpid=$!; pids+=("$gpid")
wait_http "http://127.0.0.1:$hport/readyz"
gw0=$(rss_mib "$gpid")
connect cold "$gport"
gw1=$(held "$gpid" "http://127.0.0.1:$hport/metrics")
cp "$work/runtime" "$work/runtime-cold" 2>/dev/null || true
connect warm "$gport"
gw2=$(held "$gpid")
gwpeak=$(hwm_mib "$gpid")

for f in bare cold warm; do
  err=$(grep -o '"first_error":"[^"]*"' "$work/$f.json" || true)
  [ -n "$err" ] && echo "   $f: $(json_field "$work/$f.json" connect_errors) connect errors, $(json_field "$work/$f.json" errors) failed: $err"
done
echo
printf '%-40s %10s %12s %12s %14s\n' "" "connected" "connects/s" "RSS MiB" "KiB/connection"
line() { # NAME FILE RSS_BEFORE RSS_HELD
  awk -v n="$(json_field "$2" connected)" -v r="$(json_field "$2" connects_per_s)" -v a="$3" -v b="$4" -v name="$1" \
    'BEGIN { printf "%-40s %10d %12.0f %12.0f %14.1f\n", name, n, r, b, (n > 0 ? (b - a) * 1024 / n : 0) }'
}
line "bare mochi broker" "$work/bare.json" "$bare0" "$bare1"
line "gridwatch, cold (argon2id per device)" "$work/cold.json" "$gw0" "$gw1"
line "gridwatch, warm (verifier cache)" "$work/warm.json" "$gw0" "$gw2"
if [ -s "$work/runtime-cold" ]; then
  awk -v n="$(json_field "$work/cold.json" connected)" '/stack_inuse/ { st = $2 } /heap_inuse/ { hp = $2 } END {
    printf "gridwatch holding them: Go stacks %.0f MiB (%.1f KiB/connection), heap in use %.0f MiB (%.1f KiB/connection)\n",
      st / 1048576, st / 1024 / n, hp / 1048576, hp / 1024 / n }' "$work/runtime-cold"
fi
awk -v p="$gwpeak" -v n="$(json_field "$work/cold.json" connected)" -v a="$gw0" 'BEGIN {
  printf "\ngridwatch peak RSS %.0f MiB; at that cost per connection, 100,000 connections would take about %.0f MiB (goal: <= 2048)\n", p, a + (p - a) / n * 100000 }'
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
