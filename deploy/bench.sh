#!/usr/bin/env bash
# bench.sh measures ingest end to end beside a baseline, in one run on one box:
# the same simulated fleet publishes at full QoS 0 speed first to a bare
# mochi broker whose hook does nothing (gridsim broker), then to gridwatch
# serve on its managed ClickHouse, where the rows are counted in ClickHouse.
# It prints readings/s for both, the ratio, and any loss.
#
#   DEVICES=200 MESSAGES=300000 deploy/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-200}
MESSAGES=${MESSAGES:-300000}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  while :; do
    p=$((20000 + RANDOM % 40000))
    (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
json_field() { grep -o "\"$2\":[0-9.e+]*" "$1" | head -1 | cut -d: -f2; }
wait_http() { for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "bench: $1 never answered" >&2; return 1; }

make -s build
./bin/gridsim city --devices "$DEVICES" --grids 20 -o "$work/devices.csv" >/dev/null
fleet() { # fleet BROKER_PORT OUT
  ./bin/gridsim fleet --devices-file "$work/devices.csv" --broker "tcp://127.0.0.1:$1" \
    --rate 0 --messages "$MESSAGES" --qos 0 --quiet --json > "$2"
}

echo "== baseline: bare mochi broker, no-op hook ($DEVICES devices, $MESSAGES messages, QoS 0)"
bport=$(free_port)
./bin/gridsim broker --listen "127.0.0.1:$bport" --quiet > "$work/bare.json" 2> "$work/bare.log" &
bpid=$!; pids+=("$bpid")
up=0
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$bport") 2>/dev/null && { up=1; break; }; sleep 0.1; done
if [ "$up" -ne 1 ]; then echo "bench: the bare broker did not come up on port $bport:" >&2; cat "$work/bare.log" >&2; exit 1; fi
fleet "$bport" "$work/fleet-bare.json"
kill -TERM "$bpid"; wait "$bpid" || true
bare_readings=$(json_field "$work/fleet-bare.json" readings)
bare_ns=$(json_field "$work/fleet-bare.json" elapsed_ns)
bare_recv=$(json_field "$work/bare.json" messages)
bare_sent=$(json_field "$work/fleet-bare.json" messages)

echo "== gridwatch serve on its managed ClickHouse"
mport=$(free_port); hport=$(free_port)
# The load generator publishes each device far faster than a field device
# may (mqtt.message_rate, 10/s), so the per-device and per-IP limits are
# lifted: this measures the pipeline, not the limiter.
./bin/gridwatch serve --data_dir "$work/gw" --devices.file "$work/devices.csv" \
  --mqtt.listen "127.0.0.1:$mport" --http.listen "127.0.0.1:$hport" --log.level warn \
  --mqtt.message_rate -1 --mqtt.byte_rate -1 --mqtt.conn_rate_per_ip -1 2> "$work/gridwatch.log" &
gpid=$!; pids+=("$gpid")
wait_http "http://127.0.0.1:$hport/readyz"
chhttp=$(json_field "$work/gw/clickhouse/gridwatch-state.json" http_port)
rows() { curl -fs "http://127.0.0.1:$chhttp/" --data-binary "SELECT count() FROM gridwatch.telemetry"; }
fleet "$mport" "$work/fleet-gw.json"
gw_readings=$(json_field "$work/fleet-gw.json" readings)
gw_ns=$(json_field "$work/fleet-gw.json" elapsed_ns)
# The fleet is done; wait for the last batch to land, and time the drain.
drain_start=$(date +%s.%N)
n=$(rows)
for _ in $(seq 1 600); do
  [ "$n" -ge "$gw_readings" ] && break
  sleep 0.05; n=$(rows)
done
drain=$(awk -v a="$drain_start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$gpid/status")
kill -TERM "$gpid"; wait "$gpid" || true

awk -v br="$bare_readings" -v bns="$bare_ns" -v bs="$bare_sent" -v brc="$bare_recv" \
    -v gr="$gw_readings" -v gns="$gw_ns" -v rows="$n" -v drain="$drain" -v rss="$rss_kb" 'BEGIN {
  brate = br / (bns / 1e9)
  gsec = gns / 1e9 + drain
  grate = rows / gsec
  printf "\n%-44s %12s %10s\n", "", "readings/s", "loss"
  printf "%-44s %12.0f %10d\n", "bare mochi broker, no-op hook", brate, bs - brc
  printf "%-44s %12.0f %10d\n", "gridwatch serve, rows in ClickHouse", grate, gr - rows
  printf "\nratio gridwatch / bare broker: %.2fx   (drain after the fleet stopped: %.2fs, gridwatch peak RSS %.0f MiB)\n", grate / brate, drain, rss / 1024
}'
