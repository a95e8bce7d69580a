#!/usr/bin/env bash
# Two replicas on one PostgreSQL database behind Debian's nginx (deploy/nginx/lms.conf), checked
# as an operator would:
#
#   1. calls through nginx spread over both replicas (each replica's metrics count some);
#   2. the feed is continuous when a replica dies: a watcher reads through nginx, the replica
#      serving it is killed (kill -9), the watcher resumes through nginx from its last resume
#      token, and the events it read are exactly the feed: no gap, no repeat;
#   3. a replica's restart loses nothing: writes keep going through nginx while one replica is
#      stopped (SIGTERM) and started again; a writer retries a failed call with the same
#      request_id, and every acknowledged person is in the database exactly once.
#
#   deploy/nginx-check.sh    # PostgreSQL at $LMS_CI_POSTGRES (default postgres://postgres@127.0.0.1:5432)
#
# Needs: the built binary ($LMS_BIN, default target/debug/lms), psql, curl, jq, grpcurl, python3
# (to pick free ports), and nginx (`apt-get install nginx-light` when missing, installed here when
# run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin="${LMS_BIN:-target/debug/lms}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
[ -x "$bin" ] || { echo "nginx-check: $bin is not built" >&2; exit 1; }
postgres="${LMS_CI_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
step() { printf '\n==> %s\n' "$*"; }

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "nginx-check: installing nginx (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends nginx-light >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null; }
  else
    echo "nginx-check: nginx is required (apt-get install nginx-light)" >&2
    exit 1
  fi
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)
for tool in psql curl jq grpcurl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "nginx-check: $tool is required" >&2; exit 1; }
done
psql "$postgres/postgres" -Atqc 'select 1' >/dev/null ||
  { echo "nginx-check: PostgreSQL does not answer at $postgres" >&2; exit 1; }

work=$(mktemp -d)
database="lms_nginx_$(date +%s)_$$"
declare -A pid
cleanup() {
  status=$?
  for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$postgres/postgres" -qc "drop database if exists \"$database\" with (force)" >/dev/null 2>&1 || true
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do
      [ -f "$log" ] || continue
      echo "--- $(basename "$log") (tail)" >&2
      tail -n 15 "$log" >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

psql "$postgres/postgres" -qc "create database \"$database\""
export DATABASE_URL="$postgres/$database"
"$bin" migrate --data-dir "$work" >/dev/null

declare -A grpc_port metrics_port
for replica in r1 r2; do
  grpc_port[$replica]=$(free_port)
  metrics_port[$replica]=$(free_port)
done
start_replica() {
  local replica=$1
  LMS_DATA_DIR="$work" "$bin" serve --no-migrate \
    --listen "127.0.0.1:${grpc_port[$replica]}" \
    --metrics-listen "127.0.0.1:${metrics_port[$replica]}" \
    --trusted-proxies 127.0.0.1/32 --shutdown-grace 5s \
    >>"$work/$replica.log" 2>&1 &
  pid[$replica]=$!
  for _ in $(seq 1 300); do
    "$bin" health --address "http://127.0.0.1:${grpc_port[$replica]}" >/dev/null 2>&1 && return 0
    kill -0 "${pid[$replica]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "nginx-check: replica $replica did not start" >&2
  exit 1
}
step "two replicas on one PostgreSQL database"
start_replica r1
start_replica r2

step "nginx in front of them (deploy/nginx/lms.conf)"
listen=$(free_port)
sed -e "s/@LISTEN@/127.0.0.1:$listen/" \
  -e "s/@REPLICA_1@/127.0.0.1:${grpc_port[r1]}/" \
  -e "s/@REPLICA_2@/127.0.0.1:${grpc_port[r2]}/" deploy/nginx/lms.conf >"$work/lms.conf"
cat >"$work/nginx.conf" <<EOF
daemon on;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
worker_processes 1;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $work/body;
    include $work/lms.conf;
}
EOF
"$nginx" -t -c "$work/nginx.conf" -p "$work" 2>"$work/nginx-test.log" ||
  { cat "$work/nginx-test.log" >&2; exit 1; }
"$nginx" -c "$work/nginx.conf" -p "$work"
lb="127.0.0.1:$listen"
for _ in $(seq 1 100); do
  grpcurl -plaintext "$lb" grpc.health.v1.Health/Check >/dev/null 2>&1 && break
  sleep 0.1
done
grpcurl -plaintext "$lb" grpc.health.v1.Health/Check >/dev/null

