//! The error type of the group client.

use std::io;
use std::sync::Arc;

use cohort_protocol::{ApiKey, DecodeError, EncodeError, ErrorCode};

/// What went wrong. Cloneable, so one error can reach every interested caller.
///
/// Rejoining the group is a state transition, never an error: only what the application must
/// know or act on surfaces here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; every problem is listed.
    #[error("invalid configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// A connection could not be made or was lost.
    #[error("{broker}: {message}")]
    Transport {
        /// The broker address.
        broker: String,
        /// What failed.
        message: String,
        /// The I/O error behind it, when there is one (also [`Error::io_error`]).
        #[source]
        cause: Option<IoCause>,
    },
    /// A broker answered with an error code.
    #[error("{api:?} failed with {code}{}", if context.is_empty() { String::new() } else { format!(" ({context})") })]
    Broker {
        /// The request.
        api: ApiKey,
        /// The error code.
        code: ErrorCode,
        /// What the request was about (group, topic, partition).
        context: String,
    },
    /// A response could not be decoded; the connection was closed.
    #[error("malformed response from {broker}: {error}")]
    Protocol {
        /// The broker address.
        broker: String,
        /// The decode error.
        error: DecodeError,
    },
    /// A request could not be encoded (a bug or an unsupported field/version combination).
    #[error("cannot encode request: {0}")]
    Encode(EncodeError),
    /// A request got no answer in time.
    #[error("{api:?} to {broker} timed out after {elapsed_ms} ms")]
    Timeout {
        /// The request.
        api: ApiKey,
        /// The broker address.
        broker: String,
        /// How long it waited.
        elapsed_ms: u64,
    },
    /// No common version of an API between this client and the broker.
    #[error(
        "{api:?}: {}, this client {client_min}-{client_max}",
        if *broker_min < 0 { "the broker does not serve this API".to_owned() } else { format!("broker supports versions {broker_min}-{broker_max}") }
    )]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// Lowest version the broker supports (-1: it does not serve the API).
        broker_min: i16,
        /// Highest version the broker supports.
        broker_max: i16,
        /// Lowest version this client implements.
        client_min: i16,
        /// Highest version this client implements.
        client_max: i16,
    },
    /// Another member with the same `group.instance.id` took this member's place (KIP-345).
    /// Fatal: rejoining would fight the other instance for the slot.
    #[error("fenced by another instance with group.instance.id {instance_id:?}")]
    Fenced {
        /// The instance id.
        instance_id: String,
    },
    /// The group rejected the member for a reason that retrying cannot fix (authorization,
    /// invalid session timeout, inconsistent protocols, group full, ...).
    #[error("fatal group error: {code} ({context})")]
    Fatal {
        /// The error code.
        code: ErrorCode,
        /// Where it happened.
        context: String,
    },
    /// A commit could not be made: the member no longer owns the partitions or the group is
    /// rebalancing. The records will be delivered again (at least once).
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// The application stalled longer than `max_poll_interval`; the member left the group.
    #[error(
        "no progress for {elapsed_ms} ms (max_poll_interval {limit_ms} ms); the member left the group"
    )]
    PollTimeout {
        /// Time since the last poll.
        elapsed_ms: u64,
        /// The configured limit.
        limit_ms: u64,
    },
    /// A rebalance listener's callback ran past its bound (half the rebalance timeout, so the
    /// member can still rejoin in time); the consumer went on without it.
    #[error(
        "the rebalance listener's {callback} took longer than {limit_ms} ms; the consumer went on without it"
    )]
    ListenerTimeout {
        /// `on_partitions_revoked` or `on_partitions_lost`.
        callback: &'static str,
        /// The bound.
        limit_ms: u64,
    },
    /// A partition has no committed offset and the reset policy is `None`.
    #[error("no committed offset for {topic}-{partition} and offset_reset is None")]
    NoOffset {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A partition's log was truncated below the consumer's position (KIP-320) and neither a
    /// reset policy nor the out-of-range hook says where to resume (Java's
    /// `LogTruncationException`). The partition stops; `Consumer::seek` restarts it.
    #[error(
        "log of {topic}-{partition} truncated below the consumer's position; it diverges at offset {offset}"
    )]
    LogTruncated {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The first offset that diverges (or the position, when the leader knew no epoch of it).
        offset: i64,
    },
    /// The broker did not accept this client's credentials (SASL: wrong user name or
    /// password, an unknown mechanism, a token refused), or one side of a TLS connection did
    /// not accept the other's certificate (untrusted, another name, expired, missing). Fatal:
    /// retrying with the same credentials cannot succeed (Java's `AuthenticationException` and
    /// `SslAuthenticationException`). Never carries a secret.
    #[error("{broker}: {mechanism} authentication failed: {message}")]
    Authentication {
        /// The broker address.
        broker: String,
        /// What was refused: `SASL <mechanism>` (`SASL SCRAM-SHA-512`, ...) or `TLS`.
        mechanism: String,
        /// What the broker or the exchange said.
        message: String,
    },
    /// The client or group was closed.
    #[error("closed")]
    Closed,
}

/// An I/O error shared by the clones of one [`Error`]. Two are equal when their kind and
/// message are (`io::Error` itself is neither `Clone` nor `PartialEq`).
#[derive(Debug, Clone)]
pub struct IoCause(Arc<io::Error>);

impl IoCause {
    /// The I/O error.
    pub fn get(&self) -> &io::Error {
        &self.0
    }
}

impl From<io::Error> for IoCause {
    fn from(e: io::Error) -> Self {
        Self(Arc::new(e))
    }
}

impl PartialEq for IoCause {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for IoCause {}

impl std::fmt::Display for IoCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Error {
    /// A transport error without an I/O cause (a broker missing from metadata, a closed
    /// connection).
    pub(crate) fn transport(broker: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Transport {
            broker: broker.into(),
            message: message.into(),
            cause: None,
        }
    }

    /// A transport error caused by `e`; the message names what was being done and repeats the
    /// cause, so that a log line of the error alone says everything.
    pub(crate) fn transport_io(broker: impl Into<String>, doing: &str, e: io::Error) -> Self {
        if let Some(r) = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<crate::conn::TlsRefused>())
        {
            return Error::Authentication {
                broker: broker.into(),
                mechanism: "TLS".into(),
                message: r.0.clone(),
            };
        }
        Error::Transport {
            broker: broker.into(),
            message: if doing.is_empty() {
                e.to_string()
            } else {
                format!("{doing}: {e}")
            },
            cause: Some(e.into()),
        }
    }

    /// The I/O error behind a transport error (refused, reset, timed out, ...).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Transport { cause: Some(c), .. } => Some(c.get()),
            _ => None,
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::Broker { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// Whether the group member cannot continue (it must be recreated).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Fenced { .. }
                | Error::Fatal { .. }
                | Error::Config(_)
                | Error::Authentication { .. }
        )
    }

    /// The broker error code, if this is a broker error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { code, .. } | Error::Fatal { code, .. } => Some(*code),
            _ => None,
        }
    }
}
