//! Kafka consumer groups for Rust.
//!
//! placeholder docs (rewritten below)

mod backoff;
pub mod config;
pub mod conn;
pub mod error;
pub mod member;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config::{ClientConfig, GroupConfig, OffsetReset, Subscription};
pub use error::Error;
pub mod consumer;
mod driver;
pub mod generation;
pub mod offsets;

pub use consumer::{Consumer, ConsumerEvent, ConsumerOptions, ConsumerRecord, StartOffset};
pub use driver::DriverStats;
pub mod producer;
pub use generation::{Generation, GenerationContext, Group, PartitionStart};
pub use producer::{Producer, ProducerRecord, partition_for_key};
