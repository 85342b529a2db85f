//! The Java consumer as a harness member (`cohort member --client java`): the program in
//! `harness/clients/java`, built against the pinned Apache Kafka release's own kafka-clients by
//! `harness/scripts/install-java-member.sh` on first use (and by `scripts/install.sh`), run as
//! its own process with the same flags and JSON event lines as a cohort member.

use std::path::PathBuf;
use std::process::Command;

use crate::error::HarnessError;

const SCRIPT: &str = include_str!("../scripts/install-java-member.sh");
const SOURCE: &str = include_str!("../clients/java/src/cohort/JavaMember.java");

/// How to run the Java member.
#[derive(Debug, Clone)]
pub struct JavaMember {
    /// The `java` to run it with.
    pub java: PathBuf,
    /// Its class path: its classes, then the release's jars.
    pub classpath: String,
}

/// Builds the Java member when it is not built yet (idempotent) and says how to run it.
pub fn install() -> Result<JavaMember, HarnessError> {
    let kafka = cohort_testbroker::install_kafka()?;
    // The script builds from a source folder; the binary carries the source, so the build does
    // not depend on where the repository is.
    let stage = cohort_testbroker::cache_dir()
        .join("clients")
        .join("java")
        .join("src");
    let file = stage.join("src").join("cohort").join("JavaMember.java");
    if std::fs::read_to_string(&file).ok().as_deref() != Some(SOURCE) {
        let dir = file.parent().unwrap_or(&stage);
        std::fs::create_dir_all(dir).map_err(HarnessError::io(dir.display()))?;
        let tmp = file.with_extension(format!("java.{}", std::process::id()));
        std::fs::write(&tmp, SOURCE)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(HarnessError::io(file.display()))?;
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .arg("install-java-member")
        .arg(&stage)
        .env("COHORT_KAFKA_LIBS_DIR", &kafka.libs)
        .output()
        .map_err(HarnessError::io("running install-java-member.sh"))?;
    if !out.status.success() {
        return Err(HarnessError::invalid(format!(
            "building the Java member failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let classes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(JavaMember {
        java: kafka.java,
        classpath: format!("{classes}:{}/*", kafka.libs.display()),
    })
}

/// Replaces this process with the Java member (so signals reach it directly); returns only when
/// that fails.
pub fn exec(args: &[String]) -> HarnessError {
    let m = match install() {
        Ok(m) => m,
        Err(e) => return e,
    };
    let mut cmd = Command::new(&m.java);
    cmd.arg("-cp")
        .arg(&m.classpath)
        // The member's own logs (kafka-clients through log4j2) go to stderr at warn.
        .arg("-Dlog4j2.level=warn")
        .arg("cohort.JavaMember")
        .args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        HarnessError::io("starting the Java member")(cmd.exec())
    }
    #[cfg(not(unix))]
    {
        match cmd.status() {
            Ok(s) => std::process::exit(s.code().unwrap_or(1)),
            Err(e) => HarnessError::io("starting the Java member")(e),
        }
    }
}
