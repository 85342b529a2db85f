//! The reference clients as harness members, each its own process with the flags and JSON
//! event lines of a cohort member: the Java consumer of the pinned Apache Kafka release
//! (`harness/clients/java`, built by `harness/scripts/install-java-member.sh` against the
//! release's own jars), the Go clients our API is modelled on, segmentio/kafka-go, IBM/sarama
//! and twmb/franz-go (`harness/clients/go`, built by `harness/scripts/install-go-members.sh`),
//! and the pure-Rust clients krafka and kacrab (`harness/clients/rust`, built by
//! `harness/scripts/install-rust-clients.sh`). All build on first use (and from
//! `scripts/install.sh`); `cohort member --client C` replaces itself with the member's process.
//! A flag a client cannot honour is an error naming the client, never ignored.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::HarnessError;
use crate::process_member::Client;

const JAVA_SCRIPT: &str = include_str!("../scripts/install-java-member.sh");
const JAVA_SOURCE: &[(&str, &str)] = &[
    (
        "src/cohort/JavaMember.java",
        include_str!("../clients/java/src/cohort/JavaMember.java"),
    ),
    (
        "src/cohort/JavaAssign.java",
        include_str!("../clients/java/src/cohort/JavaAssign.java"),
    ),
    (
        "src/cohort/JavaConsume.java",
        include_str!("../clients/java/src/cohort/JavaConsume.java"),
    ),
];
const GO_SCRIPT: &str = include_str!("../scripts/install-go-members.sh");
const GO_SOURCE: &[(&str, &str)] = &[
    ("go.mod", include_str!("../clients/go/go.mod")),
    ("go.sum", include_str!("../clients/go/go.sum")),
    (
        "internal/member/member.go",
        include_str!("../clients/go/internal/member/member.go"),
    ),
    (
        "kafka-go/main.go",
        include_str!("../clients/go/kafka-go/main.go"),
    ),
    (
        "sarama/main.go",
        include_str!("../clients/go/sarama/main.go"),
    ),
    (
        "franz-go/main.go",
        include_str!("../clients/go/franz-go/main.go"),
    ),
    (
        "assignbench/main.go",
        include_str!("../clients/go/assignbench/main.go"),
    ),
    (
        "consumebench/main.go",
        include_str!("../clients/go/consumebench/main.go"),
    ),
];

/// How to start a reference client's member: a program and the arguments before the member's
/// own flags.
#[derive(Debug, Clone)]
pub struct Program {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the flags (the Java class path and class).
    pub args: Vec<String>,
}

/// The client's version, as members report it.
pub fn version(client: Client) -> String {
    match client {
        Client::Cohort => "cohort".into(),
        Client::Librdkafka => format!("librdkafka {}", crate::foreign::librdkafka_version()),
        Client::Java => format!("java {}", cohort_testbroker::KAFKA_VERSION),
        Client::KafkaGo => "kafka-go v0.4.51".into(),
        Client::Sarama => "sarama v1.61.1".into(),
        Client::FranzGo => "franz-go v1.22.3".into(),
        Client::Krafka => "krafka 0.28.1".into(),
        Client::Kacrab => "kacrab 0.4.0".into(),
    }
}

/// Writes the embedded sources into the cache (only what changed), so the build does not depend
/// on where the repository is, and returns their folder.
fn stage(name: &str, files: &[(&str, &str)]) -> Result<PathBuf, HarnessError> {
    let dir = cohort_testbroker::cache_dir()
        .join("clients")
        .join(name)
        .join("src");
    for (rel, text) in files {
        let file = dir.join(rel);
        if std::fs::read_to_string(&file).ok().as_deref() == Some(*text) {
            continue;
        }
        let parent = file.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent).map_err(HarnessError::io(parent.display()))?;
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(HarnessError::io(file.display()))?;
    }
    Ok(dir)
}

