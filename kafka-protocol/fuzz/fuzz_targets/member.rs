//! The members' state machines, classic and KIP-848 (the first byte chooses), fed arbitrary
//! answers: the input scripts, step by step, what the driver does (poll, let time pass, answer
//! or fail the oldest request, commit, give up revoked partitions, leave). Whatever the
//! coordinator says, a member must not panic, and it must keep its own invariants: requests it
//! sends are ones it can match, and an assignment is only ever held in a generation (or member
//! epoch) it joined.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort::member::{CommitOffset, GroupEvent, GroupMember, Member, MemberConfig, OutboundRequest, Response};
use cohort::member848::{Member848, Subscription848};
use cohort::Error;
use cohort_balancers::{Balancer, CooperativeSticky, Range, TopicInfo};
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, encode_assignment, encode_subscription,
};
use cohort_protocol::messages::{
    consumer_group_heartbeat_response, ConsumerGroupHeartbeatResponse, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, OffsetCommitResponse, SyncGroupResponse,
    consumer_protocol_assignment::TopicPartition, join_group_response::JoinGroupResponseMember,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
};
use cohort_protocol::{ApiKey, ErrorCode, Uuid};
use libfuzzer_sys::fuzz_target;

/// Reads the script.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte().unwrap_or(0)) % from.len()].clone()
    }
    fn bytes(&mut self) -> Bytes {
        let n = usize::from(self.byte().unwrap_or(0)).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Bytes::copy_from_slice(b)
    }
}

/// Error codes a coordinator answers group requests with, and one it never should.
const CODES: &[i16] = &[
    0, 0, 0, 0, // mostly success
    ErrorCode::CoordinatorNotAvailable.code(),
    ErrorCode::NotCoordinator.code(),
    ErrorCode::CoordinatorLoadInProgress.code(),
    ErrorCode::UnknownMemberId.code(),
    ErrorCode::IllegalGeneration.code(),
    ErrorCode::RebalanceInProgress.code(),
    ErrorCode::MemberIdRequired.code(),
    ErrorCode::FencedInstanceId.code(),
    ErrorCode::InconsistentGroupProtocol.code(),
    ErrorCode::GroupMaxSizeReached.code(),
    ErrorCode::UnknownTopicOrPartition.code(),
    ErrorCode::OffsetMetadataTooLarge.code(),
    ErrorCode::GroupAuthorizationFailed.code(),
    9999,
];

/// Error codes of ConsumerGroupHeartbeat (KIP-848), and one it never sends.
const CODES_848: &[i16] = &[
    0, 0, 0, 0, 0, 0, // mostly success
    ErrorCode::CoordinatorNotAvailable.code(),
    ErrorCode::NotCoordinator.code(),
    ErrorCode::CoordinatorLoadInProgress.code(),
    ErrorCode::FencedMemberEpoch.code(),
    ErrorCode::UnknownMemberId.code(),
    ErrorCode::UnreleasedInstanceId.code(),
    ErrorCode::StaleMemberEpoch.code(),
    ErrorCode::TopicAuthorizationFailed.code(),
    ErrorCode::GroupMaxSizeReached.code(),
    9999,
];

const MEMBERS: &[&str] = &["", "m-1", "m-2", "m-3"];

/// Topic ids the fake coordinator assigns from (id n is topic "t{n}"; id 3 it never names).
fn topic_id(n: u8) -> Uuid {
    let mut id = [0u8; 16];
    id[15] = n;
    Uuid(id)
}

fn assignment(s: &mut Script<'_>) -> Bytes {
    if s.byte().unwrap_or(0) % 4 == 0 {
        return s.bytes(); // whatever bytes
    }
    let topic = s.pick(&["t", "u"]);
    let partitions = (0..s.byte().unwrap_or(0) % 8).map(|_| i32::from(s.byte().unwrap_or(0) % 10) - 1).collect();
    let a = ConsumerProtocolAssignment {
        assigned_partitions: vec![TopicPartition {
            topic: topic.into(),
            partitions,
            ..Default::default()
        }],
        ..Default::default()
    };
    encode_assignment(&a, i16::from(s.byte().unwrap_or(0) % 4)).unwrap_or_default()
}

fn subscription(s: &mut Script<'_>) -> Bytes {
    if s.byte().unwrap_or(0) % 4 == 0 {
        return s.bytes();
    }
    let sub = ConsumerProtocolSubscription {
        topics: vec![s.pick(&["t", "u"]).into()].into(),
        ..Default::default()
    };
    encode_subscription(&sub, i16::from(s.byte().unwrap_or(0) % 4)).unwrap_or_default()
}

