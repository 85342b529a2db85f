//! The codec traits every message implements, and the version metadata of messages.

use bytes::{BufMut, Bytes};

use crate::error::{DecodeError, EncodeError};

/// An inclusive range of versions; `min > max` means no versions at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

impl VersionRange {
    /// The empty range.
    pub const NONE: Self = Self { min: 1, max: 0 };

    /// `min..=max`.
    pub const fn new(min: i16, max: i16) -> Self {
        Self { min, max }
    }

    /// Whether the range holds no version.
    pub const fn is_empty(&self) -> bool {
        self.min > self.max
    }

    /// Whether `version` lies in the range.
    pub const fn contains(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }

    /// The versions in both ranges.
    pub const fn intersect(&self, other: &Self) -> Self {
        Self {
            min: if self.min > other.min {
                self.min
            } else {
                other.min
            },
            max: if self.max < other.max {
                self.max
            } else {
                other.max
            },
        }
    }

    /// Iterates over the versions.
    pub fn iter(&self) -> impl Iterator<Item = i16> + use<> {
        self.min..=self.max
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            f.write_str("none")
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// Writes a value at a given version.
pub trait Encode {
    /// Writes `self` at `version`. On error the bytes already written are unspecified.
    fn encode<B: BufMut>(&self, buf: &mut B, version: i16) -> Result<(), EncodeError>;

    /// Number of bytes [`Encode::encode`] writes at `version`.
    fn encoded_size(&self, version: i16) -> Result<usize, EncodeError>;
}

/// Reads a value at a given version.
pub trait Decode: Sized {
    /// Reads a value from the front of `buf`, advancing it. Byte strings in the result are slices
    /// of `buf`'s storage, not copies.
    fn decode(buf: &mut Bytes, version: i16) -> Result<Self, DecodeError>;
}

/// A top-level message (request or response body, header or embedded data) with its versions.
pub trait Message: Encode + Decode + Default + Clone + std::fmt::Debug + PartialEq {
    /// Name in Kafka's schema.
    const NAME: &'static str;
    /// Versions the schema declares valid.
    const VERSIONS: VersionRange;
    /// Versions using the flexible encoding (KIP-482).
    const FLEXIBLE_VERSIONS: VersionRange;
    /// Versions Kafka deprecates (KIP-896 removes them from Kafka 4.0 brokers).
    const DEPRECATED_VERSIONS: VersionRange;
    /// Highest version that is not marked unstable in the schema.
    const LATEST_STABLE: i16;
}

/// A request body, tied to its API key and response type.
pub trait Request: Message {
    /// The API.
    const API_KEY: crate::ApiKey;
    /// The matching response body.
    type Response: Message;
}
