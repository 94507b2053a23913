#!/usr/bin/env bash
# install-deps.sh installs what gridwatch needs to build, test and run its demo
# on Debian: ClickHouse (server and client), the mosquitto clients (a foreign
# MQTT client for tests), ffmpeg (ffprobe, the camera prober's baseline), a C
# compiler and FFmpeg's libavcodec/libswscale headers (the prober decodes
# pictures through cgo), GStreamer's RTSP server with its H.264/H.265
# encoders (a third-party camera for the diagnosis tests), sip-tester (sipp,
# a foreign SIP peer for the GB/T 28181 registrar's tests), ZooKeeper (the
# cluster tests run it, by its java class, beside two ClickHouse replicas;
# Debian's zookeeper package starts no daemon: zookeeperd would), Chromium and its
# driver with a CJK font (the console's browser tests), then the Go modules
# and the console's npm packages (npm ci in web/, exactly as
# package-lock.json pins them; no tool downloads a browser of its own), and
# what checks the deploy files without an engine (deploy/check-deploy.sh):
# Debian's docker-compose, haproxy and systemd-analyze, and kubeconform,
# built from the Go module proxy into .tools. It installs only what is
# missing and is safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v clickhouse-server >/dev/null || command -v clickhouse >/dev/null || need+=(clickhouse-server)
command -v clickhouse-client >/dev/null || command -v clickhouse >/dev/null || need+=(clickhouse-client)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v ffprobe >/dev/null || need+=(ffmpeg)
[ -x /usr/bin/time ] || need+=(time) # the camera sweep's CPU and peak RSS (bench-cameras.sh, run by test.sh)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
fc-list 2>/dev/null | grep -qi 'wenquanyi\|noto sans cjk' || need+=(fonts-wqy-microhei)
command -v sipp >/dev/null || need+=(sip-tester)
{ [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null; } || need+=(zookeeper)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v haproxy >/dev/null || need+=(haproxy)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
pkg-config --exists libavcodec libavutil libswscale 2>/dev/null || need+=(pkg-config libavcodec-dev libavutil-dev libswscale-dev)
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' 2>/dev/null ||
  need+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp)
for element in videotestsrc imagefreeze gaussianblur x264enc x265enc rtph264pay rtph265pay; do
  gst-inspect-1.0 "$element" >/dev/null 2>&1 || {
    need+=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly)
    break
  }
done

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "install-deps: installing ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's packages start a system-wide ClickHouse and mosquitto where
  # systemd runs; gridwatch runs its own private ones, and tests their own,
  # so those would only load the machine.
  if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now clickhouse-server mosquitto haproxy >/dev/null 2>&1 || true
  fi
fi

command -v go >/dev/null || { echo "install-deps: Go is required (https://go.dev/doc/install); Debian's golang package is too old" >&2; exit 1; }
go mod download

# kubeconform validates deploy/k8s (against the schemas vendored there).
KUBECONFORM_VERSION=v0.7.0
# (go install leaves its -v at "development": the binary's module version says.)
if [ "$(go version -m .tools/kubeconform 2>/dev/null | awk '$1 == "mod" {print $3}')" != "$KUBECONFORM_VERSION" ]; then
  GOBIN="$PWD/.tools" go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
fi

# The console's build and browser tests. Building gridwatch needs none of it:
# the built console is committed (web/dist).
command -v npm >/dev/null || { echo "install-deps: Node.js ≥ 20 and npm are required for the console's tests (web/)" >&2; exit 1; }
if ! cmp -s web/package-lock.json web/node_modules/.gridwatch-lock 2>/dev/null; then
  (cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  cp web/package-lock.json web/node_modules/.gridwatch-lock
fi
