//! One connection to one broker: requests are pipelined and matched to responses by
//! correlation id; versions are negotiated with ApiVersions when the connection opens.
//!
//! Two tasks own the socket halves. Any failure (write error, EOF, a frame that cannot be
//! decoded, a response to an unknown correlation id, a request timeout) poisons the connection:
//! every pending request fails once, and the next request opens a new connection. A broker
//! that misbehaves costs its connection, never the process.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use cohort_protocol::frame::{FrameDecoder, decode_response, encode_request, peek_correlation_id};
use cohort_protocol::messages::{
    ApiVersionsRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
    api_versions_response::ApiVersion,
};
use cohort_protocol::{ApiKey, ErrorCode, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::Dialer;
use super::frame_pool::{FramePool, LARGE_FRAME};
use super::sasl::{Exchange, SaslConfig};
use crate::error::Error;

type Reply = oneshot::Sender<Result<Bytes, Error>>;

struct Outgoing {
    frame: BytesMut,
    reply: Reply,
}

struct Shared {
    addr: String,
    pending: Mutex<HashMap<i32, Reply>>,
    dead: AtomicBool,
    failure: Mutex<Option<Error>>,
    shutdown: tokio::sync::Notify,
}

impl Shared {
    /// Hands a response frame to the request it answers; false (the connection poisoned)
    /// when it answers none.
    fn dispatch(&self, frame: Bytes) -> bool {
        let corr = match peek_correlation_id(&frame) {
            Ok(c) => c,
            Err(e) => {
                self.poison(Error::Protocol {
                    broker: self.addr.clone(),
                    error: e,
                });
                return false;
            }
        };
        let waiter = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&corr);
        match waiter {
            Some(w) => {
                let _ = w.send(Ok(frame));
                true
            }
            None => {
                self.poison(transport(
                    &self.addr,
                    format!("response to unknown correlation id {corr}"),
                ));
                false
            }
        }
    }

    /// False (the connection poisoned) when a socket read failed or met the end of the stream.
    fn check_read(&self, read: std::io::Result<usize>) -> bool {
        match read {
            Ok(0) => {
                self.poison(transport(&self.addr, "connection closed by broker"));
                false
            }
            Ok(_) => true,
            Err(e) => {
                self.poison(Error::transport_io(&*self.addr, "read", e));
                false
            }
        }
    }

    /// Fails every pending request with `err` and marks the connection dead.
    fn poison(&self, err: Error) {
        self.dead.store(true, Ordering::SeqCst);
        {
            let mut f = self
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f.get_or_insert_with(|| err.clone());
        }
        let drained: Vec<Reply> = {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            p.drain().map(|(_, r)| r).collect()
        };
        for r in drained {
            let _ = r.send(Err(err.clone()));
        }
        self.shutdown.notify_waiters();
    }
}

/// An open, version-negotiated connection.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Outgoing>,
    versions: HashMap<i16, (i16, i16)>,
    client_id: String,
    opened: Instant,
    /// When the SASL session the broker granted is near its end (KIP-368): from then on the
    /// connection takes no new requests and the cluster opens an authenticated one.
    renew_at: Option<Instant>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .field("alive", &self.is_alive())
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.dead.store(true, Ordering::SeqCst);
        self.shared.shutdown.notify_waiters();
    }
}

/// The size of the frame starting `buf` when it is large enough for a pooled buffer (see
/// `frame_pool`) and not yet whole; sizes the decoder refuses are left to it.
fn large_frame(buf: &BytesMut, max_frame_size: usize) -> Option<usize> {
    let head: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let size = usize::try_from(i32::from_be_bytes(head)).ok()?;
    (LARGE_FRAME..=max_frame_size)
        .contains(&size)
        .then_some(size)
        .filter(|&size| buf.len() < 4 + size)
}

fn transport(addr: &str, message: impl std::fmt::Display) -> Error {
    Error::transport(addr, message.to_string())
}

