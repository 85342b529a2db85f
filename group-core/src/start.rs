//! What the consumer and the generation API share, below both: starting a member for a
//! [`GroupConfig`] (the state machine, its driver, the settings the layers above keep) and
//! resolving where assigned partitions start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::TopicPartition;
use crate::config::GroupProtocol;
use crate::config::{GroupConfig, OffsetReset, Subscription};
use crate::conn::Cluster;
use crate::driver::{self, DriverHandle, TopicSource};
use crate::error::Error;
use crate::member::{GroupEvent, GroupMember, Member, MemberConfig};
use crate::member848::{Member848, Subscription848};
use crate::offsets::{self, EARLIEST, LATEST};

/// Where a partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The committed offset, or the reset policy when there is none.
    Committed,
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// This offset.
    Offset(i64),
}

/// Chooses the start of a partition given its committed offset (sarama-consumer's
/// `StartingOffset` hook).
pub type StartingOffsetHook =
    Arc<dyn Fn(&TopicPartition, Option<i64>) -> StartOffset + Send + Sync>;

/// Builds the member state machine for a configuration and resolves a pattern subscription.
pub(crate) async fn start_member(
    mut config: GroupConfig,
) -> Result<
    (
        Cluster,
        DriverHandle,
        mpsc::UnboundedReceiver<GroupEvent>,
        GroupConfigRest,
    ),
    Error,
> {
    config.validate()?;
    let cluster = Cluster::new(config.client.clone());
    let (topics, source) = match &config.subscription {
        Subscription::Topics(ts) => (ts.clone(), TopicSource::Fixed),
        Subscription::Pattern(re) => {
            let all = cluster.refresh_metadata(None).await?;
            let topics = all
                .keys()
                .filter(|t| config.subscription.matches(t))
                .cloned()
                .collect();
            (topics, TopicSource::Pattern(re.clone()))
        }
    };
    let mcfg = MemberConfig {
        group_id: config.group_id.clone(),
        group_instance_id: config.group_instance_id.clone(),
        session_timeout: config.session_timeout,
        rebalance_timeout: config.rebalance_timeout,
        heartbeat_interval: config.heartbeat_interval,
        max_poll_interval: config.max_poll_interval,
        request_timeout: config.client.request_timeout,
        retry_backoff: config.client.retry_backoff,
        retry_backoff_max: config.client.retry_backoff_max,
        rack: config.client.rack.clone(),
        leave_on_close: config.leave_on_close,
        cooperative_rejoin_delay: config.cooperative_rejoin_delay,
        jitter_seed: config
            .jitter_seed
            .unwrap_or_else(crate::backoff::process_seed),
        group_remote_assignor: config.group_remote_assignor.clone(),
    };
    let now = tokio::time::Instant::now().into_std();
    let member: Box<dyn GroupMember> = match config.group_protocol {
        GroupProtocol::Classic => {
            let balancers = std::mem::take(&mut config.balancers);
            Box::new(Member::new(mcfg, balancers, topics, now))
        }
        GroupProtocol::Consumer => {
            let subscription = match &config.subscription {
                Subscription::Topics(_) => Subscription848::Topics(topics),
                // The broker resolves the expression (RE2/J, whole names) and follows new
                // topics itself; the driver only keeps the metadata fresh.
                Subscription::Pattern(re) => Subscription848::Regex(re.as_str().to_owned()),
            };
            Box::new(Member848::new(mcfg, new_member_id(), subscription, now))
        }
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let handle = driver::spawn(
        member,
        cluster.clone(),
        config.group_id.clone(),
        source,
        config.partition_watch_interval,
        events_tx,
    );
    let rest = GroupConfigRest {
        group_id: config.group_id,
        offset_reset: config.offset_reset,
        auto_commit_interval: config.auto_commit_interval,
        commit_on_revoke: config.commit_on_revoke,
        rebalance_timeout: config.rebalance_timeout,
        max_buffered_records: config.max_buffered_records,
        fetch_max_decompressed_bytes: config.fetch_max_decompressed_bytes,
        // Validated above to fit the wire's int32.
        max_partition_fetch_bytes: i32::try_from(config.max_partition_fetch_bytes)
            .unwrap_or(i32::MAX),
        fetch_max_bytes: i32::try_from(config.fetch_max_bytes).unwrap_or(i32::MAX),
        fetch_max_wait: config.fetch_max_wait,
        max_record_age: config.max_record_age,
        isolation_level: config.isolation_level,
        heartbeat_interval: config.heartbeat_interval,
        group_protocol: config.group_protocol,
        subscription: config.subscription,
    };
    Ok((cluster, handle, events_rx, rest))
}

/// The parts of a [`GroupConfig`] the layers above the member keep.
#[derive(Debug, Clone)]
pub(crate) struct GroupConfigRest {
    pub(crate) group_id: String,
    pub(crate) offset_reset: OffsetReset,
    pub(crate) auto_commit_interval: Option<Duration>,
    pub(crate) commit_on_revoke: bool,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) max_buffered_records: usize,
    pub(crate) fetch_max_decompressed_bytes: usize,
    pub(crate) max_partition_fetch_bytes: i32,
    pub(crate) fetch_max_bytes: i32,
    pub(crate) fetch_max_wait: Duration,
    pub(crate) isolation_level: crate::config::IsolationLevel,
    pub(crate) max_record_age: Option<Duration>,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) group_protocol: GroupProtocol,
    pub(crate) subscription: crate::config::Subscription,
}

