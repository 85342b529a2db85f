//! The `cooperative-sticky` balancer (KIP-429).

use bytes::Bytes;
use cohort_protocol::consumer_protocol::encode_cooperative_user_data;

use crate::plan::Plan;
use crate::sticky::{OwnedFrom, Run, run};
use crate::{AssignError, Balancer, GroupMember, MemberState, TopicInfo};

/// Kafka's `cooperative-sticky` assignor: the sticky plan, except that a partition changing owner
/// is first only revoked, and assigned in the next round, after its owner gave it up and rejoined.
///
/// Members report what they own in the subscription (v1+) and the generation of that assignment
/// (v2+, KIP-792; the user data carries it too, for leaders that read only v1). A claim is
/// trusted only when no other member claims the same partition at a higher generation, so a
/// stale claim can neither keep a partition nor hide a move that must be revoked first.
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeSticky;

impl Balancer for CooperativeSticky {
    fn protocol_name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn supports_cooperative(&self) -> bool {
        true
    }

    fn user_data(&self, member: &MemberState<'_>) -> Option<Bytes> {
        Some(encode_cooperative_user_data(member.generation))
    }

    fn assign(&self, members: &[GroupMember], topics: &[TopicInfo]) -> Result<Plan, AssignError> {
        run(
            members,
            topics,
            &Run {
                owned_from: OwnedFrom::Subscription,
                cooperative: true,
                weights: None,
            },
        )
    }
}
