//! Fetching: one loop per partition leader, long-polling Fetch for the partitions that are
//! started, not paused and below their buffer limit.
//!
//! Fetch is capped at v12 so that topics are named (v13+ uses topic ids) and no fetch session
//! is kept (session id 0, epoch -1: a full fetch every time, which brokers always accept).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cohort_protocol::messages::{
    FetchRequest, OffsetForLeaderEpochRequest, fetch_request, offset_for_leader_epoch_request,
};
use cohort_protocol::records::{BatchIter, DecodeBudget, DecodeOptions, RecordRef};
use cohort_protocol::{ApiKey, ErrorCode};

use super::{ConsumerEvent, ConsumerRecord, Inner, StartOffset, Status};
use crate::TopicPartition;
use crate::backoff::{Backoff, Jitter};
use crate::config::OffsetReset;
use crate::conn::Target;
use crate::error::Error;
use crate::offsets;

const FETCH_VERSION_CAP: i16 = 12;

/// Learns the subscribed topics' leaders and opens the fetch connections to them while the
/// member joins, as franz-go does at its start, so that the first fetch after the assignment
/// waits neither for a metadata round trip nor for two connection set-ups (a static member's
/// restart spent about 9 of its 13 ms there; docs/BENCHMARKS.md, "Rebalance latency"). The
/// metadata goes on a connection of its own, which the leader's fetch connection then takes
/// (`Cluster::warm_metadata`): on the member's bootstrap connection it would hold up the
/// coordinator lookup or the JoinGroup behind it. Best effort: whatever fails here is done
/// again when the partitions arrive.
async fn warm_up(inner: Arc<Inner>) {
    let crate::config::Subscription::Topics(topics) = &inner.subscription else {
        return;
    };
    if topics.is_empty() {
        return;
    }
    let meta = match inner.cluster.warm_metadata(topics).await {
        Ok(m) => m,
        // `warm_metadata` has closed the warm connection if it failed on it.
        Err(e) => {
            tracing::debug!(error = %e, "warm-up metadata failed");
            return;
        }
    };
    let leaders: BTreeSet<i32> = meta
        .values()
        .flat_map(|t| t.partitions.iter().map(|p| p.leader))
        .filter(|&l| l >= 0)
        .collect();
    for l in leaders {
        if let Err(e) = inner
            .cluster
            .supports(Target::Broker(l), ApiKey::Fetch, 0)
            .await
        {
            tracing::debug!(leader = l, error = %e, "warm-up connection failed");
        }
    }
    inner.cluster.close_warm();
}