TOKEN=$(LMS_DATA_DIR="$work" "$bin" token --subject nginx-check --role admin)
# The protos, not reflection: one grpcurl run is then one call, and round robin shows.
protos=()
for file in proto/lms/v1/*.proto; do protos+=(-proto "${file#proto/}"); done
call() { # call METHOD JSON: one call through nginx
  grpcurl -plaintext -import-path "$root/proto" "${protos[@]}" \
    -H "authorization: Bearer $TOKEN" -d "$2" "$lb" "lms.v1.$1"
}
call OrganizationService/CreateOrganization \
  '{"organization": {"name": "Agency", "kind": "ORGANIZATION_KIND_AGENCY", "external_code": "AG"}, "request_id": "6f1c0a52-0000-4000-8000-000000000001"}' >/dev/null
# add_person N: one person (one feed event), retried with the same request_id until acknowledged.
add_person() {
  local n=$1 request_id attempt
  request_id=$(printf '6f1c0a52-0000-4000-8000-%012d' "$((n + 1000))")
  for attempt in $(seq 1 50); do
    if call PersonService/BatchUpsertPeople "$(printf '{"people": [{"external_id": "P-%05d", "full_name": "Officer %d", "email": "p%d@agency.gov.my", "organization_external_code": "AG", "sector": "SECTOR_PUBLIC"}], "request_id": "%s"}' "$n" "$n" "$n" "$request_id")" \
      >/dev/null 2>>"$work/writer-errors.log"; then
      echo "$n" >>"$work/acknowledged"
      return 0
    fi
    sleep 0.1
  done
  echo "nginx-check: P-$n was never acknowledged" >&2
  return 1
}
counted() { # counted REPLICA: calls of BatchUpsertPeople that replica finished
  curl -sf "http://127.0.0.1:${metrics_port[$1]}/metrics" |
    awk '/^lms_rpc_calls_total\{method="\/lms.v1.PersonService\/BatchUpsertPeople"/ { sum += $2 } END { print sum + 0 }'
}

step "1. calls spread over both replicas"
for n in $(seq 1 20); do add_person "$n"; done
r1_calls=$(counted r1)
r2_calls=$(counted r2)
echo "BatchUpsertPeople calls: replica 1 $r1_calls, replica 2 $r2_calls"
[ "$r1_calls" -gt 0 ] && [ "$r2_calls" -gt 0 ] || { echo "nginx-check: calls did not spread" >&2; exit 1; }

step "2. the feed is continuous when the replica serving a watcher dies"
watch() { # watch FILE [RESUME_TOKEN]: WatchEvents through nginx, one JSON event per line in FILE
  local body='{}'
  [ -z "${2:-}" ] || body=$(jq -cn --arg token "$2" '{resume_token: $token}')
  grpcurl -plaintext -import-path "$root/proto" "${protos[@]}" \
    -H "authorization: Bearer $TOKEN" -d "$body" "$lb" lms.v1.EventService/WatchEvents 2>>"$work/watch-errors.log" | jq -c --unbuffered . >>"$1"
}
watch "$work/first.jsonl" &
watcher=$!
for _ in $(seq 1 100); do
  [ "$(wc -l <"$work/first.jsonl" 2>/dev/null || echo 0)" -ge 20 ] && break
  sleep 0.1
done
[ "$(wc -l <"$work/first.jsonl")" -ge 20 ] || { echo "nginx-check: the watcher read no backlog" >&2; exit 1; }
serving=""
for replica in r1 r2; do
  watchers=$(curl -sf "http://127.0.0.1:${metrics_port[$replica]}/metrics" | awk '/^lms_feed_watchers / { print $2 }')
  [ "${watchers:-0}" = 1 ] && serving=$replica
done
[ -n "$serving" ] || { echo "nginx-check: no replica reports the watcher" >&2; exit 1; }
for n in $(seq 21 25); do add_person "$n"; done
for _ in $(seq 1 100); do
  [ "$(wc -l <"$work/first.jsonl")" -ge 25 ] && break
  sleep 0.1
done
echo "the watcher is on $serving and has read $(wc -l <"$work/first.jsonl") events; kill -9 $serving"
kill -9 "${pid[$serving]}"
wait "${pid[$serving]}" 2>/dev/null || true
unset "pid[$serving]"
wait "$watcher" 2>/dev/null || true
# The writes go on through nginx while the watcher is away; the dead replica is skipped.
for n in $(seq 26 40); do add_person "$n"; done
resume=$(tail -n 1 "$work/first.jsonl" | jq -r .resumeToken)
[ -n "$resume" ] && [ "$resume" != null ] || { echo "nginx-check: events carry no resume token" >&2; exit 1; }
call EventService/WatchEvents \
  "$(jq -cn --arg token "$resume" '{resume_token: $token, until_caught_up: true}')" | jq -c . >"$work/second.jsonl"
cat "$work/first.jsonl" "$work/second.jsonl" | jq -r .cursor >"$work/read-cursors"
psql "$DATABASE_URL" -Atqc "select cursor from outbox_events order by cursor" >"$work/feed-cursors" 2>/dev/null ||
  call EventService/WatchEvents '{"until_caught_up": true}' | jq -r .cursor >"$work/feed-cursors"
if ! diff -q "$work/read-cursors" "$work/feed-cursors" >/dev/null; then
  echo "nginx-check: the events read across the failover differ from the feed:" >&2
  diff "$work/read-cursors" "$work/feed-cursors" | head -n 20 >&2
  exit 1
fi
echo "read $(wc -l <"$work/read-cursors") events across the failover: exactly the feed, no gap, no repeat"

step "3. a replica's restart loses nothing"
start_replica "$serving"
survivor=r1
[ "$serving" = r1 ] && survivor=r2
(for n in $(seq 41 140); do add_person "$n" || exit 1; done) &
writer=$!
# Restart the survivor while the writer runs: SIGTERM drains its calls, then it starts again.
for _ in $(seq 1 100); do
  [ "$(wc -l <"$work/acknowledged")" -ge 60 ] && break
  sleep 0.1
done
kill -TERM "${pid[$survivor]}"
wait "${pid[$survivor]}" 2>/dev/null || true
start_replica "$survivor"
wait "$writer"
acknowledged=$(sort -u "$work/acknowledged" | wc -l)
stored=$(call PersonService/ListPeople '{"page_size": 1000}' | jq '.people | length')
distinct=$(call PersonService/ListPeople '{"page_size": 1000}' | jq '[.people[].externalId] | unique | length')
echo "acknowledged $acknowledged people; stored $stored ($distinct distinct external ids)"
[ "$acknowledged" = 140 ] && [ "$stored" = 140 ] && [ "$distinct" = 140 ] ||
  { echo "nginx-check: acknowledged writes and stored rows differ" >&2; exit 1; }
retries=$(grep -c . "$work/writer-errors.log" 2>/dev/null || true)
echo "nginx-check: passed (${retries:-0} lines of refused attempts were retried with their request_id)"
