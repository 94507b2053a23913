#!/usr/bin/env bash
# bench.sh measures ingest end to end, every pipeline side by side in one run
# on one box, with the same load generator (gridsim load: one logged-in MQTT
# connection per device, raw TCP, a QoS 1 fence at the end) and the same
# ClickHouse (gridwatch's managed one):
#
#   bare      a bare mochi broker with a no-op hook (gridsim broker): the limit
#             of the broker gridwatch embeds; readings received, nothing stored
#   gridwatch gridwatch serve, default mode, rows counted in ClickHouse
#   durable   gridwatch serve --ingest.durable_ack (QoS 1 acked once fsynced)
#   telegraf  the pipeline a user builds instead: mosquitto → Telegraf
#             (mqtt_consumer, json, unpivot to the same narrow rows, outputs.sql)
#             → ClickHouse, configured as a careful user would
#
# It prints one table: rows/s end to end (publishing until the last row is in
# ClickHouse), loss, CPU seconds per million rows of the pipeline's own
# processes (ClickHouse's share is shown apart: it is the same server for
# all), peak RSS, and the ratios the project's goals are stated in.
#
#   DEVICES=200 MESSAGES=500000 deploy/bench.sh
#   SKIP_TELEGRAF=1 deploy/bench.sh     # without building Telegraf
#   PIPELINES="bare telegraf" deploy/bench.sh   # some of bare, gridwatch, durable, telegraf, console
#   PROFILE=/tmp/prof deploy/bench.sh   # pprof of gridwatch under each load: a CPU
#                                       # profile of its first PROFILE_SECONDS (15),
#                                       # the heap as the load ends, allocations since start
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICES=${DEVICES:-200}
MESSAGES=${MESSAGES:-500000}
MEMORY_LIMIT=${MEMORY_LIMIT:-$((128 << 20))}
DRAIN_MAX=${DRAIN_MAX:-300}
PROFILE=${PROFILE:-}
PROFILE_SECONDS=${PROFILE_SECONDS:-15}
TOOLS=${TOOLS:-$PWD/.tools}
PIPELINES=${PIPELINES:-bare gridwatch durable telegraf console}
[ -n "${SKIP_TELEGRAF:-}" ] && PIPELINES=${PIPELINES//telegraf/}
runs() { [[ " $PIPELINES " == *" $1 "* ]]; }
TELEGRAF_VERSION=v1.37.2
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)

