//! Readiness: a raw ApiVersions v0 request, written by hand so this crate needs no codec.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Sends ApiVersions v0 to `addr` and returns how many API keys the broker lists.
pub fn probe_api_versions(addr: &str, timeout: Duration) -> Result<usize, String> {
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
    // size, api key 18, version 0, correlation id 1, client id "probe".
    let mut req = Vec::with_capacity(21);
    req.extend_from_slice(&15i32.to_be_bytes());
    req.extend_from_slice(&18i16.to_be_bytes());
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend_from_slice(&5i16.to_be_bytes());
    req.extend_from_slice(b"probe");
    s.write_all(&req).map_err(|e| format!("write: {e}"))?;
    let mut size = [0u8; 4];
    s.read_exact(&mut size).map_err(|e| format!("read: {e}"))?;
    let size = i32::from_be_bytes(size);
    if !(10..=1 << 20).contains(&size) {
        return Err(format!("implausible ApiVersions response size {size}"));
    }
    let mut body = vec![0u8; size as usize];
    s.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
    let correlation = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let error = i16::from_be_bytes([body[4], body[5]]);
    let count = i32::from_be_bytes([body[6], body[7], body[8], body[9]]);
    if correlation != 1 {
        return Err(format!("correlation id {correlation}, expected 1"));
    }
    if error != 0 {
        return Err(format!("ApiVersions error code {error}"));
    }
    Ok(count.max(0) as usize)
}

/// Probes until the broker answers or `timeout` passes; returns the last failure.
pub(crate) fn wait_ready(addr: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        match probe_api_versions(addr, Duration::from_secs(2)) {
            Ok(n) if n > 0 => return Ok(()),
            Ok(_) => last = "ApiVersions lists no API".into(),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "no ApiVersions answer within {timeout:?}; last attempt: {last}"
    ))
}
