//! Connections to brokers: a pluggable dialer, pipelined connections with version negotiation,
//! and the cluster view (bootstrap, metadata cache, coordinator discovery).
//!
//! Only this module touches sockets.

mod cluster;
mod connection;
mod dialer;
mod frame_pool;
mod sasl;
mod tls;
mod versions;

#[cfg_attr(
    not(feature = "unstable-internals"),
    allow(unused_imports, reason = "reachable through `unstable` only")
)]
pub use cluster::{Cluster, PartitionMeta, Target, TopicMeta};
pub(crate) use connection::Connection;
pub use dialer::{BoxedStream, Dialer, IoStream, TcpDialer};
pub use sasl::{OAuthToken, SaslConfig, SaslMechanism, Secret, TokenProvider};
pub(crate) use tls::TlsRefused;
pub use tls::{TlsConfig, TlsDialer};
