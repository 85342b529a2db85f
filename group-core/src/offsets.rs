//! Committed offsets (OffsetFetch) and log positions (ListOffsets).

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_protocol::messages::{
    ListOffsetsRequest, OffsetFetchRequest, list_offsets_request, offset_fetch_request,
};
use cohort_protocol::{ApiKey, ErrorCode};

use crate::backoff::{Backoff, Jitter};
use crate::conn::{Cluster, Target};
use crate::driver::DriverHandle;
use crate::error::Error;
use crate::member::CommitOffset;

use crate::TopicPartition;
use crate::config::IsolationLevel;

/// `ListOffsets` timestamp for the log start.
pub const EARLIEST: i64 = -2;
/// `ListOffsets` timestamp for the log end.
pub const LATEST: i64 = -1;

fn by_topic(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut m: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        m.entry(tp.topic.as_str()).or_default().push(tp.partition);
    }
    m
}

/// Committed offsets of `group` for `partitions`; `None` where nothing is committed. Retries
/// coordinator moves and loading (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
/// UNSTABLE_OFFSET_COMMIT) until `deadline` passes.
pub async fn fetch_committed(
    cluster: &Cluster,
    group: &str,
    partitions: &[TopicPartition],
    deadline: Duration,
) -> Result<BTreeMap<TopicPartition, Option<i64>>, Error> {
    Ok(
        fetch_committed_as(cluster, group, None, partitions, deadline)
            .await?
            .into_iter()
            .map(|(tp, c)| (tp, c.map(|c| c.offset)))
            .collect(),
    )
}

