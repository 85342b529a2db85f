//! A broker process must not outlive the test process that started it, even when that process
//! panics, aborts or is killed, and even when the broker lives in a `static` that is never
//! dropped (the shared broker of a test binary). Each broker process therefore gets a small
//! watchdog: a shell loop, itself a child of the test process, that waits for either to end and,
//! when the test process is gone first, stops the broker (SIGCONT for a paused one, SIGTERM, then
//! SIGKILL after a bound) and removes its temporary folder.
//!
//! `PR_SET_PDEATHSIG` would need `unsafe` and fires when the *thread* that spawned the child
//! ends, which for a broker started inside one test of a multi-threaded test binary is far too
//! early.

use std::path::Path;
use std::process::{Child, Command, Stdio};

const SCRIPT: &str = r#"
parent="$1"; child="$2"; dir="$3"
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill -0 "$parent" 2>/dev/null && exit 0
if kill -0 "$child" 2>/dev/null; then
  kill -CONT "$child" 2>/dev/null
  kill -TERM "$child" 2>/dev/null
  i=0
  while kill -0 "$child" 2>/dev/null && [ "$i" -lt 8 ]; do sleep 0.25; i=$((i+1)); done
  kill -KILL "$child" 2>/dev/null
fi
if [ -n "$dir" ]; then sleep 0.5; rm -rf "$dir"; fi
"#;

/// Starts a watchdog for `child`; `remove` is a folder to delete once the test process is gone
/// (the broker's temporary data). Best effort: without `sh` there is no watchdog, and `Drop`
/// remains the only cleanup.
pub(crate) fn watch(child: u32, remove: Option<&Path>) -> Option<Child> {
    let remove = remove
        .filter(|_| std::env::var_os("COHORT_KEEP_BROKER_LOGS").is_none())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("cohort-broker-watchdog")
        .arg(std::process::id().to_string())
        .arg(child.to_string())
        .arg(remove)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

const CONTAINER_SCRIPT: &str = r#"
parent="$1"; id="$2"
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
docker rm -f "$id" >/dev/null 2>&1
"#;

/// Starts a watchdog that removes container `id` once the test process is gone, for a process
/// that dies without dropping its broker (a panic in a `static`, SIGTERM, SIGKILL).
pub(crate) fn watch_container(id: &str) -> Option<Child> {
    Command::new("sh")
        .arg("-c")
        .arg(CONTAINER_SCRIPT)
        .arg("cohort-container-watchdog")
        .arg(std::process::id().to_string())
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Starts a watchdog for a process that is not a broker (a group member the harness runs as a
/// process): SIGCONT, SIGTERM and then SIGKILL once the process that started it is gone, so a
/// frozen or orphaned member does not outlive its run.
pub fn watch_process(pid: u32) -> Option<Child> {
    watch(pid, None)
}

/// Ends a watchdog whose broker was stopped normally.
pub fn dismiss(watchdog: Option<Child>) {
    if let Some(mut w) = watchdog {
        let _ = w.kill();
        let _ = w.wait();
    }
}