fn answer(s: &mut Script<'_>, req: &OutboundRequest) -> Result<Response, Error> {
    let code = s.pick(CODES);
    Ok(match req {
        OutboundRequest::FindCoordinator => Response::Coordinator(i32::from(s.byte().unwrap_or(0) % 3)),
        OutboundRequest::Metadata(topics) => Response::Metadata(
            topics
                .iter()
                .map(|t| TopicInfo::new(t.clone(), u32::from(s.byte().unwrap_or(0) % 9)))
                .collect(),
        ),
        OutboundRequest::JoinGroup(_) => Response::JoinGroup(JoinGroupResponse {
            error_code: code,
            generation_id: i32::from(s.byte().unwrap_or(0) % 6) - 1,
            protocol_name: Some(s.pick(&["range", "cooperative-sticky", "bogus", ""]).into()),
            leader: s.pick(MEMBERS).into(),
            member_id: s.pick(MEMBERS).into(),
            members: (0..s.byte().unwrap_or(0) % 4)
                .map(|_| JoinGroupResponseMember {
                    member_id: s.pick(MEMBERS).into(),
                    metadata: subscription(s),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        OutboundRequest::SyncGroup(_) => Response::SyncGroup(SyncGroupResponse {
            error_code: code,
            protocol_name: Some(s.pick(&["range", "cooperative-sticky", "bogus"]).into()),
            assignment: assignment(s),
            ..Default::default()
        }),
        OutboundRequest::Heartbeat(_) => Response::Heartbeat(HeartbeatResponse { error_code: code, ..Default::default() }),
        OutboundRequest::LeaveGroup(_) => Response::LeaveGroup(LeaveGroupResponse { error_code: code, ..Default::default() }),
        OutboundRequest::ConsumerGroupHeartbeat(_) => {
            let code = s.pick(CODES_848);
            let assignment = (s.byte().unwrap_or(0) % 3 == 0).then(|| consumer_group_heartbeat_response::Assignment {
                topic_partitions: (0..s.byte().unwrap_or(0) % 3)
                    .map(|_| consumer_group_heartbeat_response::TopicPartitions {
                        topic_id: topic_id(1 + s.byte().unwrap_or(0) % 3),
                        partitions: (0..s.byte().unwrap_or(0) % 6).map(|_| i32::from(s.byte().unwrap_or(0) % 8) - 1).collect(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            });
            Response::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse {
                error_code: code,
                member_id: (s.byte().unwrap_or(0) % 4 == 0).then(|| s.pick(MEMBERS).into()),
                member_epoch: i32::from(s.byte().unwrap_or(0) % 8) - 2,
                heartbeat_interval_ms: i32::from(s.byte().unwrap_or(0)) * 20 - 100,
                assignment,
                ..Default::default()
            })
        }
        OutboundRequest::TopicNames(_) => Response::TopicNames(
            (1..=2).filter(|_| s.byte().unwrap_or(0) % 4 != 0).map(|n| (topic_id(n), format!("t{n}"))).collect(),
        ),
        OutboundRequest::OffsetCommit(r) => Response::OffsetCommit(OffsetCommitResponse {
            topics: r
                .topics
                .iter()
                .map(|t| OffsetCommitResponseTopic {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| OffsetCommitResponsePartition {
                            partition_index: p.partition_index,
                            error_code: s.pick(CODES),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    })
}

fn failure(s: &mut Script<'_>, api: ApiKey) -> Error {
    match s.byte().unwrap_or(0) % 3 {
        0 => Error::Transport { broker: "b".into(), message: "connection closed".into(), cause: None },
        1 => Error::Timeout { api, broker: "b".into(), elapsed_ms: 5000 },
        _ => Error::Broker { api, code: ErrorCode::NotCoordinator, context: "fuzz".into() },
    }
}

fuzz_target!(|data: &[u8]| {
    let mut s = Script(data);
    let mut cfg = MemberConfig::new("g");
    cfg.group_instance_id = (s.byte().unwrap_or(0) % 2 == 0).then(|| "i".into());
    cfg.session_timeout = Duration::from_secs(6);
    cfg.rebalance_timeout = Duration::from_secs(10);
    cfg.heartbeat_interval = Duration::from_secs(1);
    cfg.max_poll_interval = Duration::from_secs(30);
    cfg.request_timeout = Duration::from_secs(5);
    let mut now = Instant::now();
    let mut m: Box<dyn GroupMember> = match s.byte().unwrap_or(0) % 3 {
        0 => Box::new(Member848::new(cfg, "member-848".into(), Subscription848::Topics(vec!["t1".into(), "t2".into()]), now)),
        1 => Box::new(Member::new(cfg, vec![Box::new(Range)], vec!["t".into()], now)),
        _ => Box::new(Member::new(cfg, vec![Box::new(CooperativeSticky) as Box<dyn Balancer>], vec!["t".into()], now)),
    };
    let mut inflight = std::collections::VecDeque::new();
    let mut tokens = Vec::new();
    while let Some(op) = s.byte() {
        while let Some(out) = m.poll_request() {
            inflight.push_back(out);
        }
        match op % 8 {
            0 | 1 | 2 => {
                if let Some(out) = inflight.pop_front() {
                    m.handle_response(now, out.id, answer(&mut s, &out.request));
                }
            }
            3 => {
                if let Some(out) = inflight.pop_front() {
                    let api = out.request.api();
                    m.handle_response(now, out.id, Err(failure(&mut s, api)));
                }
            }
            4 => {
                now += Duration::from_millis(u64::from(s.byte().unwrap_or(0)) * 100);
                m.handle_timeout(now);
            }
            5 => m.handle_poll(now),
            6 => {
                let owned: Vec<_> = m.assignment().iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p))).collect();
                let offsets = owned
                    .into_iter()
                    .map(|(topic, partition)| CommitOffset::new(topic, partition, 1))
                    .collect();
                m.commit(now, offsets);
            }
            _ => {
                if let Some(t) = tokens.pop() {
                    m.handle_revoked(now, t);
                } else if s.byte().unwrap_or(0) % 16 == 0 {
                    m.leave(now);
                }
            }
        }
        while let Some(e) = m.poll_event() {
            match e {
                GroupEvent::Revoked { token, .. } | GroupEvent::Lost { token, .. } => tokens.push(token),
                GroupEvent::Assigned { generation, .. } => assert!(generation >= 0, "assigned in generation {generation}"),
                _ => {}
            }
        }
    }
});
