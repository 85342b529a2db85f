//! A scripted fake KIP-848 group coordinator and a harness that drives
//! [`Member848`] state machines against it with virtual time, for unit tests of the member's
//! reconciliation and error paths ([`Sim`](crate::testing::Sim) is its classic counterpart).
//!
//! The fake keeps what the broker's `GroupMetadataManager` keeps for a consumer group, at the
//! scale a unit test needs: a group epoch bumped when members or subscriptions change, a
//! target assignment (partitions spread over the members in member-id order, the `uniform`
//! assignor's result for one topic), and per member an epoch and the partitions it reported
//! owning. A member is given only target partitions no other member still owns: the broker
//! withholds a partition until its previous owner released it, and a test checks the member
//! never owns what another does. Sessions expire; a member that heartbeats with a stale epoch
//! is fenced.
//!
//! Errors are scripted with [`Sim848::fail_next`]. Each test builds its own [`Sim848`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cohort_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, OffsetCommitRequest,
    OffsetCommitResponse, consumer_group_heartbeat_response, offset_commit_response,
};
use cohort_protocol::{ApiKey, ErrorCode, Uuid};

use crate::member::{GroupEvent, OutboundRequest, RequestId, Response};
use crate::member848::Member848;

#[derive(Debug, Clone, Default)]
struct FakeMember {
    epoch: i32,
    topics: Vec<String>,
    /// What the member last reported owning.
    owned: BTreeSet<(Uuid, i32)>,
    /// Its share of the target assignment.
    target: BTreeSet<(Uuid, i32)>,
    /// The assignment last sent to it.
    sent: Option<BTreeSet<(Uuid, i32)>>,
    last_seen: Option<Instant>,
}

/// The simulation: KIP-848 members, one fake coordinator, virtual time.
pub struct Sim848 {
    /// Virtual now.
    pub now: Instant,
    /// The members.
    pub members: Vec<Member848>,
    /// Events each member emitted, in order.
    pub events: Vec<Vec<GroupEvent>>,
    /// ConsumerGroupHeartbeat requests each member sent, in order.
    pub heartbeats: Vec<Vec<ConsumerGroupHeartbeatRequest>>,
    /// APIs each member sent, in order.
    pub sent: Vec<Vec<ApiKey>>,
    /// The coordinator's broker id (change it to move the coordinator: requests that went to
    /// the old one are answered NOT_COORDINATOR).
    pub coordinator_id: i32,
    /// The heartbeat interval the coordinator hands out.
    pub heartbeat_interval: Duration,
    /// The session timeout the coordinator applies.
    pub session_timeout: Duration,
    /// Offsets committed, by partition.
    pub committed: BTreeMap<crate::TopicPartition, i64>,
    topics: Vec<(String, Uuid, i32)>,
    group_epoch: i32,
    group: BTreeMap<String, FakeMember>,
    scripted: BTreeMap<ApiKey, Vec<ErrorCode>>,
    pending: Vec<(usize, RequestId, Instant, Result<Response, crate::Error>)>,
}

impl Sim848 {
    /// A fake coordinator serving these topics (name, partitions).
    pub fn new(topics: &[(&str, i32)]) -> Self {
        Self {
            now: Instant::now(),
            members: Vec::new(),
            events: Vec::new(),
            heartbeats: Vec::new(),
            sent: Vec::new(),
            coordinator_id: 1,
            heartbeat_interval: Duration::from_millis(500),
            session_timeout: Duration::from_secs(45),
            committed: BTreeMap::new(),
            topics: topics
                .iter()
                .enumerate()
                .map(|(i, (n, p))| {
                    let mut id = [0u8; 16];
                    id[15] = i as u8 + 1;
                    ((*n).to_owned(), Uuid(id), *p)
                })
                .collect(),
            group_epoch: 0,
            group: BTreeMap::new(),
            scripted: BTreeMap::new(),
            pending: Vec::new(),
        }
    }

    /// Adds a member; returns its index.
    pub fn add(&mut self, m: Member848) -> usize {
        self.members.push(m);
        self.events.push(Vec::new());
        self.heartbeats.push(Vec::new());
        self.sent.push(Vec::new());
        self.members.len() - 1
    }

    /// The next response of `api` carries `code`.
    pub fn fail_next(&mut self, api: ApiKey, code: ErrorCode) {
        self.scripted.entry(api).or_default().push(code);
    }

