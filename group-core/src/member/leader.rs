//! The leader's work: the subscription each member sends, and the plan the leader computes
//! from everyone's subscriptions and sends back in SyncGroup.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cohort_balancers::{
    Balancer, GroupMember, MemberState as BalancerMemberState, Plan, TopicInfo,
};
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolSubscription, OwnedTopicPartitions, SubscriptionDecoder,
};
use cohort_protocol::messages::{JoinGroupResponse, sync_group_request};
use cohort_protocol::{EncodeError, ErrorCode, StrBytes};

use super::Member;
use super::state::State;
use super::types::{Assignment, OutboundRequest, RequestId, Response};
use crate::error::Error;

/// The group's metadata asked for when a member that led the last generation sends its
/// JoinGroup, so that, led again, it assigns the moment the JoinGroup is answered. The broker
/// answers the JoinGroup only once every member has rejoined, which takes longer than a
/// Metadata round trip; asking after the answer put that round trip (and, on a busy broker,
/// a few ms) between the last member's rejoin and every member's SyncGroup answer. A
/// coordinator keeps the leader of the last generation when it rejoins (Kafka's
/// `ClassicGroup`), so the prefetch is rarely wasted. The metadata is as fresh as the
/// rebalance: asked for when it began, not older than `max_age` when used, and any topic it
/// does not cover is asked for as before.
#[derive(Debug, Default)]
pub(super) enum Prefetch {
    #[default]
    None,
    Asked {
        id: RequestId,
        topics: BTreeSet<String>,
        at: Instant,
        /// The topics the plan needs, once the JoinGroup answer is waiting for this one.
        waiting: Option<Vec<String>>,
    },
    Answered {
        topics: BTreeSet<String>,
        infos: Vec<TopicInfo>,
        at: Instant,
    },
}

impl Prefetch {
    pub(super) fn asked_by(&self, request: RequestId) -> bool {
        matches!(self, Prefetch::Asked { id, .. } if *id == request)
    }
}

/// Only these topics' infos, for a plan that needs exactly them (as a request for them gives).
fn only(infos: Vec<TopicInfo>, needed: &[String]) -> Vec<TopicInfo> {
    infos
        .into_iter()
        .filter(|t| needed.iter().any(|n| n.as_str() == t.name.as_str()))
        .collect()
}

impl Member {
    /// How old prefetched metadata may be. Every member hears of a rebalance within a heartbeat
    /// interval of the others (they heartbeat that often), so a join that outlasts two is
    /// waiting for a slow member, and what was asked for at its start is asked for again.
    fn prefetch_max_age(&self) -> Duration {
        self.cfg.heartbeat_interval * 2
    }

    /// Beside a JoinGroup: asks for the group's topics (those of the last plan and the
    /// member's own) if this member led the last generation.
    pub(super) fn prefetch_metadata(&mut self, now: Instant) {
        self.prefetch = Prefetch::None;
        if !self.membership.is_leader() || self.assigned_counts.is_empty() {
            return;
        }
        let topics: BTreeSet<String> = self
            .assigned_counts
            .keys()
            .chain(&self.topics)
            .cloned()
            .collect();
        let id = self.next_request;
        self.send(
            now,
            OutboundRequest::Metadata(topics.iter().cloned().collect()),
            self.cfg.request_timeout,
            None,
        );
        if let Some(sent) = self.inflight.get_mut(&id) {
            sent.prefetch = true;
        }
        self.prefetch = Prefetch::Asked {
            id,
            topics,
            at: now,
            waiting: None,
        };
    }

    /// The prefetch's answer: kept for the JoinGroup answer, or used at once if that came first
    /// and is waiting. A failed prefetch changes nothing but that the plan asks again.
    pub(super) fn on_prefetch(&mut self, now: Instant, result: Result<Response, Error>) {
        let Prefetch::Asked {
            topics,
            at,
            waiting,
            ..
        } = std::mem::take(&mut self.prefetch)
        else {
            return;
        };
        let assigning = matches!(self.state, State::Assigning { .. });
        match (result, waiting) {
            (Ok(Response::Metadata(infos)), None) => {
                self.prefetch = Prefetch::Answered { topics, infos, at };
            }
            (Ok(Response::Metadata(infos)), Some(needed)) if assigning => {
                self.on_metadata(now, only(infos, &needed));
            }
            (_, Some(needed)) if assigning => {
                self.send(
                    now,
                    OutboundRequest::Metadata(needed),
                    self.cfg.request_timeout,
                    None,
                );
            }
            _ => {}
        }
    }

