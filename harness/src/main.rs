//! `cohort`: consumer groups under chaos against a real broker.
//!
//! ```text
//! cohort demo                      a short scenario on the default broker, with a report
//! cohort run SCENARIO.toml         a scenario; exits non-zero when a check fails
//! cohort member --bootstrap ...    one group member as a process, events as JSON lines
//! cohort assign [FILE] [--java]    a balancer's plan and metrics for a group described in JSON,
//!                                  with --java beside the Java client's own assignor
//! cohort conformance --bootstrap   which group behaviours a broker gets right
//! cohort broker                    start a broker (or a cluster) and wait
//! ```
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cohort::GroupProtocol;
use cohort_harness::error::HarnessError;
use cohort_harness::member::{Bug, MemberOptions};
use cohort_harness::process_member::{self, Client};
use cohort_harness::runner::{self, RunOptions};
use cohort_harness::scenario::Scenario;
use cohort_harness::security::SecuritySpec;
use cohort_harness::{agreement, assign, conformance};
use cohort_testbroker::BrokerKind;

#[derive(Parser)]
#[command(
    name = "cohort",
    version,
    about = "Kafka consumer groups under chaos against a real broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; `member` simply has the most settings"
)]
enum Command {
    /// Runs a short default scenario on the default broker (Apache Kafka) and writes its report.
    Demo {
        /// Where to write the report.
        #[arg(long, default_value = "cohort-report")]
        out: PathBuf,
        /// Seed (a random one is printed otherwise).
        #[arg(long)]
        seed: Option<u64>,
        /// Which broker to start: `apache-kafka` (default) or `tansu` (no Java needed).
        #[arg(long, value_parser = parse_broker)]
        broker: Option<BrokerKind>,
    },
    /// Runs a scenario file; exits 1 when a check fails.
    Run {
        /// The scenario (TOML), or the name of a shipped one (e.g. `rolling-restart`).
        scenario: String,
        /// Seed for every random choice (printed at the start; replays a run).
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write the reports.
        #[arg(long, default_value = "cohort-report")]
        out: PathBuf,
        /// Runs against this cluster instead of the scenario's broker.
        #[arg(long)]
        bootstrap: Option<String>,
        /// Runs against this Testcontainers image (e.g. `apache/kafka:4.4.0`).
        #[arg(long)]
        image: Option<String>,
        /// Which broker to start: `apache-kafka` (default) or `tansu`.
        #[arg(long, value_parser = parse_broker)]
        broker: Option<BrokerKind>,
        /// Multiplies the scenario's duration (a soak: `--scale 10`).
        #[arg(long, default_value_t = 1)]
        scale: u32,
        /// Replaces the scenario's duration before `--scale` (a short soak in CI:
        /// `--duration 150s`).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Serves the metrics of the run's in-process Cohort members in Prometheus form on
        /// this address (`http://<addr>/metrics`), labelled by client id.
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// How every client connects, over the scenario's `[security]` (with `--bootstrap`).
        #[command(flatten)]
        security: SecuritySpec,
    },
    /// Runs one group member until SIGTERM/SIGINT, printing one JSON object per event.
    Member {
        /// Bootstrap servers.
        #[arg(long)]
        bootstrap: String,
        /// Group id.
        #[arg(long)]
        group: String,
        /// Topics (repeat the flag for several).
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// Balancers by protocol name, in priority order (repeat the flag).
        #[arg(long = "balancer")]
        balancers: Vec<String>,
        /// `group.instance.id` (static membership).
        #[arg(long)]
        instance_id: Option<String>,
        /// Session timeout (classic protocol; 45 s).
        #[arg(long)]
        session_timeout_ms: Option<u64>,
        /// Heartbeat interval (classic protocol; 3 s).
        #[arg(long)]
        heartbeat_interval_ms: Option<u64>,
        /// `group.protocol`: classic, or consumer (KIP-848: the broker assigns, and owns the
        /// session timeout and heartbeat interval).
        #[arg(long, value_parser = parse_protocol, default_value = "classic")]
        group_protocol: GroupProtocol,
        /// `group.remote.assignor` with the consumer protocol (uniform, range).
        #[arg(long)]
        group_remote_assignor: Option<String>,
        /// Rebalance timeout (60 s; the Java client has none of its own: its rebalance timeout
        /// is `--max-poll-interval-ms`).
        #[arg(long)]
        rebalance_timeout_ms: Option<u64>,
        /// Processing bound (5 min).
        #[arg(long)]
        max_poll_interval_ms: Option<u64>,
        /// Time to process one record.
        #[arg(long, default_value_t = 0)]
        processing_us: u64,
        /// `auto.commit.interval.ms` (500 ms for a harness member).
        #[arg(long)]
        auto_commit_interval_ms: Option<u64>,
        /// `isolation.level`: read_uncommitted (Kafka's default) or read_committed.
        #[arg(long, value_parser = parse_isolation, default_value = "read_uncommitted")]
        isolation_level: cohort::IsolationLevel,
        /// Name in the event lines.
        #[arg(long, default_value = "member")]
        name: String,
        /// Which client runs the member.
        #[arg(long, value_enum, default_value_t = Client::Cohort)]
        client: Client,
        /// Weight for the weighted sticky balancer.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Reads fault commands from stdin (see the harness docs).
        #[arg(long)]
        control: bool,
        /// A deliberate bug, for checker tests.
        #[arg(long, value_parser = parse_bug)]
        bug: Option<Bug>,
        /// Pause before the follow-up JoinGroup of a cooperative rebalance.
        #[arg(long, default_value_t = 0)]
        cooperative_rejoin_delay_ms: u64,
        /// Seed of the retry jitter (a scenario derives one per member); drawn when absent.
        #[arg(long)]
        jitter_seed: Option<u64>,
        /// Serves the member's metrics in Prometheus form on this address
        /// (`http://<addr>/metrics`; cohort members only).
        #[arg(long)]
        metrics_addr: Option<std::net::SocketAddr>,
        #[command(flatten)]
        security: SecuritySpec,
    },
    /// Prints a balancer's plan and metrics for a group described in JSON (stdin or a file).
    Assign {
        /// The description; stdin when absent.
        file: Option<PathBuf>,
        /// Balancer (overrides the description's).
        #[arg(long)]
        balancer: Option<String>,
        /// Applies the description's `steps` and prints the metrics of each.
        #[arg(long)]
        steps: bool,
        /// Also runs the Java client's assignor of the pinned Kafka release on the same JoinGroup
        /// metadata, and says whether cohort's plan agrees (identical for range and roundrobin;
        /// for the sticky ones valid, as balanced and moving no more partitions).
        #[arg(long, conflicts_with = "steps")]
        java: bool,
        /// Indents the JSON (one line by default, for pipes).
        #[arg(long)]
        pretty: bool,
    },
    /// Checks how a broker handles consumer groups and offsets.
    Conformance {
        /// The broker; one started here when absent.
        #[arg(long)]
        bootstrap: Option<String>,
        /// Which broker to start when no `--bootstrap` is given: `apache-kafka` (default) or
        /// `tansu`.
        #[arg(long, value_parser = parse_broker)]
        broker: Option<BrokerKind>,
        /// Only these checks (repeat the flag).
        #[arg(long = "check")]
        checks: Vec<String>,
        /// Prints JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// How the checks connect (with `--bootstrap`).
        #[command(flatten)]
        security: SecuritySpec,
    },
    /// Starts a broker (or a cluster), prints its address and waits for Ctrl-C.
    Broker {
        /// `apache-kafka` (default) or `tansu`.
        #[arg(long, value_parser = parse_broker)]
        broker: Option<BrokerKind>,
        /// Nodes of an Apache Kafka cluster.
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
}

fn parse_broker(s: &str) -> Result<BrokerKind, HarnessError> {
    Ok(BrokerKind::parse(s)?)
}

fn parse_protocol(s: &str) -> Result<GroupProtocol, HarnessError> {
    match s {
        "classic" => Ok(GroupProtocol::Classic),
        "consumer" => Ok(GroupProtocol::Consumer),
        other => Err(HarnessError::invalid(format!(
            "group protocol {other:?}: classic or consumer"
        ))),
    }
}

fn parse_isolation(s: &str) -> Result<cohort::IsolationLevel, HarnessError> {
    match s {
        "read_uncommitted" => Ok(cohort::IsolationLevel::ReadUncommitted),
        "read_committed" => Ok(cohort::IsolationLevel::ReadCommitted),
        other => Err(HarnessError::invalid(format!(
            "isolation level {other:?}: read_uncommitted or read_committed"
        ))),
    }
}

fn parse_bug(s: &str) -> Result<Bug, HarnessError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| HarnessError::invalid("known bugs: commit-after-revoke"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    {
        use tracing_subscriber::prelude::*;
        let filter = tracing_subscriber::EnvFilter::try_from_env("COHORT_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        // A member process also reports the client's warnings as journal events.
        let events = match &cli.command {
            Command::Member { name, .. } => {
                Some(cohort_harness::process_member::WarningsAsEvents::new(name))
            }
            _ => None,
        };
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .with(events)
            .try_init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cohort: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = rt.block_on(run(cli.command));
    // Members' tasks may still hold connections; do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn run(command: Command) -> u8 {
    match command {
        Command::Demo { out, seed, broker } => {
            let s = Scenario::parse(runner::DEMO).expect("the demo scenario parses");
            let mut opts = RunOptions::new(out, seed);
            opts.broker = broker;
            scenario(&s, opts).await
        }
        Command::Run {
            scenario: path,
            seed,
            out,
            bootstrap,
            image,
            broker,
            scale,
            duration,
            metrics_addr,
            security,
        } => {
            if let Some(addr) = metrics_addr
                && let Err(e) = cohort_harness::metrics::serve(addr)
            {
                eprintln!("cohort run: {e}");
                return 2;
            }
            let text = match runner::load(&path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("cohort run: {e}");
                    return 2;
                }
            };
            let s = match Scenario::parse(&text).and_then(|s| s.lasting(duration)?.scaled(scale)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cohort run: {path}: {e}");
                    return 2;
                }
            };
            let mut opts = RunOptions::new(out, seed);
            opts.bootstrap = bootstrap;
            opts.image = image;
            opts.broker = broker;
            opts.security = security;
            scenario(&s, opts).await
        }
        Command::Member {
            bootstrap,
            group,
            topics,
            balancers,
            instance_id,
            session_timeout_ms,
            heartbeat_interval_ms,
            rebalance_timeout_ms,
            max_poll_interval_ms,
            processing_us,
            auto_commit_interval_ms,
            isolation_level,
            name,
            client,
            weight,
            control,
            bug,
            cooperative_rejoin_delay_ms,
            jitter_seed,
            group_protocol,
            group_remote_assignor,
            metrics_addr,
            security,
        } => {
            if let Some(addr) = metrics_addr {
                if client != Client::Cohort {
                    eprintln!(
                        "cohort member: --metrics-addr: the {} member has no metrics here (cohort members do)",
                        cohort_harness::clients::flag_name(client)
                    );
                    return 2;
                }
                if let Err(e) = cohort_harness::metrics::serve(addr) {
                    eprintln!("cohort member: {e}");
                    return 2;
                }
            }
            let security = match security.resolve() {
                Ok(s) => s,
                Err(why) => {
                    eprintln!("cohort member: {why}");
                    return 2;
                }
            };
            if !security.is_plaintext() && !client.in_process() {
                eprintln!(
                    "cohort member: the {} member does not take security settings yet (cohort and librdkafka do)",
                    cohort_harness::clients::flag_name(client)
                );
                return 2;
            }
            if !client.in_process() {
                let mut base: Vec<String> = vec![
                    "--bootstrap".into(),
                    bootstrap,
                    "--group".into(),
                    group,
                    "--name".into(),
                    name,
                    "--processing-us".into(),
                    processing_us.to_string(),
                ];
                for t in topics {
                    base.extend(["--topic".into(), t]);
                }
                if control {
                    base.push("--control".into());
                }
                let cohort_only = [
                    ("--weight", weight != 1),
                    ("--bug", bug.is_some()),
                    (
                        "--cooperative-rejoin-delay-ms",
                        cooperative_rejoin_delay_ms != 0,
                    ),
                    ("--jitter-seed", jitter_seed.is_some()),
                    (
                        "--auto-commit-interval-ms",
                        auto_commit_interval_ms.is_some(),
                    ),
                    (
                        "--isolation-level",
                        isolation_level != cohort::IsolationLevel::ReadUncommitted,
                    ),
                ]
                .into_iter()
                .filter_map(|(f, set)| set.then_some(f))
                .collect();
                let flags = cohort_harness::clients::MemberFlags {
                    balancers,
                    instance_id,
                    session_timeout_ms,
                    heartbeat_interval_ms,
                    rebalance_timeout_ms,
                    max_poll_interval_ms,
                    consumer_protocol: group_protocol == GroupProtocol::Consumer,
                    group_remote_assignor,
                    cohort_only,
                };
                return match cohort_harness::clients::member_flags(client, base, flags) {
                    Ok(args) => {
                        let e = cohort_harness::clients::exec(client, &args);
                        eprintln!("cohort member: {e}");
                        2
                    }
                    Err(why) => {
                        eprintln!("cohort member: {why}");
                        2
                    }
                };
            }
            let mut o = MemberOptions::new(&name, &bootstrap, &group, &topics);
            o.security = security;
            if group_protocol == GroupProtocol::Consumer {
                // The broker owns these with KIP-848; a flag that cannot be honoured is an
                // error, not ignored (the Java client refuses the same settings).
                let refused: Vec<&str> = [
                    ("--balancer", !balancers.is_empty()),
                    ("--session-timeout-ms", session_timeout_ms.is_some()),
                    ("--heartbeat-interval-ms", heartbeat_interval_ms.is_some()),
                ]
                .into_iter()
                .filter_map(|(f, set)| set.then_some(f))
                .collect();
                if !refused.is_empty() {
                    eprintln!(
                        "cohort member: {} cannot be set with --group-protocol consumer: the broker decides them (KIP-848)",
                        refused.join(", ")
                    );
                    return 2;
                }
            } else if group_remote_assignor.is_some() {
                eprintln!("cohort member: --group-remote-assignor needs --group-protocol consumer");
                return 2;
            }
            o.group_protocol = group_protocol;
            o.group_remote_assignor = group_remote_assignor;
            if !balancers.is_empty() {
                o.balancers = balancers;
            } else {
                o.balancers = vec!["range".into(), "cooperative-sticky".into()];
            }
            o.instance_id = instance_id;
            o.session_timeout = Duration::from_millis(session_timeout_ms.unwrap_or(45_000));
            o.heartbeat_interval = Duration::from_millis(heartbeat_interval_ms.unwrap_or(3_000));
            o.rebalance_timeout = Duration::from_millis(rebalance_timeout_ms.unwrap_or(60_000));
            o.max_poll_interval = Duration::from_millis(max_poll_interval_ms.unwrap_or(300_000));
            o.processing = Duration::from_micros(processing_us);
            if let Some(ms) = auto_commit_interval_ms {
                o.auto_commit_interval = Duration::from_millis(ms);
            }
            o.isolation_level = isolation_level;
            o.weight = weight;
            o.bug = bug;
            o.cooperative_rejoin_delay = Duration::from_millis(cooperative_rejoin_delay_ms);
            o.jitter_seed = jitter_seed;
            process_member::run(o, client, control).await as u8
        }
        Command::Assign {
            file,
            balancer,
            steps,
            java,
            pretty,
        } => {
            let mut text = String::new();
            let read = match &file {
                Some(f) => std::fs::read_to_string(f).map(|t| text = t),
                None => std::io::stdin().read_to_string(&mut text).map(|_| ()),
            };
            if let Err(e) = read {
                eprintln!("cohort assign: {e}");
                return 2;
            }
            let result = if java {
                agreement::run(&text, balancer.as_deref())
            } else {
                assign::run(&text, balancer.as_deref(), steps)
            };
            match result {
                Ok(v) => {
                    let text = if pretty {
                        serde_json::to_string_pretty(&v)
                    } else {
                        serde_json::to_string(&v)
                    };
                    println!("{}", text.unwrap_or_default());
                    0
                }
                Err(e) => {
                    eprintln!("cohort assign: {e}");
                    2
                }
            }
        }
        Command::Conformance {
            bootstrap,
            broker,
            checks,
            json,
            security,
        } => {
            let security = match security.resolve() {
                Ok(s) if s.is_plaintext() || bootstrap.is_some() => s,
                Ok(_) => {
                    eprintln!(
                        "cohort conformance: the broker started here listens in plaintext; give the secured one with --bootstrap"
                    );
                    return 2;
                }
                Err(e) => {
                    eprintln!("cohort conformance: {e}");
                    return 2;
                }
            };
            let (addr, _broker) = match bootstrap {
                Some(b) => (b, None),
                None => match runner::embedded_broker(broker, 1).await {
                    Ok(b) => {
                        eprintln!("cohort conformance: on {}", b.info());
                        (b.bootstrap().to_owned(), Some(b))
                    }
                    Err(e) => {
                        eprintln!("cohort conformance: {e}");
                        return 2;
                    }
                },
            };
            match conformance::run(&addr, &security, &checks).await {
                Ok(results) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&results).unwrap_or_default()
                        );
                    } else {
                        print!("{}", conformance::table(&results));
                    }
                    if results.iter().all(|r| r.passed) {
                        0
                    } else {
                        1
                    }
                }
                Err(e) => {
                    eprintln!("cohort conformance: {e}");
                    2
                }
            }
        }
        Command::Broker { broker, nodes } => match runner::embedded_broker(broker, nodes).await {
            Ok(b) => {
                eprintln!("cohort broker: {} ({})", b.info(), b.description());
                println!("{}", b.bootstrap());
                // SIGINT or SIGTERM stop it cleanly; a harder end is the watchdogs' job.
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
                drop(b);
                0
            }
            Err(e) => {
                eprintln!("cohort broker: {e}");
                2
            }
        },
    }
}

async fn scenario(s: &Scenario, opts: RunOptions) -> u8 {
    match runner::run(s, &opts).await {
        Ok(report) => {
            print!("{}", report.text());
            eprintln!("reports written to {}", opts.out.display());
            if report.ok() { 0 } else { 1 }
        }
        Err(e) => {
            eprintln!("cohort: {}: {e}", s.name);
            2
        }
    }
}
