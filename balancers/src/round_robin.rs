//! `roundrobin`: Kafka's `RoundRobinAssignor`.

use std::sync::Arc;

use crate::java::member_order;
use crate::plan::{Plan, TopicTable};
use crate::{AssignError, Balancer, GroupMember, TopicInfo};

/// Kafka's `roundrobin` assignor: all subscribed partitions, topics in Java string order, dealt
/// one by one to members in Java member order, skipping members not subscribed to the
/// partition's topic. The output is the Java client's for the same input.
///
/// `t0` and `t1` with 3 partitions each, members `C0` and `C1` subscribed to both:
///
/// ```text
/// C0: [t0p0, t0p2, t1p1]
/// C1: [t0p1, t1p0, t1p2]
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobin;

impl Balancer for RoundRobin {
    fn protocol_name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(&self, members: &[GroupMember], topics: &[TopicInfo]) -> Result<Plan, AssignError> {
        let table = Arc::new(TopicTable::new(topics)?);
        let order = member_order(members)?;
        let mut warnings = Vec::new();
        let words = table.len().div_ceil(64);
        let mut subscribed = vec![vec![0u64; words]; members.len()];
        let mut any = vec![false; table.len()];
        for (i, m) in members.iter().enumerate() {
            for name in m.subscription.topics.iter() {
                match table.index(name) {
                    Some(t) => {
                        subscribed[i][t as usize / 64] |= 1 << (t % 64);
                        any[t as usize] = true;
                    }
                    None => warnings.push(format!(
                        "topic {name:?} is subscribed to but not in metadata; it is not assigned"
                    )),
                }
            }
        }
        warnings.sort();
        warnings.dedup();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); members.len()];
        let mut next = 0usize;
        for t in 0..table.len() as u32 {
            if !any[t as usize] {
                continue;
            }
            for g in table.range(t) {
                // The member after the last one served that is subscribed to `t` (Java's
                // `CircularIterator` over sorted members).
                while subscribed[order[next] as usize][t as usize / 64] & (1 << (t % 64)) == 0 {
                    next = (next + 1) % order.len();
                }
                out[order[next] as usize].push(g);
                next = (next + 1) % order.len();
            }
        }
        Ok(Plan::new(members, out, table, warnings))
    }
}
