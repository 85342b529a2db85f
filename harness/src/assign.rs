//! `cohort assign`: a group description in, the plan and its metrics out, through the same
//! path a group leader takes. Each member's balancer is given the member's last assignment (as
//! SyncGroup would have), builds its subscription with userdata, the subscription is encoded as
//! JoinGroup metadata, and the leader function of the group core decodes it, runs the balancer
//! and encodes the assignments, which are decoded again for the output.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use crate::error::HarnessError;
use cohort::unstable::{Led, lead, subscription};
use cohort_balancers::metrics::{self, Previous};
use cohort_balancers::{GroupMember, TopicInfo};
use cohort_protocol::StrBytes;
use cohort_protocol::consumer_protocol::{
    AssignedTopicPartitions, ConsumerProtocolAssignment, decode_assignment, decode_subscription,
    encode_subscription,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A topic: a partition count, or partitions with the racks of each partition's replicas.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
#[serde(try_from = "Value")]
pub enum TopicSpec {
    /// `"t1": 6`
    Count(u32),
    /// `"t2": {"partitions": 4, "racks": [["a","b"], ...]}`
    Full {
        /// Partition count.
        partitions: u32,
        /// Racks of each partition's replicas.
        #[serde(default)]
        racks: Vec<Vec<String>>,
    },
}

impl TryFrom<Value> for TopicSpec {
    type Error = HarnessError;

    /// Reads a topic with errors that say what is wrong (serde's untagged enums only say that
    /// nothing matched).
    fn try_from(v: Value) -> Result<Self, HarnessError> {
        let count = |v: &Value| {
            v.as_u64()
                .filter(|n| (1..=LIMITS.partitions).contains(n))
                .map(|n| n as u32)
                .ok_or_else(|| {
                    HarnessError::invalid(format!(
                        "a partition count must be a whole number from 1 to {}, not {v}",
                        LIMITS.partitions
                    ))
                })
        };
        match &v {
            Value::Number(_) => Ok(TopicSpec::Count(count(&v)?)),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| *k != "partitions" && *k != "racks") {
                    return Err(HarnessError::invalid(format!(
                        "unknown topic field {k:?} (partitions, racks)"
                    )));
                }
                let partitions = count(
                    o.get("partitions")
                        .ok_or(HarnessError::invalid("a topic needs \"partitions\""))?,
                )?;
                let racks = match o.get("racks") {
                    None => Vec::new(),
                    Some(r) => serde_json::from_value(r.clone())
                        .map_err(HarnessError::parse("racks: a list of rack lists"))?,
                };
                Ok(TopicSpec::Full { partitions, racks })
            }
            other => Err(HarnessError::invalid(format!(
                "a topic is a partition count or {{\"partitions\": n, \"racks\": [...]}}, not {other}"
            ))),
        }
    }
}

/// What one `cohort assign` may describe, checked before anything is sized from it: far past
/// real groups (Kafka clusters hold a few hundred thousand partitions), small enough for this
/// command to plan on an ordinary machine.
pub struct Limits {
    /// Partitions of one topic.
    pub partitions: u64,
    /// Partitions of all topics together.
    pub total_partitions: u64,
    /// Members of the group.
    pub members: u64,
    /// Subscriptions (member, topic) together.
    pub subscriptions: u64,
    /// Steps of `--steps`.
    pub steps: u64,
}

/// The bounds of [`Limits`].
pub const LIMITS: Limits = Limits {
    partitions: 1_000_000,
    total_partitions: 2_000_000,
    members: 100_000,
    subscriptions: 10_000_000,
    steps: 10_000,
};

