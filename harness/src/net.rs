//! Network faults for one member, injected where its bytes flow: a [`ChaosDialer`] wraps the
//! group core's pluggable dialer (as franz-go's tests do), and every connection it opens runs
//! through two pumps that consult the member's [`NetFaults`]: latency, dropped connections,
//! black holes and one-way cuts. Foreign clients (librdkafka) have no pluggable dialer, so
//! these faults do not reach them: the runner notes each fault it could not apply.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cohort::{BoxedStream, Dialer, IoStream, TcpDialer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to broker (requests).
    Outbound,
    /// Broker to client (responses).
    Inbound,
}

/// The faults in force for one member. Cheap to clone; all clones share the state.
#[derive(Debug, Clone)]
pub struct NetFaults {
    state: Arc<watch::Sender<State>>,
    drops: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    latency: Duration,
    /// Nothing flows (either way) while set.
    blackhole: bool,
    /// Only this direction is cut while set.
    cut: Option<Direction>,
    /// Bumped to close every open connection.
    drop_epoch: u64,
    /// API keys whose requests are swallowed: never forwarded, never answered (the client's
    /// request times out), while every other request on the connection flows.
    held: Vec<i16>,
}

impl Default for NetFaults {
    fn default() -> Self {
        Self::new()
    }
}

