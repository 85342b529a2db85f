//! A broker that answers Fetch with a few megabytes of zstd that decompress to ten times as much
//! in millions of one-byte records must cost the consumer a bounded amount of memory, never the process.
//!
//! The group runs on the real test broker; a dialer between the consumer and it rewrites every
//! Fetch response, replacing each partition's records with crafted batches at the requested
//! offset (the "hostile broker"). The test process's peak resident set is the measure (this
//! file is its own test binary, and the broker another process).
#![allow(
    clippy::disallowed_methods,
    reason = "a test against a real broker reads the clock"
)]

mod common;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use cohort::{BoxedStream, Dialer, TcpDialer};
use cohort::{ConsumerEvent, Error};
use cohort_balancers::Range;
use cohort_protocol::frame::{decode_request_header, decode_response, encode_response};
use cohort_protocol::messages::FetchRequest;
use cohort_protocol::records::Compression;
use cohort_protocol::testing::amplified_batch;
use cohort_protocol::{ApiKey, Decode, DecodeError};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The process's resident set: now and its peak (`VmRSS`, `VmHWM`), in bytes.
fn rss() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| {
                v.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident set to the current one (Linux 4.0+, `clear_refs` value 5).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
}

/// What the hostile broker puts in each partition of a Fetch response.
const AMPLIFY: u8 = 1;
const ONE_HUGE_BATCH: u8 = 2;

struct Crafted {
    /// 600,000 records, about 5 MiB decompressed.
    medium: Bytes,
    /// 8,000,000 records, about 70 MiB decompressed.
    huge: Bytes,
}

/// Rewrites the Fetch responses of every connection it opens.
struct HostileDialer {
    mode: Arc<AtomicU8>,
    crafted: Arc<Crafted>,
}

fn at(batch: &Bytes, base: i64) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[..8].copy_from_slice(&base.to_be_bytes());
    b.freeze()
}

async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> io::Result<Bytes> {
    let n = r.read_i32().await?;
    let mut buf = vec![0; n.max(0) as usize];
    r.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}

async fn write_frame(w: &mut (impl AsyncWriteExt + Unpin), frame: &[u8]) -> io::Result<()> {
    w.write_i32(frame.len() as i32).await?;
    w.write_all(frame).await
}

/// A Fetch request's version and partition offsets, by correlation id.
type Pending = Arc<Mutex<HashMap<i32, (i16, HashMap<(String, i32), i64>)>>>;

