//! The cluster as the client sees it: brokers, topic metadata, connections per broker (one for
//! data, one for the group coordinator, as Java keeps them apart so that a long fetch never
//! delays a heartbeat), reconnect backoff, coordinator discovery.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_protocol::messages::{FindCoordinatorRequest, MetadataRequest, metadata_request};
use cohort_protocol::{ApiKey, ErrorCode, Request};

use super::Connection;
use crate::backoff::{Backoff, Jitter};
use crate::config::ClientConfig;
use crate::error::Error;

/// Which broker a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Any broker (metadata, coordinator lookup, admin requests).
    Any,
    /// A broker, on its data connection (fetch, produce, list offsets).
    Broker(i32),
    /// A broker, on the connection reserved for group requests.
    Coordinator(i32),
}

/// One partition in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    /// Partition number.
    pub partition: i32,
    /// Leader broker id, or -1.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// Error code for the partition (0 when fine).
    pub error_code: i16,
}

/// One topic in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// The topic id (KIP-516; zero from brokers that do not send it).
    pub topic_id: cohort_protocol::Uuid,
    /// Partitions, by number.
    pub partitions: Vec<PartitionMeta>,
    /// Error code for the topic (0 when fine).
    pub error_code: i16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ConnKey {
    Bootstrap(usize),
    /// A broker's connection for requests to it as a partition leader: fetches (which long-poll
    /// for up to `fetch_max_wait`), list offsets, produce.
    Broker(i32),
    /// The coordinator's connection: group requests only.
    Group(i32),
    /// A broker's connection for requests any broker can answer (metadata). A broker answers
    /// the requests of one connection one at a time, in order, so a Metadata request behind a
    /// long-polling Fetch would wait for it: a leader refreshing metadata before it assigns
    /// would hold the whole group's SyncGroup up to `fetch_max_wait` (franz-go keeps fetches on
    /// connections of their own for the same reason).
    Any(i32),
    /// A consumer's first metadata request, to a bootstrap address, beside the member's
    /// coordinator lookup: on the one bootstrap connection the broker would answer the lookup
    /// (or the JoinGroup after it) only after the metadata, as it answers a connection's
    /// requests in order, and the lookup is on the way to the JoinGroup while the metadata
    /// only readies the fetch connections. Once answered, the fetch connection of the leader
    /// at that address takes it (`Cluster::take_open`), so the first fetch after the
    /// assignment needs no handshake of its own.
    Warm(usize),
}

#[derive(Default)]
struct Slot {
    conn: Option<Arc<Connection>>,
    backoff: Option<Backoff>,
    last_failure: Option<Instant>,
    next_delay: Duration,
    /// Consecutive failures to connect, and when the last warning about them was logged.
    failures: u32,
    warned_at: Option<Instant>,
}

/// How often a broker that stays unreachable is reported at `warn` (the first failure always
/// is; the rest at debug).
const WARN_EVERY: Duration = Duration::from_secs(30);

struct State {
    brokers: BTreeMap<i32, (String, Option<String>)>,
    topics: BTreeMap<String, TopicMeta>,
    metadata_at: Option<Instant>,
    next_any: usize,
}

struct Inner {
    config: ClientConfig,
    coordinators: Mutex<HashMap<String, i32>>,
    state: Mutex<State>,
    slots: Mutex<HashMap<ConnKey, Arc<tokio::sync::Mutex<Slot>>>>,
}

