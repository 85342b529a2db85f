//! Members in network namespaces of their own, so that network faults hit real TCP in the
//! kernel: packets dropped on the floor (half-open connections, retransmissions, the broker's
//! own timeouts), one direction cut, random loss, connections reset on both ends, and delay
//! where the kernel has `sch_netem`.
//!
//! A run with `placement = "netns"` members makes a bridge with a private /24 in the root
//! namespace and starts the brokers on the bridge's address; each such member gets a namespace,
//! a veth pair into the bridge and an address of its own, and runs `cohort member` inside it
//! (`ip netns exec`). Faults are nftables rules in the member's namespace (only its traffic is
//! touched), `ss -K` for resets, and `tc netem` for delay. Everything is removed when the run
//! ends; namespaces a killed run left behind are removed by the next run.
//!
//! Needs root (or CAP_NET_ADMIN), iproute2 and nftables (`scripts/install.sh` installs them).

use std::process::Command;
use std::sync::Mutex;

use crate::error::HarnessError;

/// The name of the nftables table a member's faults live in (in its own namespace).
const TABLE: &str = "cohort_chaos";

fn run(args: &[&str]) -> Result<String, HarnessError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(HarnessError::io(format!("running {}", args[0])))?;
    if !out.status.success() {
        return Err(HarnessError::invalid(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], for the namespace `ns`.
fn run_in(ns: &str, args: &[&str]) -> Result<String, HarnessError> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// A kernel-level fault on one member's traffic with the brokers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelFault {
    /// Every packet both ways dropped: connections stay open, unanswered.
    Blackhole,
    /// Packets from the brokers dropped (the member's requests still arrive).
    CutInbound,
    /// Packets to the brokers dropped (the brokers' answers and heartbeats still arrive).
    CutOutbound,
    /// This share of packets, both ways, dropped at random.
    Loss {
        /// Percent, 1-100.
        percent: u8,
    },
}

/// The bridge of one run and its members' namespaces.
pub struct Bridge {
    name: String,
    /// Names of this bridge's namespaces and veth pairs start with this.
    tag: String,
    /// The third octet of 10.231.x.0/24.
    subnet: u8,
    /// Each member's namespace, by member name, in the order they were made.
    members: Mutex<Vec<(String, Netns)>>,
}

/// One member's namespace.
#[derive(Debug, Clone)]
pub struct Netns {
    /// The namespace's name (`ip netns exec <name>`).
    pub name: String,
    /// The member's address.
    pub addr: String,
    /// The namespace's end of the veth pair.
    dev: String,
}

impl Bridge {
    /// Makes the bridge, on a /24 of 10.231.0.0/16 no interface of the machine uses, after
    /// removing what runs that are gone left behind.
    pub fn create() -> Result<Self, HarnessError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static MAKING: Mutex<()> = Mutex::new(());
        static K: AtomicU32 = AtomicU32::new(0);
        let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
        sweep_leftovers();
        let pid = std::process::id();
        let k = K.fetch_add(1, Ordering::Relaxed);
        // Interface names have at most 15 characters: `cb` + pid (up to 7 digits) + `-k`.
        let name = format!("cb{pid}-{}", k % 100);
        let tag = format!("{pid}-{}", k % 100);
        let used = run(&["ip", "-o", "-4", "addr", "show"])?;
        let subnet = (1..=254u8)
            .map(|i| (pid as usize + i as usize) % 254 + 1)
            .map(|i| i as u8)
            .find(|i| !used.contains(&format!("10.231.{i}.")))
            .ok_or_else(|| HarnessError::invalid("no free 10.231.x.0/24 for the bridge"))?;
        run(&["ip", "link", "add", &name, "type", "bridge"]).map_err(|e| {
            HarnessError::invalid(format!(
                "members in network namespaces need root (CAP_NET_ADMIN) and iproute2: {e}"
            ))
        })?;
        let bridge = Bridge {
            name,
            tag,
            subnet,
            members: Mutex::new(Vec::new()),
        };
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", bridge.host()),
            "dev",
            &bridge.name,
        ])?;
        run(&["ip", "link", "set", &bridge.name, "up"])?;
        Ok(bridge)
    }

    /// The bridge's address in the root namespace: where the brokers listen.
    pub fn host(&self) -> String {
        format!("10.231.{}.1", self.subnet)
    }

    /// The namespace of the member `who` (the same one across its restarts), made on first
    /// use.
    pub fn member(&self, who: &str) -> Result<Netns, HarnessError> {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, m)) = members.iter().find(|(n, _)| n == who) {
            return Ok(m.clone());
        }
        if members.len() >= 200 {
            return Err(HarnessError::invalid(
                "at most 200 members in network namespaces",
            ));
        }
        let n = members.len();
        let ns = Netns {
            name: format!("cohort-{}-{n}", self.tag),
            addr: format!("10.231.{}.{}", self.subnet, 10 + n),
            dev: "eth0".to_owned(),
        };
        // At most 15 characters: `v` + pid + `-k-n`.
        let host_dev = format!("v{}-{n}", self.tag);
        run(&["ip", "netns", "add", &ns.name])?;
        run(&[
            "ip", "link", "add", &host_dev, "type", "veth", "peer", "name", &ns.dev, "netns",
            &ns.name,
        ])?;
        run(&["ip", "link", "set", &host_dev, "master", &self.name, "up"])?;
        run(&[
            "ip",
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/24", ns.addr),
            "dev",
            &ns.dev,
        ])?;
        run(&["ip", "-n", &ns.name, "link", "set", &ns.dev, "up"])?;
        run(&["ip", "-n", &ns.name, "link", "set", "lo", "up"])?;
        // The chains faults go into; empty, they let everything through.
        let setup = format!(
            "add table inet {TABLE}\n\
             add chain inet {TABLE} input {{ type filter hook input priority 0; }}\n\
             add chain inet {TABLE} output {{ type filter hook output priority 0; }}\n"
        );
        nft(&ns.name, &setup)?;
        members.push((who.to_owned(), ns.clone()));
        Ok(ns)
    }

    /// Applies a fault to the member in `ns` (replacing any other), on its traffic with the
    /// brokers.
    pub fn apply(&self, ns: &Netns, fault: KernelFault) -> Result<(), HarnessError> {
        let br = self.host();
        let rules = match fault {
            KernelFault::Blackhole => format!(
                "add rule inet {TABLE} input ip saddr {br} drop\n\
                 add rule inet {TABLE} output ip daddr {br} drop\n"
            ),
            KernelFault::CutInbound => format!("add rule inet {TABLE} input ip saddr {br} drop\n"),
            KernelFault::CutOutbound => {
                format!("add rule inet {TABLE} output ip daddr {br} drop\n")
            }
            KernelFault::Loss { percent } => {
                let p = percent.clamp(1, 100);
                format!(
                    "add rule inet {TABLE} input ip saddr {br} numgen random mod 100 < {p} drop\n\
                     add rule inet {TABLE} output ip daddr {br} numgen random mod 100 < {p} drop\n"
                )
            }
        };
        nft(
            &ns.name,
            &format!("flush chain inet {TABLE} input\nflush chain inet {TABLE} output\n{rules}"),
        )
    }

    /// Resets every TCP connection of the member in `ns` with the brokers: the member's socket
    /// is aborted and the broker's end gets a RST, as when a middlebox or a host restarts.
    pub fn reset(&self, ns: &Netns) -> Result<(), HarnessError> {
        run_in(&ns.name, &["ss", "-K", "dst", &self.host()]).map(|_| ())
    }

    /// Delays every packet the member sends by `ms` (0 lifts it). `Err` when the kernel has no
    /// `sch_netem` (as on Firecracker's guest kernels).
    pub fn delay(&self, ns: &Netns, ms: u64) -> Result<(), HarnessError> {
        if ms == 0 {
            let _ = run_in(&ns.name, &["tc", "qdisc", "del", "dev", &ns.dev, "root"]);
            return Ok(());
        }
        run_in(
            &ns.name,
            &[
                "tc",
                "qdisc",
                "replace",
                "dev",
                &ns.dev,
                "root",
                "netem",
                "delay",
                &format!("{ms}ms"),
            ],
        )
        .map(|_| ())
    }

    /// Lifts every fault of the member in `ns`.
    pub fn heal(&self, ns: &Netns) -> Result<(), HarnessError> {
        nft(
            &ns.name,
            &format!("flush chain inet {TABLE} input\nflush chain inet {TABLE} output\n"),
        )
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for (_, m) in members.iter() {
            // Deleting the namespace deletes its veth end, and so the pair.
            let _ = run(&["ip", "netns", "del", &m.name]);
        }
        let _ = run(&["ip", "link", "del", &self.name]);
    }
}

/// Loads an nftables script into the namespace `ns`.
fn nft(ns: &str, script: &str) -> Result<(), HarnessError> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(HarnessError::io("running nft"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(HarnessError::io("writing to nft"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(HarnessError::io("running nft"))?;
    if !out.status.success() {
        return Err(HarnessError::invalid(format!(
            "nft in {ns} failed: {} (script: {script:?})",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Removes the namespaces and bridges of runs whose process is gone (a `cohort run` killed
/// with SIGKILL cannot remove its own).
fn sweep_leftovers() {
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            let Some(rest) = name.strip_prefix("cohort-") else {
                continue;
            };
            if let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok())
                && !pid_alive(pid)
            {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    if let Ok(links) = run(&["ip", "-o", "link", "show", "type", "bridge"]) {
        for l in links.lines() {
            let Some(name) = l.split(':').nth(1).map(str::trim) else {
                continue;
            };
            let pid = name.strip_prefix("cb").and_then(|p| p.split('-').next());
            if let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok())
                && !pid_alive(pid)
            {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
}