impl Connection {
    /// Dials `addr`, starts the connection's tasks and negotiates API versions.
    pub(crate) async fn open(
        addr: &str,
        dialer: &dyn Dialer,
        client_id: &str,
        max_frame_size: usize,
        timeout: Duration,
        sasl: Option<&SaslConfig>,
    ) -> Result<Self, Error> {
        let stream = dialer
            .dial(addr)
            .await
            .map_err(|e| Error::transport_io(addr, "", e))?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            pending: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            failure: Mutex::new(None),
            shutdown: tokio::sync::Notify::new(),
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();

        // Writer: assigns correlation ids and writes frames in order.
        let w = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut correlation: i32 = 0;
            loop {
                let next = tokio::select! {
                    m = rx.recv() => m,
                    () = w.shutdown.notified() => None,
                };
                let Some(mut out) = next else { break };
                if w.dead.load(Ordering::SeqCst) {
                    let f = w.failure.lock().ok().and_then(|f| f.clone());
                    let _ = out.reply.send(Err(
                        f.unwrap_or_else(|| transport(&w.addr, "connection closed"))
                    ));
                    continue;
                }
                correlation = correlation.wrapping_add(1);
                // Bytes 8..12 of a request frame: size(4) api_key(2) api_version(2) correlation(4).
                out.frame[8..12].copy_from_slice(&correlation.to_be_bytes());
                w.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(correlation, out.reply);
                if let Err(e) = wr.write_all(&out.frame).await {
                    w.poison(Error::transport_io(&*w.addr, "write", e));
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });

        // Reader: splits frames and hands each to the request it answers.
        let r = Arc::clone(&shared);
        tokio::spawn(async move {
            let decoder = FrameDecoder::new(max_frame_size);
            let pool = FramePool::new();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                if let Some(size) = large_frame(&buf, max_frame_size) {
                    // Everything in `buf` belongs to this frame (a whole one would have been
                    // taken below): move it to a pooled buffer and read exactly the rest.
                    let mut frame = pool.take(size);
                    frame.extend_from_slice(&buf[4..]);
                    buf.clear();
                    while frame.len() < size {
                        let want = size - frame.len();
                        let mut rest = (&mut frame).limit(want);
                        let read = tokio::select! {
                            n = rd.read_buf(&mut rest) => n,
                            () = r.shutdown.notified() => return,
                        };
                        if !r.check_read(read) {
                            return;
                        }
                    }
                    if !r.dispatch(pool.frame(frame)) {
                        return;
                    }
                    continue;
                }
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => {
                        if !r.dispatch(frame) {
                            return;
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        r.poison(Error::Protocol {
                            broker: r.addr.clone(),
                            error: e,
                        });
                        return;
                    }
                }
                let read = tokio::select! {
                    n = rd.read_buf(&mut buf) => n,
                    () = r.shutdown.notified() => return,
                };
                if !r.check_read(read) {
                    return;
                }
            }
        });

