//! A bare group member speaking the wire protocol, one request at a time, for the checks:
//! what it sends is exactly what the check says, with no client logic in between.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort::unstable::{Cluster, Target};
use cohort::{Producer, ProducerRecord};
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolSubscription, PROTOCOL_TYPE, encode_subscription,
};
use cohort_protocol::messages::{
    DescribeGroupsRequest, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, OffsetCommitRequest, SyncGroupRequest, SyncGroupResponse,
    join_group_request, leave_group_request, offset_commit_request, sync_group_request,
};
use cohort_protocol::{ApiKey, ErrorCode};

use super::{Addr, Outcome};

// A raw group member: one connection, explicit requests.

pub(super) const SESSION_MS: i32 = 6_000;
pub(super) const TIMEOUT: Duration = Duration::from_secs(40);

pub(super) fn name(prefix: &str) -> String {
    cohort_testbroker::unique_name(prefix)
}

pub(super) fn metadata(topic: &str) -> Bytes {
    encode_subscription(
        &ConsumerProtocolSubscription {
            topics: vec![topic.to_owned().into()].into(),
            ..Default::default()
        },
        0,
    )
    .unwrap_or_default()
}

pub(super) struct Raw {
    pub(super) cluster: Cluster,
    pub(super) coord: i32,
    pub(super) group: String,
    pub(super) member_id: String,
    pub(super) instance: Option<String>,
    pub(super) generation: i32,
    pub(super) topic: String,
    pub(super) leader: bool,
}