impl GroupConfigRest {
    /// The member whose identity fences OffsetFetch (KIP-848 groups only).
    pub(crate) fn fencing<'a>(&self, driver: &'a DriverHandle) -> Option<&'a DriverHandle> {
        (self.group_protocol == GroupProtocol::Consumer).then_some(driver)
    }
}

/// Resolves where partitions start: committed offsets, else the reset policy; the hook may
/// override either.
#[allow(
    clippy::too_many_arguments,
    reason = "each is a separate input of the lookup (Java's consumer reads them from its config)"
)]
pub(crate) async fn resolve_starts(
    cluster: &Cluster,
    group: &str,
    member: Option<&DriverHandle>,
    partitions: &[TopicPartition],
    reset: OffsetReset,
    hook: Option<&StartingOffsetHook>,
    deadline: Duration,
    isolation: crate::config::IsolationLevel,
) -> Result<BTreeMap<TopicPartition, (i64, Option<i32>)>, Error> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let committed =
        offsets::fetch_committed_as(cluster, group, member, partitions, deadline).await?;
    let mut want: BTreeMap<TopicPartition, StartOffset> = BTreeMap::new();
    // The committed leader epoch goes with a start at the committed offset, so the fetcher
    // can validate it against the leader's log before fetching (KIP-320).
    let mut epochs: BTreeMap<TopicPartition, i32> = BTreeMap::new();
    for tp in partitions {
        let c = committed.get(tp).and_then(|c| c.as_ref().map(|c| c.offset));
        let choice = match hook {
            Some(h) => h(tp, c),
            None => StartOffset::Committed,
        };
        let choice = match (choice, c) {
            (StartOffset::Committed, Some(o)) => {
                if let Some(e) = committed
                    .get(tp)
                    .and_then(|c| c.as_ref().and_then(|c| c.leader_epoch))
                {
                    epochs.insert(tp.clone(), e);
                }
                StartOffset::Offset(o)
            }
            (StartOffset::Committed, None) => match reset {
                OffsetReset::Earliest => StartOffset::Earliest,
                OffsetReset::Latest => StartOffset::Latest,
                OffsetReset::None => {
                    return Err(Error::NoOffset {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                    });
                }
            },
            (other, _) => other,
        };
        want.insert(tp.clone(), choice);
    }
    let mut out = BTreeMap::new();
    for (kind, ts) in [
        (StartOffset::Earliest, EARLIEST),
        (StartOffset::Latest, LATEST),
    ] {
        let tps: Vec<TopicPartition> = want
            .iter()
            .filter(|(_, c)| **c == kind)
            .map(|(tp, _)| tp.clone())
            .collect();
        if !tps.is_empty() {
            let found = offsets::list_offsets_isolated(cluster, &tps, ts, isolation).await?;
            out.extend(found.into_iter().map(|(tp, o)| (tp, (o, None))));
        }
    }
    for (tp, c) in want {
        if let StartOffset::Offset(o) = c {
            let epoch = epochs.get(&tp).copied();
            out.insert(tp, (o, epoch));
        }
    }
    Ok(out)
}

/// A member id for the consumer protocol: a random (v4) UUID, written as Kafka writes its
/// `Uuid` (base64url without padding), drawn once per consumer (KIP-1082).
fn new_member_id() -> String {
    let mut rng = crate::backoff::Jitter::from_process();
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
    bytes[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    base64url(&bytes)
}

/// Base64url without padding (RFC 4648 section 5).
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_kafka_uuids() {
        // RFC 4648 test vectors for the encoding itself.
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        let a = new_member_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, new_member_id());
    }
}
