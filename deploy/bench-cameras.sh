#!/usr/bin/env bash
# bench-cameras.sh: one prober sweep of N simulated cameras beside ffprobe
# on a sample of the same cameras, run side by side; prints the ratio of
# probes per second. Usage: deploy/bench-cameras.sh [N] [FFPROBE_SAMPLE]
set -euo pipefail
N=${1:-1000}
SAMPLE=${2:-10}
KIND=${KIND:-sample}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
farm_pid=
cleanup() { [ -n "$farm_pid" ] && kill "$farm_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
go build -o "$tmp/gridsim" ./cmd/gridsim
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$tmp/gridsim" cameras --count "$N" --listen "127.0.0.1:$port" --csv "$tmp/cams.csv" 2>"$tmp/farm.log" &
farm_pid=$!
for _ in $(seq 100); do [ -s "$tmp/cams.csv" ] && break; sleep 0.1; done
[ -s "$tmp/cams.csv" ] || { cat "$tmp/farm.log"; exit 1; }

echo "== gridwatch prober: one $KIND sweep of $N cameras"
/usr/bin/time -f '{"cpu_user_s": %U, "cpu_sys_s": %S, "peak_rss_kib": %M, "wall_s": %e}' \
  "$tmp/gridsim" probe --csv "$tmp/cams.csv" --kind "$KIND" > "$tmp/probe.json" 2> "$tmp/probe.time"
cat "$tmp/probe.json"; tail -1 "$tmp/probe.time"
prober_rate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["probes_per_s"])' "$tmp/probe.json")

echo "== ffprobe: $SAMPLE of the same cameras, one after the other"
urls=$(python3 -c '
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))[: int(sys.argv[2])]
print(" ".join(r["rtsp_url"] for r in rows))' "$tmp/cams.csv" "$SAMPLE")
start=$(date +%s.%N)
/usr/bin/time -f '{"cpu_user_s": %U, "cpu_sys_s": %S, "peak_rss_kib": %M, "wall_s": %e}' bash -c '
for u in '"$urls"'; do
  ffprobe -v error -rtsp_transport tcp -select_streams v:0 -show_entries stream=codec_name,width,height,r_frame_rate -of csv=p=0 "$u" >/dev/null
done' 2> "$tmp/ffprobe.time"
end=$(date +%s.%N)
tail -1 "$tmp/ffprobe.time"
python3 - "$prober_rate" "$start" "$end" "$SAMPLE" <<'PY'
import sys
prober, start, end, n = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
ff = n / (end - start)
print(f"ffprobe: {ff:.2f} probes/s; prober: {prober:.1f} probes/s; ratio {prober/ff:.0f}x (goal >= 50x)")
PY