#[async_trait]
impl Dialer for HostileDialer {
    async fn dial(&self, addr: &str) -> io::Result<BoxedStream> {
        let broker = TcpDialer::default().dial(addr).await?;
        let (client_side, ours) = tokio::io::duplex(1 << 20);
        let (mut from_client, mut to_client) = tokio::io::split(ours);
        let (mut from_broker, mut to_broker) = tokio::io::split(broker);
        let pending: Pending = Arc::default();
        let p = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Ok(frame) = read_frame(&mut from_client).await {
                if let Ok((Some(ApiKey::Fetch), header, mut body)) =
                    decode_request_header(frame.clone())
                {
                    let v = header.request_api_version;
                    if let Ok(req) = FetchRequest::decode(&mut body, v) {
                        let offsets = req
                            .topics
                            .iter()
                            .flat_map(|t| {
                                t.partitions
                                    .iter()
                                    .map(|p| ((t.topic.to_string(), p.partition), p.fetch_offset))
                            })
                            .collect();
                        p.lock()
                            .unwrap()
                            .insert(header.correlation_id, (v, offsets));
                    }
                }
                if write_frame(&mut to_broker, &frame).await.is_err() {
                    return;
                }
            }
        });
        let (mode, crafted) = (Arc::clone(&self.mode), Arc::clone(&self.crafted));
        tokio::spawn(async move {
            while let Ok(frame) = read_frame(&mut from_broker).await {
                let id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let fetch = pending.lock().unwrap().remove(&id);
                let out = match fetch {
                    Some((v, offsets)) => {
                        let (_, mut resp) = decode_response::<FetchRequest>(frame, v).unwrap();
                        for t in &mut resp.responses {
                            for p in &mut t.partitions {
                                let Some(&off) =
                                    offsets.get(&(t.topic.to_string(), p.partition_index))
                                else {
                                    continue;
                                };
                                let mut records = BytesMut::new();
                                if mode.load(Ordering::Relaxed) == AMPLIFY {
                                    records.extend_from_slice(&at(&crafted.medium, off));
                                    records.extend_from_slice(&at(&crafted.medium, off + 600_000));
                                    records.extend_from_slice(&at(&crafted.huge, off + 1_200_000));
                                } else {
                                    records.extend_from_slice(&at(&crafted.huge, off));
                                }
                                p.error_code = 0;
                                p.high_watermark = off + 10_000_000;
                                p.last_stable_offset = p.high_watermark;
                                p.records = Some(records.freeze());
                            }
                        }
                        let mut out = BytesMut::new();
                        encode_response(&mut out, ApiKey::Fetch, v, id, &resp).unwrap();
                        out.split_off(4).freeze()
                    }
                    None => frame,
                };
                if write_frame(&mut to_client, &out).await.is_err() {
                    return;
                }
            }
        });
        Ok(Box::new(client_side))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_compressed_batches_cost_bounded_memory() {
    let broker = TestBroker::shared().expect("broker");
    let (topic, group) = (unique_name("hostile"), unique_name("g"));
    let _p = common::topic(broker, &topic, 1).await;
    let crafted = Arc::new(Crafted {
        medium: amplified_batch(600_000, Compression::Zstd),
        huge: amplified_batch(8_000_000, Compression::Zstd),
    });
    // About 8 MiB on the wire for 90 MiB of records.
    let wire = crafted.medium.len() * 2 + crafted.huge.len();
    assert!(wire < 10 << 20, "the crafted batches take {wire} bytes");
    let mode = Arc::new(AtomicU8::new(AMPLIFY));
    let mut cfg = group_config(broker.bootstrap(), &group, &[&topic], Box::new(Range));
    cfg.client.dialer = Arc::new(HostileDialer {
        mode: Arc::clone(&mode),
        crafted,
    });
    const BUDGET: usize = 16 << 20;
    cfg.fetch_max_decompressed_bytes = BUDGET;
    // Commits are beside the point (and would go to offsets past the real log end).
    cfg.auto_commit_interval = None;

    reset_peak();
    let (baseline, _) = rss();
    let mut c = cohort::Consumer::new(cfg).await.expect("consumer");
    let mut events = c.events().unwrap();

    // Every fetch claims 9.2 million records in 90 MiB; the consumer takes what its buffer
    // holds (10,000), in order, and fetches the rest from where it stopped.
    let mut expected = 0i64;
    while expected < 50_000 {
        let r = tokio::time::timeout(Duration::from_secs(60), c.recv())
            .await
            .expect("records")
            .expect("open")
            .expect("record");
        assert_eq!(r.offset, expected);
        expected += 1;
    }

    // The budget, the buffer's 10,000 records, the zstd window and a few copies of the 8 MiB
    // frames (the dialer's and the consumer's); without the budget this passes 1 GiB.
    const BOUND: usize = 128 << 20;
    let peak = rss().1.saturating_sub(baseline);
    eprintln!("peak resident set {} MiB above the baseline", peak >> 20);
    assert!(
        peak < BOUND,
        "peak resident set {} MiB above the baseline",
        peak >> 20
    );

    // A batch that alone is larger than the whole budget is an error on its partition.
    mode.store(ONE_HUGE_BATCH, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::select! {
            e = events.recv() => {
                if let ConsumerEvent::Error(Error::Protocol {
                    error: DecodeError::LimitExceeded { limit, .. },
                    ..
                }) = e.expect("events")
                {
                    assert_eq!(limit, BUDGET);
                    break;
                }
            }
            r = c.recv() => { r.expect("open").expect("record"); }
            () = tokio::time::sleep_until(deadline) => panic!("no limit error"),
        }
    }
    let peak = rss().1.saturating_sub(baseline);
    c.abort();
    eprintln!("peak resident set {} MiB above the baseline", peak >> 20);
    assert!(
        peak < BOUND,
        "peak resident set {} MiB above the baseline",
        peak >> 20
    );
}