    /// The group epoch.
    pub fn group_epoch(&self) -> i32 {
        self.group_epoch
    }

    /// Member ids the coordinator counts in the group.
    pub fn group_members(&self) -> Vec<String> {
        self.group.keys().cloned().collect()
    }

    /// Runs for `d` of virtual time.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.tick();
            self.now += Duration::from_millis(10);
        }
        self.tick();
    }

    /// Runs until `pred` holds or `limit` passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut pred: impl FnMut(&Sim848) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.tick();
            if pred(self) {
                return true;
            }
            self.now += Duration::from_millis(10);
        }
        self.tick();
        pred(self)
    }

    fn tick(&mut self) {
        let now = self.now;
        for i in 0..self.members.len() {
            self.members[i].handle_timeout(now);
            self.drain(i);
        }
        self.expire_sessions();
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(_, _, at, _)| *at <= now);
        self.pending = rest;
        for (i, id, _, result) in due {
            self.members[i].handle_response(now, id, result);
            self.drain(i);
        }
    }

    fn drain(&mut self, i: usize) {
        while let Some(out) = self.members[i].poll_request() {
            self.sent[i].push(out.request.api());
            let answer = self.receive(i, out.coordinator, out.request);
            self.pending
                .push((i, out.id, self.now + Duration::from_millis(1), answer));
        }
        while let Some(ev) = self.members[i].poll_event() {
            self.events[i].push(ev);
        }
    }

    fn scripted(&mut self, api: ApiKey) -> Option<ErrorCode> {
        let codes = self.scripted.get_mut(&api)?;
        (!codes.is_empty()).then(|| codes.remove(0))
    }

    fn receive(
        &mut self,
        i: usize,
        coordinator: Option<i32>,
        request: OutboundRequest,
    ) -> Result<Response, crate::Error> {
        let moved = coordinator != Some(self.coordinator_id);
        Ok(match request {
            OutboundRequest::FindCoordinator => Response::Coordinator(self.coordinator_id),
            OutboundRequest::TopicNames(_) => Response::TopicNames(
                self.topics
                    .iter()
                    .map(|(n, id, _)| (*id, n.clone()))
                    .collect(),
            ),
            OutboundRequest::ConsumerGroupHeartbeat(req) => {
                self.heartbeats[i].push(req.clone());
                let code = if moved {
                    Some(ErrorCode::NotCoordinator)
                } else {
                    self.scripted(ApiKey::ConsumerGroupHeartbeat)
                };
                Response::ConsumerGroupHeartbeat(match code {
                    Some(code) => ConsumerGroupHeartbeatResponse {
                        error_code: code.code(),
                        member_epoch: -1,
                        ..Default::default()
                    },
                    None => self.heartbeat(req),
                })
            }
            OutboundRequest::OffsetCommit(req) => {
                let code = if moved {
                    Some(ErrorCode::NotCoordinator)
                } else {
                    self.scripted(ApiKey::OffsetCommit)
                };
                Response::OffsetCommit(self.commit(req, code))
            }
            other => {
                return Err(crate::Error::UnsupportedVersion {
                    api: other.api(),
                    broker_min: -1,
                    broker_max: -1,
                    client_min: 0,
                    client_max: 0,
                });
            }
        })
    }

    fn heartbeat(&mut self, req: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
        let id = req.member_id.to_string();
        let error = |code: ErrorCode| ConsumerGroupHeartbeatResponse {
            error_code: code.code(),
            member_epoch: -1,
            ..Default::default()
        };
        match req.member_epoch {
            // Leave: the member and its partitions are gone (-2, a static member's pause,
            // keeps the assignment in Kafka; the fake treats it alike, which tests of the
            // member's side need no more than).
            -1 | -2 => {
                if self.group.remove(&id).is_some() {
                    self.group_epoch += 1;
                    self.assign();
                }
                return ConsumerGroupHeartbeatResponse {
                    member_id: Some(id.into()),
                    member_epoch: req.member_epoch,
                    ..Default::default()
                };
            }
            0 => {
                let m = self.group.entry(id.clone()).or_default();
                m.epoch = 0;
                m.owned.clear();
                m.sent = None;
                self.group_epoch += 1;
            }
            epoch => match self.group.get(&id) {
                None => return error(ErrorCode::UnknownMemberId),
                Some(m) if m.epoch != epoch => return error(ErrorCode::FencedMemberEpoch),
                Some(_) => {}
            },
        }
        let now = self.now;
        let Some(m) = self.group.get_mut(&id) else {
            return error(ErrorCode::UnknownMemberId);
        };
        m.last_seen = Some(now);
        if let Some(ts) = &req.subscribed_topic_names {
            let ts: Vec<String> = ts.iter().map(ToString::to_string).collect();
            if ts != m.topics {
                m.topics = ts;
                self.group_epoch += 1;
            }
        }
        if let Some(tps) = &req.topic_partitions {
            m.owned = tps
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
                .collect();
        }
        self.assign();
        let others: BTreeSet<(Uuid, i32)> = self
            .group
            .iter()
            .filter(|(k, _)| **k != id)
            .flat_map(|(_, o)| o.owned.iter().copied())
            .collect();
        let group_epoch = self.group_epoch;
        let Some(m) = self.group.get_mut(&id) else {
            return error(ErrorCode::UnknownMemberId);
        };
        // What the member may own now: its target, less what another still owns.
        let give: BTreeSet<(Uuid, i32)> = m.target.difference(&others).copied().collect();
        // The member reaches the group epoch when it joins and once it gave up everything
        // outside its target; until then it keeps its epoch (Kafka's UNREVOKED_PARTITIONS).
        if m.epoch == 0 || m.owned.is_subset(&m.target) {
            m.epoch = group_epoch;
        }
        let assignment = (m.sent.as_ref() != Some(&give)).then(|| {
            m.sent = Some(give.clone());
            let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            for (t, p) in &give {
                by_topic.entry(*t).or_default().push(*p);
            }
            consumer_group_heartbeat_response::Assignment {
                topic_partitions: by_topic
                    .into_iter()
                    .map(|(topic_id, partitions)| {
                        consumer_group_heartbeat_response::TopicPartitions {
                            topic_id,
                            partitions,
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            }
        });
        ConsumerGroupHeartbeatResponse {
            member_id: Some(id.into()),
            member_epoch: m.epoch,
            heartbeat_interval_ms: self.heartbeat_interval.as_millis() as i32,
            assignment,
            ..Default::default()
        }
    }

    /// The target assignment: each subscribed topic's partitions spread over its subscribers
    /// in member-id order.
    fn assign(&mut self) {
        for m in self.group.values_mut() {
            m.target.clear();
        }
        for (name, id, n) in &self.topics {
            let subscribers: Vec<String> = self
                .group
                .iter()
                .filter(|(_, m)| m.topics.contains(name))
                .map(|(k, _)| k.clone())
                .collect();
            if subscribers.is_empty() {
                continue;
            }
            for p in 0..*n {
                let owner = &subscribers[p as usize % subscribers.len()];
                if let Some(m) = self.group.get_mut(owner) {
                    m.target.insert((*id, p));
                }
            }
        }
    }

    fn expire_sessions(&mut self) {
        let now = self.now;
        let timeout = self.session_timeout;
        let before = self.group.len();
        self.group
            .retain(|_, m| m.last_seen.is_none_or(|t| now.duration_since(t) <= timeout));
        if self.group.len() != before {
            self.group_epoch += 1;
            self.assign();
        }
    }

    fn commit(
        &mut self,
        req: OffsetCommitRequest,
        code: Option<ErrorCode>,
    ) -> OffsetCommitResponse {
        let id = req.member_id.to_string();
        let code = code.or_else(|| match self.group.get(&id) {
            None => Some(ErrorCode::UnknownMemberId),
            Some(m) if m.epoch != req.generation_id_or_member_epoch => {
                Some(ErrorCode::StaleMemberEpoch)
            }
            Some(_) => None,
        });
        let topics = req
            .topics
            .iter()
            .map(|t| offset_commit_response::OffsetCommitResponseTopic {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| {
                        if code.is_none() {
                            self.committed.insert(
                                crate::TopicPartition::new(t.name.to_string(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                        offset_commit_response::OffsetCommitResponsePartition {
                            partition_index: p.partition_index,
                            error_code: code.map_or(0, |c| c.code()),
                            ..Default::default()
                        }
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        OffsetCommitResponse {
            topics,
            ..Default::default()
        }
    }
}
