//! What every participant of a run records: members (in-process, `cohort member` processes and
//! librdkafka members alike), the producer, the chaos engine and the offset monitor. The checker
//! and the reports read nothing else.
//!
//! Times are microseconds since the Unix epoch, taken by whoever observed the event: members in
//! other processes run on the same machine and clock, so their entries order correctly against
//! the harness's own.
//!
//! The same [`Event`] type is the line format of `cohort member` (one JSON object per line), so
//! a process member's output is parsed straight into the journal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Partitions by topic, as JSON: `{"t": [0, 1]}`.
pub type Partitions = BTreeMap<String, Vec<i32>>;

/// Offsets by topic and partition, as JSON: `{"t": {"0": 42}}` (JSON keys are strings).
pub type Offsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A member started (before it joins).
    Started {
        /// Which client implementation (`cohort`, `librdkafka`).
        client: String,
        /// Balancers offered, in priority order.
        balancers: Vec<String>,
        /// `group.instance.id`, for static members.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance_id: Option<String>,
    },
    /// A rebalance began, as the member saw it.
    Rebalancing {
        /// Why, in the member's words.
        reason: String,
    },
    /// The member's whole assignment after a change.
    Assigned {
        /// Generation (-1 when the client does not expose it).
        generation: i32,
        /// Member id.
        member_id: String,
        /// Whether this member computed the plan.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<bool>,
        /// The protocol the group runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
        /// Everything the member owns now.
        partitions: Partitions,
    },
    /// Partitions taken away while the generation was valid (done work was committed first).
    Revoked {
        /// Generation they were owned in (-1 when unknown).
        generation: i32,
        /// The partitions.
        partitions: Partitions,
    },
    /// Partitions lost: the member fell out of the group; nothing of them may be committed.
    Lost {
        /// The partitions.
        partitions: Partitions,
    },
    /// Records processed (acknowledged), a contiguous run of offsets of one partition.
    Processed {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset of the run.
        first: i64,
        /// Last offset of the run (inclusive).
        last: i64,
        /// Generation the records were delivered in (-1 when unknown).
        generation: i32,
        /// When the first record of the run was handed to the application (µs since the
        /// epoch; 0 when unknown). Ownership is judged at delivery: a record delivered while
        /// owned may finish processing after a revoke, as in every Kafka client.
        #[serde(default, skip_serializing_if = "is_zero")]
        delivered: u64,
    },
    /// Offsets committed by the member (the next offset to consume, per partition).
    Committed {
        /// Generation of the commit (-1 when unknown).
        #[serde(default = "unknown_generation")]
        generation: i32,
        /// The offsets.
        #[serde(deserialize_with = "offsets_from_json")]
        offsets: Offsets,
        /// When the member requested the commit (µs since the epoch; 0 when unknown). The
        /// entry is written when the answer arrives, which for a member frozen or slowed down
        /// can be seconds after the coordinator applied it: the checker places the commit at
        /// its request.
        #[serde(default, skip_serializing_if = "is_zero")]
        requested: u64,
    },
    /// A problem the member reported.
    Error {
        /// What.
        message: String,
    },
    /// The member left the group cleanly and stopped.
    Left,
    /// The member stopped without leaving (crash, kill).
    Crashed,
    /// A fault the chaos engine injected or lifted, or an action of the timeline.
    Chaos {
        /// Action name (`crash`, `freeze`, `thaw`, `latency`, `blackhole`, ...).
        action: String,
        /// Target (a member, `broker`, a topic).
        target: String,
        /// Details for people.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// Records written by the producer: a contiguous run of offsets of one partition.
    Produced {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// First offset.
        first: i64,
        /// Last offset (inclusive).
        last: i64,
    },
    /// The group's committed offsets, as the broker reports them (OffsetFetch, polled).
    Observed {
        /// The offsets.
        #[serde(deserialize_with = "offsets_from_json")]
        offsets: Offsets,
    },
    /// Records the broker no longer has (a restart of a broker with volatile storage): the
    /// checker does not expect them to be consumed.
    Forgotten {
        /// Topic.
        topic: String,
        /// Partitions.
        partitions: Vec<i32>,
    },
}

fn unknown_generation() -> i32 {
    -1
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Offsets with partition numbers as JSON object keys. The event enum is internally tagged, so
/// serde buffers its fields and can no longer turn `"3"` into a number by itself.
fn offsets_from_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Offsets, D::Error> {
    let raw: BTreeMap<String, BTreeMap<String, i64>> = Deserialize::deserialize(d)?;
    raw.into_iter()
        .map(|(t, ps)| {
            let ps = ps
                .into_iter()
                .map(|(p, o)| {
                    p.parse::<i32>()
                        .map(|p| (p, o))
                        .map_err(|_| serde::de::Error::custom(format!("partition {p:?}")))
                })
                .collect::<Result<BTreeMap<i32, i64>, D::Error>>()?;
            Ok((t, ps))
        })
        .collect()
}

/// An event with its time and source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Microseconds since the Unix epoch.
    pub ts: u64,
    /// Who: a member name, `producer`, `chaos`, `monitor`.
    pub source: String,
    /// What.
    #[serde(flatten)]
    pub event: Event,
}

