//! `cohort member`: one group member as a process. It consumes, acknowledges and commits, and
//! prints one JSON object per line on stdout for every event (the journal's [`Entry`] format).
//! SIGTERM or SIGINT make it leave cleanly and exit 0.
//!
//! With `--control`, it also reads commands from stdin, one JSON object per line (and leaves
//! and exits when stdin closes: its harness is gone), so a harness
//! can fault its network from outside (`{"cmd":"latency","ms":200}`, `{"cmd":"blackhole"}`,
//! `{"cmd":"cut","direction":"inbound"}`, `{"cmd":"drop"}`, `{"cmd":"heal"}`,
//! `{"cmd":"processing","us":1000}`).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncBufReadExt;

use crate::foreign::RdMember;
use crate::journal::{Entry, Event, now_us};
use crate::member::{CohortMember, Controls, MemberOptions, Sink, StopHow};
use crate::net::Direction;

/// Which client runs the member.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    /// This project's group core.
    Cohort,
    /// librdkafka, through rust-rdkafka.
    Librdkafka,
    /// The Java consumer of the pinned Apache Kafka release (`harness/clients/java`), always
    /// as its own process.
    Java,
    /// segmentio/kafka-go's consumer group (`harness/clients/go`), as its own process.
    KafkaGo,
    /// IBM/sarama's consumer group, as its own process.
    Sarama,
    /// twmb/franz-go's consumer, as its own process.
    FranzGo,
    /// krafka, a pure-Rust client (`harness/clients/rust`), as its own process.
    Krafka,
    /// kacrab, a pure-Rust client (`harness/clients/rust`), as its own process.
    Kacrab,
}

impl Client {
    /// Whether the member runs in the cohort process (else it is a process of its own).
    pub fn in_process(self) -> bool {
        matches!(self, Client::Cohort | Client::Librdkafka)
    }
}

/// A command on stdin.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ControlCommand {
    /// Adds latency both ways.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Stops all traffic.
    Blackhole,
    /// Cuts one direction.
    Cut {
        /// Which.
        direction: Direction,
    },
    /// Swallows requests of these API keys (see `NetFaults::set_held`).
    Hold {
        /// API keys.
        apis: Vec<i16>,
    },
    /// Closes every connection.
    Drop,
    /// Lifts every network fault.
    Heal,
    /// Changes the processing time per record.
    Processing {
        /// Microseconds.
        us: u64,
    },
}

/// Applies a control command to a cohort member's controls.
pub fn apply(controls: &Controls, cmd: &ControlCommand) {
    match cmd {
        ControlCommand::Latency { ms } => controls.faults.set_latency(Duration::from_millis(*ms)),
        ControlCommand::Blackhole => controls.faults.set_blackhole(true),
        ControlCommand::Cut { direction } => controls.faults.set_cut(Some(*direction)),
        ControlCommand::Hold { apis } => controls.faults.set_held(apis.clone()),
        ControlCommand::Drop => controls.faults.drop_connections(),
        ControlCommand::Heal => controls.faults.heal(),
        ControlCommand::Processing { us } => controls.set_processing(Duration::from_micros(*us)),
    }
}

/// A sink printing entries as JSON lines on stdout (errors writing, e.g. a closed pipe, are
/// ignored: the member keeps its group duties regardless).
pub fn stdout_sink(source: &str) -> Sink {
    let source = source.to_owned();
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    Arc::new(move |event: Event| {
        let line = serde_json::to_string(&Entry {
            ts: now_us(),
            source: source.clone(),
            event,
        })
        .unwrap_or_default();
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    })
}

/// Turns the client's warnings (a broker that cannot be reached, with the cause and the next
/// attempt; see `cohort::unstable::Cluster`) into `error` event lines, so whoever reads the member's
/// journal sees them where it sees everything else.
pub struct WarningsAsEvents {
    sink: Sink,
}

impl WarningsAsEvents {
    /// Warnings of the client become events on the member's stdout journal as `source`.
    pub fn new(source: &str) -> Self {
        Self {
            sink: stdout_sink(source),
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WarningsAsEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        if *meta.level() != tracing::Level::WARN || !meta.target().starts_with("cohort") {
            return;
        }
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                if f.name() == "message" {
                    let _ = write!(self.0, "{v:?}");
                } else {
                    let _ = write!(self.0, " {}={v:?}", f.name());
                }
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                use std::fmt::Write as _;
                if f.name() == "message" {
                    self.0.push_str(v);
                } else {
                    let _ = write!(self.0, " {}={v}", f.name());
                }
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        (self.sink)(Event::Error { message: fields.0 });
    }
}

/// Runs the member until a signal; returns the exit code.
pub async fn run(mut opts: MemberOptions, client: Client, control: bool) -> i32 {
    // This process can be SIGKILLed at any moment: never let a commit cover a record whose
    // line is not on stdout yet.
    opts.journal_before_ack = true;
    let sink = stdout_sink(&opts.name);
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            sink(Event::Error {
                message: format!("cannot watch SIGTERM: {e}"),
            });
            return 2;
        }
    };
    match client {
        Client::Cohort => {
            let mut member = match CohortMember::start(opts, sink.clone()).await {
                Ok(m) => m,
                Err(e) => {
                    sink(Event::Error {
                        message: e.to_string(),
                    });
                    return 2;
                }
            };
            let controls = member.controls().clone();
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            let stdin_open = control;
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                    () = member.wait() => return 1,
                    line = lines.next_line(), if stdin_open => match line {
                        Ok(Some(l)) if !l.trim().is_empty() => match serde_json::from_str::<ControlCommand>(&l) {
                            Ok(cmd) => apply(&controls, &cmd),
                            Err(e) => sink(Event::Error { message: format!("control {l:?}: {e}") }),
                        },
                        Ok(Some(_)) => {}
                        // The control pipe closed: whoever drives this member is gone, so it
                        // leaves rather than run on unattended.
                        _ => break,
                    },
                }
            }
            member.stop(StopHow::Close).await;
            0
        }
        Client::Java
        | Client::KafkaGo
        | Client::Sarama
        | Client::FranzGo
        | Client::Krafka
        | Client::Kacrab => {
            // `cohort member --client C` replaces itself with the client's program before it
            // gets here; these clients have no in-process member.
            sink(Event::Error {
                message: format!(
                    "the {client:?} member runs as its own process (`cohort member --client ...`)"
                ),
            });
            2
        }
        Client::Librdkafka => {
            let member = match RdMember::start(opts, sink.clone()) {
                Ok(m) => m,
                Err(e) => {
                    sink(Event::Error {
                        message: e.to_string(),
                    });
                    return 2;
                }
            };
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            let stdin_open = control;
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                    line = lines.next_line(), if stdin_open => match line {
                        Ok(Some(l)) => match serde_json::from_str::<ControlCommand>(&l) {
                            Ok(ControlCommand::Processing { us }) => member.set_processing(Duration::from_micros(us)),
                            Ok(other) => sink(Event::Error { message: format!("a librdkafka member has no pluggable dialer: {other:?} not applied") }),
                            Err(e) => sink(Event::Error { message: format!("control {l:?}: {e}") }),
                        },
                        _ => break,
                    },
                }
            }
            let _ = tokio::task::spawn_blocking(move || member.stop(StopHow::Close)).await;
            0
        }
    }
}
