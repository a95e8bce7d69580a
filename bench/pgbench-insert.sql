-- Baseline for `lms bench`: one durable single-row INSERT per transaction into a table shaped like
-- progress_events (bench/run.sh creates it with `CREATE TABLE bench_progress_events (LIKE
-- progress_events INCLUDING ALL)`: same columns, primary key and indexes).
-- Run: pgbench -n -c C -j 2 -T 20 -f bench/pgbench-insert.sql "$DATABASE_URL"
INSERT INTO bench_progress_events (event_id, enrollment_id, activity_id, verb, score, duration_seconds, occurred_time, source, evidence_uri, evidence_note, provenance_note, actor, payload_hash, recorded_time, ack_activity_state, ack_percent_complete, ack_enrollment_state) VALUES (gen_random_uuid()::text, gen_random_uuid()::text, gen_random_uuid()::text, 'PROGRESSED', NULL, 600, now(), 'APP', NULL, NULL, NULL, 'pgbench', md5(random()::text) || md5(random()::text), now(), 'IN_PROGRESS', 10.0, 'IN_PROGRESS');
