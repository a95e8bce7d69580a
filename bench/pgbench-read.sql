-- Read baseline for `lms bench get-progress`: what one GetEnrollmentProgress asks of PostgreSQL,
-- sent by pgbench with no server in between: the enrolment joined to its learner's organisation
-- path, then the enrolment's activity tallies, for a random enrolment. bench/run.sh numbers the
-- enrolments first (`CREATE TABLE bench_enrollment_ids AS SELECT row_number() OVER () AS n, id
-- FROM enrollments`) and passes their count as `rows`.
-- Run: pgbench -n -M prepared -c C -j 2 -T 20 -D rows=N -f bench/pgbench-read.sql "$DATABASE_URL"
\set n random(1, :rows)
SELECT e.*, o.path FROM bench_enrollment_ids b JOIN enrollments e ON e.id = b.id JOIN people p ON p.id = e.person_id JOIN organizations o ON o.id = p.organization_id WHERE b.n = :n;
SELECT a.* FROM bench_enrollment_ids b JOIN activity_progress a ON a.enrollment_id = b.id WHERE b.n = :n;
