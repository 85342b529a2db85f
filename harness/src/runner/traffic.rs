//! The traffic of a run: the producer, the committed-offset monitor, and the drain at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cohort::{ProducerRecord, TopicPartition, partition_for_key};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::checker::Stability;
use crate::journal::{Entry, Event, Offsets};
use crate::scenario::Keys;

use super::context::Ctx;

pub(super) async fn produce(ctx: Arc<Ctx>, spec: crate::scenario::ProducerSpec, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let tick = Duration::from_millis(50);
    let mut carry = 0.0f64;
    let mut rr: u64 = 0;
    let mut seq: u64 = 0;
    let mut failures = 0u32;
    let mut next = Instant::now();
    while !ctx.producer_stop.load(Ordering::SeqCst) {
        next += tick;
        tokio::time::sleep_until(next).await;
        if ctx.producer_paused.load(Ordering::SeqCst) || ctx.broker_paused.load(Ordering::SeqCst) {
            continue;
        }
        carry += f64::from(spec.rate) * tick.as_secs_f64();
        let n = carry.floor() as u64;
        carry -= n as f64;
        let counts = ctx.counts();
        let topics: Vec<(&String, &i32)> = counts.iter().collect();
        if topics.is_empty() {
            continue;
        }
        let mut batches: BTreeMap<(String, i32), Vec<ProducerRecord>> = BTreeMap::new();
        for _ in 0..n {
            let (topic, parts) = topics[(rr % topics.len() as u64) as usize];
            let key = match spec.keys {
                Keys::None => None,
                Keys::Uniform => Some(format!("k{}", rng.random_range(0..spec.key_space.max(1)))),
                Keys::Hot => Some(if rng.random_bool(0.5) {
                    "k0".to_owned()
                } else {
                    format!("k{}", rng.random_range(0..spec.key_space.max(1)))
                }),
            };
            let partition = match &key {
                None => ((rr / topics.len() as u64) % *parts as u64) as i32,
                Some(k) => partition_for_key(k.as_bytes(), *parts),
            };
            rr += 1;
            let mut value = format!("{seq}-");
            seq += 1;
            while value.len() < spec.record_size {
                value.push('x');
            }
            let rec = match key {
                Some(k) => ProducerRecord::keyed(k, value),
                None => ProducerRecord::value(value),
            };
            batches
                .entry((topic.clone(), partition))
                .or_default()
                .push(rec);
        }
        // One send per partition, all at once: a partition whose leader is down (a node killed
        // in a cluster) must not hold back the others.
        let mut sends = tokio::task::JoinSet::new();
        for ((topic, partition), recs) in batches {
            let ctx = Arc::clone(&ctx);
            sends.spawn(async move {
                let r = ctx.admin.send(&topic, partition, &recs).await;
                (topic, partition, recs.len(), r)
            });
        }
        while let Some(done) = sends.join_next().await {
            let Ok((topic, partition, n, r)) = done else {
                continue;
            };
            match r {
                Ok(base) => {
                    ctx.produced.fetch_add(n as u64, Ordering::Relaxed);
                    ctx.journal.record(
                        "producer",
                        Event::Produced {
                            topic,
                            partition,
                            first: base,
                            last: base + n as i64 - 1,
                        },
                    );
                }
                Err(e) => {
                    failures += 1;
                    if failures <= 3 {
                        ctx.journal.record(
                            "producer",
                            Event::Error {
                                message: format!("produce {topic}/{partition}: {e}"),
                            },
                        );
                    }
                }
            }
        }
    }
}

pub(super) async fn committed(ctx: &Ctx) -> Option<Offsets> {
    let tps: Vec<TopicPartition> = ctx
        .counts()
        .iter()
        .flat_map(|(t, n)| (0..*n).map(move |p| TopicPartition::new(t, p)))
        .collect();
    let got = cohort::unstable::fetch_committed(
        ctx.admin.cluster(),
        &ctx.group,
        &tps,
        Duration::from_secs(3),
    )
    .await
    .ok()?;
    let mut out = Offsets::new();
    for (tp, o) in got {
        if let Some(o) = o {
            out.entry(tp.topic).or_default().insert(tp.partition, o);
        }
    }
    Some(out)
}

pub(super) async fn monitor(ctx: Arc<Ctx>) {
    let mut last = Offsets::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if ctx.broker_paused.load(Ordering::SeqCst) {
            continue;
        }
        if let Some(o) = committed(&ctx).await
            && o != last
        {
            ctx.journal
                .record("monitor", Event::Observed { offsets: o.clone() });
            last = o;
        }
    }
}

/// End offsets from what the producer wrote since the last forget, and past any record a
/// member read: a produce whose answer was lost after the broker wrote it is not acknowledged,
/// but its record is in the log and may be read and committed.
pub(super) fn end_offsets(entries: &[Entry]) -> BTreeMap<(String, i32), i64> {
    let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for e in entries {
        match &e.event {
            Event::Produced {
                topic,
                partition,
                last,
                ..
            } => {
                let v = out.entry((topic.clone(), *partition)).or_insert(0);
                *v = (*v).max(last + 1);
            }
            Event::Processed {
                topic,
                partition,
                last,
                ..
            } => {
                if let Some(v) = out.get_mut(&(topic.clone(), *partition)) {
                    *v = (*v).max(last + 1);
                }
            }
            Event::Forgotten { topic, partitions } => {
                for p in partitions {
                    out.remove(&(topic.clone(), *p));
                }
            }
            _ => {}
        }
    }
    out
}

pub(super) fn drained(ctx: &Ctx, committed: &Offsets) -> bool {
    let ends = ctx.journal.with(end_offsets);
    ends.iter().all(|((t, p), end)| {
        committed
            .get(t)
            .and_then(|ps| ps.get(p))
            .is_some_and(|c| c == end)
    })
}

pub(super) fn status(ctx: &Ctx) -> String {
    let mut st = Stability::new(ctx.counts());
    let mut processed = 0u64;
    ctx.journal.with(|entries| {
        for e in entries {
            st.apply(e);
            if let Event::Processed { first, last, .. } = &e.event {
                processed += (last - first + 1) as u64;
            }
        }
    });
    format!(
        "generation {} · {} members · {} · produced {} · processed {}",
        st.generation(),
        st.running().len(),
        if st.is_stable() {
            "stable"
        } else {
            "rebalancing"
        },
        ctx.produced.load(Ordering::Relaxed),
        processed
    )
}
