//! Readiness: raw ApiVersions, Metadata and FindCoordinator requests, written by hand so this
//! crate needs no codec (it sits below `cohort-protocol` in the dependency graph of the tests).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// One request/response exchange on a fresh connection; returns the response body after the
/// correlation id.
fn exchange(
    addr: &str,
    timeout: Duration,
    api_key: i16,
    version: i16,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolving {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // Request header v1: api key, version, correlation id 1, client id "probe".
    let mut req = Vec::with_capacity(19 + body.len());
    let size = 2 + 2 + 4 + 2 + 5 + body.len();
    req.extend_from_slice(&(size as i32).to_be_bytes());
    req.extend_from_slice(&api_key.to_be_bytes());
    req.extend_from_slice(&version.to_be_bytes());
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend_from_slice(&5i16.to_be_bytes());
    req.extend_from_slice(b"probe");
    req.extend_from_slice(body);
    s.write_all(&req).map_err(|e| format!("write: {e}"))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size).map_err(|e| format!("read: {e}"))?;
    let size = i32::from_be_bytes(size);
    if !(4..=1 << 20).contains(&size) {
        return Err(format!("implausible response size {size}"));
    }
    let mut body = vec![0u8; size as usize];
    s.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
    let mut r = Reader(&body);
    let correlation = r.i32()?;
    if correlation != 1 {
        return Err(format!("correlation id {correlation}, expected 1"));
    }
    Ok(r.0.to_vec())
}

/// A bounds-checked big-endian reader: a short or odd response is an error, never a panic.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "response ends early ({} bytes left, {n} needed)",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, String> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<Option<String>, String> {
        let n = self.i16()?;
        if n < 0 {
            return Ok(None);
        }
        let b = self.take(n as usize)?;
        Ok(Some(String::from_utf8_lossy(b).into_owned()))
    }
}

/// Sends ApiVersions v0 to `addr` and returns how many API keys the broker lists.
pub fn probe_api_versions(addr: &str, timeout: Duration) -> Result<usize, String> {
    let body = exchange(addr, timeout, 18, 0, &[])?;
    let mut r = Reader(&body);
    let error = r.i16()?;
    if error != 0 {
        return Err(format!("ApiVersions error code {error}"));
    }
    Ok(r.i32()?.max(0) as usize)
}

/// Sends Metadata v1 for no topics and returns the node ids of the brokers it lists.
pub fn probe_brokers(addr: &str, timeout: Duration) -> Result<Vec<i32>, String> {
    // topics: an empty array (not null, which would mean every topic).
    let body = exchange(addr, timeout, 3, 1, &0i32.to_be_bytes())?;
    let mut r = Reader(&body);
    let n = r.i32()?;
    if !(0..=10_000).contains(&n) {
        return Err(format!("implausible broker count {n}"));
    }
    let mut ids = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let id = r.i32()?;
        let _host = r.string()?;
        let _port = r.i32()?;
        let _rack = r.string()?;
        ids.push(id);
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Sends FindCoordinator v0 for `group`; `Ok(())` once a coordinator is named. On Apache Kafka
/// the first such request creates `__consumer_offsets`, and the answer is
/// COORDINATOR_NOT_AVAILABLE (15) until its partitions are loaded.
pub fn probe_coordinator(addr: &str, group: &str, timeout: Duration) -> Result<(), String> {
    let mut req = Vec::with_capacity(2 + group.len());
    req.extend_from_slice(&(group.len() as i16).to_be_bytes());
    req.extend_from_slice(group.as_bytes());
    let body = exchange(addr, timeout, 10, 0, &req)?;
    let mut r = Reader(&body);
    match r.i16()? {
        0 => Ok(()),
        code => Err(format!("FindCoordinator error code {code}")),
    }
}

/// What "ready" means for a broker.
#[derive(Debug, Clone, Default)]
pub(crate) struct Readiness {
    /// Node ids Metadata must list (empty: only ApiVersions is asked).
    pub(crate) brokers: Vec<i32>,
    /// Wait until a group coordinator is available (Apache Kafka creates `__consumer_offsets`
    /// on demand; a test's first group would otherwise pay for it).
    pub(crate) coordinator: bool,
}

/// Probes until the broker is ready or `timeout` passes; returns the last failure.
pub(crate) fn wait_ready(addr: &str, timeout: Duration) -> Result<(), String> {
    wait_until(addr, timeout, &Readiness::default(), || None)
}

/// Probes until `want` holds, `timeout` passes, or `gone` reports that the broker exited.
pub(crate) fn wait_until(
    addr: &str,
    timeout: Duration,
    want: &Readiness,
    gone: impl Fn() -> Option<String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(why) = gone() {
            return Err(format!("{why}; last probe: {last}"));
        }
        match check(addr, want) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("not ready within {timeout:?}; last probe: {last}"))
}

fn check(addr: &str, want: &Readiness) -> Result<(), String> {
    let t = Duration::from_secs(2);
    if probe_api_versions(addr, t)? == 0 {
        return Err("ApiVersions lists no API".into());
    }
    if !want.brokers.is_empty() {
        let listed = probe_brokers(addr, t)?;
        if let Some(missing) = want.brokers.iter().find(|id| !listed.contains(id)) {
            return Err(format!(
                "Metadata lists brokers {listed:?}, not yet {missing}"
            ));
        }
    }
    if want.coordinator {
        probe_coordinator(addr, "cohort-testbroker-ready", t)?;
    }
    Ok(())
}

/// Whether process `pid` holds the socket listening on TCP `port` (Linux `/proc`; `None` where
/// that cannot be read). A broker process that failed to bind its port may still look ready when
/// something else answers there; this tells the two apart.
pub(crate) fn owns_listener(pid: u32, port: u16) -> Option<bool> {
    let mut inodes = Vec::new();
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        inodes.extend(listening_inodes(&text, port));
    }
    if !readable {
        return None;
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            let t = target.to_string_lossy();
            inodes.iter().any(|i| t == format!("socket:[{i}]"))
        })
    }))
}

/// The inodes of the sockets in LISTEN state (`0A`) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let listening = *cols.get(3)? == "0A";
            (listening && u16::from_str_radix(hex_port, 16).ok()? == port)
                .then(|| cols.get(9).map(|s| (*s).to_owned()))
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_inodes_reads_the_listen_rows_of_the_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:8CEF 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:8CEF 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4444 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(listening_inodes(table, 0x8CEF), vec!["4242".to_owned()]);
        assert!(listening_inodes(table, 1).is_empty());
    }

    #[test]
    fn owns_listener_tells_this_process_from_another() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if let Some(owned) = owns_listener(std::process::id(), port) {
            assert!(owned);
            // pid 1 (init) does not listen on our port.
            assert_ne!(owns_listener(1, port), Some(true));
        }
        drop(l);
        assert_ne!(owns_listener(std::process::id(), port), Some(true));
    }
}
