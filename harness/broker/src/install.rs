//! Finding (and if needed installing) the brokers: the Tansu binary and Apache Kafka's jars.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::BrokerError;

/// The pinned Tansu build (`tansu --version` prints 0.6.0; the suffix is the source commit).
pub const TANSU_VERSION: &str = "0.6.0-510f3e2";

/// The pinned Apache Kafka release, from `harness/kafka/pom.xml` (`kafka.version`).
pub const KAFKA_VERSION: &str = env!("COHORT_KAFKA_VERSION");

/// The install scripts and the pom, embedded so that every binary of the project can install
/// the brokers it needs.
const TANSU_SCRIPT: &str = include_str!("../../scripts/install-tansu.sh");
const KAFKA_SCRIPT: &str = include_str!("../../scripts/install-kafka.sh");
const KAFKA_POM: &str = include_str!("../../kafka/pom.xml");

/// Cohort's cache folder: `COHORT_CACHE_DIR`, else `$XDG_CACHE_HOME/cohort`, else
/// `~/.cache/cohort` (the install scripts use the same rule).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("COHORT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cohort");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("cohort")
}

/// Runs an embedded script and returns what it printed on stdout.
fn run_embedded(
    name: &str,
    script: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<String, String> {
    // One install at a time within a process; the scripts are safe across processes.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).arg(name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running bash for {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{name}.sh exited with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs an embedded install script and returns the path (or image reference) it prints on its
/// last line.
pub(crate) fn run_script(
    name: &str,
    script: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> Result<PathBuf, String> {
    let stdout = run_embedded(name, script, env)?;
    let path = stdout.lines().last().unwrap_or("").trim().to_owned();
    let p = PathBuf::from(&path);
    // Paths must exist; the image builder prints an image reference instead.
    if p.exists() || (!path.is_empty() && !path.contains('/')) {
        Ok(p)
    } else {
        Err(format!("{name}.sh printed {path:?}, which does not exist"))
    }
}

const DOCKER_SCRIPT: &str = include_str!("../../scripts/install-docker.sh");

/// Makes a Docker engine answer where this machine allows it (`harness/scripts/install-docker.sh`:
/// installs Debian's docker.io and starts dockerd, as root); the error says why not.
pub fn ensure_docker() -> Result<(), String> {
    if crate::container::docker_available() {
        return Ok(());
    }
    run_embedded("install-docker", DOCKER_SCRIPT, &[]).map(|_| ())
}

/// Path of the Tansu binary: `COHORT_TANSU_BIN` if set, else the cached install, installing it
/// first when missing (idempotent; see `harness/scripts/install-tansu.sh`).
pub fn install_tansu() -> Result<PathBuf, BrokerError> {
    if let Ok(p) = std::env::var("COHORT_TANSU_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(BrokerError::Install(format!(
            "COHORT_TANSU_BIN={} is not a file",
            p.display()
        )));
    }
    run_script("install-tansu", TANSU_SCRIPT, &[])
        .map_err(|e| BrokerError::Install(format!("Tansu {TANSU_VERSION}: {e}")))
}

/// What it takes to run Apache Kafka: its jars and a Java runtime.
#[derive(Debug, Clone)]
pub struct KafkaInstall {
    /// The folder of jars (the broker's class path is `<libs>/*`).
    pub libs: PathBuf,
    /// The `java` to run it with.
    pub java: PathBuf,
}

/// The Java that runs the broker: `$JAVA_HOME/bin/java`, else `java` on `PATH`; checked once.
fn java() -> Result<PathBuf, BrokerError> {
    static JAVA: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    JAVA.get_or_init(|| {
        let java = match std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join("bin").join("java"),
            None => PathBuf::from("java"),
        };
        match Command::new(&java).arg("-version").output() {
            Ok(out) if out.status.success() => Ok(java),
            Ok(out) => Err(format!(
                "{} -version failed ({}): {}",
                java.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!(
                "Java is missing ({}: {e}); Apache Kafka {KAFKA_VERSION} needs a Java 17+ runtime \
                 (set JAVA_HOME), or run on the Tansu broker with COHORT_BROKER_KIND=tansu",
                java.display()
            )),
        }
    })
    .clone()
    .map_err(BrokerError::Install)
}

/// Apache Kafka's jars and Java: `COHORT_KAFKA_LIBS` (a folder of jars, for instance the `libs/`
/// of a Kafka distribution) if set, else the cached install of the pinned release, installing it
/// first when missing (idempotent; see `harness/scripts/install-kafka.sh`).
pub fn install_kafka() -> Result<KafkaInstall, BrokerError> {
    let java = java()?;
    if let Some(p) = std::env::var_os("COHORT_KAFKA_LIBS").filter(|p| !p.is_empty()) {
        let libs = PathBuf::from(p);
        if libs.is_dir() {
            return Ok(KafkaInstall { libs, java });
        }
        return Err(BrokerError::Install(format!(
            "COHORT_KAFKA_LIBS={} is not a folder",
            libs.display()
        )));
    }
    static LIBS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let libs = LIBS
        .get_or_init(|| {
            let dir = cache_dir().join("kafka");
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let pom = dir.join(format!("pom-{KAFKA_VERSION}.xml"));
            if std::fs::read_to_string(&pom).ok().as_deref() != Some(KAFKA_POM) {
                // Written whole under another name, then renamed: concurrent installs never read
                // half a pom.
                let tmp = dir.join(format!("pom-{KAFKA_VERSION}.xml.{}", std::process::id()));
                std::fs::write(&tmp, KAFKA_POM)
                    .and_then(|()| std::fs::rename(&tmp, &pom))
                    .map_err(|e| format!("{}: {e}", pom.display()))?;
            }
            run_script(
                "install-kafka",
                KAFKA_SCRIPT,
                &[("COHORT_KAFKA_POM", pom.as_os_str())],
            )
        })
        .clone()
        .map_err(|e| BrokerError::Install(format!("Apache Kafka {KAFKA_VERSION}: {e}")))?;
    Ok(KafkaInstall { libs, java })
}
