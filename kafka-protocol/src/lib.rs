//! Sans-IO codecs for the Apache Kafka wire protocol, as a consumer-group client needs them.
//!
//! - [`frame`]: size-prefixed frames, request and response headers, correlation ids.
//! - [`messages`]: request and response bodies generated from Kafka's JSON schemas
//!   (`cohort-codegen`), every version from the schemas, flexible versions included.
//! - [`records`]: record batch v2 with CRC-32C and gzip, snappy, lz4 and zstd.
//! - [`consumer_protocol`]: the subscription and assignment blobs inside JoinGroup and SyncGroup,
//!   and the sticky assignors' user data.
//! - [`ErrorCode`]: Kafka's error codes as one table.
//!
//! Nothing here performs I/O: encoders write into any [`bytes::BufMut`], decoders read from
//! [`bytes::Bytes`] and return slices of it for byte strings. Malformed input gives a
//! [`DecodeError`], never a panic, and no length read from the input is trusted before it is
//! checked against the bytes that actually follow.
//!
//! # References
//! - Kafka protocol guide: <https://kafka.apache.org/protocol>
//! - KIP-482 (tagged fields, compact encodings), KIP-511 (ApiVersions header), KIP-98 (record
//!   batch v2)

#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod codec;
pub mod consumer_protocol;
pub mod error;
pub mod error_code;
pub mod frame;
#[path = "generated/mod.rs"]
pub mod messages;
pub mod primitives;
pub mod records;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod types;

pub use codec::{Decode, Encode, Message, Request, VersionRange};
pub use error::{DecodeError, EncodeError};
pub use error_code::ErrorCode;
pub use messages::api_key::ApiKey;
pub use types::{RawTaggedField, StrBytes, Uuid};
