//! Consumer-group balancers: the assignment strategies a group leader runs.
//!
//! A [`Balancer`] is a pure, deterministic function from the group (members, their subscriptions
//! and the topics' partitions and replica racks) to a [`Plan`]: same input, same output, byte for
//! byte. Members are ordered as Kafka's Java client orders them: static members (with a
//! `group.instance.id`) first, by instance id, then dynamic members by member id.
//!
//! | protocol name | type | cooperative | notes |
//! |---|---|---|---|
//! | `range` | [`Range`] | no | Java `RangeAssignor`'s exact output, with KIP-881 rack awareness |
//! | `roundrobin` | [`RoundRobin`] | no | Java `RoundRobinAssignor`'s exact output |
//! | `sticky` | [`Sticky`] | no | KIP-54, user data with generation (KIP-341) |
//! | `cooperative-sticky` | [`CooperativeSticky`] | yes | KIP-429, KIP-792 generations |
//! | `cohort-weighted-sticky` | [`WeightedSticky`] | yes | shares proportional to each member's advertised weight |
//!
//! The sticky family balances first (partition counts differ by at most one where subscriptions
//! allow it; otherwise no single move of a partition could improve balance), then keeps rack
//! locality (KIP-881) when racks are known, then moves as few partitions as possible.
//!
//! ```
//! use cohort_balancers::{Balancer, GroupMember, RoundRobin, TopicInfo};
//!
//! let topics = vec![TopicInfo::new("t0", 3), TopicInfo::new("t1", 3)];
//! let members = vec![
//!     GroupMember::new("c0", &["t0", "t1"]),
//!     GroupMember::new("c1", &["t0", "t1"]),
//! ];
//! let plan = RoundRobin.assign(&members, &topics).unwrap();
//! // c0: [t0p0, t0p2, t1p1], c1: [t0p1, t1p0, t1p2]
//! assert_eq!(plan.partitions_of(0, "t0"), vec![0, 2]);
//! assert_eq!(plan.partitions_of(0, "t1"), vec![1]);
//! assert_eq!(plan.partitions_of(1, "t0"), vec![1]);
//! assert_eq!(plan.partitions_of(1, "t1"), vec![0, 2]);
//! ```
//!
//! # References
//! - KIP-54 (sticky), KIP-341 (sticky user data generation), KIP-345 (static membership order),
//!   KIP-429 (cooperative rebalancing), KIP-792 (generation in the subscription), KIP-881 (racks)

mod claims;
mod cooperative;
mod engine;
mod flow;
mod index;
mod java;
pub mod metrics;
mod plan;
mod range;
mod round_robin;
mod sticky;
mod weighted;

use std::fmt;

use bytes::Bytes;
use cohort_protocol::StrBytes;
use cohort_protocol::consumer_protocol::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, OwnedTopicPartitions,
};

pub use crate::cooperative::CooperativeSticky;
pub use crate::java::java_cmp;
pub use crate::plan::{MemberPlan, Plan, TopicTable};
pub use crate::range::Range;
pub use crate::round_robin::RoundRobin;
pub use crate::sticky::Sticky;
pub use crate::weighted::{
    MAX_WEIGHT, PROTOCOL_NAME as WEIGHTED_PROTOCOL_NAME, WeightedSticky, decode_weight,
    encode_weighted_user_data,
};

/// A topic as the leader sees it in metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: StrBytes,
    /// Number of partitions.
    pub partitions: u32,
    /// Racks of each partition's replicas, indexed by partition; empty when unknown.
    pub replica_racks: Vec<Vec<StrBytes>>,
}

impl TopicInfo {
    /// A topic without rack information.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: StrBytes::from(name.into()),
            partitions,
            replica_racks: Vec::new(),
        }
    }

    /// Sets the racks of each partition's replicas.
    pub fn with_racks<R: AsRef<str>>(mut self, racks: &[Vec<R>]) -> Self {
        self.replica_racks = racks
            .iter()
            .map(|rs| {
                rs.iter()
                    .map(|r| StrBytes::from(r.as_ref().to_owned()))
                    .collect()
            })
            .collect();
        self
    }
}

/// One member of the group, as JoinGroup reports it to the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member id assigned by the coordinator.
    pub member_id: StrBytes,
    /// `group.instance.id` of a static member (KIP-345).
    pub group_instance_id: Option<StrBytes>,
    /// The member's subscription (decoded protocol metadata).
    pub subscription: ConsumerProtocolSubscription,
}

