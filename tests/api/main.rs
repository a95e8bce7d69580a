//! Black-box tests of the gRPC API over a real socket, on SQLite (default) or PostgreSQL
//! (`LMS_TEST_DATABASE_URL`).

mod audit;
mod auth;
mod bola;
mod certification;
mod courses;
mod events;
mod faults;
mod fuzz;
mod health;
mod helpers;
mod hygiene;
mod lifecycle;
mod limits;
mod lockout;
mod metrics;
mod oidc;
mod organizations;
mod people;
mod programmes;
mod progress;
mod reports;
mod selection;
mod surveys;
mod tls;
