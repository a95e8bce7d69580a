//! LMS backend: a gRPC service for national upskilling programmes (organisations, people,
//! courses, cohorts, progress and train-the-trainer certification) on SQLite or PostgreSQL.
//!
//! [`App`] wires the server so that `main.rs` and the tests start it the same way.

pub mod api;
pub mod auth;
pub mod config;
pub mod domain;
pub mod error;
pub mod pb;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tools;

pub use server::App;
