//! A scripted fake group coordinator and a harness that drives [`Member`] state machines
//! against it with virtual time, for unit tests of the member's error paths.
//!
//! The fake follows the classic group protocol's broker states (Empty, PreparingRebalance,
//! CompletingRebalance, Stable; franz-go `kfake/groups.go` is the model): JoinGroup is held until
//! every known member has rejoined or the rebalance timeout passes, SyncGroup of followers waits
//! for the leader, heartbeats answer REBALANCE_IN_PROGRESS while a rebalance is pending, sessions
//! expire. Each test builds its own [`Sim`]: no state is shared between cases.
//!
//! Errors are scripted with [`Sim::fail_next`]: the next response of an API carries the code.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use cohort_balancers::TopicInfo;
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolAssignment, decode_subscription, encode_assignment,
};
use cohort_protocol::messages::{
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest, SyncGroupResponse,
    join_group_response, offset_commit_response,
};
use cohort_protocol::{ApiKey, ErrorCode};

use crate::member::{GroupEvent, Member, Outbound, OutboundRequest, RequestId, Response};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupState {
    Empty,
    PreparingRebalance { deadline: Instant },
    CompletingRebalance,
    Stable,
}

#[derive(Debug, Clone)]
struct FakeMember {
    instance_id: Option<String>,
    protocols: Vec<(String, bytes::Bytes)>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    /// A JoinGroup waiting for the rebalance to complete: (member index, request id).
    pending_join: Option<(usize, RequestId)>,
    pending_sync: Option<(usize, RequestId)>,
    assignment: bytes::Bytes,
    joined_generation: bool,
}

/// A response the fake will deliver to a member at a time.
#[derive(Debug)]
struct Delivery {
    member: usize,
    id: RequestId,
    at: Instant,
    result: Result<Response, crate::Error>,
}

/// The simulation: members, one fake coordinator, virtual time.
pub struct Sim {
    /// Current virtual time.
    pub now: Instant,
    /// The members, by index.
    pub members: Vec<Member>,
    /// Events each member produced, in order.
    pub events: Vec<Vec<GroupEvent>>,
    /// Every request each member sent (API only), in order.
    pub sent: Vec<Vec<ApiKey>>,
    /// The metadata of the first protocol of every JoinGroup each member sent, in order: what a
    /// coordinator compares to tell whether a rejoin changes the member's subscription.
    pub join_metadata: Vec<Vec<bytes::Bytes>>,
    /// Coordinator node id the fake answers FindCoordinator with.
    pub coordinator_id: i32,
    topics: Vec<TopicInfo>,
    state: GroupState,
    generation: i32,
    group: BTreeMap<String, FakeMember>,
    leader: Option<String>,
    protocol: Option<String>,
    next_member: u32,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined (KIP-394 "pending members").
    pending_ids: std::collections::BTreeSet<String>,
    scripted: BTreeMap<ApiKey, VecDeque<ErrorCode>>,
    pending: Vec<Delivery>,
    /// Offsets committed, by partition.
    pub committed: BTreeMap<crate::TopicPartition, i64>,
    /// Requests whose response is withheld until released (to make races).
    held: Vec<Delivery>,
    hold: BTreeMap<ApiKey, usize>,
    /// Latency of every response.
    pub latency: Duration,
    /// Whether a request unanswered past its deadline fails with [`crate::Error::Timeout`], as
    /// the driver makes it fail (off by default: tests that withhold an answer want it late).
    pub timeouts: bool,
    /// Requests not yet answered: their deadline and API, by (member, request).
    outstanding: BTreeMap<(usize, RequestId), (Instant, ApiKey)>,
}

impl Sim {
    /// A fake group with these topics.
    pub fn new(topics: Vec<TopicInfo>) -> Self {
        Self {
            now: Instant::now(),
            members: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
            join_metadata: Vec::new(),
            coordinator_id: 1,
            topics,
            state: GroupState::Empty,
            generation: 0,
            group: BTreeMap::new(),
            leader: None,
            protocol: None,
            next_member: 0,
            pending_ids: Default::default(),
            scripted: BTreeMap::new(),
            pending: Vec::new(),
            committed: BTreeMap::new(),
            held: Vec::new(),
            hold: BTreeMap::new(),
            latency: Duration::from_millis(1),
            timeouts: false,
            outstanding: BTreeMap::new(),
        }
    }

