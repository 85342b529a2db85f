//! A `cohort run` killed outright (SIGKILL: no handler, no destructor runs) leaves nothing
//! behind: its broker, and its member processes, frozen ones included, are stopped by their
//! watchdogs.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The direct children of `pid`, with their command lines.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // The parent pid is the second field after the parenthesised command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            let cmd = std::fs::read(format!("/proc/{child}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.push((child, cmd));
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    // A zombie has been killed; only its parent has not reaped it yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_killed_run_leaves_no_broker_or_member_behind() {
    let dir = std::env::temp_dir().join(format!("cohort-cleanup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cleanup.toml");
    std::fs::write(
        &file,
        r#"
name = "cleanup"
duration = "120s"
[[topics]]
name = "t"
partitions = 2
[[members]]
name = "m"
[[members]]
name = "p"
placement = "process"
[[actions]]
at = "2s"
action = "freeze"
target = "p"
for = "100s"
"#,
    )
    .unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_cohort"))
        .arg("run")
        .arg(&file)
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cohort run");
    let pid = run.id();

    // Wait for the broker and the member process, and for the member to be frozen.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (broker, member) = loop {
        let kids = children(pid);
        let broker = kids
            .iter()
            .find(|(_, c)| c.contains("kafka.Kafka") || c.contains("tansu"));
        let member = kids.iter().find(|(_, c)| c.contains(" member "));
        if let (Some(b), Some(m)) = (broker, member) {
            let frozen = std::fs::read_to_string(format!("/proc/{}/stat", m.0)).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('T'))
            });
            if frozen {
                break (b.0, m.0);
            }
        }
        if let Ok(Some(status)) = run.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            run.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("cohort run ended ({status}) before it was killed:\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "no broker and frozen member: {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    run.kill().expect("SIGKILL");
    run.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(broker) || alive(member) {
        assert!(
            Instant::now() < deadline,
            "left behind after SIGKILL: broker {broker} alive {}, member {member} alive {}",
            alive(broker),
            alive(member)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