pub(crate) fn check_size(
    topics: &BTreeMap<String, TopicSpec>,
    members: &[MemberSpec],
) -> Result<(), HarnessError> {
    let total: u64 = topics
        .values()
        .map(|t| match t {
            TopicSpec::Count(n) | TopicSpec::Full { partitions: n, .. } => u64::from(*n),
        })
        .sum();
    if total > LIMITS.total_partitions {
        return Err(HarnessError::invalid(format!(
            "{total} partitions in all; this command plans at most {}",
            LIMITS.total_partitions
        )));
    }
    if members.len() as u64 > LIMITS.members {
        return Err(HarnessError::invalid(format!(
            "{} members; this command plans at most {}",
            members.len(),
            LIMITS.members
        )));
    }
    let subscriptions: u64 = members.iter().map(|m| m.topics.len() as u64).sum();
    if subscriptions > LIMITS.subscriptions {
        return Err(HarnessError::invalid(format!(
            "{subscriptions} subscriptions in all; this command plans at most {}",
            LIMITS.subscriptions
        )));
    }
    let mut ids = std::collections::BTreeSet::new();
    for m in members {
        if !ids.insert(m.id.as_str()) {
            return Err(HarnessError::invalid(format!(
                "member id {:?} appears more than once",
                m.id
            )));
        }
        if m.weight == 0 || m.weight > 1_000 {
            return Err(HarnessError::invalid(format!(
                "member {:?}: weight {} is outside 1..=1000",
                m.id, m.weight
            )));
        }
    }
    Ok(())
}

/// A member of the described group.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// Member id.
    pub id: String,
    /// `group.instance.id`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Rack (KIP-881).
    #[serde(default)]
    pub rack: Option<String>,
    /// What it owns now.
    #[serde(default)]
    pub owned: BTreeMap<String, Vec<i32>>,
    /// Generation of what it owns.
    #[serde(default = "no_generation")]
    pub generation: i32,
    /// Weight (weighted sticky balancer).
    #[serde(default = "one")]
    pub weight: u32,
}

fn no_generation() -> i32 {
    -1
}
fn one() -> u32 {
    1
}

/// A change of the group for `--steps`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// A member joins.
    Join(MemberSpec),
    /// A member leaves.
    Leave(String),
    /// Topics change (new partition counts or new topics).
    Topics(BTreeMap<String, TopicSpec>),
    /// Everyone rejoins with what they own (a rebalance without a change).
    Rebalance,
}

/// The input document.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Balancer protocol name.
    #[serde(default)]
    pub balancer: Option<String>,
    /// Topics.
    pub topics: BTreeMap<String, TopicSpec>,
    /// Members.
    pub members: Vec<MemberSpec>,
    /// Changes for `--steps`.
    #[serde(default)]
    pub steps: Vec<Step>,
}

pub(crate) fn topic_infos(
    topics: &BTreeMap<String, TopicSpec>,
) -> Result<Vec<TopicInfo>, HarnessError> {
    topics
        .iter()
        .map(|(name, spec)| match spec {
            TopicSpec::Count(n) => Ok(TopicInfo::new(name.clone(), *n)),
            TopicSpec::Full { partitions, racks } => {
                if !racks.is_empty() && racks.len() != *partitions as usize {
                    return Err(HarnessError::invalid(format!(
                        "topic {name}: {} rack lists for {partitions} partitions",
                        racks.len()
                    )));
                }
                Ok(TopicInfo::new(name.clone(), *partitions).with_racks(racks))
            }
        })
        .collect()
}

/// One rebalance through the leader path.
struct Round {
    led: Led,
    members: Vec<GroupMember>,
    elapsed_us: u128,
}

fn to_assignment(owned: &BTreeMap<String, Vec<i32>>) -> ConsumerProtocolAssignment {
    ConsumerProtocolAssignment {
        assigned_partitions: owned
            .iter()
            .map(|(t, ps)| AssignedTopicPartitions {
                topic: t.clone().into(),
                partitions: ps.clone(),
            })
            .collect(),
        user_data: None,
    }
}

/// A member's JoinGroup metadata: id, instance id, the encoded subscription.
pub(crate) type Metadata = (StrBytes, Option<StrBytes>, Bytes);

