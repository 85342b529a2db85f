//! Finding (and if needed installing) the Tansu binary.

use std::path::PathBuf;
use std::process::Command;

use crate::BrokerError;

/// The pinned Tansu build (`tansu --version` prints 0.6.0; the suffix is the source commit).
pub const TANSU_VERSION: &str = "0.6.0-510f3e2";

/// The install script, embedded so that every binary of the project can install the broker.
const INSTALL_SCRIPT: &str = include_str!("../../scripts/install-tansu.sh");

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
    // One install at a time within a process; the script itself is safe across processes.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = Command::new("bash")
        .arg("-c")
        .arg(INSTALL_SCRIPT)
        .arg("install-tansu")
        .output()
        .map_err(|e| BrokerError::Install(format!("running bash: {e}")))?;
    if !out.status.success() {
        return Err(BrokerError::Install(format!(
            "install-tansu.sh exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let p = PathBuf::from(&path);
    if p.is_file() {
        Ok(p)
    } else {
        Err(BrokerError::Install(format!(
            "install-tansu.sh printed {path:?}, which is not a file"
        )))
    }
}