/// Supervises the per-leader loops.
pub(crate) async fn run(inner: Arc<Inner>) {
    let warming = tokio::spawn(warm_up(Arc::clone(&inner)));
    let _warming = AbortOnDrop(warming);
    let mut loops: BTreeMap<i32, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let notified = inner.fetchable.notified();
        let (closed, fetching): (bool, Vec<TopicPartition>) = {
            let st = inner.lock();
            (
                st.closed,
                st.partitions
                    .iter()
                    .filter(|(_, p)| matches!(p.status, Status::Fetching))
                    .map(|(tp, _)| tp.clone())
                    .collect(),
            )
        };
        if closed {
            for (_, h) in loops {
                h.abort();
            }
            return;
        }
        if let Some(at) = inner.lock().last_assigned {
            inner
                .telemetry
                .last_rebalance_seconds_ago
                .set(at.elapsed().as_secs_f64());
        }
        let mut leaders = BTreeSet::new();
        let mut unknown: BTreeSet<String> = BTreeSet::new();
        for TopicPartition {
            topic: t,
            partition: p,
        } in &fetching
        {
            match inner.cluster.leader(t, *p) {
                Some(l) => {
                    leaders.insert(l);
                }
                None => {
                    unknown.insert(t.clone());
                }
            }
        }
        if !unknown.is_empty() {
            let topics: Vec<String> = unknown.into_iter().collect();
            if let Err(e) = inner.cluster.refresh_metadata(Some(&topics)).await {
                tracing::debug!(error = %e, "metadata refresh failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        }
        for l in leaders {
            if loops.get(&l).is_none_or(|h| h.is_finished()) {
                loops.insert(l, tokio::spawn(leader_loop(Arc::clone(&inner), l)));
            }
        }
        tokio::select! {
            () = notified => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Aborts a task when dropped (the fetcher's own end, or its abort on close).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One partition's part of a fetch response, decoded outside the consumer's lock.
struct Decoded {
    tp: TopicPartition,
    sent_offset: i64,
    epoch: u64,
    error: i16,
    high_watermark: i64,
    records: Vec<(i64, ConsumerRecord)>,
    /// The fetch position after these records.
    next: i64,
    /// Where the batches' leader epochs changed (first offset, epoch).
    epochs: Vec<(i64, i32)>,
    corrupt: Option<cohort_protocol::DecodeError>,
}

async fn leader_loop(inner: Arc<Inner>, leader: i32) {
    let cfg = inner.cluster.config().clone();
    let mut backoff = Backoff::new(
        cfg.retry_backoff,
        cfg.retry_backoff_max,
        Jitter::from_process(),
    );
    let mut idle_rounds = 0u32;
    // When partitions caught up with their log end were last fetched while others were held
    // back (see below).
    let mut caught_up_polled = std::time::Instant::now();
    let mut rotation = 0usize;
    loop {
        // KIP-320: a partition whose leader changed since its position was last checked is
        // validated with the new leader before it is fetched again.
        let checks = unvalidated(&inner, leader);
        if !checks.is_empty() {
            if !validate(&inner, leader, checks).await {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            continue;
        }
        let notified = inner.fetchable.notified();
        // Partitions of this leader held back because their buffers are more than half full:
        // a long poll for the others would keep them waiting until it returns, so then the
        // fetch does not wait on the broker (the buffers draining wakes the loop instead).
        // Partitions already caught up with their log end would answer such a fetch with
        // nothing, costing a round trip while the held-back ones drain: they are left out,
        // except once per `fetch_max_wait` so new data on them is still seen within the usual
        // long-poll bound.
        let poll_caught_up = caught_up_polled.elapsed() >= inner.fetch_max_wait;
        let (held_back, mut batch): (bool, Vec<(TopicPartition, i64, u64, usize)>) = {
            let st = inner.lock();
            if st.closed {
                return;
            }
            let eligible = |tp: &TopicPartition, p: &super::PartitionState| {
                matches!(p.status, Status::Fetching)
                    && !p.paused
                    && inner.cluster.leader(&tp.topic, tp.partition) == Some(leader)
            };
            // A partition is fetched again once delivery has drained its buffer to half (when
            // delivery also wakes the fetchers): fetched with less room, most of a response
            // (up to max_partition_fetch_bytes) was dropped undecoded and fetched again, and
            // traces showed every other fetch carrying a tenth of what it could.
            let refill_at = inner.max_buffered / 2;
            let held_back = st
                .partitions
                .iter()
                .any(|(tp, p)| eligible(tp, p) && p.tracker.buffer.len() > refill_at);
            let batch = st
                .partitions
                .iter()
                .filter(|(tp, p)| {
                    eligible(tp, p)
                        && p.tracker.buffer.len() <= refill_at
                        && (!held_back
                            || poll_caught_up
                            || p.tracker.fetch_offset < p.high_watermark
                            || p.high_watermark < 0)
                })
                .map(|(tp, p)| {
                    // Room in the buffer: records beyond it are not decoded now (the buffer only
                    // drains until the response is applied, so this bounds what it can hold).
                    let room = inner.max_buffered - p.tracker.buffer.len();
                    (tp.clone(), p.tracker.fetch_offset, p.epoch, room)
                })
                .collect();
            (held_back, batch)
        };
        if held_back && poll_caught_up {
            caught_up_polled = std::time::Instant::now();
        }
        if batch.is_empty() && held_back {
            // Everything with room is caught up: wait for a buffer to drain.
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(inner.fetch_max_wait) => {}
            }
            continue;
        }
        if batch.is_empty() {
            idle_rounds += 1;
            // A leader without partitions for a minute lets its loop go; the supervisor starts
            // a new one when needed.
            if idle_rounds > 60 {
                return;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        idle_rounds = 0;
        // KIP-74: the broker fills the response in request order up to `fetch.max.bytes`, and
        // the decode budget below is spent in the same order, so the order rotates from one
        // request to the next: no partition waits behind the others for ever.
        let start = rotation % batch.len();
        batch.rotate_left(start);
        rotation = rotation.wrapping_add(1);
        let mut topics: Vec<(&str, Vec<fetch_request::FetchPartition>)> = Vec::new();
        for (
            TopicPartition {
                topic: t,
                partition: p,
            },
            offset,
            _,
            _,
        ) in &batch
        {
            let i = match topics.iter().position(|(name, _)| *name == t.as_str()) {
                Some(i) => i,
                None => {
                    topics.push((t.as_str(), Vec::new()));
                    topics.len() - 1
                }
            };
            topics[i].1.push(fetch_request::FetchPartition {
                partition: *p,
                // KIP-320: a leader that is not (or not yet) of this epoch refuses the fetch
                // (FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH) instead of serving a log the
                // consumer has not validated its position against.
                current_leader_epoch: inner.cluster.leader_epoch(t, *p).unwrap_or(-1),
                fetch_offset: *offset,
                last_fetched_epoch: -1,
                log_start_offset: -1,
                partition_max_bytes: inner.max_partition_fetch_bytes,
                ..Default::default()
            });
        }
        let req = FetchRequest {
            replica_id: -1,
            // 1 ms rather than 0: Tansu answers a Fetch with max_wait_ms = 0 with no topics at
            // all, never with data (conformance check `fetch-max-wait-zero`); on Apache Kafka
            // the two are the same.
            max_wait_ms: if held_back {
                1
            } else {
                crate::config::millis_i32(inner.fetch_max_wait)
            },
            min_bytes: 1,
            max_bytes: inner.fetch_max_bytes,
            isolation_level: inner.isolation_level.wire(),
            session_id: 0,
            session_epoch: -1,
            topics: topics
                .into_iter()
                .map(|(t, partitions)| fetch_request::FetchTopic {
                    topic: t.to_owned().into(),
                    partitions,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let timeout = inner.fetch_max_wait + cfg.request_timeout;
        let sent_at = std::time::Instant::now();
        let resp = inner
            .cluster
            .send_capped(
                Target::Broker(leader),
                &req,
                timeout,
                Some(FETCH_VERSION_CAP),
            )
            .await;
        let answered_us = sent_at.elapsed().as_micros() as u64;
        let resp = match resp {
            Ok((_, r)) => {
                backoff.reset();
                inner
                    .telemetry
                    .fetch_latency
                    .record(sent_at.elapsed().as_secs_f64());
                r
            }
            Err(e) => {
                tracing::debug!(leader, error = %e, "fetch failed");
                inner.cluster.disconnect(Target::Broker(leader));
                let topics: Vec<String> = batch
                    .iter()
                    .map(|(tp, _, _, _)| tp.topic.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let _ = inner.cluster.refresh_metadata(Some(&topics)).await;
                if backoff.attempts() >= 3 {
                    inner.event(ConsumerEvent::Error(e));
                }
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let epochs: BTreeMap<TopicPartition, (i64, u64, usize)> = batch
            .into_iter()
            .map(|(tp, o, e, room)| (tp, (o, e, room)))
            .collect();
        let mut refresh = false;
        let mut resets: Vec<(TopicPartition, i64, u64)> = Vec::new();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let min_ts = inner.max_record_age.map(|a| now_ms - a.as_millis() as i64);
        // Emptied record vectors to decode into (see `tracker::Buffer`), one per partition.
        let (generation, mut spare) = {
            let mut st = inner.lock();
            let spare: Vec<_> = (0..epochs.len()).map(|_| st.spare.take()).collect();
            (st.generation, spare)
        };
        // Decode outside the lock (the application keeps receiving meanwhile); apply under it.
        let mut decoded: Vec<Decoded> = Vec::new();
        // What decoding this response may cost, whatever its batches claim (see DecodeBudget).
        let mut budget = DecodeBudget::new(inner.fetch_max_decompressed_bytes, usize::MAX);
        let read_committed = inner.isolation_level == crate::config::IsolationLevel::ReadCommitted;
        for t in &resp.responses {
            let topic: Arc<str> = Arc::from(t.topic.as_str());
            for pd in &t.partitions {
                let tp = TopicPartition::new(t.topic.to_string(), pd.partition_index);
                let Some(&(sent_offset, epoch, room)) = epochs.get(&tp) else {
                    continue;
                };
                let mut d = Decoded {
                    tp,
                    sent_offset,
                    epoch,
                    error: pd.error_code,
                    // Under read_committed the end that counts (for lag, and for whether the
                    // partition is caught up) is the last stable offset.
                    high_watermark: if read_committed && pd.last_stable_offset >= 0 {
                        pd.last_stable_offset
                    } else {
                        pd.high_watermark
                    },
                    records: spare.pop().unwrap_or_default(),
                    next: sent_offset,
                    epochs: Vec::new(),
                    corrupt: None,
                };
                if d.error == 0
                    && let Some(records) = pd.records.clone()
                {
                    // One allocation for the partition's records, sized from its bytes (a
                    // record of a 100-byte value takes about 110 in a batch; small records
                    // grow the vector once or twice), or none when the spare vector is large
                    // enough. Capped so that a hostile frame of tiny records cannot make this
                    // reservation much larger than the frame.
                    d.records.reserve((records.len() / 48).min(1 << 16));
                    let mut batches = BatchIter::with_budget(
                        records,
                        DecodeOptions::default(),
                        DecodeBudget {
                            records: room,
                            ..budget
                        },
                    )
                    .starting_at(sent_offset);
                    let mut txns = read_committed.then(|| {
                        Transactions::new(pd.aborted_transactions.as_deref().unwrap_or_default())
                    });
                    for batch in &mut batches {
                        let batch = match batch {
                            Ok(b) => b,
                            Err(e) => {
                                d.corrupt = Some(e);
                                break;
                            }
                        };
                        let e = batch.header.partition_leader_epoch;
                        if d.epochs.last().is_none_or(|&(_, last)| last != e) {
                            d.epochs
                                .push((batch.header.base_offset.max(sent_offset), e));
                        }
                        let aborted = txns.as_mut().is_some_and(|t| t.skip(&batch));
                        if !batch.header.is_control && !aborted {
                            let from = d.next;
                            let fresh =
                                |r: &RecordRef<'_>| min_ts.is_none_or(|m| r.timestamp() >= m);
                            // A record shares its batch's buffer; when few of a large batch's
                            // bytes are kept, they are copied so the rest can be freed.
                            let kept: usize = batch
                                .records()
                                .filter(|r| r.offset() >= from && fresh(r))
                                .map(|r| {
                                    r.key().map_or(0, <[u8]>::len)
                                        + r.value().map_or(0, <[u8]>::len)
                                })
                                .sum();
                            let copy = kept.saturating_mul(2) < batch.data().len();
                            d.records.reserve(batch.len());
                            for r in batch.records() {
                                if r.offset() < d.next {
                                    continue;
                                }
                                if !fresh(&r) {
                                    d.next = d.next.max(r.offset().saturating_add(1));
                                    continue;
                                }
                                let (key, value) = if copy {
                                    (
                                        r.key().map(bytes::Bytes::copy_from_slice),
                                        r.value().map(bytes::Bytes::copy_from_slice),
                                    )
                                } else {
                                    (r.key_bytes(), r.value_bytes())
                                };
                                d.records.push((
                                    r.offset(),
                                    ConsumerRecord {
                                        topic: Arc::clone(&topic),
                                        partition: pd.partition_index,
                                        offset: r.offset(),
                                        timestamp: r.timestamp(),
                                        key,
                                        value,
                                        headers: r
                                            .headers()
                                            .map(|(k, v)| {
                                                (k.to_owned(), v.map(bytes::Bytes::copy_from_slice))
                                            })
                                            .collect(),
                                        generation,
                                        epoch,
                                    },
                                ));
                                d.next = r.offset().saturating_add(1);
                            }
                        }
                        // The batch's end, or after its last indexed record when the budget
                        // cut it: the next fetch starts there.
                        d.next = d.next.max(batch.next_offset());
                    }
                    budget.bytes = batches.budget().bytes;
                }
                decoded.push(d);
            }
        }
        let added = {
            let mut st = inner.lock();
            for v in spare {
                st.spare.give(v);
            }
            let mut added = 0u64;
            for mut d in decoded {
                if d.records.is_empty() {
                    st.spare.give(std::mem::take(&mut d.records));
                }
                let Some(p) = st.partitions.get_mut(&d.tp) else {
                    continue;
                };
                // A revoke, a reset or a new assignment since the request was sent makes its
                // data stale.
                if p.epoch != d.epoch
                    || !matches!(p.status, Status::Fetching)
                    || p.tracker.fetch_offset != d.sent_offset
                {
                    continue;
                }

                match ErrorCode::check(d.error) {
                    Ok(()) => {}
                    Err(ErrorCode::OffsetOutOfRange) => {
                        p.status = Status::Starting;
                        resets.push((d.tp.clone(), d.sent_offset, d.epoch));
                        continue;
                    }
                    Err(
                        ErrorCode::NotLeaderOrFollower
                        | ErrorCode::LeaderNotAvailable
                        | ErrorCode::UnknownTopicOrPartition
                        | ErrorCode::FencedLeaderEpoch
                        | ErrorCode::UnknownLeaderEpoch
                        | ErrorCode::KafkaStorageError
                        | ErrorCode::ReplicaNotAvailable,
                    ) => {
                        refresh = true;
                        continue;
                    }
                    Err(code) => {
                        inner.event(ConsumerEvent::Error(Error::Broker {
                            api: ApiKey::Fetch,
                            code,
                            context: d.tp.to_string(),
                        }));
                        continue;
                    }
                }
                p.high_watermark = d.high_watermark;
                // Paused since the request went out: its data is dropped, not buffered, and
                // fetched again from the same offset after `resume` (a paused partition holds
                // no memory for records nobody will read until then).
                if p.paused {
                    continue;
                }
                added += d.records.len() as u64;
                for &(offset, e) in &d.epochs {
                    p.epochs.saw(offset, e);
                }
                p.tracker.extend(d.records);
                p.tracker.skip_to(d.next);
                p.lag_gauge
                    .set((p.high_watermark - p.tracker.position()).max(0) as f64);
                if let Some(e) = d.corrupt {
                    // A corrupt batch cannot be skipped safely: report and stop the partition
                    // (as Java raises CorruptRecordException). What decoded before it stays.
                    inner.event(ConsumerEvent::Error(Error::Protocol {
                        broker: format!("broker {leader} ({})", d.tp),
                        error: e,
                    }));
                    p.status = Status::Stalled;
                }
            }
            added
        };
        tracing::trace!(
            leader,
            records = added,
            answered_us,
            took_us = sent_at.elapsed().as_micros() as u64,
            "fetched"
        );
        if added > 0 {
            inner.readable.notify_waiters();
        } else if held_back {
            // Nothing new for the partitions with room, and the others are full: wait for the
            // application to drain a buffer rather than spin.
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(inner.fetch_max_wait) => {}
            }
        }
        if refresh {
            let _ = inner
                .cluster
                .refresh_metadata(Some(
                    &epochs.keys().map(|tp| tp.topic.clone()).collect::<Vec<_>>(),
                ))
                .await;
            // A broker behind the leader's epoch (or ahead of ours) keeps answering so until
            // metadata catches up: wait `retry.backoff.ms` before asking again, as Java does.
            tokio::time::sleep(cfg.retry_backoff).await;
            inner.fetchable.notify_waiters();
        }
        for (tp, offset, epoch) in resets {
            let inner2 = Arc::clone(&inner);
            tokio::spawn(async move { reset_offset(inner2, tp, offset, epoch).await });
        }
    }
}

/// OFFSET_OUT_OF_RANGE: the hook decides, else the reset policy.
async fn reset_offset(inner: Arc<Inner>, tp: TopicPartition, offset: i64, epoch: u64) {
    let choice = match &inner.out_of_range {
        Some(h) => h(&tp, offset),
        None => match inner.offset_reset {
            OffsetReset::Earliest => StartOffset::Earliest,
            OffsetReset::Latest => StartOffset::Latest,
            OffsetReset::None => {
                inner.event(ConsumerEvent::Error(Error::Broker {
                    api: ApiKey::Fetch,
                    code: ErrorCode::OffsetOutOfRange,
                    context: format!("{tp} at offset {offset}; offset_reset is None"),
                }));
                if let Some(p) = inner.lock().partitions.get_mut(&tp) {
                    p.status = Status::Stalled;
                }
                return;
            }
        },
    };
    let target = match choice {
        StartOffset::Offset(o) => Ok(o),
        StartOffset::Earliest | StartOffset::Committed => {
            offsets::list_offsets(&inner.cluster, std::slice::from_ref(&tp), offsets::EARLIEST)
                .await
                .map(|m| m.get(&tp).copied().unwrap_or(0))
        }
        StartOffset::Latest => offsets::list_offsets_isolated(
            &inner.cluster,
            std::slice::from_ref(&tp),
            offsets::LATEST,
            inner.isolation_level,
        )
        .await
        .map(|m| m.get(&tp).copied().unwrap_or(0)),
    };
    let mut st = inner.lock();
    match target {
        Ok(o) => {
            if let Some(p) = st.partitions.get_mut(&tp)
                && p.epoch == epoch
            {
                tracing::info!(topic = %tp.topic, partition = tp.partition, from = offset, to = o, "offset out of range; reset");
                p.tracker.seek(o);
                p.epochs.reset(o, None);
                p.status = Status::Fetching;
            }
        }
        Err(e) => {
            drop(st);
            inner.event(ConsumerEvent::Error(e));
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut st = inner.lock();
            if let Some(p) = st.partitions.get_mut(&tp)
                && p.epoch == epoch
            {
                // Try again through the normal fetch path.
                p.status = Status::Fetching;
            }
            return;
        }
    }
    drop(st);
    inner.fetchable.notify_waiters();
}

/// A fetch position to check with its partition's leader (KIP-320).
struct Check {
    tp: TopicPartition,
    /// The assignment epoch of the partition when the check was decided.
    epoch: u64,
    fetch_offset: i64,
    /// The leader epoch of the record before `fetch_offset`.
    position_epoch: i32,
    /// The leader epoch the metadata gives now.
    current: i32,
}

/// This leader's partitions whose position was not checked since the metadata's leader epoch
/// changed. A position with no known epoch (a seek, a reset, a committed offset without one)
/// cannot be checked and is taken as it is, as Java's consumer does.
///
/// Nor is a position whose epoch is the leader's current one (or newer than the metadata
/// knows): a leader never truncates its own log during its epoch, only a new leader's log can
/// end that epoch earlier (KIP-320), so the answer could only be "valid". Java's
/// `SubscriptionState` asks whenever both epochs are known, which puts an OffsetForLeaderEpoch
/// round trip before the first fetch of every partition a member starts from a committed
/// offset, after every rebalance and restart. Metadata older than the leader shows at the
/// fetch, which carries the epoch it knows (FENCED_LEADER_EPOCH, then the check with the new
/// epoch).
fn unvalidated(inner: &Inner, leader: i32) -> Vec<Check> {
    let mut st = inner.lock();
    let mut checks = Vec::new();
    for (tp, p) in &mut st.partitions {
        if !matches!(p.status, Status::Fetching)
            || p.paused
            || inner.cluster.leader(&tp.topic, tp.partition) != Some(leader)
        {
            continue;
        }
        let Some(current) = inner.cluster.leader_epoch(&tp.topic, tp.partition) else {
            continue;
        };
        if p.validated == Some(current) {
            continue;
        }
        match p.epochs.before(p.tracker.fetch_offset) {
            Some(position_epoch) if position_epoch < current => checks.push(Check {
                tp: tp.clone(),
                epoch: p.epoch,
                fetch_offset: p.tracker.fetch_offset,
                position_epoch,
                current,
            }),
            _ => p.validated = Some(current),
        }
    }
    checks
}

/// What the leader said of one position.
enum Verdict {
    /// Its log holds the position's epoch up to the position or beyond.
    Valid,
    /// Its log ends the position's epoch before the position: truncated there.
    Diverged { offset: i64, epoch: i32 },
    /// It knows no epoch up to the position's (the log was truncated past all of it).
    Unknown,
}

/// Asks the leader where each position's epoch ends in its log (OffsetForLeaderEpoch, as
/// Java's `OffsetsForLeaderEpochUtils`), and acts on the answers: a position beyond the end of
/// its epoch was truncated away by an unclean leader election, and fetching resumes at the
/// divergence point (with a reset policy) or stops with [`Error::LogTruncated`] (without one),
/// unless the out-of-range hook decides. False when the request should be retried later.
async fn validate(inner: &Arc<Inner>, leader: i32, checks: Vec<Check>) -> bool {
    let mut topics: BTreeMap<&str, Vec<offset_for_leader_epoch_request::OffsetForLeaderPartition>> =
        BTreeMap::new();
    for c in &checks {
        topics.entry(c.tp.topic.as_str()).or_default().push(
            offset_for_leader_epoch_request::OffsetForLeaderPartition {
                partition: c.tp.partition,
                current_leader_epoch: c.current,
                leader_epoch: c.position_epoch,
                ..Default::default()
            },
        );
    }
    let req = OffsetForLeaderEpochRequest {
        // A consumer, not a replica (Java's `OffsetsForLeaderEpochRequest.CONSUMER_REPLICA_ID`).
        replica_id: -1,
        topics: topics
            .into_iter()
            .map(
                |(t, partitions)| offset_for_leader_epoch_request::OffsetForLeaderTopic {
                    topic: t.to_owned().into(),
                    partitions,
                    ..Default::default()
                },
            )
            .collect(),
        ..Default::default()
    };
    let timeout = inner.cluster.config().request_timeout;
    let resp = match inner
        .cluster
        .send(Target::Broker(leader), &req, timeout)
        .await
    {
        Ok(r) => r,
        Err(e @ Error::UnsupportedVersion { .. }) => {
            // A broker that cannot answer (before Kafka 2.1, or one that does not implement
            // it): positions are taken as they are, as Java does with such brokers.
            tracing::debug!(leader, error = %e, "positions not validated");
            let mut st = inner.lock();
            for c in &checks {
                if let Some(p) = st.partitions.get_mut(&c.tp) {
                    p.validated = Some(c.current);
                }
            }
            return true;
        }
        Err(e) => {
            tracing::debug!(leader, error = %e, "OffsetForLeaderEpoch failed");
            let topics: Vec<String> = checks.iter().map(|c| c.tp.topic.clone()).collect();
            let _ = inner.cluster.refresh_metadata(Some(&topics)).await;
            return false;
        }
    };
    let mut answered = true;
    let mut refresh = false;
    let mut verdicts: Vec<(&Check, Verdict)> = Vec::new();
    for t in &resp.topics {
        for r in &t.partitions {
            let Some(c) = checks
                .iter()
                .find(|c| c.tp.partition == r.partition && c.tp.topic == t.topic.as_str())
            else {
                continue;
            };
            match ErrorCode::check(r.error_code) {
                Ok(()) if r.end_offset < 0 || r.leader_epoch < 0 => {
                    verdicts.push((c, Verdict::Unknown));
                }
                Ok(()) if r.end_offset < c.fetch_offset => verdicts.push((
                    c,
                    Verdict::Diverged {
                        offset: r.end_offset,
                        epoch: r.leader_epoch,
                    },
                )),
                Ok(()) => verdicts.push((c, Verdict::Valid)),
                Err(code) if code.is_retriable() => {
                    refresh = true;
                    answered = false;
                }
                Err(code) => {
                    inner.event(ConsumerEvent::Error(Error::Broker {
                        api: ApiKey::OffsetForLeaderEpoch,
                        code,
                        context: c.tp.to_string(),
                    }));
                    answered = false;
                }
            }
        }
    }
    let mut resets = Vec::new();
    {
        let mut st = inner.lock();
        for (c, verdict) in verdicts {
            let Some(p) = st.partitions.get_mut(&c.tp) else {
                continue;
            };
            // Moved (a seek, a revoke, a new assignment) since the question was asked.
            if p.epoch != c.epoch
                || !matches!(p.status, Status::Fetching)
                || p.tracker.fetch_offset != c.fetch_offset
            {
                continue;
            }
            p.validated = Some(c.current);
            match verdict {
                Verdict::Valid => {}
                Verdict::Diverged { offset, epoch } => {
                    tracing::warn!(
                        topic = %c.tp.topic,
                        partition = c.tp.partition,
                        position = c.fetch_offset,
                        diverged_at = offset,
                        "log truncated below the fetch position (KIP-320)"
                    );
                    inner.event(ConsumerEvent::Truncated {
                        partition: c.tp.clone(),
                        position: c.fetch_offset,
                        diverged_at: Some(offset),
                    });
                    if inner.out_of_range.is_none() && inner.offset_reset != OffsetReset::None {
                        // Java's `SubscriptionState.maybeCompleteValidation`: with a reset
                        // policy, resume at the first offset known to diverge. Commits may go
                        // back to it: offsets past it name records that no longer exist.
                        p.tracker.seek(offset);
                        p.tracker.committed = None;
                        p.epochs.reset(offset, Some(epoch));
                    } else {
                        p.status = Status::Starting;
                        p.tracker.committed = None;
                        resets.push((c.tp.clone(), offset, c.epoch));
                    }
                }
                Verdict::Unknown => {
                    inner.event(ConsumerEvent::Truncated {
                        partition: c.tp.clone(),
                        position: c.fetch_offset,
                        diverged_at: None,
                    });
                    p.status = Status::Starting;
                    p.tracker.committed = None;
                    resets.push((c.tp.clone(), c.fetch_offset, c.epoch));
                }
            }
        }
    }
    for (tp, offset, epoch) in resets {
        let inner2 = Arc::clone(inner);
        tokio::spawn(async move { reset_after_truncation(inner2, tp, offset, epoch).await });
    }
    if refresh {
        let topics: Vec<String> = checks.iter().map(|c| c.tp.topic.clone()).collect();
        let _ = inner.cluster.refresh_metadata(Some(&topics)).await;
    }
    inner.fetchable.notify_waiters();
    answered
}

/// A truncated position without a way to resume on its own: the out-of-range hook decides (it
/// is given the divergence point), else the reset policy; with neither, the partition stops
/// with [`Error::LogTruncated`] (Java's `LogTruncationException`).
async fn reset_after_truncation(inner: Arc<Inner>, tp: TopicPartition, offset: i64, epoch: u64) {
    if inner.out_of_range.is_none() && inner.offset_reset == OffsetReset::None {
        inner.event(ConsumerEvent::Error(Error::LogTruncated {
            topic: tp.topic.clone(),
            partition: tp.partition,
            offset,
        }));
        if let Some(p) = inner.lock().partitions.get_mut(&tp)
            && p.epoch == epoch
        {
            p.status = Status::Stalled;
        }
        return;
    }
    reset_offset(inner, tp, offset, epoch).await;
}

/// Which transactional batches of one partition's Fetch response belong to aborted transactions
/// (`read_committed`), as Java's `CompletedFetch` decides: the response lists each aborted
/// transaction by producer id and first offset; a producer's batches are dropped from that
/// offset until its ABORT marker (a control batch whose record key has type 0).
struct Transactions {
    /// Aborted transactions not reached yet, by first offset, latest first (popped from the end).
    pending: Vec<(i64, i64)>,
    /// Producers inside an aborted transaction at the current batch.
    aborting: BTreeSet<i64>,
}

impl Transactions {
    fn new(aborted: &[cohort_protocol::messages::fetch_response::AbortedTransaction]) -> Self {
        let mut pending: Vec<(i64, i64)> = aborted
            .iter()
            .map(|a| (a.first_offset, a.producer_id))
            .collect();
        pending.sort_unstable_by(|a, b| b.cmp(a));
        Self {
            pending,
            aborting: BTreeSet::new(),
        }
    }

    /// Whether `batch` is dropped; call for every batch in offset order.
    fn skip(&mut self, batch: &cohort_protocol::records::DecodedBatch) -> bool {
        let h = &batch.header;
        if h.producer_id < 0 {
            return false;
        }
        let last = h.base_offset.saturating_add(i64::from(h.last_offset_delta));
        while let Some(&(first, producer)) = self.pending.last()
            && first <= last
        {
            self.aborting.insert(producer);
            self.pending.pop();
        }
        if h.is_control {
            // Control batches are never delivered; an ABORT marker ends its producer's
            // aborted transaction. The key is a version (int16) and a type (int16).
            let abort = batch.records().next().is_some_and(|r| {
                r.key()
                    .is_some_and(|k| k.len() >= 4 && i16::from_be_bytes([k[2], k[3]]) == 0)
            });
            if abort {
                self.aborting.remove(&h.producer_id);
            }
            return true;
        }
        h.is_transactional && self.aborting.contains(&h.producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::Transactions;
    use bytes::{Bytes, BytesMut};
    use cohort_protocol::messages::fetch_response::AbortedTransaction;
    use cohort_protocol::records::{BatchIter, DecodeOptions, RecordBatchBuilder};

    /// A data batch of `n` records from `producer`, or a marker (`Some(true)` commit, `Some(false)`
    /// abort), at `base`.
    fn batch(out: &mut BytesMut, base: i64, producer: i64, n: usize, marker: Option<bool>) {
        let mut b = RecordBatchBuilder::new(base).transactional(producer, 0);
        if let Some(commit) = marker {
            // Control record key: version 0, type 0 (abort) or 1 (commit).
            let key = Bytes::from(vec![0, 0, 0, u8::from(commit)]);
            b = b.control().push(0, Some(key), None, vec![]);
        } else {
            for _ in 0..n {
                b = b.push(0, None, Some(Bytes::from_static(b"v")), vec![]);
            }
        }
        b.build().encode(out).unwrap();
    }

    /// Two producers interleaved: producer 1's transaction at 0 is aborted, producer 2's at 2
    /// commits, producer 1's next one at 7 commits. Only the aborted one's batches go, and its
    /// marker ends the abort for producer 1 alone.
    #[test]
    fn aborted_transactions_are_dropped_per_producer_until_their_marker() {
        let mut out = BytesMut::new();
        batch(&mut out, 0, 1, 2, None); // 0-1: p1, aborted
        batch(&mut out, 2, 2, 2, None); // 2-3: p2, committed
        batch(&mut out, 4, 1, 1, Some(false)); // 4: p1 ABORT
        batch(&mut out, 5, 2, 1, Some(true)); // 5: p2 COMMIT
        batch(&mut out, 6, 1, 1, None); // 6: p1, next transaction
        batch(&mut out, 7, 1, 1, Some(true)); // 7: p1 COMMIT
        let aborted = [AbortedTransaction {
            producer_id: 1,
            first_offset: 0,
            ..Default::default()
        }];
        let mut t = Transactions::new(&aborted);
        let kept: Vec<i64> = BatchIter::new(out.freeze(), DecodeOptions::default())
            .map(Result::unwrap)
            .filter(|b| !t.skip(b))
            .flat_map(|b| b.records().map(|r| r.offset()).collect::<Vec<_>>())
            .collect();
        assert_eq!(kept, [2, 3, 6]);
    }
}