        let mut conn = Connection {
            shared,
            tx,
            versions: HashMap::new(),
            client_id: client_id.to_owned(),
            opened: Instant::now(),
            renew_at: None,
        };
        conn.negotiate(timeout).await?;
        if let Some(cfg) = sasl {
            let started = Instant::now();
            let lifetime = conn.authenticate(cfg, timeout).await?;
            conn.renew_at = lifetime.map(|l| started + super::sasl::renew_after(l));
        }
        Ok(conn)
    }

    /// SaslHandshake, then SaslAuthenticate until the mechanism is done (KIP-43, KIP-152).
    /// Returns the session lifetime the broker granted, if any (KIP-368).
    async fn authenticate(
        &self,
        cfg: &SaslConfig,
        timeout: Duration,
    ) -> Result<Option<Duration>, Error> {
        let addr = self.shared.addr.clone();
        let refused = |message: String| {
            // The broker closes the connection after a failed authentication.
            let e = Error::Authentication {
                broker: addr.clone(),
                mechanism: format!("SASL {}", cfg.mechanism.name()),
                message,
            };
            self.shared.poison(e.clone());
            e
        };
        // SaslAuthenticate needs the v1 handshake: v0 sends the SASL tokens unframed.
        let hv = self.version_for::<SaslHandshakeRequest>(None)?;
        if hv < 1 {
            return Err(refused(
                "the broker has no SaslHandshake v1 (Kafka before 1.0)".into(),
            ));
        }
        let hs = SaslHandshakeRequest {
            mechanism: cfg.mechanism.name().into(),
        };
        let (_, r) = self.exchange(&hs, hv, timeout).await?;
        if r.error_code != 0 {
            let enabled: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(refused(format!(
                "{} (the broker offers: {})",
                ErrorCode::from_code(r.error_code).map_or("unknown error", |c| c.name()),
                if enabled.is_empty() {
                    "none".to_owned()
                } else {
                    enabled.join(", ")
                }
            )));
        }
        let (mut ex, mut msg) = Exchange::first(cfg).await.map_err(|e| refused(e.0))?;
        let av = self.version_for::<SaslAuthenticateRequest>(None)?;
        let mut lifetime = None;
        // PLAIN takes one round, SCRAM two, OAUTHBEARER one (two on failure): more means a
        // broker leading the exchange nowhere.
        for _ in 0..4 {
            let req = SaslAuthenticateRequest {
                auth_bytes: Bytes::from(msg),
                ..Default::default()
            };
            let (_, r) = self.exchange(&req, av, timeout).await?;
            if r.error_code != 0 {
                let code = ErrorCode::from_code(r.error_code).map_or("unknown error", |c| c.name());
                return Err(refused(
                    match r.error_message.as_ref().map(|m| m.as_str()) {
                        Some(m) if !m.is_empty() => format!("{code}: {m}"),
                        _ => code.to_owned(),
                    },
                ));
            }
            if r.session_lifetime_ms > 0 {
                lifetime = Some(Duration::from_millis(r.session_lifetime_ms as u64));
            }
            match ex.step(&r.auth_bytes).map_err(|e| refused(e.0))? {
                Some(next) => msg = next,
                None if ex.complete() => return Ok(lifetime),
                None => break,
            }
        }
        Err(refused("the exchange did not complete".into()))
    }

    /// Whether new requests may use this connection: alive, and its SASL session not near
    /// its end.
    pub(crate) fn is_reusable(&self) -> bool {
        self.is_alive() && self.renew_at.is_none_or(|t| Instant::now() < t)
    }

    async fn negotiate(&mut self, timeout: Duration) -> Result<(), Error> {
        // v3 carries the client's name (KIP-511); a broker that does not know v3 answers with
        // UNSUPPORTED_VERSION and its own ranges in the v0 layout.
        let req = ApiVersionsRequest {
            client_software_name: "cohort".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        let mut version = 3;
        for _ in 0..2 {
            let frame = self
                .round_trip::<ApiVersionsRequest>(&req, version, timeout)
                .await?;
            let (_, resp) = decode_response::<ApiVersionsRequest>(frame.clone(), version)
                .or_else(|_| decode_response::<ApiVersionsRequest>(frame, 0))
                .map_err(|e| Error::Protocol {
                    broker: self.shared.addr.clone(),
                    error: e,
                })?;
            self.versions = resp
                .api_keys
                .iter()
                .map(
                    |ApiVersion {
                         api_key,
                         min_version,
                         max_version,
                         ..
                     }| (*api_key, (*min_version, *max_version)),
                )
                .collect();
            match ErrorCode::check(resp.error_code) {
                Ok(()) => return Ok(()),
                Err(ErrorCode::UnsupportedVersion) => {
                    version = self
                        .versions
                        .get(&ApiKey::ApiVersions.as_i16())
                        .map_or(0, |&(_, max)| max.min(3));
                }
                Err(code) => {
                    return Err(Error::Broker {
                        api: ApiKey::ApiVersions,
                        code,
                        context: self.shared.addr.clone(),
                    });
                }
            }
        }
        Err(transport(
            &self.shared.addr,
            "ApiVersions negotiation did not converge",
        ))
    }

    /// Broker's address.
    #[allow(dead_code)]
    pub(crate) fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Whether the connection can still carry requests.
    pub(crate) fn is_alive(&self) -> bool {
        !self.shared.dead.load(Ordering::SeqCst)
    }

    /// How long the connection has been open.
    #[allow(dead_code)]
    pub(crate) fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Closes the connection; pending requests fail.
    pub(crate) fn close(&self, why: &str) {
        self.shared.poison(transport(&self.shared.addr, why));
    }

    /// The version to use for `R`: the highest both sides support, at most `cap` and at most
    /// what this client handles ([`super::versions::client_max`]).
    pub(crate) fn version_for<R: Request>(&self, cap: Option<i16>) -> Result<i16, Error> {
        let limit = [cap, super::versions::client_max(R::API_KEY)]
            .into_iter()
            .flatten()
            .fold(R::LATEST_STABLE, i16::min);
        let ours = (R::VERSIONS.min, limit);
        let Some(&(bmin, bmax)) = self.versions.get(&R::API_KEY.as_i16()) else {
            return Err(Error::UnsupportedVersion {
                api: R::API_KEY,
                broker_min: -1,
                broker_max: -1,
                client_min: ours.0,
                client_max: ours.1,
            });
        };
        let v = ours.1.min(bmax);
        if v < ours.0.max(bmin) {
            return Err(Error::UnsupportedVersion {
                api: R::API_KEY,
                broker_min: bmin,
                broker_max: bmax,
                client_min: ours.0,
                client_max: ours.1,
            });
        }
        Ok(v)
    }

    /// Whether the broker supports `api` at `version` or above.
    pub(crate) fn supports(&self, api: ApiKey, version: i16) -> bool {
        self.versions
            .get(&api.as_i16())
            .is_some_and(|&(_, max)| max >= version)
    }

    async fn round_trip<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        if !self.is_alive() {
            let f = self.shared.failure.lock().ok().and_then(|f| f.clone());
            return Err(f.unwrap_or_else(|| transport(&self.shared.addr, "connection closed")));
        }
        let mut frame = BytesMut::new();
        encode_request(&mut frame, 0, Some(&self.client_id), version, req)
            .map_err(Error::Encode)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Outgoing { frame, reply })
            .map_err(|_| transport(&self.shared.addr, "connection closed"))?;
        let started = Instant::now();
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(transport(&self.shared.addr, "connection closed")),
            Err(_) => {
                // Java closes the connection on a request timeout: a late response would
                // otherwise arrive for a request nobody waits for.
                let err = Error::Timeout {
                    api: R::API_KEY,
                    broker: self.shared.addr.clone(),
                    elapsed_ms: started.elapsed().as_millis() as u64,
                };
                self.shared.poison(err.clone());
                Err(err)
            }
        }
    }

    /// Sends the request `build` makes for the version negotiated on this connection (at most
    /// `cap`), for requests whose fields differ between versions (FindCoordinator's `Key`
    /// before v4, `CoordinatorKeys` from v4, KIP-699): the layout must be chosen for the broker
    /// the request goes to, not for another one.
    pub(crate) async fn send_built<'r, R: Request + Clone + 'r>(
        &self,
        build: impl FnOnce(i16) -> Cow<'r, R>,
        timeout: Duration,
        cap: Option<i16>,
    ) -> Result<(i16, R::Response), Error> {
        let version = self.version_for::<R>(cap)?;
        self.exchange(build(version).as_ref(), version, timeout)
            .await
    }

    async fn exchange<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<(i16, R::Response), Error> {
        let started = Instant::now();
        let frame = self.round_trip(req, version, timeout).await?;
        // Where a request's time goes, for latency work (a member's restart is a handful of
        // these in a row).
        tracing::trace!(
            broker = %self.shared.addr,
            api = ?R::API_KEY,
            version,
            micros = started.elapsed().as_micros() as u64,
            "round trip"
        );
        let (_, body) = decode_response::<R>(frame, version).map_err(|e| {
            let err = Error::Protocol {
                broker: self.shared.addr.clone(),
                error: e,
            };
            // The stream position can no longer be trusted.
            self.shared.poison(err.clone());
            err
        })?;
        Ok((version, body))
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, BufMut, Bytes, BytesMut};
    use cohort_protocol::frame::{decode_request_header, encode_response};
    use cohort_protocol::messages::ApiVersionsResponse;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::conn::TcpDialer;

    /// Reads one request; gives its correlation id and API version.
    async fn read_request(sock: &mut TcpStream) -> Option<(i32, i16)> {
        let len = sock.read_i32().await.ok()?;
        let mut buf = vec![0; usize::try_from(len).ok()?];
        sock.read_exact(&mut buf).await.ok()?;
        let (_, header, _) = decode_request_header(Bytes::from(buf)).ok()?;
        Some((header.correlation_id, header.request_api_version))
    }

    /// A response frame of `len` payload bytes after the correlation id, each byte its index
    /// modulo 251, so a misplaced boundary shows.
    fn frame(corr: i32, len: usize) -> BytesMut {
        let mut out = BytesMut::new();
        out.put_i32(i32::try_from(4 + len).unwrap());
        out.put_i32(corr);
        out.extend((0..len).map(|i| (i % 251) as u8));
        out
    }

    fn payload_ok(got: &Bytes, len: usize) -> bool {
        got.len() == 4 + len
            && got[4..]
                .iter()
                .enumerate()
                .all(|(i, &b)| b == (i % 251) as u8)
    }

    /// A broker that answers the opening ApiVersions, then runs `script` on the socket.
    async fn scripted<F, Fut>(script: F) -> String
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (corr, v) = read_request(&mut sock).await.unwrap();
            let mut out = BytesMut::new();
            let resp = ApiVersionsResponse {
                api_keys: vec![ApiVersion {
                    api_key: ApiKey::ApiVersions.as_i16(),
                    min_version: 0,
                    max_version: 3,
                    ..Default::default()
                }],
                ..Default::default()
            };
            encode_response(&mut out, ApiKey::ApiVersions, v, corr, &resp).unwrap();
            sock.write_all(&out).await.unwrap();
            script(sock).await;
        });
        addr
    }

    async fn open(addr: &str) -> Connection {
        Connection::open(
            addr,
            &TcpDialer::default(),
            "t",
            100 * 1024 * 1024,
            Duration::from_secs(5),
            None,
        )
        .await
        .unwrap()
    }

    const BIG: usize = 3 * LARGE_FRAME;

    /// A large frame arrives in pieces, the rest of it in the same segment as the next (small)
    /// frame: the pooled read takes exactly its frame, the next one stays whole; large frames
    /// in a row reuse buffers and each still reads right.
    #[tokio::test]
    async fn large_frames_split_anywhere_are_read_whole_and_only_themselves() {
        let addr = scripted(|mut sock| async move {
            let (a, _) = read_request(&mut sock).await.unwrap();
            let (b, _) = read_request(&mut sock).await.unwrap();
            let big = frame(a, BIG);
            sock.write_all(&big[..3]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            sock.write_all(&big[3..1000]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            let mut rest = BytesMut::from(&big[1000..]);
            rest.extend_from_slice(&frame(b, 10));
            sock.write_all(&rest).await.unwrap();
            for _ in 0..5 {
                let (c, _) = read_request(&mut sock).await.unwrap();
                sock.write_all(&frame(c, BIG + c as usize)).await.unwrap();
            }
            let _ = read_request(&mut sock).await;
        })
        .await;
        let conn = open(&addr).await;
        let req = ApiVersionsRequest::default();
        let t = Duration::from_secs(5);
        let (a, b) = tokio::join!(conn.round_trip(&req, 0, t), conn.round_trip(&req, 0, t));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(payload_ok(&a, BIG), "the large frame, {} bytes", a.len());
        assert!(
            payload_ok(&b, 10),
            "the small frame after it, {} bytes",
            b.len()
        );
        let mut kept = vec![a];
        for _ in 0..5 {
            let r = conn.round_trip(&req, 0, t).await.unwrap();
            let corr = (&r[..4]).get_i32();
            assert!(payload_ok(&r, BIG + corr as usize));
            // Keep every other response alive, so some buffers are busy when the next comes.
            if corr % 2 == 0 {
                kept.push(r);
            }
        }
        assert!(payload_ok(&kept[0], BIG), "a kept frame is not overwritten");
        assert!(conn.is_alive());
    }

    /// The broker goes away in the middle of a large frame: the request fails with a
    /// transport error and the connection is dead, nothing else.
    #[tokio::test]
    async fn a_large_frame_cut_short_fails_its_request() {
        let addr = scripted(|mut sock| async move {
            let (a, _) = read_request(&mut sock).await.unwrap();
            let big = frame(a, BIG);
            sock.write_all(&big[..big.len() / 2]).await.unwrap();
        })
        .await;
        let conn = open(&addr).await;
        let r = conn
            .round_trip(&ApiVersionsRequest::default(), 0, Duration::from_secs(5))
            .await;
        let e = r.expect_err("a cut frame is no response");
        assert!(matches!(e, Error::Transport { .. }), "{e:?}");
        assert!(!conn.is_alive());
    }
}