    /// The leader has its JoinGroup answer: ask for the metadata of every topic the group
    /// subscribes to (not only its own, Java `ConsumerCoordinator.onLeaderElected`).
    pub(super) fn start_assigning(&mut self, now: Instant, join: JoinGroupResponse) {
        let members: Vec<(StrBytes, Option<StrBytes>, Bytes)> = join
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.clone(),
                    m.group_instance_id.clone(),
                    m.metadata.clone(),
                )
            })
            .collect();
        let decoded = decode_members(&members);
        let mut topics: BTreeSet<String> = self.topics.iter().cloned().collect();
        let mut last: Option<&[StrBytes]> = None;
        for m in &decoded.members {
            // Members sharing the last one's list (the decoder shares a repeated one) add
            // nothing: a large group's million names are not each copied into the set.
            let list = &m.subscription.topics[..];
            if last.is_some_and(|l| std::ptr::eq(l, list)) {
                continue;
            }
            topics.extend(list.iter().map(|t| t.to_string()));
            last = Some(list);
        }
        self.state = State::Assigning {
            join: Box::new(join),
            decoded,
        };
        let needed: Vec<String> = topics.into_iter().collect();
        let max_age = self.prefetch_max_age();
        let fresh = |have: &BTreeSet<String>, at: Instant| {
            now.saturating_duration_since(at) <= max_age && needed.iter().all(|t| have.contains(t))
        };
        match std::mem::take(&mut self.prefetch) {
            Prefetch::Answered { topics, infos, at } if fresh(&topics, at) => {
                self.on_metadata(now, only(infos, &needed));
            }
            Prefetch::Asked { id, topics, at, .. } if fresh(&topics, at) => {
                self.prefetch = Prefetch::Asked {
                    id,
                    topics,
                    at,
                    waiting: Some(needed),
                };
            }
            _ => self.send(
                now,
                OutboundRequest::Metadata(needed),
                self.cfg.request_timeout,
                None,
            ),
        }
    }

    /// The metadata for the plan arrived: run the balancer and send SyncGroup.
    pub(super) fn on_metadata(&mut self, now: Instant, topics: Vec<TopicInfo>) {
        // The answer may come after the member moved on (it is leaving, it dropped out of the
        // generation): then it is not the leader's any more, and the state stays as it is.
        let (join, decoded) = match std::mem::replace(&mut self.state, State::Syncing) {
            State::Assigning { join, decoded } => (join, decoded),
            other => {
                self.state = other;
                return;
            }
        };
        let protocol = join
            .protocol_name
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let Some(balancer) = self
            .balancers
            .iter()
            .find(|b| b.protocol_name() == protocol)
        else {
            self.fail(Error::Fatal {
                code: ErrorCode::InconsistentGroupProtocol,
                context: format!(
                    "the coordinator chose protocol {protocol:?}, which this member does not run"
                ),
            });
            return;
        };
        let led = match lead_decoded(balancer.as_ref(), decoded, &topics) {
            Ok(l) => l,
            Err(e) => {
                self.fail(e);
                return;
            }
        };
        for w in &led.warnings {
            tracing::warn!(group = %self.cfg.group_id, "{w}");
        }
        self.assigned_counts = topics
            .iter()
            .map(|t| (t.name.to_string(), t.partitions))
            .collect();
        let assignments = led
            .assignments
            .into_iter()
            .map(
                |(member_id, assignment)| sync_group_request::SyncGroupRequestAssignment {
                    member_id,
                    assignment,
                    ..Default::default()
                },
            )
            .collect();
        self.send_sync(now, assignments, &protocol);
    }
}

