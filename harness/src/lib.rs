//! The Cohort harness: multi-member consumer groups against a real broker, with chaos, a
//! checker and reports. The `cohort` command line is built on this crate.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

pub mod agreement;
pub mod assign;
pub mod checker;
pub mod clients;
pub mod conformance;
pub mod error;
pub mod foreign;
pub mod journal;
pub mod member;
pub mod metrics;
pub mod net;
pub mod netns;
pub mod process_member;
pub mod report;
pub mod request_log;
pub mod runner;
pub mod scenario;
pub mod security;