/// A handle on the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.inner.config.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster client; nothing is connected until the first request.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    brokers: BTreeMap::new(),
                    topics: BTreeMap::new(),
                    metadata_at: None,
                    next_any: 0,
                }),
                slots: Mutex::new(HashMap::new()),
                coordinators: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The client configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn addr_of(&self, key: &ConnKey) -> Option<String> {
        match key {
            ConnKey::Bootstrap(i) | ConnKey::Warm(i) => {
                self.inner.config.bootstrap.get(*i).cloned()
            }
            ConnKey::Broker(id) | ConnKey::Group(id) | ConnKey::Any(id) => {
                self.state().brokers.get(id).map(|(a, _)| a.clone())
            }
        }
    }

    /// Returns a live connection for `key`, opening one (after the reconnect backoff) if needed.
    async fn connection(&self, key: ConnKey) -> Result<Arc<Connection>, Error> {
        let slot = {
            let mut slots = self
                .inner
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(slots.entry(key.clone()).or_default())
        };
        let mut slot = slot.lock().await;
        if let Some(c) = &slot.conn {
            if c.is_reusable() {
                return Ok(Arc::clone(c));
            }
            slot.conn = None;
        }
        let addr = self.addr_of(&key).ok_or_else(|| {
            Error::transport(format!("{key:?}"), "broker unknown (not in metadata)")
        })?;
        let spare = match key {
            ConnKey::Group(_) => Some(ConnKey::Bootstrap as fn(usize) -> ConnKey),
            ConnKey::Broker(_) => Some(ConnKey::Warm as fn(usize) -> ConnKey),
            _ => None,
        };
        if let Some(spare) = spare
            && let Some(c) = self.take_open(spare, &addr)
        {
            tracing::debug!(broker = %addr, ?key, "open bootstrap connection taken");
            slot.conn = Some(Arc::clone(&c));
            return Ok(c);
        }
        // Reconnect backoff (KIP-580): exponential with jitter after consecutive failures.
        if let Some(at) = slot.last_failure {
            let wait = slot.next_delay.saturating_sub(at.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let cfg = &self.inner.config;
        let dialed = Instant::now();
        let opened = Connection::open(
            &addr,
            cfg.dialer.as_ref(),
            &cfg.client_id,
            cfg.max_frame_size,
            cfg.request_timeout,
            cfg.sasl.as_ref(),
        )
        .await;
        match opened {
            Ok(c) => {
                let c = Arc::new(c);
                slot.conn = Some(Arc::clone(&c));
                slot.backoff = None;
                slot.last_failure = None;
                if slot.failures > 0 && slot.warned_at.is_some() {
                    tracing::warn!(broker = %addr, failures = slot.failures, "connected again");
                }
                slot.failures = 0;
                slot.warned_at = None;
                tracing::debug!(
                    broker = %addr,
                    ?key,
                    micros = dialed.elapsed().as_micros() as u64,
                    "connected"
                );
                Ok(c)
            }
            Err(e) => {
                let b = slot.backoff.get_or_insert_with(|| {
                    Backoff::new(
                        cfg.reconnect_backoff,
                        cfg.reconnect_backoff_max,
                        Jitter::from_process(),
                    )
                });
                slot.next_delay = b.next_delay();
                slot.last_failure = Some(Instant::now());
                slot.failures = slot.failures.saturating_add(1);
                // A broker that is down, silent or sends garbage must show at the default
                // level, once and then every WARN_EVERY while it stays so, with the cause and
                // the next attempt; not every attempt (reconnects back off to 1 s).
                if slot.warned_at.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    slot.warned_at = Some(Instant::now());
                    tracing::warn!(
                        broker = %addr,
                        error = %e,
                        failures = slot.failures,
                        retry_in_ms = slot.next_delay.as_millis() as u64,
                        "cannot connect to broker"
                    );
                } else {
                    tracing::debug!(broker = %addr, error = %e, "connect failed");
                }
                Err(e)
            }
        }
    }

    /// The open bootstrap connection to `addr`, taken from its slot, for the coordinator's
    /// connection: a member's first requests (FindCoordinator, Metadata) go to a bootstrap
    /// address, and when the coordinator is the broker at that same address, a second
    /// connection would put a TCP handshake and an ApiVersions exchange between the
    /// coordinator's answer and the JoinGroup (a static member restarting, KIP-345, is back
    /// in a few round trips). Taken rather than shared: the broker answers a connection's
    /// requests in order, so a JoinGroup held in the coordinator's purgatory would hold up
    /// the metadata requests behind it (the reason the coordinator has a connection of its
    /// own, as in Java's `AbstractCoordinator`, which gives the coordinator the node id
    /// `Integer.MAX_VALUE - id` for that). Later requests to any broker go to the
    /// brokers the metadata named, or open a new bootstrap connection.
    ///
    /// The same for a leader's fetch connection and the consumer's warm-up connection
    /// (`ConnKey::Warm`), which has no other use once its metadata is answered.
    fn take_open(&self, spare: fn(usize) -> ConnKey, addr: &str) -> Option<Arc<Connection>> {
        let cfg = &self.inner.config;
        let slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (0..cfg.bootstrap.len())
            .filter(|&i| cfg.bootstrap[i] == addr)
            .find_map(|i| {
                let slot = slots.get(&spare(i))?;
                // A bootstrap slot in use (connecting) is left alone: waiting for it could
                // wait for a connection attempt that fails.
                let mut slot = slot.try_lock().ok()?;
                slot.conn.take_if(|c| c.is_reusable())
            })
    }

    fn any_keys(&self) -> Vec<ConnKey> {
        let st = self.state();
        let mut keys: Vec<ConnKey> = st.brokers.keys().map(|&id| ConnKey::Any(id)).collect();
        keys.extend((0..self.inner.config.bootstrap.len()).map(ConnKey::Bootstrap));
        let n = keys.len().max(1);
        let start = st.next_any % n;
        keys.rotate_left(start);
        keys
    }

    /// Sends a request and returns the version used and the response.
    pub async fn send_versioned<R: Request + Clone>(
        &self,
        target: Target,
        req: &R,
        timeout: Duration,
    ) -> Result<(i16, R::Response), Error> {
        self.send_capped(target, req, timeout, None).await
    }

    /// Sends a request at a version no higher than `cap` (the client may need the layout of
    /// an older version, e.g. Fetch with topic names rather than topic ids).
    pub async fn send_capped<R: Request + Clone>(
        &self,
        target: Target,
        req: &R,
        timeout: Duration,
        cap: Option<i16>,
    ) -> Result<(i16, R::Response), Error> {
        self.send_built(target, |_| Cow::Borrowed(req), timeout, cap)
            .await
    }

    /// Sends the request `build` makes for the version negotiated with the broker it goes to
    /// (see `Connection::send_built`); with [`Target::Any`], brokers are tried one after
    /// another (known brokers, then the bootstrap addresses) until one answers or fails with an
    /// error that is not retriable, and each gets a request built for its own versions.
    pub async fn send_built<'r, R: Request + Clone + 'r>(
        &self,
        target: Target,
        build: impl Fn(i16) -> Cow<'r, R>,
        timeout: Duration,
        cap: Option<i16>,
    ) -> Result<(i16, R::Response), Error> {
        let key = match target {
            Target::Broker(id) => ConnKey::Broker(id),
            Target::Coordinator(id) => ConnKey::Group(id),
            Target::Any => {
                let mut last = None;
                for key in self.any_keys() {
                    match self.connection(key).await {
                        Ok(c) => match c.send_built(&build, timeout, cap).await {
                            Ok(r) => return Ok(r),
                            Err(e) if e.is_retriable() => last = Some(e),
                            Err(e) => return Err(e),
                        },
                        Err(e) => last = Some(e),
                    }
                    self.state().next_any += 1;
                }
                return Err(
                    last.unwrap_or_else(|| Error::transport("bootstrap", "no broker reachable"))
                );
            }
        };
        self.connection(key)
            .await?
            .send_built(build, timeout, cap)
            .await
    }

    /// Sends a request and returns its response.
    pub async fn send<R: Request + Clone>(
        &self,
        target: Target,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, Error> {
        self.send_versioned(target, req, timeout)
            .await
            .map(|(_, r)| r)
    }

    /// Whether the broker (or any broker, for [`Target::Any`]) supports `api` at `version`+.
    pub async fn supports(&self, target: Target, api: ApiKey, version: i16) -> Result<bool, Error> {
        let key = match target {
            Target::Broker(id) => ConnKey::Broker(id),
            Target::Coordinator(id) => ConnKey::Group(id),
            Target::Any => self
                .any_keys()
                .into_iter()
                .next()
                .unwrap_or(ConnKey::Bootstrap(0)),
        };
        Ok(self.connection(key).await?.supports(api, version))
    }

    /// Closes the connection to a broker (after a transport error), so the next request
    /// reconnects.
    pub fn disconnect(&self, target: Target) {
        let key = match target {
            Target::Broker(id) => ConnKey::Broker(id),
            Target::Coordinator(id) => ConnKey::Group(id),
            Target::Any => return,
        };
        let slot = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(slot) = slot
            && let Ok(s) = slot.try_lock()
            && let Some(c) = &s.conn
        {
            c.close("disconnected by client");
        }
    }

    /// Fetches metadata for `topics` (all topics for `None`) and updates the cache.
    pub async fn refresh_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<BTreeMap<String, TopicMeta>, Error> {
        self.metadata_from(None, topics).await
    }

    /// [`Cluster::refresh_metadata`] for a consumer starting: while no broker is known yet,
    /// on a connection of its own to the first bootstrap address (`ConnKey::Warm`), kept for
    /// the fetch connection of the leader at that address; the member's coordinator lookup
    /// keeps the bootstrap connection to itself. [`Cluster::close_warm`] closes it if no
    /// leader took it.
    pub(crate) async fn warm_metadata(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<String, TopicMeta>, Error> {
        if !self.state().brokers.is_empty() || self.inner.config.bootstrap.is_empty() {
            return self.refresh_metadata(Some(topics)).await;
        }
        match self
            .metadata_from(Some(ConnKey::Warm(0)), Some(topics))
            .await
        {
            Ok(m) => Ok(m),
            // The warm connection is a shortcut: any failure takes the usual way.
            Err(_) => {
                self.close_warm();
                self.refresh_metadata(Some(topics)).await
            }
        }
    }

    /// Closes the warm-up connection if no leader's fetch connection took it.
    pub(crate) fn close_warm(&self) {
        let slot = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&ConnKey::Warm(0));
        if let Some(slot) = slot
            && let Ok(s) = slot.try_lock()
            && let Some(c) = &s.conn
        {
            c.close("warm-up connection not needed");
        }
    }

    /// Metadata over `key`'s connection, or from any broker.
    async fn metadata_from(
        &self,
        key: Option<ConnKey>,
        topics: Option<&[String]>,
    ) -> Result<BTreeMap<String, TopicMeta>, Error> {
        let req = MetadataRequest {
            topics: topics.map(|ts| {
                ts.iter()
                    .map(|t| metadata_request::MetadataRequestTopic {
                        name: Some(t.clone().into()),
                        ..Default::default()
                    })
                    .collect()
            }),
            allow_auto_topic_creation: false,
            ..Default::default()
        };
        let timeout = self.inner.config.request_timeout;
        let resp = match key {
            Some(key) => {
                self.connection(key)
                    .await?
                    .send_built(|_| Cow::Borrowed(&req), timeout, None)
                    .await?
                    .1
            }
            None => self.send(Target::Any, &req, timeout).await?,
        };
        let mut out = BTreeMap::new();
        let mut st = self.state();
        for b in &resp.brokers {
            st.brokers.insert(
                b.node_id,
                (
                    format!("{}:{}", b.host, b.port),
                    b.rack.as_ref().map(|r| r.to_string()),
                ),
            );
        }
        for t in &resp.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            let mut partitions: Vec<PartitionMeta> = t
                .partitions
                .iter()
                .map(|p| PartitionMeta {
                    partition: p.partition_index,
                    leader: p.leader_id,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.clone(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let meta = TopicMeta {
                topic_id: t.topic_id,
                partitions,
                error_code: t.error_code,
            };
            if t.error_code == 0 {
                st.topics.insert(name.to_string(), meta.clone());
            } else {
                st.topics.remove(name.as_str());
            }
            out.insert(name.to_string(), meta);
        }
        st.metadata_at = Some(Instant::now());
        Ok(out)
    }

    /// Cached metadata of a topic.
    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.state().topics.get(name).cloned()
    }

    /// Names of all cached topics.
    pub fn topic_names(&self) -> Vec<String> {
        self.state().topics.keys().cloned().collect()
    }

    /// Rack of a broker, from metadata.
    pub fn broker_rack(&self, id: i32) -> Option<String> {
        self.state().brokers.get(&id).and_then(|(_, r)| r.clone())
    }

    /// Leader of a partition, from cached metadata.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partition(topic, partition, |p| p.leader)
            .filter(|&l| l >= 0)
    }

    /// `f` of a partition in the last metadata.
    fn partition<T>(
        &self,
        topic: &str,
        partition: i32,
        f: impl FnOnce(&PartitionMeta) -> T,
    ) -> Option<T> {
        self.state()
            .topics
            .get(topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == partition))
            .map(f)
    }

    /// The leader epoch of a partition in the last metadata, when the broker gave one.
    pub fn leader_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partition(topic, partition, |p| p.leader_epoch)
            .filter(|&e| e >= 0)
    }

    /// Finds the coordinator of `group` (FindCoordinator; batched form on v4+, KIP-699).
    pub async fn find_coordinator(&self, group: &str) -> Result<i32, Error> {
        let timeout = self.inner.config.request_timeout;
        let build = |version: i16| {
            Cow::Owned(if version >= 4 {
                FindCoordinatorRequest {
                    key_type: 0,
                    coordinator_keys: vec![group.to_owned().into()],
                    ..Default::default()
                }
            } else {
                FindCoordinatorRequest {
                    key: group.to_owned().into(),
                    key_type: 0,
                    ..Default::default()
                }
            })
        };
        let (version, resp) = self
            .send_built::<FindCoordinatorRequest>(Target::Any, build, timeout, None)
            .await?;
        let (code, node, host, port) = if version >= 4 {
            let c = resp.coordinators.first().ok_or_else(|| {
                Error::transport(
                    "coordinator lookup",
                    "FindCoordinator returned no coordinator",
                )
            })?;
            (c.error_code, c.node_id, c.host.to_string(), c.port)
        } else {
            (
                resp.error_code,
                resp.node_id,
                resp.host.to_string(),
                resp.port,
            )
        };
        if let Err(code) = ErrorCode::check(code) {
            return Err(Error::Broker {
                api: ApiKey::FindCoordinator,
                code,
                context: format!("group {group}"),
            });
        }
        {
            let mut st = self.state();
            let rack = st.brokers.get(&node).and_then(|(_, r)| r.clone());
            st.brokers.insert(node, (format!("{host}:{port}"), rack));
        }
        self.inner
            .coordinators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(group.to_owned(), node);
        Ok(node)
    }

    /// The coordinator of `group` from the last lookup, or a new lookup.
    pub async fn coordinator(&self, group: &str) -> Result<i32, Error> {
        let cached = self
            .inner
            .coordinators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(group)
            .copied();
        match cached {
            Some(c) => Ok(c),
            None => self.find_coordinator(group).await,
        }
    }

    /// Forgets the cached coordinator of `group` (after NOT_COORDINATOR or a transport error).
    pub fn forget_coordinator(&self, group: &str) {
        self.inner
            .coordinators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(group);
    }

    /// How old the cached metadata is.
    pub fn metadata_age(&self) -> Option<Duration> {
        self.state().metadata_at.map(|t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, Bytes, BytesMut};
    use cohort_protocol::Decode;
    use cohort_protocol::frame::{decode_request_header, encode_response};
    use cohort_protocol::messages::api_versions_response::ApiVersion;
    use cohort_protocol::messages::find_coordinator_response::Coordinator;
    use cohort_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use cohort_protocol::messages::{
        ApiVersionsResponse, FindCoordinatorResponse, MetadataResponse,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A scripted broker that lists FindCoordinator up to `max` and answers it for the keys the
    /// request carries, in the layout of the version it was sent at.
    async fn fake_broker(max: i16) -> String {
        fake_broker_counting(max, false).await.0
    }

    /// [`fake_broker`], naming itself as the coordinator when `coordinator`, and counting the
    /// connections it accepts.
    async fn fake_broker_counting(
        max: i16,
        coordinator: bool,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let port = if coordinator {
            i32::from(addr.port())
        } else {
            9
        };
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = sock.read_i32().await else {
                            return;
                        };
                        let mut buf = vec![0; len as usize];
                        if sock.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        let (api, header, mut body) =
                            decode_request_header(Bytes::from(buf)).unwrap();
                        let (v, id) = (header.request_api_version, header.correlation_id);
                        let mut out = BytesMut::new();
                        match api.unwrap() {
                            ApiKey::ApiVersions => {
                                let api = |k: ApiKey, max_version| ApiVersion {
                                    api_key: k.as_i16(),
                                    min_version: 0,
                                    max_version,
                                    ..Default::default()
                                };
                                let resp = ApiVersionsResponse {
                                    api_keys: vec![
                                        api(ApiKey::ApiVersions, 3),
                                        api(ApiKey::FindCoordinator, max),
                                        api(ApiKey::Metadata, 12),
                                    ],
                                    ..Default::default()
                                };
                                encode_response(&mut out, ApiKey::ApiVersions, v, id, &resp)
                            }
                            ApiKey::FindCoordinator => {
                                let req = FindCoordinatorRequest::decode(&mut body, v).unwrap();
                                assert!(!body.has_remaining());
                                let resp = if v >= 4 {
                                    FindCoordinatorResponse {
                                        coordinators: req
                                            .coordinator_keys
                                            .iter()
                                            .map(|k| Coordinator {
                                                key: k.clone(),
                                                node_id: 7,
                                                host: "127.0.0.1".into(),
                                                port,
                                                ..Default::default()
                                            })
                                            .collect(),
                                        ..Default::default()
                                    }
                                } else {
                                    assert_eq!(req.key.as_str(), "g");
                                    FindCoordinatorResponse {
                                        node_id: 7,
                                        host: "127.0.0.1".into(),
                                        port,
                                        ..Default::default()
                                    }
                                };
                                encode_response(&mut out, ApiKey::FindCoordinator, v, id, &resp)
                            }
                            ApiKey::Metadata => {
                                // Node 7 (at `port`) leads partition 0 of every topic asked.
                                let req = MetadataRequest::decode(&mut body, v).unwrap();
                                let resp = MetadataResponse {
                                    brokers: vec![MetadataResponseBroker {
                                        node_id: 7,
                                        host: "127.0.0.1".into(),
                                        port,
                                        ..Default::default()
                                    }],
                                    topics: req
                                        .topics
                                        .unwrap_or_default()
                                        .into_iter()
                                        .map(|t| MetadataResponseTopic {
                                            name: t.name,
                                            partitions: vec![MetadataResponsePartition {
                                                leader_id: 7,
                                                ..Default::default()
                                            }],
                                            ..Default::default()
                                        })
                                        .collect(),
                                    ..Default::default()
                                };
                                encode_response(&mut out, ApiKey::Metadata, v, id, &resp)
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                        .unwrap();
                        if sock.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr.to_string(), accepted)
    }

    /// An address nothing listens on.
    fn dead_address() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    fn cluster(bootstrap: &[String]) -> Cluster {
        let mut config = ClientConfig::new(&bootstrap.join(","));
        config.request_timeout = Duration::from_secs(5);
        Cluster::new(config)
    }

    /// The request is built for the broker it is sent to: the first bootstrap address is down,
    /// so the version cannot be learnt from it (seen live: a request built for v0-3 sent at v6,
    /// "field Key is set but does not exist in version 6").
    #[tokio::test]
    async fn find_coordinator_is_built_for_the_broker_that_answers_it() {
        for max in [6, 3] {
            let c = cluster(&[dead_address(), fake_broker(max).await]);
            assert_eq!(c.find_coordinator("g").await.unwrap(), 7, "max v{max}");
            assert_eq!(
                c.addr_of(&ConnKey::Broker(7)).as_deref(),
                Some("127.0.0.1:9")
            );
        }
    }

    /// A coordinator at the bootstrap address gets the bootstrap connection, already open and
    /// its versions known, rather than a second one; later requests to any broker open their
    /// own, so group requests still never share a connection with them.
    #[tokio::test]
    async fn the_coordinator_at_the_bootstrap_address_takes_its_connection() {
        let (addr, accepted) = fake_broker_counting(6, true).await;
        let c = cluster(std::slice::from_ref(&addr));
        assert_eq!(c.find_coordinator("g").await.unwrap(), 7);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(
            c.supports(Target::Coordinator(7), ApiKey::FindCoordinator, 4)
                .await
                .unwrap()
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(c.find_coordinator("g").await.unwrap(), 7);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A coordinator elsewhere: the bootstrap connection stays where it is.
        let (addr, accepted) = fake_broker_counting(6, false).await;
        let c = cluster(std::slice::from_ref(&addr));
        assert_eq!(c.find_coordinator("g").await.unwrap(), 7);
        let _ = c
            .supports(Target::Coordinator(7), ApiKey::FindCoordinator, 4)
            .await;
        assert_eq!(c.find_coordinator("g").await.unwrap(), 7);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn has_warm(c: &Cluster) -> bool {
        c.inner
            .slots
            .lock()
            .unwrap()
            .contains_key(&ConnKey::Warm(0))
    }

    /// A consumer's warm-up metadata has a connection of its own beside the member's
    /// bootstrap connection, and the leader's fetch connection at that address takes it; with
    /// the leader elsewhere it is closed once the warm-up is over, not left open.
    #[tokio::test]
    async fn the_warm_up_connection_becomes_the_leaders_fetch_connection() {
        let accepted =
            |a: &std::sync::atomic::AtomicUsize| a.load(std::sync::atomic::Ordering::SeqCst);
        let (addr, count) = fake_broker_counting(6, true).await;
        let c = cluster(std::slice::from_ref(&addr));
        let topics = ["t".to_owned()];
        // Both under way before either is answered, as when a consumer starts.
        let (meta, coordinator) = tokio::join!(c.warm_metadata(&topics), c.find_coordinator("g"));
        assert_eq!(meta.unwrap()["t"].partitions[0].leader, 7);
        assert_eq!(coordinator.unwrap(), 7);
        assert_eq!(
            accepted(&count),
            2,
            "the warm-up and the bootstrap connection"
        );
        assert!(
            c.supports(Target::Broker(7), ApiKey::Metadata, 12)
                .await
                .unwrap()
        );
        assert!(
            c.supports(Target::Coordinator(7), ApiKey::Metadata, 12)
                .await
                .unwrap()
        );
        assert_eq!(
            accepted(&count),
            2,
            "the leader and the coordinator took them"
        );
        c.close_warm();
        // Known brokers: the usual way, no warm-up connection.
        assert!(c.warm_metadata(&["t".to_owned()]).await.is_ok());
        assert!(!has_warm(&c));
        // The leader elsewhere: nothing takes the warm-up connection, which is closed.
        let (addr, _) = fake_broker_counting(6, false).await;
        let c = cluster(std::slice::from_ref(&addr));
        c.warm_metadata(&["t".to_owned()]).await.unwrap();
        let warm = c.inner.slots.lock().unwrap()[&ConnKey::Warm(0)].clone();
        let conn = warm.lock().await.conn.clone().expect("open");
        assert!(conn.is_reusable());
        c.close_warm();
        assert!(!conn.is_reusable());
        assert!(!has_warm(&c));
    }

    /// A refused connection keeps its `io::Error`: the kind is there to act on, and the chain
    /// of `source()` reaches it.
    #[tokio::test]
    async fn a_refused_connection_carries_its_io_error() {
        let c = cluster(&[dead_address()]);
        let e = c.find_coordinator("g").await.unwrap_err();
        assert!(e.is_retriable(), "{e}");
        let io = e
            .io_error()
            .unwrap_or_else(|| panic!("no I/O cause in {e:?}"));
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), io.to_string());
    }
}