impl GroupMember {
    /// A dynamic member subscribed to `topics`, with nothing owned.
    pub fn new(member_id: &str, topics: &[&str]) -> Self {
        Self {
            member_id: StrBytes::from(member_id.to_owned()),
            group_instance_id: None,
            subscription: ConsumerProtocolSubscription {
                topics: topics
                    .iter()
                    .map(|t| StrBytes::from((*t).to_owned()))
                    .collect(),
                ..Default::default()
            },
        }
    }

    /// Sets the static instance id.
    pub fn with_instance_id(mut self, id: &str) -> Self {
        self.group_instance_id = Some(StrBytes::from(id.to_owned()));
        self
    }

    /// Sets the owned partitions (subscription v1+) and the generation they were assigned in
    /// (subscription v2+).
    pub fn with_owned(mut self, owned: &[(&str, &[i32])], generation: i32) -> Self {
        self.subscription.owned_partitions = owned
            .iter()
            .map(|(t, ps)| OwnedTopicPartitions {
                topic: StrBytes::from((*t).to_owned()),
                partitions: ps.to_vec(),
            })
            .collect();
        self.subscription.generation_id = generation;
        self
    }

    /// Sets the rack (subscription v3+).
    pub fn with_rack(mut self, rack: &str) -> Self {
        self.subscription.rack_id = Some(StrBytes::from(rack.to_owned()));
        self
    }

    /// Sets the subscription's user data.
    pub fn with_user_data(mut self, user_data: Bytes) -> Self {
        self.subscription.user_data = Some(user_data);
        self
    }
}

/// What a member knows about itself when it builds its subscription.
#[derive(Debug, Clone, Copy)]
pub struct MemberState<'a> {
    /// Topics it subscribes to.
    pub topics: &'a [StrBytes],
    /// Partitions it owns now.
    pub owned: &'a [OwnedTopicPartitions],
    /// Generation of its current assignment, or -1.
    pub generation: i32,
    /// Its rack (`client.rack`), if set.
    pub rack: Option<&'a str>,
}

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssignError {
    /// Two members share a member id.
    #[error("member id {0:?} appears more than once")]
    DuplicateMember(String),
    /// The group is larger than a plan can index.
    #[error("group too large: {0}")]
    TooLarge(String),
    /// A plan made elsewhere ([`Plan::from_map`]) names a member, topic or partition the group
    /// does not have, or gives a partition twice.
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
}

/// An assignment strategy run by the group leader.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// Kafka's protocol name (`range`, `roundrobin`, `sticky`, `cooperative-sticky`, ...).
    fn protocol_name(&self) -> &'static str;

    /// Whether the strategy supports the cooperative protocol (KIP-429): it never hands a
    /// partition straight from one owner to another within one rebalance.
    fn supports_cooperative(&self) -> bool {
        false
    }

    /// User data a member puts in its subscription.
    fn user_data(&self, _member: &MemberState<'_>) -> Option<Bytes> {
        None
    }

    /// Computes the plan. Members are given in any order; the plan lists them in the same order.
    fn assign(&self, members: &[GroupMember], topics: &[TopicInfo]) -> Result<Plan, AssignError>;

    /// Called on every member after SyncGroup with its own assignment and generation, so a
    /// balancer can keep state for its next subscription.
    fn on_assignment(&mut self, _assignment: &ConsumerProtocolAssignment, _generation: i32) {}
}

/// A balancer by Kafka protocol name.
pub fn by_name(name: &str) -> Option<Box<dyn Balancer>> {
    Some(match name {
        "range" => Box::new(Range),
        "roundrobin" => Box::new(RoundRobin),
        "sticky" => Box::new(Sticky::default()),
        "cooperative-sticky" => Box::new(CooperativeSticky),
        weighted::PROTOCOL_NAME => Box::new(WeightedSticky::new(1)),
        _ => return None,
    })
}

/// Names [`by_name`] knows.
pub const PROTOCOL_NAMES: &[&str] = &[
    "range",
    "roundrobin",
    "sticky",
    "cooperative-sticky",
    weighted::PROTOCOL_NAME,
];

/// Whether a member with these balancers (in priority order) runs the cooperative protocol: only
/// when every one of them supports it. This is the Java client's rule (`ConsumerCoordinator`
/// keeps the protocols all of its assignors support and runs the highest), so a member listing
/// `[cooperative-sticky, range]` runs EAGER, which makes the two-bounce upgrade safe.
pub fn runs_cooperative(balancers: &[Box<dyn Balancer>]) -> bool {
    !balancers.is_empty() && balancers.iter().all(|b| b.supports_cooperative())
}
