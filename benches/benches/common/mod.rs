//! The drain loops of the throughput measurement, shared by `benches/group.rs` and
//! `examples/consume_timing.rs` so that both time the same thing: from the first record to the
//! `records`th (the join is not counted).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};

/// cohort: receives and acknowledges `records` records, then aborts the consumer.
pub(crate) async fn cohort_drain(cfg: cohort::GroupConfig, records: usize) -> Duration {
    let mut c = cohort::Consumer::new(cfg).await.expect("consumer");
    let mut n = 0;
    let mut first = None;
    while let Some(r) = c.recv().await {
        let r = r.expect("record");
        first.get_or_insert_with(Instant::now);
        c.ack(&r);
        n += 1;
        if n == records {
            break;
        }
    }
    let took = first.map(|f| f.elapsed()).unwrap_or_default();
    c.abort();
    took
}

/// librdkafka: subscribes to `topic` and polls on this thread, reading every payload.
pub(crate) fn rd_drain(
    cfg: &rdkafka::config::ClientConfig,
    topic: &str,
    records: usize,
) -> Duration {
    let c: BaseConsumer = cfg.create().expect("librdkafka");
    c.subscribe(&[topic]).unwrap();
    let mut n = 0;
    let mut first = None;
    while n < records {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                std::hint::black_box(rdkafka::message::Message::payload(&m));
                n += 1;
            }
            Some(Err(err)) => panic!("librdkafka: {err}"),
            None => {}
        }
    }
    first.map(|f| f.elapsed()).unwrap_or_default()
}