/// A shared, append-only journal.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an event observed now.
    pub fn record(&self, source: &str, event: Event) {
        self.push(Entry {
            ts: now_us(),
            source: source.to_owned(),
            event,
        });
    }

    /// Appends an entry with its own time.
    pub fn push(&self, entry: Entry) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(entry);
    }

    /// A copy of everything, sorted by time (stable, so one source keeps its order).
    pub fn snapshot(&self) -> Vec<Entry> {
        let mut v = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        v.sort_by_key(|e| e.ts);
        v
    }

    /// How many entries so far.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visits entries without copying them.
    pub fn with<R>(&self, f: impl FnOnce(&[Entry]) -> R) -> R {
        f(&self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Each member's assignment after the entries so far (the last `assigned`, minus what was
/// revoked or lost since; a member that left or crashed owns nothing).
pub fn current_assignments(entries: &[Entry]) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = BTreeMap::new();
    for e in entries {
        match &e.event {
            Event::Assigned { partitions, .. } => {
                out.insert(e.source.clone(), partitions.clone());
            }
            Event::Revoked { partitions, .. } | Event::Lost { partitions } => {
                if let Some(cur) = out.get_mut(&e.source) {
                    for (t, ps) in partitions {
                        if let Some(c) = cur.get_mut(t) {
                            c.retain(|p| !ps.contains(p));
                        }
                    }
                    cur.retain(|_, ps| !ps.is_empty());
                }
            }
            Event::Left | Event::Crashed => {
                out.remove(&e.source);
            }
            _ => {}
        }
    }
    out
}

/// Every (topic, partition, offset) processed, with how many times.
pub fn processed_counts(entries: &[Entry]) -> BTreeMap<(String, i32, i64), u32> {
    let mut out = BTreeMap::new();
    for e in entries {
        if let Event::Processed {
            topic,
            partition,
            first,
            last,
            ..
        } = &e.event
        {
            for o in *first..=*last {
                *out.entry((topic.clone(), *partition, o)).or_insert(0) += 1;
            }
        }
    }
    out
}

/// Converts the group core's assignment type to the journal's.
pub fn partitions_of(a: &cohort::member::Assignment) -> Partitions {
    a.iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| (t.clone(), ps.iter().copied().collect()))
        .collect()
}

/// Converts commit results to the journal's offsets.
pub fn offsets_of(c: &[cohort::member::CommitOffset]) -> Offsets {
    let mut out = Offsets::new();
    for o in c {
        out.entry(o.topic.clone())
            .or_default()
            .insert(o.partition, o.offset);
    }
    out
}

/// Folds processed offsets into runs: consecutive offsets of one partition in one generation
/// become one [`Event::Processed`], so a busy member writes a line per batch, not per record.
#[derive(Debug, Default)]
pub struct RunFolder {
    /// (first, last, generation, delivery time of the first).
    open: BTreeMap<(String, i32), (i64, i64, i32, u64)>,
}

impl RunFolder {
    /// Adds one processed record delivered at `delivered` (µs); returns the run it closes.
    pub fn add(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        generation: i32,
        delivered: u64,
    ) -> Option<Event> {
        let key = (topic.to_owned(), partition);
        match self.open.get_mut(&key) {
            Some((_, last, g, _)) if *last + 1 == offset && *g == generation => {
                *last = offset;
                None
            }
            Some(run) => {
                let (first, last, g, d) =
                    std::mem::replace(run, (offset, offset, generation, delivered));
                Some(Event::Processed {
                    topic: key.0,
                    partition,
                    first,
                    last,
                    generation: g,
                    delivered: d,
                })
            }
            None => {
                self.open
                    .insert(key, (offset, offset, generation, delivered));
                None
            }
        }
    }

    /// Closes every open run (call before anything that must follow the records in time:
    /// a commit, a revoke, a stop).
    pub fn flush(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.open)
            .into_iter()
            .map(
                |((topic, partition), (first, last, generation, delivered))| Event::Processed {
                    topic,
                    partition,
                    first,
                    last,
                    generation,
                    delivered,
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lines_match_the_documented_format() {
        let e = Entry {
            ts: 1,
            source: "m1".into(),
            event: Event::Assigned {
                generation: 3,
                member_id: "abc".into(),
                leader: None,
                protocol: None,
                partitions: [("T".to_owned(), vec![0, 1])].into(),
            },
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"ts":1,"source":"m1","event":"assigned","generation":3,"member_id":"abc","partitions":{"T":[0,1]}}"#
        );
        let c = Event::Committed {
            generation: 3,
            offsets: [("T".to_owned(), [(0, 42)].into())].into(),
            requested: 0,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"event":"committed","generation":3,"offsets":{"T":{"0":42}}}"#
        );
        let back: Entry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
        // Partition numbers come back from JSON object keys (a process member's lines).
        let entry = Entry {
            ts: 2,
            source: "p".into(),
            event: c.clone(),
        };
        let back: Entry = serde_json::from_str(&serde_json::to_string(&entry).unwrap()).unwrap();
        assert_eq!(back.event, c);
    }

    #[test]
    fn runs_fold_consecutive_offsets_of_one_generation() {
        let mut f = RunFolder::default();
        assert!(f.add("t", 0, 5, 1, 100).is_none());
        assert!(f.add("t", 0, 6, 1, 200).is_none());
        assert!(f.add("t", 1, 0, 1, 300).is_none());
        let closed = f.add("t", 0, 9, 1, 400).expect("a gap closes the run");
        assert_eq!(
            closed,
            Event::Processed {
                topic: "t".into(),
                partition: 0,
                first: 5,
                last: 6,
                generation: 1,
                delivered: 100,
            }
        );
        assert!(
            f.add("t", 0, 10, 2, 500).is_some(),
            "a new generation closes the run"
        );
        assert_eq!(f.flush().len(), 2);
        assert!(f.flush().is_empty());
    }
}
