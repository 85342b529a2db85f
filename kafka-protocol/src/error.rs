//! Errors of the codecs: what went wrong while decoding bytes or encoding a value.
//!
//! Broker error codes carried inside responses are a different thing: see [`crate::ErrorCode`].

/// A frame or message could not be decoded.
///
/// Every variant is a property of the input, never of the decoder's state: decoding the same bytes
/// again gives the same error. A connection that sees one of these should be closed, because the
/// position of the next frame can no longer be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a value was complete.
    #[error("truncated input: needed {needed} more bytes, {remaining} remain")]
    UnexpectedEof {
        /// Bytes the value needs.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A length prefix was negative (and not the null marker where null is allowed) or larger
    /// than the input that follows it.
    #[error("invalid length {length} ({remaining} bytes remain)")]
    InvalidLength {
        /// The length read from the input.
        length: i64,
        /// Bytes that were left after the prefix.
        remaining: usize,
    },
    /// A string was not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A variable-length integer ran over its maximum width.
    #[error("variable-length integer is longer than {max_bytes} bytes")]
    VarintTooLong {
        /// Maximum encoded width of the integer type.
        max_bytes: usize,
    },
    /// The message does not exist at this version.
    #[error("{message} does not support version {version}")]
    UnsupportedVersion {
        /// Message name, as in Kafka's schema.
        message: &'static str,
        /// The requested version.
        version: i16,
    },
    /// A null was found where the schema does not allow one at this version.
    #[error("field {field} is null, which version {version} does not allow")]
    NullNotAllowed {
        /// Field name, as in Kafka's schema.
        field: &'static str,
        /// The message version.
        version: i16,
    },
    /// A known tagged field did not occupy exactly the size its header announced.
    #[error("tagged field {tag} announced {announced} bytes but its value used {used}")]
    TaggedFieldSize {
        /// The tag.
        tag: u32,
        /// Size in the tagged field header.
        announced: usize,
        /// Bytes the value actually used.
        used: usize,
    },
    /// A frame's size prefix is above the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Size announced by the prefix.
        size: usize,
        /// Configured maximum.
        max: usize,
    },
    /// Bytes were left over after a value that must fill its container.
    #[error("{remaining} trailing bytes after {what}")]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// Bytes left.
        remaining: usize,
    },
    /// A record batch's CRC-32C did not match its content.
    #[error(
        "record batch CRC mismatch: header says {expected:#010x}, content gives {actual:#010x}"
    )]
    CrcMismatch {
        /// CRC stored in the batch header.
        expected: u32,
        /// CRC computed over the batch.
        actual: u32,
    },
    /// A record batch used a magic byte this crate does not decode.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// A record batch used a compression codec id that does not exist.
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    /// Decompression failed or produced more than the configured limit.
    #[error("{codec} decompression failed: {reason}")]
    Decompression {
        /// The codec.
        codec: &'static str,
        /// What the decompressor reported.
        reason: String,
    },
    /// Decoding would exceed a configured bound on memory (decompressed bytes of a batch or of
    /// a whole response).
    #[error("{what} exceeds the limit of {limit} bytes")]
    LimitExceeded {
        /// What was bounded.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
    /// A value is structurally invalid (an enum value out of range, a count that disagrees
    /// with the content, ...).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was being decoded.
        what: &'static str,
        /// Why it is invalid.
        detail: String,
    },
}

impl DecodeError {
    pub(crate) fn eof(needed: usize, remaining: usize) -> Self {
        Self::UnexpectedEof { needed, remaining }
    }
}

/// A value could not be encoded at the requested version.
///
/// When encoding fails, the bytes already written to the buffer are unspecified; callers discard
/// the buffer (the frame encoder does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message does not exist at this version.
    #[error("{message} does not support version {version}")]
    UnsupportedVersion {
        /// Message name, as in Kafka's schema.
        message: &'static str,
        /// The requested version.
        version: i16,
    },
    /// A field that is not ignorable has a non-default value at a version that lacks the field.
    /// Kafka's generated Java code raises `UnsupportedVersionException` in the same case.
    #[error("field {field} is set but does not exist in version {version}")]
    FieldNotInVersion {
        /// Field name, as in Kafka's schema.
        field: &'static str,
        /// The message version.
        version: i16,
    },
    /// A field is null at a version where the schema requires a value.
    #[error("field {field} is null, which version {version} does not allow")]
    NullNotAllowed {
        /// Field name, as in Kafka's schema.
        field: &'static str,
        /// The message version.
        version: i16,
    },
    /// A string, byte array or array is longer than its length prefix can express.
    #[error("{what} of length {length} does not fit its length prefix")]
    TooLong {
        /// What was being encoded.
        what: &'static str,
        /// Its length.
        length: usize,
    },
    /// The input breaks an encoder's documented precondition.
    #[error("inconsistent {what}")]
    Inconsistent {
        /// What disagrees.
        what: &'static str,
    },
    /// Compression failed.
    #[error("{codec} compression failed: {reason}")]
    Compression {
        /// The codec.
        codec: &'static str,
        /// What the compressor reported.
        reason: String,
    },
}