/// The JoinGroup metadata every member would send: each member's balancer is given the member's
/// last assignment (as SyncGroup would have) and builds the subscription, encoded at version 3.
pub(crate) fn join_metadata(
    name: &str,
    members: &[MemberSpec],
) -> Result<Vec<Metadata>, HarnessError> {
    let mut metadata = Vec::with_capacity(members.len());
    for m in members {
        let mut b = crate::member::balancer(name, m.weight)?;
        // What the member's balancer kept from its last SyncGroup.
        if !m.owned.is_empty() || m.generation >= 0 {
            b.on_assignment(&to_assignment(&m.owned), m.generation);
        }
        let owned: cohort::member::Assignment = m
            .owned
            .iter()
            .map(|(t, ps)| (t.clone(), ps.iter().copied().collect()))
            .collect();
        let sub = subscription(
            b.as_ref(),
            &m.topics,
            b.supports_cooperative().then_some(&owned),
            m.generation,
            m.rack.as_deref(),
        );
        let bytes: Bytes = encode_subscription(&sub, 3).map_err(|e| {
            HarnessError::client("encoding a subscription")(cohort::Error::Encode(e))
        })?;
        metadata.push((
            StrBytes::from(m.id.clone()),
            m.instance_id.clone().map(StrBytes::from),
            bytes,
        ));
    }
    Ok(metadata)
}

fn rebalance(
    name: &str,
    members: &[MemberSpec],
    topics: &[TopicInfo],
) -> Result<Round, HarnessError> {
    let metadata = join_metadata(name, members)?;
    let leader = crate::member::balancer(name, 1)?;
    let start = Instant::now();
    let led = lead(leader.as_ref(), &metadata, topics)
        .map_err(HarnessError::client("the leader's step"))?;
    let elapsed_us = start.elapsed().as_micros();
    let members = metadata
        .iter()
        .map(|(id, instance, bytes)| GroupMember {
            member_id: id.clone(),
            group_instance_id: instance.clone(),
            subscription: decode_subscription(bytes.clone())
                .map(|(_, s)| s)
                .unwrap_or_default(),
        })
        .collect();
    Ok(Round {
        led,
        members,
        elapsed_us,
    })
}

/// Member id → topic → partitions.
pub(crate) type PlanMap = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// Decodes serialized assignments (ConsumerProtocolAssignment) into a plan map, partitions
/// ascending and empty topics left out.
pub(crate) fn decode_plan<'a>(
    assignments: impl IntoIterator<Item = (&'a str, &'a Bytes)>,
) -> Result<PlanMap, HarnessError> {
    let mut out = BTreeMap::new();
    for (id, bytes) in assignments {
        let (_, a) =
            decode_assignment(bytes.clone()).map_err(HarnessError::parse("an assignment"))?;
        let mut m: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for tp in a.assigned_partitions {
            let ps = m.entry(tp.topic.to_string()).or_default();
            ps.extend(tp.partitions);
            ps.sort_unstable();
        }
        m.retain(|_, ps| !ps.is_empty());
        out.insert(id.to_owned(), m);
    }
    Ok(out)
}

/// What the members owned before the rebalance, for the metrics.
pub(crate) fn previous(members: &[MemberSpec]) -> Vec<Previous> {
    members
        .iter()
        .map(|m| Previous {
            owned: m
                .owned
                .iter()
                .map(|(t, ps)| (StrBytes::from(t.clone()), ps.clone()))
                .collect(),
            generation: m.generation,
        })
        .collect()
}

/// One group planned through the leader path, with what judging the plan needs.
pub(crate) struct Planned {
    /// The first rebalance's plan.
    pub first: PlanMap,
    /// The plan once the group is stable (the first one unless a cooperative balancer needed
    /// follow-up rounds).
    pub stable: PlanMap,
    /// The measures of the stable plan.
    pub metrics: metrics::Metrics,
    /// The members as the leader decoded them.
    pub members: Vec<GroupMember>,
    /// The leader step's time.
    pub elapsed_us: u128,
    /// What the leader ignored.
    pub warnings: Vec<String>,
}