/// The subscription a member sends in JoinGroup for one balancer: its topics, the balancer's
/// userdata, and (for members running the cooperative protocol, `owned` is `Some`) the
/// partitions it owns (KIP-429), its generation (KIP-792) and its rack (KIP-881).
pub fn subscription(
    balancer: &dyn Balancer,
    topics: &[String],
    owned: Option<&Assignment>,
    generation: i32,
    rack: Option<&str>,
) -> ConsumerProtocolSubscription {
    let owned: Vec<OwnedTopicPartitions> = owned
        .map(|o| {
            o.iter()
                .map(|(t, ps)| OwnedTopicPartitions {
                    topic: t.clone().into(),
                    partitions: ps.iter().copied().collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    let topics: Vec<StrBytes> = topics.iter().map(|t| StrBytes::from(t.clone())).collect();
    let user_data = balancer.user_data(&BalancerMemberState {
        topics: &topics,
        owned: &owned,
        generation,
        rack,
    });
    ConsumerProtocolSubscription {
        topics: topics.into(),
        user_data,
        owned_partitions: owned,
        generation_id: generation,
        rack_id: rack.map(|r| r.to_owned().into()),
    }
}

/// What the leader sends in SyncGroup, with the plan it came from.
#[derive(Debug)]
pub struct Led {
    /// The plan, members in input order.
    pub plan: cohort_balancers::Plan,
    /// Encoded assignment per member id.
    pub assignments: Vec<(StrBytes, Bytes)>,
    /// What was ignored: unreadable subscriptions, unknown topics, invalid claims.
    pub warnings: Vec<String>,
}

/// Every member's subscription as the balancer reads it, with what could not be read.
#[derive(Debug, Clone, Default)]
pub struct Decoded {
    /// The members in JoinGroup order; an unreadable subscription subscribes to nothing.
    pub members: Vec<GroupMember>,
    /// One line per unreadable subscription.
    pub warnings: Vec<String>,
    /// Members per thread when decoded on several (0: on one); they are freed by the same
    /// parts.
    chunk: usize,
}

/// JoinGroup metadata of this many bytes or more is decoded on several threads.
const PARALLEL_DECODE_BYTES: usize = 1 << 20;

/// A part of the group's metadata in a buffer of its own. The decoded names are slices of the
/// buffer they are read from, each taking a reference on it: metadata sliced from one
/// JoinGroup response shares one reference count, and threads taking and dropping a million
/// references on it made the leader step half as slow again (cache-line contention). A copy is
/// a millisecond for megabytes.
fn own_copy(
    part: &[(StrBytes, Option<StrBytes>, Bytes)],
) -> Vec<(StrBytes, Option<StrBytes>, Bytes)> {
    let mut buf = Vec::with_capacity(part.iter().map(|(_, _, m)| m.len()).sum());
    for (_, _, m) in part {
        buf.extend_from_slice(m);
    }
    let buf = Bytes::from(buf);
    let mut at = 0;
    part.iter()
        .map(|(id, instance, m)| {
            let own = buf.slice(at..at + m.len());
            at += m.len();
            (id.clone(), instance.clone(), own)
        })
        .collect()
}

/// Threads the leader step may use (at most 4).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Frees the decoded subscriptions, a million topic names and owned lists for a large group (a
/// sixth of its second round, while the group waits for SyncGroup), on the threads and by the
/// parts that decoded them: each thread's allocations go back to that thread's allocator arena
/// then, where mixing them made the next decoding fault in fresh pages (`perf`: a fifth of the
/// step in the kernel).
fn drop_members(mut members: Vec<GroupMember>, chunk: usize) {
    if chunk == 0 || chunk >= members.len() {
        return;
    }
    let mut parts = Vec::new();
    while members.len() > chunk {
        let at = (members.len() - 1) / chunk * chunk;
        parts.push(members.split_off(at));
    }
    std::thread::scope(|scope| {
        for part in parts {
            // A thread that cannot start drops its part here, as the closure holding it
            // drops.
            let _ = std::thread::Builder::new()
                .name("cohort-free".into())
                .spawn_scoped(scope, move || drop(part));
        }
        drop(members);
    });
}

/// Assignments of this many partitions or more are encoded on several threads.
const PARALLEL_ENCODE_PARTITIONS: usize = 1 << 16;

/// Encodes every member's assignment for SyncGroup, a large group's (2,000 members of a million
/// partitions write 21 MB) in parts of about equal partitions on the machine's cores, as
/// [`decode_members`] decodes: every member waits for the leader's SyncGroup meanwhile.
fn encode_assignments(plan: &Plan) -> Result<Vec<Bytes>, EncodeError> {
    let n = plan.members.len();
    let total: usize = plan.members.iter().map(|m| m.partitions.len()).sum();
    let threads = if total < PARALLEL_ENCODE_PARTITIONS {
        1
    } else {
        cores().min(n)
    };
    if threads <= 1 {
        return plan.encode_assignments(3);
    }
    // Cut where the running count of partitions passes each thread's share.
    let mut cuts = vec![0];
    let mut seen = 0;
    for (i, m) in plan.members.iter().enumerate() {
        seen += m.partitions.len();
        if seen * threads >= total * cuts.len() && cuts.len() < threads && i + 1 < n {
            cuts.push(i + 1);
        }
    }
    cuts.push(n);
    let parts: Vec<_> = cuts.windows(2).map(|w| w[0]..w[1]).collect();
    let Some((first, rest)) = parts.split_first() else {
        return plan.encode_assignments(3);
    };
    std::thread::scope(|scope| {
        // A thread that cannot be started leaves its part to this one.
        let spawned: Vec<_> = rest
            .iter()
            .map(|part| {
                std::thread::Builder::new()
                    .name("cohort-encode".into())
                    .spawn_scoped(scope, || plan.encode_assignments_of(part.clone(), 3))
                    .map_err(|_| part.clone())
            })
            .collect();
        let mut all = plan.encode_assignments_of(first.clone(), 3)?;
        all.reserve(n - all.len());
        for s in spawned {
            match s.map(|h| h.join()) {
                Ok(Ok(part)) => all.extend(part?),
                // Encoding does not panic; were it to, the panic goes on as here.
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(part) => all.extend(plan.encode_assignments_of(part, 3)?),
            }
        }
        Ok(all)
    })
}

/// Decodes every member's JoinGroup metadata (an unreadable one subscribes to nothing, with a
/// warning). A large group's subscriptions (2,000 members of 500 topics each are 14 MB, and
/// 2 M topic names and owned-partition lists to decode) are split over the machine's cores:
/// every member of the group waits for the leader's SyncGroup meanwhile.
pub fn decode_members(members: &[(StrBytes, Option<StrBytes>, Bytes)]) -> Decoded {
    let bytes: usize = members.iter().map(|(_, _, m)| m.len()).sum();
    let threads = if bytes < PARALLEL_DECODE_BYTES {
        1
    } else {
        cores().min(members.len())
    };
    let decode = |part: &[(StrBytes, Option<StrBytes>, Bytes)]| {
        let mut decoder = SubscriptionDecoder::default();
        part.iter()
            .map(|(_, _, metadata)| decoder.decode(metadata.clone()).map(|(_, s)| s))
            .collect::<Vec<_>>()
    };
    let mut subscriptions = Vec::with_capacity(members.len());
    let mut chunk = 0;
    if threads > 1 {
        chunk = members.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = members.chunks(chunk);
            let first = parts.next().unwrap_or_default();
            // A thread that cannot be started leaves its part to this one.
            let spawned: Vec<_> = parts
                .map(|part| {
                    std::thread::Builder::new()
                        .name("cohort-decode".into())
                        .spawn_scoped(scope, move || decode(&own_copy(part)))
                        .map_err(|_| part)
                })
                .collect();
            subscriptions.extend(decode(first));
            for s in spawned {
                match s.map(|h| h.join()) {
                    Ok(Ok(part)) => subscriptions.extend(part),
                    // Decoding does not panic (bad input is an error); were it to, the
                    // panic goes on as it would have on this thread.
                    Ok(Err(panic)) => std::panic::resume_unwind(panic),
                    Err(part) => subscriptions.extend(decode(part)),
                }
            }
        });
    } else {
        subscriptions = decode(members);
    }
    let mut warnings = Vec::new();
    let members = members
        .iter()
        .zip(subscriptions)
        .map(|((member_id, group_instance_id, _), subscription)| {
            let subscription = subscription.unwrap_or_else(|e| {
                warnings.push(format!(
                    "member {member_id}: unreadable subscription ({e}); assigned nothing"
                ));
                ConsumerProtocolSubscription::default()
            });
            GroupMember {
                member_id: member_id.clone(),
                group_instance_id: group_instance_id.clone(),
                subscription,
            }
        })
        .collect();
    Decoded {
        members,
        warnings,
        chunk,
    }
}

/// The leader's step: decodes every member's JoinGroup metadata ([`decode_members`]), runs the
/// balancer and encodes each member's assignment. The `cohort assign` command runs this same
/// function.
pub fn lead(
    balancer: &dyn Balancer,
    members: &[(StrBytes, Option<StrBytes>, Bytes)],
    topics: &[TopicInfo],
) -> Result<Led, Error> {
    lead_decoded(balancer, decode_members(members), topics)
}

/// The leader's step from decoded subscriptions.
pub fn lead_decoded(
    balancer: &dyn Balancer,
    decoded: Decoded,
    topics: &[TopicInfo],
) -> Result<Led, Error> {
    let Decoded {
        members,
        mut warnings,
        chunk,
    } = decoded;
    let plan = balancer
        .assign(&members, topics)
        .map_err(|e| Error::Fatal {
            code: ErrorCode::InconsistentGroupProtocol,
            context: format!("assignment failed: {e}"),
        })?;
    // The subscriptions are done with. Freeing a large group's (a sixth of its second round)
    // is no part of the answer the group waits for: a thread of its own does it while the
    // assignments are written and sent. Only a group decoded on several threads is worth a
    // thread (others drop here); one that cannot start drops the closure, and them, here.
    if chunk > 0 {
        let _ = std::thread::Builder::new()
            .name("cohort-free".into())
            .spawn(move || drop_members(members, chunk));
    }
    warnings.extend(plan.warnings.iter().cloned());
    let assignments = plan
        .members
        .iter()
        .map(|m| m.member_id.clone())
        .zip(encode_assignments(&plan).map_err(Error::Encode)?)
        .collect();
    Ok(Led {
        plan,
        assignments,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use cohort_protocol::consumer_protocol::encode_subscription;

    use super::*;

    fn metadata(members: usize, topics: usize) -> Vec<(StrBytes, Option<StrBytes>, Bytes)> {
        (0..members)
            .map(|i| {
                let sub = ConsumerProtocolSubscription {
                    topics: (0..topics)
                        .map(|t| format!("member-{i}-topic-{t:04}").into())
                        .collect(),
                    ..Default::default()
                };
                let bytes = encode_subscription(&sub, 3).unwrap();
                (format!("m{i}").into(), None, bytes)
            })
            .collect()
    }

    #[test]
    fn a_large_group_decodes_in_member_order_with_unreadable_ones_named() {
        let mut group = metadata(300, 200);
        let total: usize = group.iter().map(|(_, _, b)| b.len()).sum();
        assert!(
            total >= PARALLEL_DECODE_BYTES,
            "{total} bytes decode on one thread"
        );
        group[7].2 = Bytes::from_static(&[0, 3, 0, 0, 0, 9]);
        group[250].2 = Bytes::new();
        let d = decode_members(&group);
        assert_eq!(d.members.len(), 300);
        for (i, m) in d.members.iter().enumerate() {
            assert_eq!(m.member_id.as_str(), format!("m{i}"));
            match i {
                7 | 250 => assert!(m.subscription.topics.is_empty()),
                _ => {
                    assert_eq!(m.subscription.topics.len(), 200);
                    assert_eq!(
                        m.subscription.topics[199].as_str(),
                        format!("member-{i}-topic-0199")
                    );
                }
            }
        }
        assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
        assert!(d.warnings[0].starts_with("member m7:"), "{:?}", d.warnings);
        assert!(
            d.warnings[1].starts_with("member m250:"),
            "{:?}",
            d.warnings
        );
        // The same group decoded small (one thread) reads the same.
        let small = decode_members(&group[..10]);
        assert_eq!(small.members[..], d.members[..10]);
    }

    /// A group large enough to be encoded in parts gives every member what one pass gives it,
    /// in member order, with members of very different shares (the parts are cut by
    /// partitions, not members) and some with none.
    #[test]
    fn a_large_group_encodes_in_parts_as_in_one() {
        let topics: Vec<TopicInfo> = (0..40)
            .map(|t| TopicInfo::new(format!("topic-{t}").as_str(), 2_000))
            .collect();
        let names: Vec<String> = topics.iter().map(|t| t.name.to_string()).collect();
        let members: Vec<GroupMember> = (0..301)
            .map(|i| {
                let mine: Vec<&str> = match i % 3 {
                    0 => names.iter().map(String::as_str).collect(),
                    1 => vec![names[i % 40].as_str()],
                    _ => vec!["not-a-topic"],
                };
                GroupMember::new(format!("m{i:03}").as_str(), &mine)
            })
            .collect();
        let plan = cohort_balancers::RoundRobin
            .assign(&members, &topics)
            .unwrap();
        let total: usize = plan.members.iter().map(|m| m.partitions.len()).sum();
        assert!(total >= PARALLEL_ENCODE_PARTITIONS, "{total} partitions");
        let parts = encode_assignments(&plan).unwrap();
        assert_eq!(parts, plan.encode_assignments(3).unwrap());
        for (i, bytes) in parts.iter().enumerate() {
            assert_eq!(
                *bytes,
                cohort_protocol::consumer_protocol::encode_assignment(&plan.to_assignment(i), 3)
                    .unwrap(),
                "member {i}"
            );
        }
    }
}
