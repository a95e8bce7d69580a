#!/usr/bin/env bash
# Starts two replicas of the server with metrics on, and Debian's `prometheus` scraping both
# (the scrape job of docs/monitoring.md); passes when Prometheus reports both targets up and
# has read a call counted by each replica.
#
#   deploy/prometheus-check.sh            # replicas on SQLite, one data dir each
#   DATABASE_URL=postgres://... deploy/prometheus-check.sh   # replicas sharing PostgreSQL
#
# Needs: the built binary ($LMS_BIN, default target/debug/lms), curl, jq, grpcurl, and
# prometheus (`apt-get install prometheus` when missing; installed here when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${LMS_BIN:-target/debug/lms}"
[ -x "$bin" ] || { echo "prometheus-check: $bin is not built" >&2; exit 1; }
if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "prometheus-check: installing prometheus (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
  else
    echo "prometheus-check: prometheus is required (apt-get install prometheus)" >&2
    exit 1
  fi
fi
for tool in curl jq grpcurl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "prometheus-check: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Free ports, chosen by the kernel: bind to port 0 and read back what it picked.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

targets=()
grpc=()
for replica in 1 2; do
  grpc_port=$(free_port)
  metrics_port=$(free_port)
  mkdir -p "$work/replica$replica"
  LMS_DATA_DIR="$work/replica$replica" "$bin" serve \
    --listen "127.0.0.1:$grpc_port" --metrics-listen "127.0.0.1:$metrics_port" \
    >"$work/replica$replica.log" 2>&1 &
  pids+=($!)
  targets+=("127.0.0.1:$metrics_port")
  grpc+=("127.0.0.1:$grpc_port")
done
for address in "${grpc[@]}"; do
  for _ in $(seq 1 300); do
    "$bin" health --address "http://$address" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$bin" health --address "http://$address"
  # One call each, so each replica has a counted call to show.
  grpcurl -plaintext "$address" grpc.health.v1.Health/Check >/dev/null
done

prometheus_port=$(free_port)
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: lms
    static_configs:
      - targets: ["${targets[0]}", "${targets[1]}"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prometheus_port" >"$work/prometheus.log" 2>&1 &
pids+=($!)
api="http://127.0.0.1:$prometheus_port/api/v1"

query() { curl -sf --get "$api/query" --data-urlencode "query=$1" | jq -r '.data.result | length'; }
deadline=$((SECONDS + 90))
up=0 counted=0
while [ "$SECONDS" -lt "$deadline" ]; do
  up=$(query 'up{job="lms"} == 1' 2>/dev/null || echo 0)
  counted=$(query 'lms_rpc_calls_total{job="lms",method="/grpc.health.v1.Health/Check",code="OK"} > 0' 2>/dev/null || echo 0)
  if [ "$up" = 2 ] && [ "$counted" = 2 ]; then
    echo "prometheus-check: both replicas up; each shows its health checks counted"
    curl -sf "$api/targets" | jq -r '.data.activeTargets[] | "  \(.scrapeUrl) \(.health)"'
    exit 0
  fi
  sleep 1
done
echo "prometheus-check: after 90 s, $up of 2 targets up and $counted of 2 showing calls" >&2
curl -sf "$api/targets" | jq . >&2 || true
tail -n 20 "$work/prometheus.log" >&2
exit 1
