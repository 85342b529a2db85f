//! Workloads shared by the benchmarks (see `benches/`), so that every arm of a comparison gets
//! the same input. Results are recorded in `docs/BENCHMARKS.md`.
#![allow(
    clippy::disallowed_methods,
    reason = "harness code does I/O and reads the clock"
)]

use bytes::{Bytes, BytesMut};
use cohort_protocol::records::{Compression, RecordBatch, RecordBatchBuilder, RecordHeader};

/// The record-batch workloads of the foundation issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchWorkload {
    /// 1,000 records with 100-byte values, no keys.
    Values100,
    /// 1,000 records with 1 KiB values, no keys.
    Values1K,
    /// 1,000 records with 16-byte keys, 100-byte values and 2 headers.
    KeysHeaders,
}

impl BatchWorkload {
    /// Every workload.
    pub const ALL: [BatchWorkload; 3] = [Self::Values100, Self::Values1K, Self::KeysHeaders];

    /// Short name for benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Self::Values100 => "1000x100B",
            Self::Values1K => "1000x1KiB",
            Self::KeysHeaders => "1000x16B-key+100B+2hdr",
        }
    }

    /// The batch (uncompressed, offsets from 0).
    pub fn batch(self) -> RecordBatch {
        let value_len = if self == Self::Values1K { 1024 } else { 100 };
        let mut b = RecordBatchBuilder::new(0).compression(Compression::None);
        for i in 0..1000u32 {
            let value: Vec<u8> = (0..value_len)
                .map(|j| (i as usize * 31 + j) as u8)
                .collect();
            let (key, headers) = if self == Self::KeysHeaders {
                let key: Vec<u8> = (0..16).map(|j| (i as usize + j) as u8).collect();
                (
                    Some(Bytes::from(key)),
                    vec![
                        RecordHeader {
                            key: "trace-id".into(),
                            value: Some(Bytes::from_static(b"0123456789abcdef")),
                        },
                        RecordHeader {
                            key: "source".into(),
                            value: Some(Bytes::from_static(b"bench")),
                        },
                    ],
                )
            } else {
                (None, Vec::new())
            };
            b = b.push(
                1_700_000_000_000 + i64::from(i),
                key,
                Some(Bytes::from(value)),
                headers,
            );
        }
        b.build()
    }

    /// The batch's wire bytes.
    pub fn bytes(self) -> Bytes {
        let mut buf = BytesMut::new();
        self.batch().encode(&mut buf).expect("encode");
        buf.freeze()
    }
}

/// Group shapes of the balancer benchmarks (the Java assignor test suite's large workloads).
pub mod groups {
    use cohort_balancers::{Balancer, GroupMember, Plan, TopicInfo};
    use cohort_protocol::StrBytes;
    use cohort_protocol::consumer_protocol::{OwnedTopicPartitions, StickyUserData};

    /// `topics` topics of `partitions` partitions each, named `topic-00000`...
    pub fn topics(topics: usize, partitions: u32) -> Vec<TopicInfo> {
        (0..topics)
            .map(|t| TopicInfo::new(format!("topic-{t:05}"), partitions))
            .collect()
    }

    /// `n` members subscribed to every topic; with `divergent`, member 0 subscribes to the first
    /// topic only.
    pub fn members(n: usize, topics: &[TopicInfo], divergent: bool) -> Vec<GroupMember> {
        // One list for every member, as a leader's decoding shares a repeated one.
        let all: std::sync::Arc<[StrBytes]> = topics.iter().map(|t| t.name.clone()).collect();
        (0..n)
            .map(|i| {
                let mut m = GroupMember::new(&format!("member-{i:05}"), &[]);
                m.subscription.topics = if divergent && i == 0 {
                    all[..1].into()
                } else {
                    all.clone()
                };
                m
            })
            .collect()
    }