pub(crate) fn plan(
    name: &str,
    members: &[MemberSpec],
    topics: &[TopicInfo],
) -> Result<Planned, HarnessError> {
    let round = rebalance(name, members, topics)?;
    let first = decode_plan(
        round
            .led
            .assignments
            .iter()
            .map(|(id, bytes)| (id.as_str(), bytes)),
    )?;
    let leader = crate::member::balancer(name, 1)?;
    let eval = metrics::evaluate(leader.as_ref(), &round.members, topics, &previous(members))
        .map_err(HarnessError::parse("the plan's metrics"))?;
    let stable = if eval.metrics.rounds.unwrap_or(1) > 1 {
        eval.stable.to_map()
    } else {
        first.clone()
    };
    Ok(Planned {
        first,
        stable,
        metrics: eval.metrics,
        members: round.members,
        elapsed_us: round.elapsed_us,
        warnings: round.led.warnings,
    })
}

/// Plans one group: `{"assignment": ..., "metrics": ...}` (plus `stable_assignment` when a
/// cooperative balancer needs a follow-up round, and `warnings` when something was ignored).
fn plan_once(
    name: &str,
    members: &[MemberSpec],
    topics: &[TopicInfo],
) -> Result<(Value, PlanMap), HarnessError> {
    let p = plan(name, members, topics)?;
    let m = p.metrics;
    let mut metrics = json!({
        "spread": m.spread,
        "moved": m.moved,
        "moved_lower_bound": m.moved_lower_bound,
        "elapsed_us": p.elapsed_us,
        "partitions": m.partitions,
        "unassigned": m.unassigned,
    });
    if let Some(r) = m.rounds {
        metrics["rounds"] = json!(r);
    }
    let mut out = json!({ "assignment": p.first, "metrics": metrics });
    if m.rounds.unwrap_or(1) > 1 {
        out["stable_assignment"] = json!(p.stable);
    }
    if !p.warnings.is_empty() {
        out["warnings"] = json!(p.warnings);
    }
    Ok((out, p.stable))
}