    /// Adds a member; returns its index.
    pub fn add(&mut self, m: Member) -> usize {
        self.members.push(m);
        self.events.push(Vec::new());
        self.sent.push(Vec::new());
        self.join_metadata.push(Vec::new());
        self.members.len() - 1
    }

    /// The next response of `api` (to any member) carries `code`.
    pub fn fail_next(&mut self, api: ApiKey, code: ErrorCode) {
        self.scripted.entry(api).or_default().push_back(code);
    }

    /// Withholds the next `n` responses of `api` until [`Sim::release`].
    pub fn hold(&mut self, api: ApiKey, n: usize) {
        self.hold.insert(api, n);
    }

    /// Delivers withheld responses.
    pub fn release(&mut self) {
        let now = self.now;
        for mut d in std::mem::take(&mut self.held) {
            d.at = now;
            self.pending.push(d);
        }
    }

    /// The current generation of the fake group.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// Member ids the fake knows.
    pub fn group_members(&self) -> Vec<String> {
        self.group.keys().cloned().collect()
    }

    /// Runs for `d` of virtual time in `step` increments, moving requests and responses.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        let step = Duration::from_millis(10);
        while self.now < end {
            self.tick();
            self.now += step;
        }
        self.tick();
    }

    /// Runs until `pred` holds or `limit` passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut pred: impl FnMut(&Sim) -> bool) -> bool {
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

    /// Events of member `i` since the start, drained.
    pub fn take_events(&mut self, i: usize) -> Vec<GroupEvent> {
        std::mem::take(&mut self.events[i])
    }

    fn tick(&mut self) {
        let now = self.now;
        for i in 0..self.members.len() {
            self.members[i].handle_timeout(now);
            while let Some(out) = self.members[i].poll_request() {
                self.sent[i].push(api_of(&out.request));
                self.receive(i, out);
            }
            while let Some(ev) = self.members[i].poll_event() {
                self.events[i].push(ev);
            }
        }
        self.coordinator_tick();
        let due: Vec<Delivery> = {
            let (due, rest): (Vec<Delivery>, Vec<Delivery>) = std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|d| d.at <= now);
            self.pending = rest;
            due
        };
        for d in due {
            self.outstanding.remove(&(d.member, d.id));
            self.deliver(d.member, d.id, d.result);
        }
        if self.timeouts {
            let expired: Vec<((usize, RequestId), ApiKey)> = self
                .outstanding
                .iter()
                .filter(|(_, (deadline, _))| *deadline <= now)
                .map(|(k, (_, api))| (*k, *api))
                .collect();
            for ((member, id), api) in expired {
                self.outstanding.remove(&(member, id));
                self.pending.retain(|d| (d.member, d.id) != (member, id));
                self.held.retain(|d| (d.member, d.id) != (member, id));
                let err = crate::Error::Timeout {
                    api,
                    broker: "the fake coordinator".into(),
                    elapsed_ms: 0,
                };
                self.deliver(member, id, Err(err));
            }
        }
    }

    fn deliver(&mut self, member: usize, id: RequestId, result: Result<Response, crate::Error>) {
        let now = self.now;
        self.members[member].handle_response(now, id, result);
        while let Some(out) = self.members[member].poll_request() {
            self.sent[member].push(api_of(&out.request));
            self.receive(member, out);
        }
        while let Some(ev) = self.members[member].poll_event() {
            self.events[member].push(ev);
        }
    }

    fn reply(
        &mut self,
        member: usize,
        id: RequestId,
        api: ApiKey,
        result: Result<Response, crate::Error>,
    ) {
        let d = Delivery {
            member,
            id,
            at: self.now + self.latency,
            result,
        };
        if let Some(n) = self.hold.get_mut(&api)
            && *n > 0
        {
            *n -= 1;
            self.held.push(d);
            return;
        }
        self.pending.push(d);
    }

    fn scripted(&mut self, api: ApiKey) -> Option<ErrorCode> {
        self.scripted.get_mut(&api).and_then(VecDeque::pop_front)
    }

    fn receive(&mut self, member: usize, out: Outbound) {
        let api = api_of(&out.request);
        self.outstanding
            .insert((member, out.id), (self.now + out.deadline, api));
        match out.request {
            OutboundRequest::FindCoordinator => {
                let r = Ok(Response::Coordinator(self.coordinator_id));
                self.reply(member, out.id, api, r);
            }
            OutboundRequest::Metadata(topics) => {
                let infos = self
                    .topics
                    .iter()
                    .filter(|t| topics.iter().any(|x| x == t.name.as_str()))
                    .cloned()
                    .collect();
                self.reply(member, out.id, api, Ok(Response::Metadata(infos)));
            }
            OutboundRequest::JoinGroup(req) => {
                if let Some(p) = req.protocols.first() {
                    self.join_metadata[member].push(p.metadata.clone());
                }
                if out.coordinator != Some(self.coordinator_id) {
                    let r = JoinGroupResponse {
                        error_code: ErrorCode::NotCoordinator.code(),
                        ..Default::default()
                    };
                    self.reply(member, out.id, api, Ok(Response::JoinGroup(r)));
                    return;
                }
                self.join(member, out.id, req);
            }
            OutboundRequest::SyncGroup(req) => self.sync(member, out.id, out.coordinator, req),
            OutboundRequest::Heartbeat(req) => {
                let code = self.scripted(api).map(|c| c.code()).unwrap_or_else(|| {
                    if out.coordinator != Some(self.coordinator_id) {
                        return ErrorCode::NotCoordinator.code();
                    }
                    match self.group.get_mut(req.member_id.as_str()) {
                        None => ErrorCode::UnknownMemberId.code(),
                        Some(m) => {
                            m.last_seen = self.now;
                            if req.generation_id != self.generation {
                                ErrorCode::IllegalGeneration.code()
                            } else if matches!(self.state, GroupState::PreparingRebalance { .. }) {
                                ErrorCode::RebalanceInProgress.code()
                            } else {
                                0
                            }
                        }
                    }
                });
                let r = HeartbeatResponse {
                    error_code: code,
                    ..Default::default()
                };
                self.reply(member, out.id, api, Ok(Response::Heartbeat(r)));
            }
            OutboundRequest::LeaveGroup(req) => {
                for m in &req.members {
                    self.group.remove(m.member_id.as_str());
                }
                if !req.member_id.is_empty() {
                    self.group.remove(req.member_id.as_str());
                }
                self.start_rebalance();
                self.reply(
                    member,
                    out.id,
                    api,
                    Ok(Response::LeaveGroup(LeaveGroupResponse::default())),
                );
            }
            OutboundRequest::OffsetCommit(req) => self.commit(member, out.id, req),
            // The classic fake serves no KIP-848 API (`testing848` does).
            OutboundRequest::ConsumerGroupHeartbeat(_) | OutboundRequest::TopicNames(_) => {
                let r = Err(crate::Error::UnsupportedVersion {
                    api,
                    broker_min: -1,
                    broker_max: -1,
                    client_min: 0,
                    client_max: 1,
                });
                self.reply(member, out.id, api, r);
            }
        }
    }

    fn start_rebalance(&mut self) {
        if self.group.is_empty() {
            self.state = GroupState::Empty;
            return;
        }
        if !matches!(self.state, GroupState::PreparingRebalance { .. }) {
            let timeout = self
                .group
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(Duration::from_secs(5));
            self.state = GroupState::PreparingRebalance {
                deadline: self.now + timeout,
            };
            for m in self.group.values_mut() {
                m.joined_generation = false;
            }
        }
    }

    fn join(&mut self, member: usize, id: RequestId, req: JoinGroupRequest) {
        if let Some(code) = self.scripted(ApiKey::JoinGroup) {
            let r = JoinGroupResponse {
                error_code: code.code(),
                member_id: if code == ErrorCode::MemberIdRequired {
                    let id = self.new_member_id();
                    self.pending_ids.insert(id.clone());
                    id
                } else {
                    req.member_id.to_string()
                }
                .into(),
                ..Default::default()
            };
            self.reply(member, id, ApiKey::JoinGroup, Ok(Response::JoinGroup(r)));
            return;
        }
        let mut member_id = req.member_id.to_string();
        if member_id.is_empty() {
            // KIP-394: hand out the id first (dynamic members; static ones get one directly).
            member_id = self.new_member_id();
            if req.group_instance_id.is_none() {
                self.pending_ids.insert(member_id.clone());
                let r = JoinGroupResponse {
                    error_code: ErrorCode::MemberIdRequired.code(),
                    member_id: member_id.into(),
                    ..Default::default()
                };
                self.reply(member, id, ApiKey::JoinGroup, Ok(Response::JoinGroup(r)));
                return;
            }
        } else if !self.group.contains_key(&member_id)
            && !self.pending_ids.remove(&member_id)
            && req.group_instance_id.is_none()
        {
            let r = JoinGroupResponse {
                error_code: ErrorCode::UnknownMemberId.code(),
                ..Default::default()
            };
            self.reply(member, id, ApiKey::JoinGroup, Ok(Response::JoinGroup(r)));
            return;
        }
        let protocols = req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect();
        let entry = self.group.entry(member_id.clone()).or_insert(FakeMember {
            instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
            protocols: Vec::new(),
            session_timeout: Duration::from_millis(req.session_timeout_ms as u64),
            rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64),
            last_seen: self.now,
            pending_join: None,
            pending_sync: None,
            assignment: bytes::Bytes::new(),
            joined_generation: false,
        });
        entry.protocols = protocols;
        entry.pending_join = Some((member, id));
        entry.last_seen = self.now;
        entry.joined_generation = true;
        self.start_rebalance();
        self.maybe_complete_join();
    }

    fn new_member_id(&mut self) -> String {
        self.next_member += 1;
        format!("member-{}", self.next_member)
    }

    fn maybe_complete_join(&mut self) {
        let GroupState::PreparingRebalance { deadline } = self.state else {
            return;
        };
        let all_joined = self.group.values().all(|m| m.pending_join.is_some());
        if !all_joined && self.now < deadline {
            return;
        }
        // Members that did not rejoin in time are removed.
        self.group.retain(|_, m| m.pending_join.is_some());
        if self.group.is_empty() {
            self.state = GroupState::Empty;
            return;
        }
        self.generation += 1;
        // Protocol vote: the first protocol (in the first member's order) every member supports.
        let first = self
            .group
            .values()
            .next()
            .map(|m| m.protocols.clone())
            .unwrap_or_default();
        self.protocol = first.iter().map(|(n, _)| n.clone()).find(|n| {
            self.group
                .values()
                .all(|m| m.protocols.iter().any(|(x, _)| x == n))
        });
        let Some(protocol) = self.protocol.clone() else {
            for (_, m) in self.group.iter_mut() {
                if let Some((idx, id)) = m.pending_join.take() {
                    self.pending.push(Delivery {
                        member: idx,
                        id,
                        at: self.now,
                        result: Ok(Response::JoinGroup(JoinGroupResponse {
                            error_code: ErrorCode::InconsistentGroupProtocol.code(),
                            ..Default::default()
                        })),
                    });
                }
            }
            return;
        };
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.group.contains_key(l))
        {
            self.leader = self.group.keys().next().cloned();
        }
        let leader = self.leader.clone().unwrap_or_default();
        let members: Vec<join_group_response::JoinGroupResponseMember> = self
            .group
            .iter()
            .map(|(id, m)| join_group_response::JoinGroupResponseMember {
                member_id: id.clone().into(),
                group_instance_id: m.instance_id.clone().map(Into::into),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
                ..Default::default()
            })
            .collect();
        let generation = self.generation;
        let mut replies = Vec::new();
        for (id, m) in self.group.iter_mut() {
            if let Some((idx, rid)) = m.pending_join.take() {
                let r = JoinGroupResponse {
                    generation_id: generation,
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some(protocol.clone().into()),
                    leader: leader.clone().into(),
                    member_id: id.clone().into(),
                    members: if *id == leader {
                        members.clone()
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                };
                replies.push((idx, rid, r));
            }
        }
        for (idx, rid, r) in replies {
            self.reply(idx, rid, ApiKey::JoinGroup, Ok(Response::JoinGroup(r)));
        }
        self.state = GroupState::CompletingRebalance;
    }

    fn sync(
        &mut self,
        member: usize,
        id: RequestId,
        coordinator: Option<i32>,
        req: SyncGroupRequest,
    ) {
        if let Some(code) = self.scripted(ApiKey::SyncGroup) {
            let r = SyncGroupResponse {
                error_code: code.code(),
                ..Default::default()
            };
            self.reply(member, id, ApiKey::SyncGroup, Ok(Response::SyncGroup(r)));
            return;
        }
        let code = if coordinator != Some(self.coordinator_id) {
            Some(ErrorCode::NotCoordinator)
        } else if !self.group.contains_key(req.member_id.as_str()) {
            Some(ErrorCode::UnknownMemberId)
        } else if req.generation_id != self.generation {
            Some(ErrorCode::IllegalGeneration)
        } else if matches!(self.state, GroupState::PreparingRebalance { .. }) {
            Some(ErrorCode::RebalanceInProgress)
        } else {
            None
        };
        if let Some(code) = code {
            let r = SyncGroupResponse {
                error_code: code.code(),
                ..Default::default()
            };
            self.reply(member, id, ApiKey::SyncGroup, Ok(Response::SyncGroup(r)));
            return;
        }
        if let Some(m) = self.group.get_mut(req.member_id.as_str()) {
            m.pending_sync = Some((member, id));
            m.last_seen = self.now;
        }
        if Some(req.member_id.as_str()) == self.leader.as_deref() {
            for a in &req.assignments {
                if let Some(m) = self.group.get_mut(a.member_id.as_str()) {
                    m.assignment = a.assignment.clone();
                }
            }
            self.state = GroupState::Stable;
        }
        if self.state == GroupState::Stable {
            let mut replies = Vec::new();
            for m in self.group.values_mut() {
                if let Some((idx, rid)) = m.pending_sync.take() {
                    let assignment = if m.assignment.is_empty() {
                        encode_assignment(&ConsumerProtocolAssignment::default(), 0)
                            .unwrap_or_default()
                    } else {
                        m.assignment.clone()
                    };
                    replies.push((idx, rid, assignment));
                }
            }
            for (idx, rid, assignment) in replies {
                let r = SyncGroupResponse {
                    protocol_type: Some("consumer".into()),
                    protocol_name: self.protocol.clone().map(Into::into),
                    assignment,
                    ..Default::default()
                };
                self.reply(idx, rid, ApiKey::SyncGroup, Ok(Response::SyncGroup(r)));
            }
        }
    }

    fn commit(&mut self, member: usize, id: RequestId, req: OffsetCommitRequest) {
        let code = self.scripted(ApiKey::OffsetCommit).or_else(|| {
            if !self.group.contains_key(req.member_id.as_str()) {
                Some(ErrorCode::UnknownMemberId)
            } else if matches!(
                self.state,
                GroupState::PreparingRebalance { .. } | GroupState::CompletingRebalance
            ) {
                Some(ErrorCode::RebalanceInProgress)
            } else if req.generation_id_or_member_epoch != self.generation {
                Some(ErrorCode::IllegalGeneration)
            } else {
                None
            }
        });
        let mut topics = Vec::new();
        for t in &req.topics {
            let mut parts = Vec::new();
            for p in &t.partitions {
                if code.is_none() {
                    self.committed.insert(
                        crate::TopicPartition::new(t.name.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
                parts.push(offset_commit_response::OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: code.map_or(0, |c| c.code()),
                    ..Default::default()
                });
            }
            topics.push(offset_commit_response::OffsetCommitResponseTopic {
                name: t.name.clone(),
                partitions: parts,
                ..Default::default()
            });
        }
        let r = OffsetCommitResponse {
            topics,
            ..Default::default()
        };
        self.reply(
            member,
            id,
            ApiKey::OffsetCommit,
            Ok(Response::OffsetCommit(r)),
        );
    }

    fn coordinator_tick(&mut self) {
        // Session expiry: members not heard of within their session timeout are removed.
        let now = self.now;
        let before = self.group.len();
        self.group.retain(|_, m| {
            now.saturating_duration_since(m.last_seen) <= m.session_timeout
                || m.pending_join.is_some()
        });
        if self.group.len() != before {
            self.start_rebalance();
        }
        self.maybe_complete_join();
    }

    /// Subscriptions the leader would see, for assertions.
    pub fn subscriptions(&self) -> BTreeMap<String, Vec<String>> {
        self.group
            .iter()
            .map(|(id, m)| {
                let topics = m
                    .protocols
                    .first()
                    .and_then(|(_, b)| decode_subscription(b.clone()).ok())
                    .map(|(_, s)| s.topics.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                (id.clone(), topics)
            })
            .collect()
    }
}

fn api_of(r: &OutboundRequest) -> ApiKey {
    r.api()
}
