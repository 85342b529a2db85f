//! Kafka consumer groups for Rust: join, sync, heartbeat, rebalance, commit, consume.
//!
//! `cohort` speaks the classic consumer-group protocol (JoinGroup/SyncGroup/Heartbeat, eager
//! and cooperative incremental rebalancing, KIP-429) with the Java client's semantics, and
//! gives two levels of API:
//!
//! - [`Consumer`]: records in, acknowledgements out. Acks may arrive in any order (sarama-
//!   consumer's `Done()`): a partition's commit point advances only over a contiguous run of
//!   acknowledged records, and it is committed only while the partition is still owned —
//!   before a revocation completes, never after it (no commit from a zombie).
//! - [`Group`] / [`Generation`]: the kafka-go style. Each generation hands you the assignment
//!   with starting offsets; tasks started on it are told when it ends, and the group waits for
//!   them before it rejoins. You fetch and commit yourself.
//!
//! Balancers (range, round-robin, sticky, cooperative-sticky, or your own
//! [`balancers::Balancer`]) are listed in priority order in [`GroupConfig::balancers`]; the
//! coordinator picks the first one every member supports.
//!
//! # Consuming with acknowledgements
//!
//! ```no_run
//! use cohort::{Consumer, ConsumerEvent, GroupConfig, OffsetReset};
//!
//! # async fn run() -> Result<(), cohort::Error> {
//! let mut config = GroupConfig::new("localhost:9092", "billing", &["orders"]);
//! config.offset_reset = OffsetReset::Earliest;
//! config.balancers = vec![Box::new(cohort::balancers::CooperativeSticky)];
//! let mut consumer = Consumer::new(config).await?;
//!
//! // Rebalance notifications arrive on their own channel; they never block delivery.
//! let mut events = consumer.events().expect("taken once");
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         if let ConsumerEvent::Revoked { partitions, .. } = event {
//!             eprintln!("revoked {partitions:?}");
//!         }
//!     }
//! });
//!
//! while let Some(record) = consumer.recv().await {
//!     let record = record?;
//!     // ... process the record, possibly on another task ...
//!     consumer.ack(&record); // only acknowledged records are ever committed
//! #   break;
//! }
//! consumer.close().await // commits what was acknowledged, then leaves the group
//! # }
//! ```
//!
//! # Driving generations yourself
//!
//! ```no_run
//! use cohort::{CommitOffset, Group, GroupConfig};
//!
//! # async fn run() -> Result<(), cohort::Error> {
//! let mut group = Group::new(GroupConfig::new("localhost:9092", "indexer", &["pages"])).await?;
//! loop {
//!     let generation = group.next().await?;
//!     for (topic, partitions) in generation.assignments() {
//!         for start in partitions {
//!             let (generation, topic, start) = (generation.clone(), topic.clone(), *start);
//!             generation.clone().start(move |ctx| async move {
//!                 let mut next = start.offset;
//!                 while !ctx.is_done() {
//!                     // ... fetch from `next`, process, advance `next` ...
//!                     next += 1;
//!                     // Fails once the generation is over: the partition may be someone else's.
//!                     let done = CommitOffset::new(&topic, start.partition, next);
//!                     if generation.commit(&[done]).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!         }
//!     }
//! }
//! # }
//! ```
//!
//! The crate never panics on input from the network: malformed frames become typed
//! [`Error`]s and the connection is closed. See `docs/DESIGN.md` in the repository for the
//! layers and the invariants each keeps.

// The README's example is compiled as a doc test, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

// The member, the codecs and the balancers take time as an argument (clippy.toml's
// disallowed-methods); the modules marked below are the I/O around them.
mod backoff;
pub mod config;
#[allow(
    clippy::disallowed_methods,
    reason = "I/O layer: reads the clock and hands `now` to the member"
)]
// Public only through `unstable` (the dialer types are re-exported below).
#[cfg_attr(
    not(feature = "unstable-internals"),
    allow(
        unreachable_pub,
        dead_code,
        reason = "reachable through `unstable` only"
    )
)]
mod conn;
#[allow(
    clippy::disallowed_methods,
    reason = "I/O layer: reads the clock and hands `now` to the member"
)]
mod deadline;
pub mod error;
pub mod member;
pub mod member848;
#[cfg(any(test, feature = "testing"))]
#[allow(
    clippy::disallowed_methods,
    reason = "the simulation's virtual time starts at the clock"
)]
pub mod testing;
#[cfg(any(test, feature = "testing"))]
#[allow(
    clippy::disallowed_methods,
    reason = "the simulation's virtual time starts at the clock"
)]
pub mod testing848;

/// The balancers (assignment strategies), re-exported.
pub use cohort_balancers as balancers;
/// The wire codecs, re-exported.
pub use cohort_protocol as protocol;
pub use config::{
    ClientConfig, GroupConfig, GroupProtocol, IsolationLevel, OffsetReset, SecurityProtocol,
    Subscription,
};
pub use conn::{
    BoxedStream, Dialer, IoStream, OAuthToken, SaslConfig, SaslMechanism, Secret, TcpDialer,
    TlsConfig, TlsDialer, TokenProvider,
};
pub use error::{Error, IoCause};
pub use member::{Assignment, CommitOffset};
pub use topic_partition::TopicPartition;
#[allow(
    clippy::disallowed_methods,
    reason = "I/O layer: reads the clock and hands `now` to the member"
)]
pub mod consumer;
#[allow(
    clippy::disallowed_methods,
    reason = "I/O layer: reads the clock and hands `now` to the member"
)]
mod driver;
#[allow(
    clippy::disallowed_methods,
    reason = "I/O layer: reads the clock and hands `now` to the member"
)]
pub mod generation;
#[allow(
    clippy::disallowed_methods,
    reason = "I/O layer: reads the clock and hands `now` to the member"
)]
#[cfg_attr(
    not(feature = "unstable-internals"),
    allow(
        unreachable_pub,
        dead_code,
        reason = "reachable through `unstable` only"
    )
)]
mod offsets;

pub use consumer::{
    CommitFuture, Consumer, ConsumerEvent, ConsumerOptions, ConsumerRecord, DEFAULT_CLOSE_TIMEOUT,
    StartOffset,
};
pub use driver::DriverStats;
#[allow(
    clippy::disallowed_methods,
    reason = "I/O layer: reads the clock and hands `now` to the member"
)]
pub mod producer;
#[allow(
    clippy::disallowed_methods,
    reason = "I/O layer: reads the clock and hands `now` to the member"
)]
mod start;
pub mod telemetry;
mod topic_partition;
pub use generation::{Generation, GenerationContext, Group, PartitionStart};
pub use producer::{Producer, ProducerRecord, partition_for_key};

/// What the `cohort` harness and tools build on beneath the public API: the cluster handle and
/// raw requests, committed offsets and log positions, and the leader's assignment step.
/// **No semver promise**: anything here may change in any release. Enabled by the
/// `unstable-internals` feature (as rskafka's `unstable-fuzzing`).
#[cfg(feature = "unstable-internals")]
pub mod unstable {
    pub use crate::conn::{Cluster, PartitionMeta, Target, TopicMeta};
    pub use crate::member::{Led, lead, subscription};
    pub use crate::offsets::{EARLIEST, LATEST, fetch_committed, list_offsets};
}
