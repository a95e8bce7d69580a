#!/usr/bin/env bash
# bench/cost.sh [--officers N] [--duration 20s]
#
# What one learner and one progress event cost on PostgreSQL, for docs/capacity.md: a fresh
# database seeded with `lms seed --profile national` (the release binary), then
#   - bytes per row of every table the programme fills (pg_total_relation_size / rows, indexes
#     and TOAST included) and rows per person;
#   - each progress write path under load (`lms bench ... --cost`): CPU milliseconds of the server
#     and of the database processes serving it, WAL bytes, database growth and rows inserted per
#     event.
# Results: bench/results/cost/{tables.json,record-progress.json,record-progress-batch.json,
# stream-progress.json,machine.json}. Environment: LMS_BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432), LMS_BENCH_PORT (default 50462).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

officers=40000
duration=20s
while [ $# -gt 0 ]; do
  case "$1" in
    --officers) officers=$2; shift ;;
    --duration) duration=$2; shift ;;
    *) echo "usage: bench/cost.sh [--officers N] [--duration 20s]" >&2; exit 2 ;;
  esac
  shift
done

command -v jq >/dev/null 2>&1 || apt-get install -y -qq jq >/dev/null 2>&1 || true
command -v jq >/dev/null 2>&1 || { echo "jq is needed" >&2; exit 1; }
bin=${LMS_BIN:-target/release/lms}
[ -x "$bin" ] || cargo build --release --bin lms
case "$bin" in /*) ;; *) bin=$root/$bin ;; esac

pg=${LMS_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
database=lms_cost_$$
work=$(mktemp -d /tmp/lms-cost-XXXXXX)
results=$root/bench/results/cost
port=${LMS_BENCH_PORT:-50462}
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  psql "$pg/postgres" -qc "drop database if exists \"$database\" with (force)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql "$pg/postgres" -qc "create database \"$database\""
export DATABASE_URL=$pg/$database LMS_DATA_DIR=$work/data
rm -rf "$results"
mkdir -p "$results"
sql() { psql "$DATABASE_URL" -Atqc "$1"; }

cat >"$results/machine.json" <<EOF
{"nproc": "$(nproc)", "memory": "$(free -h | awk '/^Mem:/ {print $2}')",
 "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)",
 "database": "$(sql 'select version()' | cut -d' ' -f1-2)",
 "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "officers": $officers}
EOF

echo "==> seed: $officers officers"
"$bin" seed --profile national --seed 42 --officers "$officers" --ambassadors 200 --json "$results/seed.json" >/dev/null
sql "vacuum analyze" >/dev/null

echo "==> bytes per row of every table with rows"
people=$(sql "select count(*) from people")
# Partitions count under their table (progress_events_p202612 -> progress_events).
sql "select coalesce(parent.relname, c.relname) as name,
       sum(pg_total_relation_size(c.oid))::bigint as bytes,
       sum(c.reltuples)::bigint as rows
     from pg_class c join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
     left join pg_inherits i on i.inhrelid = c.oid
     left join pg_class parent on parent.oid = i.inhparent
     where c.relkind = 'r' group by 1 having sum(c.reltuples) > 0 order by 2 desc" |
  jq -R -s --argjson people "$people" '
    [split("\n")[] | select(length > 0) | split("|")
     | {table: .[0], bytes: (.[1] | tonumber), rows: (.[2] | tonumber)}
     | . + {bytes_per_row: (if .rows > 0 then (.bytes / .rows | floor) else null end),
            rows_per_person: (.rows / $people * 100 | round / 100)}]
    | {people: $people, tables: .}' >"$results/tables.json"
jq -r '.tables[] | "  \(.table): \(.rows) rows, \(.bytes_per_row) B/row, \(.rows_per_person) per person"' "$results/tables.json"
echo "  database: $(sql "select pg_size_pretty(pg_database_size(current_database()))") for $people people"

echo "==> serve"
LMS_LISTEN=127.0.0.1:$port LMS_CONCURRENCY_LIMIT=4096 RUST_LOG=warn "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
export LMS_BENCH_ADDR=http://127.0.0.1:$port
LMS_BENCH_TOKEN=$("$bin" token --subject lms-cost --role admin --ttl 6h)
export LMS_BENCH_TOKEN
for _ in $(seq 1 100); do
  "$bin" bench health --count 1 --warmup 0s --concurrency 1 >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done

cost=(--cost --server-pid "$server_pid" --duration "$duration" --warmup 3s)
echo "==> record-progress, 64 callers"
"$bin" bench record-progress --concurrency 64 "${cost[@]}" --json "$results/record-progress.json"
echo "==> record-progress-batch, 16 callers, one cohort per batch of 100"
"$bin" bench record-progress-batch --concurrency 16 --batch 100 "${cost[@]}" --json "$results/record-progress-batch.json"
echo "==> stream-progress, 64 streams"
"$bin" bench stream-progress --concurrency 64 "${cost[@]}" --json "$results/stream-progress.json"
echo "==> results in bench/results/cost/"