/// [`fetch_committed`] as a member of a KIP-848 group: OffsetFetch v9+ carries the member id and
/// its current epoch, read from the driver before every attempt, so the coordinator fences a
/// member that is no longer in the group (as Java's `CommitRequestManager` sends them); a
/// STALE_MEMBER_EPOCH (the epoch moved on meanwhile) is retried with the newer one.
pub(crate) async fn fetch_committed_as(
    cluster: &Cluster,
    group: &str,
    member: Option<&DriverHandle>,
    partitions: &[TopicPartition],
    deadline: Duration,
) -> Result<BTreeMap<TopicPartition, Option<CommitOffset>>, Error> {
    let cfg = cluster.config();
    let start = tokio::time::Instant::now();
    let mut backoff = Backoff::new(
        cfg.retry_backoff,
        cfg.retry_backoff_max,
        Jitter::from_process(),
    );
    loop {
        let identity = match member {
            Some(d) => d
                .stats()
                .await
                .filter(|s| s.generation > 0)
                .map(|s| (s.member_id, s.generation)),
            None => None,
        };
        let attempt = fetch_committed_once(cluster, group, identity, partitions).await;
        match attempt {
            Ok(r) => return Ok(r),
            Err(e) => {
                let retry = e.is_retriable()
                    || matches!(
                        e.code(),
                        Some(
                            ErrorCode::NotCoordinator
                                | ErrorCode::CoordinatorNotAvailable
                                | ErrorCode::CoordinatorLoadInProgress
                                | ErrorCode::UnstableOffsetCommit
                                | ErrorCode::StaleMemberEpoch
                        )
                    );
                if matches!(
                    e.code(),
                    Some(ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)
                ) || matches!(e, Error::Transport { .. } | Error::Timeout { .. })
                {
                    cluster.forget_coordinator(group);
                }
                if !retry || start.elapsed() > deadline {
                    return Err(e);
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

async fn fetch_committed_once(
    cluster: &Cluster,
    group: &str,
    member: Option<(String, i32)>,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, Option<CommitOffset>>, Error> {
    let coordinator = cluster.coordinator(group).await?;
    let target = Target::Coordinator(coordinator);
    let timeout = cluster.config().request_timeout;
    let topics = by_topic(partitions);
    // v8+ batches groups (KIP-709); older versions name one group at the top level.
    let batched = cluster.supports(target, ApiKey::OffsetFetch, 8).await?;
    // v9+ names the member and its epoch (KIP-848); older versions cannot.
    let member = match member {
        Some(m) if cluster.supports(target, ApiKey::OffsetFetch, 9).await? => Some(m),
        _ => None,
    };
    let req = if batched {
        OffsetFetchRequest {
            groups: vec![offset_fetch_request::OffsetFetchRequestGroup {
                group_id: group.to_owned().into(),
                member_epoch: member.as_ref().map_or(-1, |m| m.1),
                member_id: member.map(|m| m.0.into()),
                topics: Some(
                    topics
                        .iter()
                        .map(|(t, ps)| offset_fetch_request::OffsetFetchRequestTopics {
                            name: (*t).to_owned().into(),
                            partition_indexes: ps.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }],
            require_stable: true,
            ..Default::default()
        }
    } else {
        OffsetFetchRequest {
            group_id: group.to_owned().into(),
            topics: Some(
                topics
                    .iter()
                    .map(|(t, ps)| offset_fetch_request::OffsetFetchRequestTopic {
                        name: (*t).to_owned().into(),
                        partition_indexes: ps.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            require_stable: true,
            ..Default::default()
        }
    };
    let (version, resp) = cluster.send_versioned(target, &req, timeout).await?;
    let mut out = BTreeMap::new();
    let check = |code: i16, what: String| -> Result<(), Error> {
        ErrorCode::check(code).map_err(|code| Error::Broker {
            api: ApiKey::OffsetFetch,
            code,
            context: what,
        })
    };
    if version >= 8 {
        for g in &resp.groups {
            check(g.error_code, format!("group {group}"))?;
            for t in &g.topics {
                for p in &t.partitions {
                    check(p.error_code, format!("{}-{}", t.name, p.partition_index))?;
                    out.insert(
                        TopicPartition::new(t.name.to_string(), p.partition_index),
                        committed(
                            &t.name,
                            p.partition_index,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.metadata.as_deref(),
                        ),
                    );
                }
            }
        }
    } else {
        check(resp.error_code, format!("group {group}"))?;
        for t in &resp.topics {
            for p in &t.partitions {
                check(p.error_code, format!("{}-{}", t.name, p.partition_index))?;
                out.insert(
                    TopicPartition::new(t.name.to_string(), p.partition_index),
                    committed(
                        &t.name,
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata.as_deref(),
                    ),
                );
            }
        }
    }
    for tp in partitions {
        out.entry(tp.clone()).or_insert(None);
    }
    Ok(out)
}

/// One partition of an OffsetFetch answer; `None` when nothing is committed (offset -1).
fn committed(
    topic: &str,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&str>,
) -> Option<CommitOffset> {
    (offset >= 0).then(|| CommitOffset {
        topic: topic.to_owned(),
        partition,
        offset,
        leader_epoch: (leader_epoch >= 0).then_some(leader_epoch),
        metadata: metadata.unwrap_or_default().to_owned(),
    })
}

/// Offsets of `partitions` at `timestamp` ([`EARLIEST`], [`LATEST`] or a time in ms), asking
/// each partition's leader.
pub async fn list_offsets(
    cluster: &Cluster,
    partitions: &[TopicPartition],
    timestamp: i64,
) -> Result<BTreeMap<TopicPartition, i64>, Error> {
    list_offsets_isolated(
        cluster,
        partitions,
        timestamp,
        IsolationLevel::ReadUncommitted,
    )
    .await
}

/// [`list_offsets`] under an isolation level: with `read_committed`, [`LATEST`] is the last
/// stable offset (the first offset of a transaction still open), as Java's consumer asks.
pub(crate) async fn list_offsets_isolated(
    cluster: &Cluster,
    partitions: &[TopicPartition],
    timestamp: i64,
    isolation: IsolationLevel,
) -> Result<BTreeMap<TopicPartition, i64>, Error> {
    let topics: Vec<String> = by_topic(partitions)
        .keys()
        .map(|t| (*t).to_owned())
        .collect();
    if partitions
        .iter()
        .any(|tp| cluster.leader(&tp.topic, tp.partition).is_none())
    {
        cluster.refresh_metadata(Some(&topics)).await?;
    }
    let mut by_leader: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        let leader = cluster
            .leader(&tp.topic, tp.partition)
            .ok_or_else(|| Error::Broker {
                api: ApiKey::ListOffsets,
                code: ErrorCode::LeaderNotAvailable,
                context: tp.to_string(),
            })?;
        by_leader.entry(leader).or_default().push(tp);
    }
    let mut out = BTreeMap::new();
    for (leader, tps) in by_leader {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for TopicPartition {
            topic: t,
            partition: p,
        } in tps
        {
            topics.entry(t.as_str()).or_default().push(*p);
        }
        let req = ListOffsetsRequest {
            replica_id: -1,
            isolation_level: isolation.wire(),
            topics: topics
                .iter()
                .map(|(t, ps)| list_offsets_request::ListOffsetsTopic {
                    name: (*t).to_owned().into(),
                    partitions: ps
                        .iter()
                        .map(|&p| list_offsets_request::ListOffsetsPartition {
                            partition_index: p,
                            current_leader_epoch: -1,
                            timestamp,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let resp = cluster
            .send(
                Target::Broker(leader),
                &req,
                cluster.config().request_timeout,
            )
            .await?;
        for t in &resp.topics {
            for p in &t.partitions {
                if let Err(code) = ErrorCode::check(p.error_code) {
                    return Err(Error::Broker {
                        api: ApiKey::ListOffsets,
                        code,
                        context: format!("{}-{}", t.name, p.partition_index),
                    });
                }
                out.insert(
                    TopicPartition::new(t.name.to_string(), p.partition_index),
                    p.offset,
                );
            }
        }
    }
    Ok(out)
}
