-- Read baseline for `lms bench list-cohort-progress`: what one ListProgress page of 50 for a
-- cohort asks of PostgreSQL, sent by pgbench with no server in between: the cohort's enrolments
-- with their progress summaries, in enrolment order, one row more than the page to know whether
-- another page follows. bench/run.sh numbers the cohorts first (`CREATE TABLE bench_cohort_ids AS
-- SELECT row_number() OVER () AS n, cohort_id AS id FROM (SELECT DISTINCT cohort_id FROM
-- enrollments) c`) and passes their count as `rows`.
-- Run: pgbench -n -M prepared -c C -j 2 -T 20 -D rows=N -f bench/pgbench-list.sql "$DATABASE_URL"
\set n random(1, :rows)
SELECT e.id AS enrollment_id, e.person_id, e.cohort_id, e.state, COALESCE(p.percent_complete, 0.0) AS percent_complete, e.completed_time, p.last_event_time FROM bench_cohort_ids b JOIN enrollments e ON e.cohort_id = b.id LEFT JOIN enrollment_progress p ON p.enrollment_id = e.id WHERE b.n = :n ORDER BY e.id LIMIT 51;
