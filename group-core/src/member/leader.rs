//! The leader's work: the subscription each member sends, and the plan the leader computes
//! from everyone's subscriptions and sends back in SyncGroup.

use std::collections::BTreeSet;
use std::time::Instant;

use bytes::Bytes;
use cohort_balancers::{Balancer, GroupMember, MemberState as BalancerMemberState, TopicInfo};
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolSubscription, OwnedTopicPartitions, decode_subscription,
};
use cohort_protocol::messages::{JoinGroupResponse, sync_group_request};
use cohort_protocol::{ErrorCode, StrBytes};

use super::Member;
use super::state::State;
use super::types::{Assignment, OutboundRequest};
use crate::error::Error;

impl Member {
    /// The leader has its JoinGroup answer: ask for the metadata of every topic the group
    /// subscribes to (not only its own, Java `ConsumerCoordinator.onLeaderElected`).
    pub(super) fn start_assigning(&mut self, now: Instant, join: JoinGroupResponse) {
        let topics = self.group_topics(&join);
        self.state = State::Assigning {
            join: Box::new(join),
        };
        self.send(
            now,
            OutboundRequest::Metadata(topics),
            self.cfg.request_timeout,
            None,
        );
    }

    fn group_topics(&self, join: &JoinGroupResponse) -> Vec<String> {
        let mut topics: BTreeSet<String> = self.topics.iter().cloned().collect();
        for m in &join.members {
            if let Ok((_, sub)) = decode_subscription(m.metadata.clone()) {
                topics.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        topics.into_iter().collect()
    }

    /// The metadata for the plan arrived: run the balancer and send SyncGroup.
    pub(super) fn on_metadata(&mut self, now: Instant, topics: Vec<TopicInfo>) {
        // The answer may come after the member moved on (it is leaving, it dropped out of the
        // generation): then it is not the leader's any more, and the state stays as it is.
        let join = match std::mem::replace(&mut self.state, State::Syncing) {
            State::Assigning { join } => join,
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
        let led = match lead(balancer.as_ref(), &members, &topics) {
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
        topics,
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

/// The leader's step: decodes every member's JoinGroup metadata (an unreadable one subscribes
/// to nothing, with a warning), runs the balancer and encodes each member's assignment. The
/// `cohort assign` command runs this same function.
pub fn lead(
    balancer: &dyn Balancer,
    members: &[(StrBytes, Option<StrBytes>, Bytes)],
    topics: &[TopicInfo],
) -> Result<Led, Error> {
    let mut warnings = Vec::new();
    let members: Vec<GroupMember> = members
        .iter()
        .map(|(member_id, group_instance_id, metadata)| {
            let subscription = match decode_subscription(metadata.clone()) {
                Ok((_, s)) => s,
                Err(e) => {
                    warnings.push(format!(
                        "member {member_id}: unreadable subscription ({e}); assigned nothing"
                    ));
                    ConsumerProtocolSubscription::default()
                }
            };
            GroupMember {
                member_id: member_id.clone(),
                group_instance_id: group_instance_id.clone(),
                subscription,
            }
        })
        .collect();
    let plan = balancer
        .assign(&members, topics)
        .map_err(|e| Error::Fatal {
            code: ErrorCode::InconsistentGroupProtocol,
            context: format!("assignment failed: {e}"),
        })?;
    warnings.extend(plan.warnings.iter().cloned());
    let mut assignments = Vec::with_capacity(plan.members.len());
    for (i, m) in plan.members.iter().enumerate() {
        let bytes = plan.encode_assignment(i, 3).map_err(Error::Encode)?;
        assignments.push((m.member_id.clone(), bytes));
    }
    Ok(Led {
        plan,
        assignments,
        warnings,
    })
}