    /// The members after a first round: member `i` (for `i >= from`) reports what `plan` gave it,
    /// in the subscription (cooperative) and in sticky user data (eager sticky).
    pub fn with_previous(
        members: &[GroupMember],
        plan: &Plan,
        from: usize,
        generation: i32,
    ) -> Vec<GroupMember> {
        members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut m = m.clone();
                if i >= from {
                    let owned = plan.topics_of(i);
                    m.subscription.user_data = StickyUserData {
                        previous_assignment: owned.clone(),
                        generation: Some(generation),
                    }
                    .encode()
                    .ok();
                    m.subscription.owned_partitions = owned
                        .into_iter()
                        .map(|(topic, partitions)| OwnedTopicPartitions { topic, partitions })
                        .collect();
                    m.subscription.generation_id = generation;
                }
                m
            })
            .collect()
    }

    /// A fresh member subscribed to every topic.
    pub fn joiner(topics: &[TopicInfo]) -> GroupMember {
        let mut m = GroupMember::new("member-joiner", &[]);
        m.subscription.topics = topics.iter().map(|t| t.name.clone()).collect();
        m
    }

    /// Runs `b` and returns the plan (panics on error: benchmark inputs are valid).
    /// Every member's JoinGroup metadata as a leader receives it: encoded one after another in
    /// one buffer (the JoinGroup response) and sliced from it, so that all share one reference
    /// count as they do in a client.
    pub fn join_metadata(group: &[GroupMember]) -> Vec<(StrBytes, Option<StrBytes>, bytes::Bytes)> {
        let encoded: Vec<bytes::Bytes> = group
            .iter()
            .map(|m| {
                cohort_protocol::consumer_protocol::encode_subscription(&m.subscription, 3)
                    .expect("encodes")
            })
            .collect();
        let all = bytes::Bytes::from(encoded.concat());
        let mut at = 0;
        group
            .iter()
            .zip(&encoded)
            .map(|(m, e)| {
                let one = all.slice(at..at + e.len());
                at += e.len();
                (m.member_id.clone(), m.group_instance_id.clone(), one)
            })
            .collect()
    }

    /// The balancer's plan (a benchmark group is valid).
    pub fn run(b: &dyn Balancer, members: &[GroupMember], topics: &[TopicInfo]) -> Plan {
        b.assign(members, topics).expect("valid benchmark group")
    }
}

/// CPU time of every thread of this process so far, in nanoseconds (Linux:
/// `/proc/self/task/*/schedstat`; 0 elsewhere): a client's own cost, which a shared machine's
/// noise disturbs less than wall time.
pub fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// One timed read: wall time from the first record to the last, and this process's CPU time
/// over the same span.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Milliseconds from the first record to the last.
    pub ms: f64,
    /// CPU milliseconds of the process over that span.
    pub cpu_ms: f64,
}

/// Reads `records` records with a cohort consumer of `cfg` (every value touched, each record
/// acknowledged), timed as [`Run`] says; the consumer is then dropped without a commit. Reads
/// with `recv_many` and `ack_many`, the API for throughput, as the other clients' benchmarks
/// take whole polls (Java's `poll`, franz-go's `PollFetches`).
pub async fn cohort_consume(cfg: cohort::GroupConfig, records: usize) -> Run {
    let mut c = cohort::Consumer::new(cfg).await.expect("consumer");
    let (mut n, mut sink) = (0usize, 0u64);
    let mut first: Option<(std::time::Instant, u64)> = None;
    let mut batch = Vec::with_capacity(1000);
    while let Some(got) = c.recv_many(&mut batch, 1000.min(records - n)).await {
        got.expect("records");
        #[allow(clippy::disallowed_methods, reason = "a benchmark reads the clock")]
        first.get_or_insert_with(|| (std::time::Instant::now(), process_cpu_ns()));
        for r in &batch {
            if let Some(v) = r.value.as_ref().and_then(|v| v.last()) {
                sink += u64::from(*v);
            }
        }
        c.ack_many(&batch);
        n += batch.len();
        batch.clear();
        if n == records {
            break;
        }
    }
    let (start, cpu) = first.expect("records");
    let run = Run {
        ms: start.elapsed().as_secs_f64() * 1e3,
        cpu_ms: process_cpu_ns().saturating_sub(cpu) as f64 / 1e6,
    };
    std::hint::black_box(sink);
    c.abort();
    run
}