free_port() {
  while :; do
    p=$((20000 + RANDOM % 12000)) # below the ephemeral range
    (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
json_field() { grep -o "\"$2\":[0-9.e+]*" "$1" | head -1 | cut -d: -f2; }
wait_port() { for _ in $(seq 1 300); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "bench: nothing listens on $1" >&2; return 1; }
wait_http() { for _ in $(seq 1 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "bench: $1 never answered" >&2; return 1; }
# cpu PID...: the user+system CPU seconds the processes used so far.
cpu() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; awk -v t="$t" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'; }
rss_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
now() { date +%s.%N; }

echo "== building gridwatch, gridsim$(runs telegraf && echo ", Telegraf $TELEGRAF_VERSION (once, into $TOOLS)")"
make -s build
if runs telegraf && [ ! -x "$TOOLS/telegraf" ]; then
  # Only the plugins the pipeline needs, into a tool folder: not the
  # project's go.mod. The first build takes several minutes.
  GOBIN="$TOOLS" go install -tags custom,inputs.mqtt_consumer,outputs.sql,parsers.json,processors.unpivot \
    "github.com/influxdata/telegraf/cmd/telegraf@$TELEGRAF_VERSION"
fi
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { echo "bench: mosquitto is missing (make deps)" >&2; exit 1; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
./bin/gridsim city --devices "$DEVICES" --grids 20 -o "$work/devices.csv" >/dev/null
echo "   $DEVICES devices, $MESSAGES messages per run, load $(cut -d' ' -f1-3 /proc/loadavg)"

# load NAME PORT QOS: run the load generator; its statistics go to $work/NAME.json.
load() {
  ./bin/gridsim load --devices-file "$work/devices.csv" --addr "127.0.0.1:$2" \
    --messages "$MESSAGES" --qos "$3" --quiet --json > "$work/$1.json"
}
results=()
# row NAME READINGS_SENT ROWS SECONDS CPU RSS_MIB
row() { results+=("$1|$2|$3|$4|$5|$6"); }

if runs bare; then
echo "== bare mochi broker, no-op hook"
bport=$(free_port)
./bin/gridsim broker --listen "127.0.0.1:$bport" --quiet > "$work/bare-broker.json" 2> "$work/bare.log" &
bpid=$!; pids+=("$bpid")
wait_port "$bport"
for q in 0 1; do
  c0=$(cpu "$bpid")
  load "bare-q$q" "$bport" "$q"
  c1=$(cpu "$bpid")
  r=$(json_field "$work/bare-q$q.json" readings)
  row "bare mochi broker (received) QoS $q" "$r" "$r" "$(awk -v n="$(json_field "$work/bare-q$q.json" elapsed_ns)" 'BEGIN{print n/1e9}')" \
    "$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" "$(rss_mib "$bpid")"
done
kill -TERM "$bpid"; wait "$bpid" 2>/dev/null || true
fi

# gridwatch NAME FLAGS...: start gridwatch serve on the shared data_dir.
gport=$(free_port); hport=$(free_port); pport=$(free_port); gpid=
gridwatch() {
  local prof=()
  [ -n "$PROFILE" ] && { mkdir -p "$PROFILE"; prof=(--http.pprof_listen "127.0.0.1:$pport"); }
  # The load publishes each device far faster than a field device may
  # (mqtt.message_rate, 10/s): the limits are lifted to measure the pipeline.
  ./bin/gridwatch serve --data_dir "$work/gw" --devices.file "$work/devices.csv" \
    --mqtt.listen "127.0.0.1:$gport" --http.listen "127.0.0.1:$hport" --log.level warn \
    --mqtt.message_rate -1 --mqtt.byte_rate -1 --mqtt.conn_rate_per_ip -1 "${prof[@]}" "$@" 2>> "$work/gridwatch.log" &
  gpid=$!; pids+=("$gpid")
  wait_http "http://127.0.0.1:$hport/readyz"
  chhttp=$(json_field "$work/gw/clickhouse/gridwatch-state.json" http_port)
  chtcp=$(json_field "$work/gw/clickhouse/gridwatch-state.json" tcp_port)
  chpid=$(json_field "$work/gw/clickhouse/gridwatch-state.json" pid)
  chpw=$(cat "$work/gw/clickhouse/default-password")
}
ch() { curl -fsS "http://127.0.0.1:$chhttp/" -H "X-ClickHouse-User: default" -H "X-ClickHouse-Key: $chpw" --data-binary "$1"; }
# measure NAME PORT QOS TABLE PIDS...: run the load into a pipeline that
# stores into TABLE and wait for every reading to be there.
measure() {
  local name=$1 port=$2 qos=$3 table=$4; shift 4
  local before c0 ch0 start sent n drain_start
  before=$(ch "SELECT count() FROM $table")
  c0=$(cpu "$@"); ch0=$(cpu "$chpid")
  # The profile of gridwatch under this load, when asked for (PROFILE).
  local pfile= cpuprof=
  if [ -n "$PROFILE" ] && [ "$port" = "$gport" ]; then
    pfile="$PROFILE/${name// /-}"; pfile=${pfile//,/}
    curl -fsS "http://127.0.0.1:$pport/debug/pprof/profile?seconds=$PROFILE_SECONDS" -o "$pfile.cpu.pprof" &
    cpuprof=$!
  fi
  load "$name" "$port" "$qos"
  if [ -n "$pfile" ]; then
    curl -fsS "http://127.0.0.1:$pport/debug/pprof/heap" -o "$pfile.heap.pprof"
    curl -fsS "http://127.0.0.1:$pport/debug/pprof/allocs" -o "$pfile.allocs.pprof"
  fi
  sent=$(json_field "$work/$name.json" readings)
  drain_start=$(now)
  n=$(( $(ch "SELECT count() FROM $table") - before ))
  # Wait for the last batch to land; a pipeline that lost rows stops
  # growing, so give up 10 s after the count last moved, and one that
  # trickles after DRAIN_MAX seconds (what is not stored by then counts
  # as loss).
  local last=$n still=0 deadline=$(( $(date +%s) + DRAIN_MAX ))
  while [ "$n" -lt "$sent" ] && [ "$still" -lt 100 ] && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 0.1
    n=$(( $(ch "SELECT count() FROM $table") - before ))
    if [ "$n" -eq "$last" ]; then still=$((still + 1)); else still=0; last=$n; fi
  done
  local secs
  secs=$(awk -v e="$(json_field "$work/$name.json" elapsed_ns)" -v a="$drain_start" -v b="$(now)" -v s="$still" \
    'BEGIN { print e/1e9 + (b - a) - s * 0.1 }')
  row "$name" "$sent" "$n" "$secs" "$(awk -v a="$c0" -v b="$(cpu "$@")" 'BEGIN{print b-a}')" "$(rss_mib "$1")"
  results[-1]+="|$(awk -v a="$ch0" -v b="$(cpu "$chpid")" 'BEGIN{print b-a}')"
  if [ -n "$pfile" ]; then
    # After the drain, which the profile's end must not hold up.
    curl -fsS "http://127.0.0.1:$hport/metrics" -o "$pfile.metrics.txt" || true
    wait "$cpuprof" || true
  fi
}

# stop_gridwatch stops the gridwatch started last, if one runs: a false
# test must not be its status, which set -e would take for a failure.
stop_gridwatch() { if [ -n "$gpid" ]; then kill -TERM "$gpid"; wait "$gpid" 2>/dev/null || true; gpid=; fi; }

if runs gridwatch; then
echo "== gridwatch serve, default mode"
gridwatch
measure "gridwatch QoS 0" "$gport" 0 gridwatch.telemetry "$gpid"
measure "gridwatch QoS 1" "$gport" 1 gridwatch.telemetry "$gpid"
stop_gridwatch
fi

if runs durable; then
echo "== gridwatch serve, ingest.durable_ack"
gridwatch --ingest.durable_ack
measure "gridwatch durable QoS 1" "$gport" 1 gridwatch.telemetry "$gpid"
stop_gridwatch

# The same with a soft memory limit (the Go GC's target; ingest.memory_limit),
# as a deployment that must fit in 200 MiB would set it: the limit is of the
# Go runtime's memory, and the RSS also counts the pages of the executable
# it touched (about 60 MiB of its 70), so 128 MiB, not 200.
echo "== gridwatch serve, ingest.durable_ack, ingest.memory_limit $((MEMORY_LIMIT >> 20)) MiB"
gridwatch --ingest.durable_ack --ingest.memory_limit "$MEMORY_LIMIT"
measure "gridwatch durable QoS 1, memory_limit" "$gport" 1 gridwatch.telemetry "$gpid"
fi

if runs telegraf; then
  echo "== mosquitto → Telegraf → ClickHouse (gridwatch idles; its ClickHouse is shared)"
  [ -n "$gpid" ] || gridwatch
  ch "CREATE DATABASE IF NOT EXISTS peer" >/dev/null
  # The same narrow rows gridwatch stores: one per device, metric and time.
  ch "CREATE TABLE IF NOT EXISTS peer.telemetry (timestamp DateTime, device String, metric String, value Float64) ENGINE = MergeTree ORDER BY (device, metric, timestamp)" >/dev/null
  mport=$(free_port)
  # A careful user's mosquitto: no cap on queued or in-flight messages to
  # the subscriber (the defaults drop about half of a burst silently).
  cat > "$work/mosquitto.conf" <<EOF
listener $mport 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
max_keepalive 600
log_dest none
EOF
  "$MOSQUITTO" -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
  mpid=$!; pids+=("$mpid")
  wait_port "$mport"
  for q in 0 1; do
    # A careful user's Telegraf: a batch as large as the consumer's window,
    # a buffer that holds a burst, the subscription at the publish QoS.
    cat > "$work/telegraf-q$q.conf" <<EOF
[agent]
  interval = "1s"
  flush_interval = "500ms"
  flush_jitter = "0s"
  metric_batch_size = 20000
  metric_buffer_limit = 2000000
  omit_hostname = true
  quiet = true
[[inputs.mqtt_consumer]]
  servers = ["tcp://127.0.0.1:$mport"]
  topics = ["devices/+/telemetry"]
  qos = $q
  client_id = "telegraf-bench-q$q"
  max_undelivered_messages = 20000
  topic_tag = ""
  data_format = "json"
  json_time_key = "ts"
  json_time_format = "unix_ms"
  name_override = "telemetry"
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "devices/+/telemetry"
    tags = "_/device/_"
[[processors.unpivot]]
  tag_key = "metric"
  value_key = "value"
[[outputs.sql]]
  driver = "clickhouse"
  data_source_name = "clickhouse://default:$chpw@127.0.0.1:$chtcp/peer?dial_timeout=10s"
  table_exists_template = "SELECT 1 FROM {TABLE} LIMIT 1"
  # One INSERT per batch: without it outputs.sql runs one transaction per
  # row, about 160 rows/s into ClickHouse.
  batch_transactions = true
EOF
    "$TOOLS/telegraf" --config "$work/telegraf-q$q.conf" > "$work/telegraf-q$q.log" 2>&1 &
    tpid=$!; pids+=("$tpid")
    # Telegraf has subscribed once mosquitto counts a subscription.
    sleep 3
    measure "telegraf QoS $q" "$mport" "$q" peer.telemetry "$tpid" "$mpid"
    kill -TERM "$tpid"; wait "$tpid" 2>/dev/null || true
  done
fi
stop_gridwatch

echo
printf "%-40s %12s %10s %12s %12s %8s\n" "pipeline" "rows/s" "loss" "CPU s/M rows" "+ClickHouse" "RSS MiB"
declare -A rate cpum
for r in "${results[@]}"; do
  IFS='|' read -r name sent rows secs cpus rss chcpu <<< "$r"
  rate[$name]=$(awk -v n="$rows" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  cpum[$name]=$(awk -v c="$cpus" -v n="$rows" 'BEGIN { printf "%.2f", (n > 0 ? c / n * 1e6 : 0) }')
  chm=$(awk -v c="${chcpu:-0}" -v n="$rows" 'BEGIN { printf "%.2f", (n > 0 ? c / n * 1e6 : 0) }')
  printf '%-40s %12s %10s %12s %12s %8s\n' "$name" "${rate[$name]}" "$((sent - rows))" "${cpum[$name]}" "$chm" "$rss"
done
# ratio/cratio A B: A's rows/s (CPU per row) over B's; n/a when either did not run.
ratio() { awk -v a="${rate[$1]:-0}" -v b="${rate[$2]:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else printf "n/a" }'; }
cratio() { awk -v a="${cpum[$1]:-0}" -v b="${cpum[$2]:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else printf "n/a" }'; }
echo
echo "goal                                              ratio    target"
printf '%-49s %-8s %s\n' "gridwatch QoS 0 / bare mochi QoS 0" "$(ratio "gridwatch QoS 0" "bare mochi broker (received) QoS 0")" "≥ 0.8x"
printf '%-49s %-8s %s\n' "gridwatch QoS 0 / Telegraf pipeline QoS 0" "$(ratio "gridwatch QoS 0" "telegraf QoS 0")" "≥ 2.5x"
printf '%-49s %-8s %s\n' "gridwatch QoS 1 / Telegraf pipeline QoS 1" "$(ratio "gridwatch QoS 1" "telegraf QoS 1")" "≥ 2.5x"
printf '%-49s %-8s %s\n' "gridwatch durable QoS 1 / Telegraf QoS 1" "$(ratio "gridwatch durable QoS 1" "telegraf QoS 1")" "≥ 1.5x (RSS ≤ 200 MiB)"
printf '%-49s %-8s %s\n' "  the same with ingest.memory_limit" "$(ratio "gridwatch durable QoS 1, memory_limit" "telegraf QoS 1")" "≥ 1.5x (RSS ≤ 200 MiB)"
printf '%-49s %-8s %s\n' "CPU/row gridwatch QoS 0 / Telegraf+mosquitto" "$(cratio "gridwatch QoS 0" "telegraf QoS 0")" "≤ 0.4x"
printf '%-49s %-8s %s\n' "CPU/row gridwatch QoS 1 / Telegraf+mosquitto" "$(cratio "gridwatch QoS 1" "telegraf QoS 1")" "≤ 0.4x"
printf '%-49s %-8s %s\n' "load generator: bare mochi QoS 0 / gridwatch" "$(ratio "bare mochi broker (received) QoS 0" "gridwatch QoS 0")" "≥ 1.5x (not the bottleneck)"
echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
[ -z "$PROFILE" ] || echo "(gridwatch's profiles and /metrics after each load: $PROFILE; go tool pprof -top bin/gridwatch FILE)"

# The console with 10,000 open cases and 5,000 devices in headless Chromium
# (web/e2e/load.test.mjs, also part of make test); its figures are printed
# as FIGURES {…} and left in web/e2e/artifacts/load-figures.json.
runs console || exit 0
echo
echo "== console load (go test ./web -run TestConsoleLoad)"
go test -count=1 -timeout 20m -run TestConsoleLoad -v ./web/ | grep -E 'FIGURES|open cases|seeded|^(ok|FAIL|---)' || true