impl NetFaults {
    /// No faults.
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::channel(State::default()).0),
            drops: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Adds `latency` to every chunk in both directions (zero to lift).
    pub fn set_latency(&self, latency: Duration) {
        self.state.send_modify(|s| s.latency = latency);
    }

    /// Stops all traffic (true) or lets it flow again (false). Connections stay open, as with
    /// a partition: TCP holds what was sent until the path heals.
    pub fn set_blackhole(&self, on: bool) {
        self.state.send_modify(|s| s.blackhole = on);
    }

    /// Cuts one direction (`Some`) or heals it (`None`).
    pub fn set_cut(&self, cut: Option<Direction>) {
        self.state.send_modify(|s| s.cut = cut);
    }

    /// Swallows requests of these API keys (empty to lift). A leader whose SyncGroup is held
    /// stays between JoinGroup and SyncGroup for as long as the hold lasts, which a scenario
    /// needs to fail it exactly there.
    pub fn set_held(&self, apis: Vec<i16>) {
        self.state.send_modify(|s| s.held = apis);
    }

    /// Closes every open connection now (new ones may be opened).
    pub fn drop_connections(&self) {
        self.state.send_modify(|s| s.drop_epoch += 1);
    }

    /// Lifts every fault.
    pub fn heal(&self) {
        self.state.send_modify(|s| {
            s.latency = Duration::ZERO;
            s.blackhole = false;
            s.cut = None;
            s.held.clear();
        });
    }

    /// How many connections a drop closed so far.
    pub fn dropped(&self) -> u64 {
        self.drops.load(Ordering::Relaxed)
    }

    fn blocked(s: &State, dir: Direction) -> bool {
        s.blackhole || s.cut == Some(dir)
    }

    /// Waits until `dir` may carry bytes; `Err` when the connection must close.
    async fn wait_open(&self, dir: Direction, epoch: u64) -> Result<Duration, ()> {
        let mut rx = self.state.subscribe();
        loop {
            {
                let s = rx.borrow_and_update();
                if s.drop_epoch != epoch {
                    return Err(());
                }
                if !Self::blocked(&s, dir) {
                    return Ok(s.latency);
                }
            }
            if rx.changed().await.is_err() {
                return Err(());
            }
        }
    }

    /// Resolves when the connection opened at `epoch` must be dropped.
    async fn dropped_since(&self, epoch: u64) {
        let mut rx = self.state.subscribe();
        loop {
            if rx.borrow_and_update().drop_epoch != epoch {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Joins `client` and `server` through the faults until either side closes or the
    /// connection is dropped.
    pub async fn pump<A, B>(&self, client: A, server: B)
    where
        A: IoStream,
        B: IoStream,
    {
        let epoch = self.state.borrow().drop_epoch;
        let (cr, cw) = tokio::io::split(client);
        let (sr, sw) = tokio::io::split(server);
        let up = self.one_way(cr, sw, Direction::Outbound, epoch);
        let down = self.one_way(sr, cw, Direction::Inbound, epoch);
        tokio::select! {
            _ = async { tokio::join!(up, down) } => {}
            _ = self.dropped_since(epoch) => {
                self.drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn one_way<R, W>(&self, mut r: R, mut w: W, dir: Direction, epoch: u64)
    where
        R: tokio::io::AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; 64 * 1024];
        // Requests are forwarded frame by frame, so that held ones can be left out; responses
        // chunk by chunk.
        let mut frames = (dir == Direction::Outbound).then(RequestFrames::default);
        loop {
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Latency is applied from the moment the chunk was read, so back-to-back chunks
            // are delayed, not serialised behind each other's delay.
            let read_at = Instant::now();
            let Ok(latency) = self.wait_open(dir, epoch).await else {
                break;
            };
            tokio::time::sleep_until(read_at + latency).await;
            // A black hole that starts after the wait still holds the chunk.
            if self.wait_open(dir, epoch).await.is_err() {
                break;
            }
            let out = match &mut frames {
                Some(f) => {
                    let held = self.state.borrow().held.clone();
                    f.push(&buf[..n], &held)
                }
                None => buf[..n].to_vec(),
            };
            if !out.is_empty() && w.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    }
}

/// Follows a client's byte stream frame by frame (`size: i32`, then the request header, whose
/// first field is the API key) and leaves out the frames of held APIs. Bytes are forwarded as
/// they come; only a frame's first six bytes wait, until its API key is known. A stream that is
/// not Kafka's (a size below 2 or above Kafka's default `socket.request.max.bytes`, 100 MiB)
/// passes through untouched from then on.
#[derive(Debug, Default)]
struct RequestFrames {
    header: Vec<u8>,
    /// Bytes of the current frame still to come after its header.
    remaining: usize,
    /// Whether the current frame is being left out.
    skipping: bool,
    /// Not a Kafka stream: everything passes.
    raw: bool,
}

impl RequestFrames {
    const MAX_FRAME: usize = 100 << 20;

    /// The bytes of `chunk` to forward now.
    fn push(&mut self, chunk: &[u8], held: &[i16]) -> Vec<u8> {
        if self.raw {
            return chunk.to_vec();
        }
        let mut out = Vec::with_capacity(chunk.len());
        let mut i = 0;
        while i < chunk.len() {
            if self.remaining > 0 {
                let n = self.remaining.min(chunk.len() - i);
                if !self.skipping {
                    out.extend_from_slice(&chunk[i..i + n]);
                }
                self.remaining -= n;
                i += n;
                continue;
            }
            self.header.push(chunk[i]);
            i += 1;
            let h = &self.header;
            if h.len() == 4 {
                let size = i32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                if !usize::try_from(size).is_ok_and(|s| (2..=Self::MAX_FRAME).contains(&s)) {
                    self.raw = true;
                    out.append(&mut self.header);
                    out.extend_from_slice(&chunk[i..]);
                    return out;
                }
            }
            if h.len() == 6 {
                let size = i32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let api = i16::from_be_bytes([h[4], h[5]]);
                self.skipping = held.contains(&api);
                if !self.skipping {
                    out.extend_from_slice(&self.header);
                }
                self.header.clear();
                self.remaining = size - 2;
            }
        }
        out
    }
}

/// A dialer that puts every connection of one member through its [`NetFaults`].
#[derive(Debug, Clone)]
pub struct ChaosDialer {
    inner: TcpDialer,
    faults: NetFaults,
}

impl ChaosDialer {
    /// Wraps plain TCP.
    pub fn new(faults: NetFaults) -> Self {
        Self {
            inner: TcpDialer::default(),
            faults,
        }
    }
}

#[async_trait]
impl Dialer for ChaosDialer {
    async fn dial(&self, addr: &str) -> io::Result<BoxedStream> {
        // A black-holed member cannot connect either: the SYN goes nowhere until the connect
        // timeout, as on a real partition.
        let connect_timeout = self.inner.connect_timeout;
        let open = self
            .faults
            .wait_open(Direction::Outbound, self.faults.state.borrow().drop_epoch);
        if tokio::time::timeout(connect_timeout, open).await.is_err() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect to {addr} timed out (black hole)"),
            ));
        }
        let server = self.inner.dial(addr).await?;
        let (client, ours) = tokio::io::duplex(256 * 1024);
        let faults = self.faults.clone();
        tokio::spawn(async move { faults.pump(ours, server).await });
        Ok(Box::new(client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn echo_server() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn roundtrip(s: &mut BoxedStream) -> io::Result<Vec<u8>> {
        s.write_all(b"ping").await?;
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await?;
        Ok(b.to_vec())
    }

    #[tokio::test]
    async fn latency_blackhole_cut_and_drop() {
        let addr = echo_server().await;
        let faults = NetFaults::new();
        let d = ChaosDialer::new(faults.clone());
        let mut s = d.dial(&addr).await.unwrap();
        assert_eq!(roundtrip(&mut s).await.unwrap(), b"ping");

        faults.set_latency(Duration::from_millis(100));
        let t = Instant::now();
        roundtrip(&mut s).await.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "both ways delayed"
        );
        faults.set_latency(Duration::ZERO);

        faults.set_blackhole(true);
        let r = tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut s)).await;
        assert!(r.is_err(), "nothing comes back through a black hole");
        faults.set_blackhole(false);
        // What was held is delivered once the path heals.
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");

        faults.set_cut(Some(Direction::Inbound));
        let r = tokio::time::timeout(Duration::from_millis(300), roundtrip(&mut s)).await;
        assert!(r.is_err(), "responses are cut");
        faults.set_cut(None);
        s.read_exact(&mut b).await.unwrap();

        faults.drop_connections();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest))
            .await
            .expect("the dropped connection ends")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert_eq!(faults.dropped(), 1);
        let mut s2 = d.dial(&addr).await.unwrap();
        assert_eq!(
            roundtrip(&mut s2).await.unwrap(),
            b"ping",
            "new connections work"
        );
    }

    #[test]
    fn held_requests_are_left_out_whole_and_the_rest_flows() {
        let frame = |api: i16, body: &[u8]| {
            let mut f = ((2 + body.len()) as i32).to_be_bytes().to_vec();
            f.extend_from_slice(&api.to_be_bytes());
            f.extend_from_slice(body);
            f
        };
        let heartbeat = frame(12, b"hb");
        let sync = frame(14, b"sync-group");
        let commit = frame(8, b"c");
        let stream: Vec<u8> = [heartbeat.clone(), sync, commit.clone()].concat();
        // Fed in awkward pieces, with SyncGroup (14) held.
        let mut f = RequestFrames::default();
        let mut out = Vec::new();
        for piece in stream.chunks(3) {
            out.extend(f.push(piece, &[14]));
        }
        assert_eq!(out, [heartbeat.clone(), commit.clone()].concat());
        // Nothing held: everything, byte for byte.
        let mut f = RequestFrames::default();
        assert_eq!(f.push(&stream, &[]), stream);
        // Only a frame's first six bytes wait.
        let mut f = RequestFrames::default();
        assert!(f.push(&heartbeat[..5], &[]).is_empty());
        assert_eq!(f.push(&heartbeat[5..], &[]), heartbeat);
        // Not Kafka: passes through.
        let mut f = RequestFrames::default();
        assert_eq!(f.push(b"ping", &[14]), b"ping");
        assert_eq!(f.push(b"pong", &[14]), b"pong");
    }

    #[tokio::test]
    async fn a_blackholed_member_cannot_connect() {
        let addr = echo_server().await;
        let faults = NetFaults::new();
        let mut d = ChaosDialer::new(faults.clone());
        d.inner.connect_timeout = Duration::from_millis(200);
        faults.set_blackhole(true);
        let e = d.dial(&addr).await.err().expect("connect fails");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
