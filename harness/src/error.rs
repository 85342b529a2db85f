//! The harness's error: what failed, with its typed cause where there is one.

use std::fmt::Display;

/// An error of the harness: a scenario or input that is not valid, a broker that would not
/// start or obey, a client request that failed, a file or process that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// A scenario, a `cohort assign` document or a command-line value that is not valid.
    #[error("{0}")]
    Invalid(String),
    /// A scenario or input file that does not parse.
    #[error("{what}: {source}")]
    Parse {
        /// Which input.
        what: String,
        /// The parser's complaint.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The test broker could not start, stop, pause or restart.
    #[error("broker: {0}")]
    Broker(#[from] cohort_testbroker::BrokerError),
    /// A request of the cohort client failed.
    #[error("{what}: {source}")]
    Client {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: cohort::Error,
    },
    /// librdkafka refused a setting or failed.
    #[error("{what}: {source}")]
    Librdkafka {
        /// What was being done.
        what: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A file could not be read or written, or a process started.
    #[error("{what}: {source}")]
    Io {
        /// Which file or process.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An error while doing something larger.
    #[error("{what}: {source}")]
    Context {
        /// What was being done.
        what: String,
        /// What went wrong.
        #[source]
        source: Box<HarnessError>,
    },
    /// A task of the harness panicked or was cancelled.
    #[error("{what}: {source}")]
    Task {
        /// Which task.
        what: String,
        /// How it ended.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl HarnessError {
    /// An input that is not valid, saying why.
    pub fn invalid(why: impl Display) -> Self {
        HarnessError::Invalid(why.to_string())
    }

    /// A cohort client error while doing `what`.
    pub fn client(what: impl Display) -> impl FnOnce(cohort::Error) -> Self {
        let what = what.to_string();
        move |source| HarnessError::Client { what, source }
    }

    /// A librdkafka error while doing `what`.
    pub fn librdkafka(what: impl Display) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        let what = what.to_string();
        move |source| HarnessError::Librdkafka { what, source }
    }

    /// An I/O error on `what` (a path, a process).
    pub fn io(what: impl Display) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.to_string();
        move |source| HarnessError::Io { what, source }
    }

    /// A parse error of `what`.
    pub fn parse<E: std::error::Error + Send + Sync + 'static>(
        what: impl Display,
    ) -> impl FnOnce(E) -> Self {
        let what = what.to_string();
        move |e| HarnessError::Parse {
            what,
            source: Box::new(e),
        }
    }

    /// A task of the harness that did not finish.
    pub fn task(what: impl Display) -> impl FnOnce(tokio::task::JoinError) -> Self {
        let what = what.to_string();
        move |source| HarnessError::Task { what, source }
    }

    /// The same error, said to have happened while doing `what` (the cause is kept).
    pub fn context(self, what: impl Display) -> Self {
        HarnessError::Context {
            what: what.to_string(),
            source: Box::new(self),
        }
    }
}

/// Results of the harness.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