impl Raw {
    pub(super) async fn new(bootstrap: &Addr, group: &str, topic: &str) -> Outcome<Self> {
        let cluster = Cluster::new(bootstrap.config());
        let coord = cluster
            .find_coordinator(group)
            .await
            .map_err(|e| format!("FindCoordinator: {e}"))?;
        // The coordinator answers COORDINATOR_LOAD_IN_PROGRESS while it loads the group's
        // `__consumer_offsets` partition (the checks run at once on a fresh broker, and their
        // groups hash to partitions loaded one by one). Every client retries that (it is
        // retriable in Kafka's Errors table); the checks wait for it here, so that what they
        // test is the behaviour they name.
        let describe = DescribeGroupsRequest {
            groups: vec![group.to_owned().into()],
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = cluster
                .send(Target::Coordinator(coord), &describe, TIMEOUT)
                .await
                .map_err(|e| format!("DescribeGroups: {e}"))?;
            let code = r.groups.first().map_or(0, |g| g.error_code);
            if code != ErrorCode::CoordinatorLoadInProgress.code() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            cluster,
            coord,
            group: group.to_owned(),
            member_id: String::new(),
            instance: None,
            generation: -1,
            topic: topic.to_owned(),
            leader: false,
        })
    }

    pub(super) fn target(&self) -> Target {
        Target::Coordinator(self.coord)
    }

    pub(super) async fn join_once(
        &self,
        protocols: &[&str],
        rebalance_ms: i32,
    ) -> Outcome<JoinGroupResponse> {
        let req = JoinGroupRequest {
            group_id: self.group.clone().into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: rebalance_ms,
            member_id: self.member_id.clone().into(),
            group_instance_id: self.instance.clone().map(Into::into),
            protocol_type: PROTOCOL_TYPE.into(),
            protocols: protocols
                .iter()
                .map(|p| join_group_request::JoinGroupRequestProtocol {
                    name: (*p).to_owned().into(),
                    metadata: metadata(&self.topic),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        self.cluster
            .send(self.target(), &req, TIMEOUT)
            .await
            .map_err(|e| format!("JoinGroup: {e}"))
    }

    /// Joins (adopting the member id of MEMBER_ID_REQUIRED) and returns the response.
    pub(super) async fn join(
        &mut self,
        protocols: &[&str],
        rebalance_ms: i32,
    ) -> Outcome<JoinGroupResponse> {
        for _ in 0..3 {
            let r = self.join_once(protocols, rebalance_ms).await?;
            match ErrorCode::check(r.error_code) {
                Ok(()) => {
                    self.member_id = r.member_id.to_string();
                    self.generation = r.generation_id;
                    self.leader = r.leader == r.member_id;
                    return Ok(r);
                }
                Err(ErrorCode::MemberIdRequired) => self.member_id = r.member_id.to_string(),
                Err(c) => return Err(format!("JoinGroup answered {c}")),
            }
        }
        Err("JoinGroup kept asking for a member id".into())
    }

    pub(super) async fn sync(&self, r: &JoinGroupResponse) -> Outcome<SyncGroupResponse> {
        // The leader gives every member an empty assignment; the bytes come back as sent.
        let assignments = if r.leader == r.member_id {
            r.members
                .iter()
                .map(|m| sync_group_request::SyncGroupRequestAssignment {
                    member_id: m.member_id.clone(),
                    assignment: Bytes::from(format!("for-{}", m.member_id)),
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        };
        let req = SyncGroupRequest {
            group_id: self.group.clone().into(),
            generation_id: self.generation,
            member_id: self.member_id.clone().into(),
            group_instance_id: self.instance.clone().map(Into::into),
            protocol_type: Some(PROTOCOL_TYPE.into()),
            protocol_name: r.protocol_name.clone(),
            assignments,
            ..Default::default()
        };
        self.cluster
            .send(self.target(), &req, TIMEOUT)
            .await
            .map_err(|e| format!("SyncGroup: {e}"))
    }

    pub(super) async fn heartbeat_at(&self, generation: i32) -> Outcome<Code> {
        let req = HeartbeatRequest {
            group_id: self.group.clone().into(),
            generation_id: generation,
            member_id: self.member_id.clone().into(),
            group_instance_id: self.instance.clone().map(Into::into),
            ..Default::default()
        };
        let r = self
            .cluster
            .send(self.target(), &req, Duration::from_secs(10))
            .await
            .map_err(|e| format!("Heartbeat: {e}"))?;
        Ok(code(r.error_code))
    }

    pub(super) async fn heartbeat(&self) -> Outcome<Code> {
        self.heartbeat_at(self.generation).await
    }

    pub(super) async fn leave(&self) -> Outcome<Code> {
        let batch = self
            .cluster
            .supports(self.target(), ApiKey::LeaveGroup, 3)
            .await
            .unwrap_or(false);
        let mut req = LeaveGroupRequest {
            group_id: self.group.clone().into(),
            ..Default::default()
        };
        let cap = if batch {
            req.members = vec![leave_group_request::MemberIdentity {
                member_id: self.member_id.clone().into(),
                group_instance_id: self.instance.clone().map(Into::into),
                ..Default::default()
            }];
            None
        } else {
            req.member_id = self.member_id.clone().into();
            Some(2)
        };
        let (_, r) = self
            .cluster
            .send_capped(self.target(), &req, Duration::from_secs(10), cap)
            .await
            .map_err(|e| format!("LeaveGroup: {e}"))?;
        Ok(code(r.error_code))
    }

    pub(super) async fn commit_at(&self, generation: i32, offset: i64) -> Outcome<Code> {
        let req = OffsetCommitRequest {
            group_id: self.group.clone().into(),
            generation_id_or_member_epoch: generation,
            member_id: self.member_id.clone().into(),
            group_instance_id: self.instance.clone().map(Into::into),
            retention_time_ms: -1,
            topics: vec![offset_commit_request::OffsetCommitRequestTopic {
                name: self.topic.clone().into(),
                partitions: vec![offset_commit_request::OffsetCommitRequestPartition {
                    partition_index: 0,
                    committed_offset: offset,
                    committed_leader_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = self
            .cluster
            .send(self.target(), &req, Duration::from_secs(10))
            .await
            .map_err(|e| format!("OffsetCommit: {e}"))?;
        let c = r
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .map_or(-1, |p| p.error_code);
        Ok(code(c))
    }

    /// Joins alone and completes the generation.
    pub(super) async fn solo(&mut self) -> Outcome<()> {
        let r = self.join(&["range"], 30_000).await?;
        let s = self.sync(&r).await?;
        expect_ok("SyncGroup", s.error_code)
    }
}

/// The error of a wire code, `None` for no error.
pub(super) fn code(c: i16) -> Code {
    Code(ErrorCode::from_code(c))
}

/// An answer's error code (`NONE` when there is none), printed by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Code(pub(super) Option<ErrorCode>);

impl Code {
    pub(super) const NONE: Code = Code(None);
    pub(super) fn is(self, e: ErrorCode) -> bool {
        self.0 == Some(e)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("NONE (0)"),
            Some(e) => write!(f, "{} ({})", e.name(), e.code()),
        }
    }
}

pub(super) fn expect_ok(what: &str, c: i16) -> Outcome<()> {
    ErrorCode::check(c).map_err(|e| format!("{what} answered {e}"))
}

pub(super) async fn topic(bootstrap: &Addr, partitions: i32) -> Outcome<(Producer, String)> {
    let p = Producer::new(bootstrap.config());
    let t = name("conf");
    p.create_topic(&t, partitions, 1)
        .await
        .map_err(|e| format!("CreateTopics: {e}"))?;
    Ok((p, t))
}

/// A one-partition topic holding `n` records, values "0", "1", ...
pub(super) async fn topic_with_records(b: &Addr, n: usize) -> Outcome<(Producer, String)> {
    let (p, t) = topic(b, 1).await?;
    let recs: Vec<ProducerRecord> = (0..n)
        .map(|i| ProducerRecord::value(format!("{i}")))
        .collect();
    p.send(&t, 0, &recs)
        .await
        .map_err(|e| format!("Produce: {e}"))?;
    Ok((p, t))
}

/// Heartbeats until the answer is not NONE or `limit` passes; returns the code and the time.
pub(super) async fn heartbeat_until_change(m: &Raw, limit: Duration) -> Outcome<(Code, Duration)> {
    let start = Instant::now();
    loop {
        let c = m.heartbeat().await?;
        if c != Code::NONE || start.elapsed() > limit {
            return Ok((c, start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Heartbeats until the group rebalances (within `limit`), then rejoins with `range`; the way
/// an established member learns that another one is joining.
pub(super) async fn rejoin_on_rebalance(
    m: Raw,
    limit: Duration,
    who: &str,
) -> Outcome<(Raw, JoinGroupResponse)> {
    rejoin_on_rebalance_with(m, &["range"], limit, who).await
}

/// [`rejoin_on_rebalance`] with these protocols.
pub(super) async fn rejoin_on_rebalance_with(
    mut m: Raw,
    protocols: &[&str],
    limit: Duration,
    who: &str,
) -> Outcome<(Raw, JoinGroupResponse)> {
    let (hb, _) = heartbeat_until_change(&m, limit).await?;
    if !hb.is(ErrorCode::RebalanceInProgress) {
        return Err(format!("{who}'s heartbeat answered {hb}"));
    }
    let r = m.join(protocols, 30_000).await?;
    Ok((m, r))
}