/// Runs an install script on a source folder; the last line it prints is what it built.
fn build(
    name: &str,
    script: &str,
    src: &Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<String, HarnessError> {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).arg(name).arg(src);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .map_err(HarnessError::io(format!("running {name}.sh")))?;
    if !out.status.success() {
        return Err(HarnessError::invalid(format!(
            "{name}.sh failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Builds the Java programs when they are not built yet (idempotent) and says how to run one:
/// `cohort.JavaMember` (the member), `cohort.JavaAssign` (the assignors' leader step) or
/// `cohort.JavaConsume` (the consumer timed for the throughput benchmark).
pub fn java_program(class: &str) -> Result<Program, HarnessError> {
    let kafka = cohort_testbroker::install_kafka()?;
    let src = stage("java", JAVA_SOURCE)?;
    let classes = build(
        "install-java-member",
        JAVA_SCRIPT,
        &src,
        &[("COHORT_KAFKA_LIBS_DIR", kafka.libs.as_os_str())],
    )?;
    Ok(Program {
        program: kafka.java,
        args: vec![
            "-cp".into(),
            format!("{classes}:{}/*", kafka.libs.display()),
            // kafka-clients logs through log4j2, to stderr (the member's log file).
            "-Dlog4j2.level=warn".into(),
            class.into(),
        ],
    })
}

/// Builds the Go programs when they are not built yet (idempotent) and says how to run one:
/// `kafka-go`, `sarama`, `franz-go` (the members), `assignbench` (franz-go's and sarama's
/// sticky balancers timed at scale) or `consumebench` (their consumers timed).
pub fn go_program(name: &str) -> Result<Program, HarnessError> {
    let src = stage("go", GO_SOURCE)?;
    let bin = build("install-go-members", GO_SCRIPT, &src, &[])?;
    Ok(Program {
        program: PathBuf::from(bin).join(name),
        args: Vec::new(),
    })
}

const RUST_SCRIPT: &str = include_str!("../scripts/install-rust-clients.sh");
const RUST_SOURCE: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../clients/rust/Cargo.toml")),
    ("Cargo.lock", include_str!("../clients/rust/Cargo.lock")),
    ("src/main.rs", include_str!("../clients/rust/src/main.rs")),
    (
        "src/member.rs",
        include_str!("../clients/rust/src/member.rs"),
    ),
];

/// Builds `rustbench` when it is not built yet (idempotent): the krafka and kacrab consumers
/// timed as the Go clients' `consumebench` times theirs (`--client krafka|krafka-tuned|kacrab`),
/// and their harness members (`member --client krafka|kacrab`).
pub fn rust_program() -> Result<Program, HarnessError> {
    let src = stage("rust", RUST_SOURCE)?;
    let bin = build("install-rust-clients", RUST_SCRIPT, &src, &[])?;
    Ok(Program {
        program: PathBuf::from(bin),
        args: Vec::new(),
    })
}

/// Builds the client's member when it is not built yet (idempotent) and says how to run it.
pub fn install(client: Client) -> Result<Program, HarnessError> {
    match client {
        Client::Java => java_program("cohort.JavaMember"),
        Client::KafkaGo => go_program("kafka-go"),
        Client::Sarama => go_program("sarama"),
        Client::FranzGo => go_program("franz-go"),
        Client::Krafka | Client::Kacrab => {
            let mut p = rust_program()?;
            p.args = vec!["member".into(), "--client".into(), flag_name(client).into()];
            Ok(p)
        }
        Client::Cohort | Client::Librdkafka => Err(HarnessError::invalid(format!(
            "{client:?} members run in the cohort process"
        ))),
    }
}

/// Replaces this process with the client's member (so signals reach it directly); returns only
/// when that fails.
pub fn exec(client: Client, flags: &[String]) -> HarnessError {
    let p = match install(client) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut cmd = Command::new(&p.program);
    cmd.args(&p.args).args(flags);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        HarnessError::io(format!("starting the {client:?} member"))(cmd.exec())
    }
    #[cfg(not(unix))]
    {
        match cmd.status() {
            Ok(s) => std::process::exit(s.code().unwrap_or(1)),
            Err(e) => HarnessError::io(format!("starting the {client:?} member"))(e),
        }
    }
}

/// What a member process of `client` needs beyond its group and topics; `Err` names the flags the
/// client cannot honour.
#[derive(Debug, Clone, Default)]
pub struct MemberFlags {
    /// Balancers, priority order (empty: the client's default).
    pub balancers: Vec<String>,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Session timeout (ms), when set.
    pub session_timeout_ms: Option<u64>,
    /// Heartbeat interval (ms), when set.
    pub heartbeat_interval_ms: Option<u64>,
    /// Rebalance timeout (ms), when set.
    pub rebalance_timeout_ms: Option<u64>,
    /// `max.poll.interval.ms`, when set.
    pub max_poll_interval_ms: Option<u64>,
    /// Whether the member runs the consumer protocol (KIP-848).
    pub consumer_protocol: bool,
    /// `group.remote.assignor`.
    pub group_remote_assignor: Option<String>,
    /// Settings only cohort members have, named when set (weight, bug, rejoin delay, seed).
    pub cohort_only: Vec<&'static str>,
}

/// The flags of a `client` member, or the ones it cannot honour.
pub fn member_flags(
    client: Client,
    base: Vec<String>,
    f: MemberFlags,
) -> Result<Vec<String>, String> {
    let mut refused: Vec<String> = f.cohort_only.iter().map(|s| (*s).to_owned()).collect();
    let mut out = base;
    // Java's rebalance timeout is max.poll.interval.ms, and so are krafka's and kacrab's.
    let java = matches!(client, Client::Java | Client::Krafka | Client::Kacrab);
    match (java, f.rebalance_timeout_ms, f.max_poll_interval_ms) {
        (true, Some(r), Some(m)) if r != m => refused.push(format!(
            "--rebalance-timeout-ms ({}'s rebalance timeout is --max-poll-interval-ms)",
            flag_name(client)
        )),
        (true, r, m) => {
            if let Some(v) = m.or(r) {
                out.extend(["--max-poll-interval-ms".into(), v.to_string()]);
            }
        }
        (false, r, m) => {
            if let Some(v) = r {
                out.extend(["--rebalance-timeout-ms".into(), v.to_string()]);
            }
            if m.is_some() {
                refused.push(format!(
                    "--max-poll-interval-ms ({} has no poll interval bound)",
                    flag_name(client)
                ));
            }
        }
    }
    if f.consumer_protocol {
        if java {
            out.extend(["--group-protocol".into(), "consumer".into()]);
            if let Some(a) = f.group_remote_assignor {
                out.extend(["--group-remote-assignor".into(), a]);
            }
        } else {
            refused.push(format!(
                "--group-protocol consumer ({} runs the classic protocol here)",
                flag_name(client)
            ));
        }
    }
    for b in f.balancers {
        out.extend(["--balancer".into(), b]);
    }
    let optional = [
        ("--instance-id", f.instance_id),
        (
            "--session-timeout-ms",
            f.session_timeout_ms.map(|v| v.to_string()),
        ),
        (
            "--heartbeat-interval-ms",
            f.heartbeat_interval_ms.map(|v| v.to_string()),
        ),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            out.extend([flag.to_owned(), v]);
        }
    }
    if refused.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "the {} client cannot honour {}",
            flag_name(client),
            refused.join(", ")
        ))
    }
}

/// The client's name on the command line.
pub fn flag_name(client: Client) -> &'static str {
    match client {
        Client::Cohort => "cohort",
        Client::Librdkafka => "librdkafka",
        Client::Java => "java",
        Client::KafkaGo => "kafka-go",
        Client::Sarama => "sarama",
        Client::FranzGo => "franz-go",
        Client::Krafka => "krafka",
        Client::Kacrab => "kacrab",
    }
}
