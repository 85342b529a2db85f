//! The process backend for Tansu: a child process on a free loopback port, with in-memory
//! storage (so a restart loses everything, see `TestBroker::is_volatile`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::{Backend, BrokerError, free_port, install_tansu, probe, watchdog};

pub(crate) struct ProcessBroker {
    child: Mutex<Child>,
    watchdog: Mutex<Option<Child>>,
    port: u16,
    log: PathBuf,
}

fn spawn(bin: &std::path::Path, port: u16, log: &std::path::Path) -> Result<Child, BrokerError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| BrokerError::Process(format!("{}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| BrokerError::Process(e.to_string()))?;
    let url = format!("tcp://127.0.0.1:{port}");
    Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env(
            "RUST_LOG",
            std::env::var("COHORT_BROKER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| BrokerError::Process(format!("spawning {}: {e}", bin.display())))
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub(crate) fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits (up to 2 s) until every thread of `pid` is stopped. kill(2) only queues SIGSTOP: each
/// thread stops when the kernel next schedules it, which on a loaded machine was seen to leave a
/// JVM answering a request after `kill -STOP` had returned. A paused broker must not answer.
fn wait_stopped(pid: u32) {
    let stopped = || -> Option<bool> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for t in tasks.flatten() {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // `pid (comm) S ...`: the state follows the last ')' (comm may contain one).
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            if !matches!(state, 'T' | 't' | 'Z' | 'X') {
                return Some(false);
            }
        }
        Some(true)
    };
    for _ in 0..200 {
        // No /proc (not Linux) or the process is gone: nothing to wait for.
        if stopped() != Some(false) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `sig` (a name such as `STOP`) to `pid` through kill(1), which needs no `unsafe`; after
/// `STOP`, returns once the process has stopped.
pub(crate) fn kill(pid: u32, sig: &str) -> Result<(), BrokerError> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| BrokerError::Process(format!("kill -{sig}: {e}")))?;
    if status.success() {
        if sig == "STOP" {
            wait_stopped(pid);
        }
        Ok(())
    } else {
        Err(BrokerError::Process(format!(
            "kill -{sig} {pid} failed: {status}"
        )))
    }
}

impl ProcessBroker {
    pub(crate) fn start(timeout: Duration) -> Result<Self, BrokerError> {
        let bin = install_tansu()?;
        let mut last_err = None;
        // A port picked by `free_port` can be taken by someone else before Tansu binds it; a new
        // port is tried when that happens.
        for _attempt in 0..3 {
            let port = free_port().map_err(|e| BrokerError::Process(format!("free port: {e}")))?;
            let log = std::env::temp_dir()
                .join(format!("cohort-tansu-{}-{port}.log", std::process::id()));
            let child = spawn(&bin, port, &log)?;
            let broker = ProcessBroker {
                watchdog: Mutex::new(watchdog::watch(child.id(), Some(&log))),
                child: Mutex::new(child),
                port,
                log,
            };
            let ready = probe::wait_until(&broker.addr(), timeout, &Default::default(), || {
                broker.exited().map(|s| format!("broker exited ({s})"))
            })
            .and_then(|()| broker.check_owns_port());
            match ready {
                Ok(()) => return Ok(broker),
                Err(reason) => {
                    let exited = broker.exited();
                    last_err = Some(BrokerError::NotReady {
                        backend: Backend::Process,
                        addr: broker.addr(),
                        reason: match exited {
                            Some(status) => format!("broker exited ({status}); {reason}"),
                            None => reason,
                        },
                        log: broker.log_tail(),
                    });
                    if exited.is_none() && !broker.foreign_listener() {
                        break;
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| BrokerError::Process("broker did not start".into())))
    }

    /// Ready only counts when it is our process that listens on the port: one that failed to
    /// bind it exits, and whatever else listens there would otherwise pass for it.
    fn check_owns_port(&self) -> Result<(), String> {
        if self.foreign_listener() {
            Err(format!(
                "port {} answers, but not from the Tansu process {} started",
                self.port,
                self.pid()
            ))
        } else {
            Ok(())
        }
    }

    fn foreign_listener(&self) -> bool {
        probe::owns_listener(self.pid(), self.port) == Some(false)
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut c = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        c.try_wait().ok().flatten()
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .id()
    }

    pub(crate) fn signal(&self, sig: &str) -> Result<(), BrokerError> {
        kill(self.pid(), sig)
    }

    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }

    /// Kills the broker and starts it again on the same port.
    pub(crate) fn restart(&self, timeout: Duration) -> Result<(), BrokerError> {
        let bin = install_tansu()?;
        {
            let mut c = self
                .child
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = c.kill();
            let _ = c.wait();
            // The port is free once the old process is gone; retry briefly if the kernel
            // has not released it yet.
            let mut last = None;
            for _ in 0..20 {
                let child = spawn(&bin, self.port, &self.log)?;
                let mut w = self
                    .watchdog
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                watchdog::dismiss(w.take());
                *w = watchdog::watch(child.id(), Some(&self.log));
                *c = child;
                std::thread::sleep(Duration::from_millis(100));
                match c.try_wait() {
                    Ok(Some(status)) => last = Some(status),
                    _ => {
                        last = None;
                        break;
                    }
                }
            }
            if let Some(status) = last {
                return Err(BrokerError::Process(format!(
                    "restarted broker exited: {status}"
                )));
            }
        }
        probe::wait_until(&self.addr(), timeout, &Default::default(), || {
            self.exited().map(|s| format!("broker exited ({s})"))
        })
        .and_then(|()| self.check_owns_port())
        .map_err(|reason| BrokerError::NotReady {
            backend: Backend::Process,
            addr: self.addr(),
            reason,
            log: self.log_tail(),
        })
    }
}

impl Drop for ProcessBroker {
    fn drop(&mut self) {
        let c = self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SIGKILL also ends a broker stopped with SIGSTOP.
        let _ = c.kill();
        let _ = c.wait();
        watchdog::dismiss(
            self.watchdog
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        if std::env::var_os("COHORT_KEEP_BROKER_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