/// Runs the command on a JSON document.
pub fn run(input: &str, balancer: Option<&str>, steps: bool) -> Result<Value, HarnessError> {
    let input: Input = serde_json::from_str(input).map_err(HarnessError::parse("input"))?;
    let name = balancer
        .map(str::to_owned)
        .or(input.balancer.clone())
        .ok_or(HarnessError::invalid(
            "no balancer: give \"balancer\" in the input or --balancer",
        ))?;
    crate::member::balancer(&name, 1)?;
    check_size(&input.topics, &input.members)?;
    if input.steps.len() as u64 > LIMITS.steps {
        return Err(HarnessError::invalid(format!(
            "{} steps; at most {}",
            input.steps.len(),
            LIMITS.steps
        )));
    }
    let mut topic_specs = input.topics.clone();
    let topics = topic_infos(&topic_specs)?;
    let (first, mut current) = plan_once(&name, &input.members, &topics)?;
    if !steps {
        return Ok(first);
    }
    if input.steps.is_empty() {
        return Err(HarnessError::invalid(
            "--steps needs a \"steps\" list in the input",
        ));
    }
    let mut members = input.members.clone();
    let first_generation = members
        .iter()
        .map(|m| m.generation)
        .max()
        .unwrap_or(-1)
        .max(0)
        .checked_add(1)
        .ok_or(HarnessError::invalid(
            "a member's generation is i32::MAX; there is no next one",
        ))?;
    let mut out = vec![json!({"step": 0, "change": "initial", "result": first})];
    for (i, step) in input.steps.iter().enumerate() {
        let generation = i32::try_from(i)
            .ok()
            .and_then(|i| first_generation.checked_add(i))
            .ok_or_else(|| {
                HarnessError::invalid(format!(
                    "step {}: the generation would pass {} (the members' generations are too high)",
                    i + 1,
                    i32::MAX
                ))
            })?;
        // Everyone owns what the last step gave it, at the generation that gave it.
        for m in &mut members {
            m.owned = current.get(&m.id).cloned().unwrap_or_default();
            m.generation = generation;
        }
        let change = match step {
            Step::Join(m) => {
                if members.iter().any(|x| x.id == m.id) {
                    return Err(HarnessError::invalid(format!(
                        "step {}: {} is already a member",
                        i + 1,
                        m.id
                    )));
                }
                members.push(m.clone());
                format!("join {}", m.id)
            }
            Step::Leave(id) => {
                let before = members.len();
                members.retain(|m| &m.id != id);
                if members.len() == before {
                    return Err(HarnessError::invalid(format!(
                        "step {}: no member {id}",
                        i + 1
                    )));
                }
                format!("leave {id}")
            }
            Step::Topics(t) => {
                topic_specs.extend(t.clone());
                "topics changed".to_owned()
            }
            Step::Rebalance => "rebalance".to_owned(),
        };
        check_size(&topic_specs, &members).map_err(|e| e.context(format!("step {}", i + 1)))?;
        let topics = topic_infos(&topic_specs)?;
        let (result, next) = plan_once(&name, &members, &topics)?;
        current = next;
        out.push(json!({"step": i + 1, "change": change, "result": result}));
    }
    Ok(json!({ "steps": out }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"balancer": "sticky", "topics": {"t1": 6, "t2": {"partitions": 4, "racks": [["a","b"],["b","c"],["a","c"],["a","b"]]}},
        "members": [{"id": "m1", "instance_id": null, "topics": ["t1","t2"], "rack": "a", "owned": {"t1": [0,1]},
        "generation": 3, "weight": 1}]}"#;

    #[test]
    fn the_documented_example() {
        let v = run(EXAMPLE, None, false).unwrap();
        assert_eq!(
            v["assignment"]["m1"],
            json!({"t1": [0, 1, 2, 3, 4, 5], "t2": [0, 1, 2, 3]})
        );
        assert_eq!(v["metrics"]["spread"], 0);
        assert_eq!(v["metrics"]["moved"], 0);
        assert_eq!(v["metrics"]["moved_lower_bound"], 0);
        assert!(v["metrics"]["elapsed_us"].is_u64());
    }

    #[test]
    fn override_and_cooperative_rounds() {
        let input = r#"{"topics": {"t": 6}, "members": [
            {"id": "a", "topics": ["t"], "owned": {"t": [0,1,2,3,4,5]}, "generation": 2},
            {"id": "b", "topics": ["t"]}]}"#;
        let v = run(input, Some("cooperative-sticky"), false).unwrap();
        // The first round only takes away: b gets nothing yet, a keeps 3 (KIP-429).
        assert_eq!(v["assignment"]["a"]["t"].as_array().unwrap().len(), 3);
        assert!(v["assignment"]["b"].as_object().unwrap().is_empty());
        assert_eq!(
            v["stable_assignment"]["b"]["t"].as_array().unwrap().len(),
            3
        );
        assert_eq!(v["metrics"]["rounds"], 2);
        assert_eq!(v["metrics"]["moved"], 3);
        assert!(
            run(input, None, false)
                .unwrap_err()
                .to_string()
                .contains("no balancer")
        );
        assert!(
            run(input, Some("nope"), false)
                .unwrap_err()
                .to_string()
                .contains("unknown balancer")
        );
    }

    #[test]
    fn steps_report_each_change() {
        let input = r#"{"balancer": "sticky", "topics": {"t": 12}, "members": [
            {"id": "a", "topics": ["t"]}, {"id": "b", "topics": ["t"]}, {"id": "c", "topics": ["t"]}],
            "steps": [{"join": {"id": "d", "topics": ["t"]}}, {"leave": "a"}, {"topics": {"t": 16}}, "rebalance"]}"#;
        let v = run(input, None, true).unwrap();
        let steps = v["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 5);
        // A join moves exactly floor(P/(N+1)) = 3; a leave moves nothing that stays.
        assert_eq!(steps[1]["result"]["metrics"]["moved"], 3);
        assert_eq!(steps[1]["result"]["metrics"]["moved_lower_bound"], 3);
        assert_eq!(steps[2]["result"]["metrics"]["moved"], 0);
        assert_eq!(
            steps[4]["result"]["metrics"]["moved"], 0,
            "a plain rebalance moves nothing"
        );
        assert_eq!(steps[3]["result"]["metrics"]["spread"], 1);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "{}",
            r#"{"balancer":"range","topics":{"t":{"partitions":2,"racks":[["a"]]}},"members":[]}"#,
            r#"{"balancer":"range","topics":{},"members":[{"id":"a"}]}"#,
            r#"{"balancer":"range","topics":{},"members":[{"id":"a","topics":[],"colour":1}]}"#,
        ] {
            assert!(run(bad, None, false).is_err(), "{bad}");
        }
        // Unknown topics and duplicate ids are handled as the Java client does or reported.
        let dup = r#"{"balancer":"range","topics":{"t":2},"members":[{"id":"a","topics":["t"]},{"id":"a","topics":["t"]}]}"#;
        assert!(run(dup, None, false).is_err());
        let unknown =
            r#"{"balancer":"range","topics":{"t":2},"members":[{"id":"a","topics":["t","zz"]}]}"#;
        let v = run(unknown, None, false).unwrap();
        assert_eq!(v["assignment"]["a"]["t"], json!([0, 1]));
    }

    /// Inputs that used to ask for gigabytes, overflow or give unrelated errors are refused
    /// before anything is sized from them, with a message that says what is wrong.
    #[test]
    fn oversized_and_malformed_inputs_get_clear_errors() {
        let m = r#"[{"id":"a","topics":["t"]}]"#;
        for (input, want) in [
            (
                format!(r#"{{"balancer":"range","topics":{{"t":4294967294}},"members":{m}}}"#),
                "a partition count must be a whole number from 1 to 1000000",
            ),
            (
                format!(
                    r#"{{"balancer":"range","topics":{{"t":1000000,"u":1000000,"v":1}},"members":{m}}}"#
                ),
                "2000001 partitions in all",
            ),
            (
                format!(r#"{{"balancer":"range","topics":{{"t":-1}},"members":{m}}}"#),
                "not -1",
            ),
            (
                format!(r#"{{"balancer":"range","topics":{{"t":{{"partitions":2,"colour":1}}}},"members":{m}}}"#),
                "unknown topic field \"colour\"",
            ),
            (
                r#"{"balancer":"range","topics":{"t":2},"members":[{"id":"a","topics":["t"]},{"id":"a","topics":["t"]}]}"#.to_owned(),
                "member id \"a\" appears more than once",
            ),
            (
                r#"{"balancer":"range","topics":{"t":2},"members":[{"id":"a","topics":["t"],"weight":0}]}"#.to_owned(),
                "weight 0 is outside",
            ),
        ] {
            let e = run(&input, None, false).unwrap_err().to_string();
            assert!(e.contains(want), "{input}\n=> {e}");
        }
        let wrap = r#"{"balancer":"sticky","topics":{"t":2},"members":[{"id":"a","topics":["t"],"generation":2147483647}],"steps":["rebalance"]}"#;
        let e = run(wrap, None, true).unwrap_err().to_string();
        assert!(e.contains("i32::MAX"), "{e}");
    }
}
