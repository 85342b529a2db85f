//! A small producer and admin client: enough for tests, the harness and the demo to create
//! topics and write records. (Cohort is a consumer-group library; this is not a full producer:
//! no batching across calls, no idempotence.)

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use cohort_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, ProduceRequest,
    create_partitions_request, create_topics_request, delete_topics_request, produce_request,
};
use cohort_protocol::records::{Compression, RecordBatchBuilder, RecordHeader};
use cohort_protocol::{ApiKey, ErrorCode, StrBytes};

use crate::TopicPartition;
use crate::config::ClientConfig;
use crate::conn::{Cluster, Target};
use crate::error::Error;

/// One record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Timestamp (ms); `None` for now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value.
    pub fn value(v: impl Into<Bytes>) -> Self {
        Self {
            value: Some(v.into()),
            ..Default::default()
        }
    }

    /// A record with a key and a value.
    pub fn keyed(k: impl Into<Bytes>, v: impl Into<Bytes>) -> Self {
        Self {
            key: Some(k.into()),
            value: Some(v.into()),
            ..Default::default()
        }
    }
}

/// Kafka's murmur2 (`Utils.murmur2`), the hash of the Java client's default partitioner.
pub fn murmur2(data: &[u8]) -> i32 {
    let length = data.len() as i32;
    let seed: i32 = 0x9747_b28c_u32 as i32;
    let m: i32 = 0x5bd1_e995;
    let r = 24;
    let mut h: i32 = seed ^ length;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(m);
        k ^= ((k as u32) >> r) as i32;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    if rest.len() >= 3 {
        h ^= i32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= i32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= i32::from(rest[0]);
        h = h.wrapping_mul(m);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(m);
    h ^= ((h as u32) >> 15) as i32;
    h
}

/// The Java client's partition for a key: `toPositive(murmur2(key)) % partitions`. Keys map to
/// the same partitions as Java and librdkafka (`murmur2_random`) producers.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Writes records and manages topics.
#[derive(Debug, Clone)]
pub struct Producer {
    cluster: Cluster,
    /// Compression of produced batches.
    pub compression: Compression,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// When [`Producer::leader`] refreshes the metadata first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// Only when the cache names no leader (sends: the cache is right almost always).
    WhenUnknown,
    /// Every time (reads: tools and broker checks, rare and after topics may have changed).
    Always,
}

impl Producer {
    /// A producer for a cluster.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            cluster: Cluster::new(config),
            compression: Compression::None,
        }
    }

    /// The cluster handle (no semver promise: `unstable-internals`).
    #[cfg(feature = "unstable-internals")]
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Number of partitions of a topic (from fresh metadata).
    pub async fn partitions(&self, topic: &str) -> Result<i32, Error> {
        let meta = self
            .cluster
            .refresh_metadata(Some(&[topic.to_owned()]))
            .await?;
        match meta.get(topic) {
            Some(m) if m.error_code == 0 => Ok(m.partitions.len() as i32),
            Some(m) => Err(Error::Broker {
                api: ApiKey::Metadata,
                code: ErrorCode::from_code(m.error_code)
                    .unwrap_or(ErrorCode::UnknownTopicOrPartition),
                context: topic.to_owned(),
            }),
            None => Err(Error::Broker {
                api: ApiKey::Metadata,
                code: ErrorCode::UnknownTopicOrPartition,
                context: topic.to_owned(),
            }),
        }
    }

    /// The leader of a partition, from the metadata cache, refreshed as `refresh` says;
    /// LEADER_NOT_AVAILABLE (for `api`) when the cluster names none.
    async fn leader(
        &self,
        topic: &str,
        partition: i32,
        api: ApiKey,
        refresh: Refresh,
    ) -> Result<i32, Error> {
        if refresh == Refresh::Always || self.cluster.leader(topic, partition).is_none() {
            self.cluster
                .refresh_metadata(Some(&[topic.to_owned()]))
                .await?;
        }
        self.cluster
            .leader(topic, partition)
            .ok_or_else(|| Error::Broker {
                api,
                code: ErrorCode::LeaderNotAvailable,
                context: format!("{topic}-{partition}"),
            })
    }

    /// Writes `records` to one partition (acks=all); returns the base offset.
    ///
    /// Errors the broker returns for a leadership in motion (NOT_LEADER_OR_FOLLOWER,
    /// LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION for a topic just created, NOT_ENOUGH_REPLICAS,
    /// REQUEST_TIMED_OUT) are retried with fresh metadata and a growing backoff for up to the request
    /// timeout, as the Java producer does within `delivery.timeout.ms`; such an answer means the
    /// records were not appended, so the retry cannot duplicate them. A lost connection is returned
    /// to the caller: whether the records were appended is then unknown, and without idempotence
    /// (which this producer does not implement) only the caller can decide.
    pub async fn send(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
    ) -> Result<i64, Error> {
        let deadline = tokio::time::Instant::now() + self.cluster.config().request_timeout;
        let mut backoff = std::time::Duration::from_millis(50);
        loop {
            match self.send_once(topic, partition, records).await {
                Err(Error::Broker {
                    code:
                        code @ (ErrorCode::NotLeaderOrFollower
                        | ErrorCode::LeaderNotAvailable
                        | ErrorCode::UnknownTopicOrPartition
                        | ErrorCode::NotEnoughReplicas
                        | ErrorCode::RequestTimedOut),
                    api,
                    context,
                }) => {
                    if tokio::time::Instant::now() + backoff > deadline {
                        return Err(Error::Broker { api, code, context });
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                    let _ = self
                        .cluster
                        .refresh_metadata(Some(&[topic.to_owned()]))
                        .await;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
    ) -> Result<i64, Error> {
        let leader = self
            .leader(topic, partition, ApiKey::Produce, Refresh::WhenUnknown)
            .await?;
        let now = now_ms();
        let mut b = RecordBatchBuilder::new(0).compression(self.compression);
        for r in records {
            b = b.push(
                r.timestamp.unwrap_or(now),
                r.key.clone(),
                r.value.clone(),
                r.headers
                    .iter()
                    .map(|(k, v)| RecordHeader {
                        key: StrBytes::from(k.clone()),
                        value: v.clone(),
                    })
                    .collect(),
            );
        }
        let mut buf = BytesMut::new();
        b.build().encode(&mut buf).map_err(Error::Encode)?;
        let req = ProduceRequest {
            acks: -1,
            timeout_ms: crate::config::millis_i32(self.cluster.config().request_timeout),
            topic_data: vec![produce_request::TopicProduceData {
                name: topic.to_owned().into(),
                partition_data: vec![produce_request::PartitionProduceData {
                    index: partition,
                    records: Some(buf.freeze()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let resp = self
            .cluster
            .send(
                Target::Broker(leader),
                &req,
                self.cluster.config().request_timeout,
            )
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                // The leader may be gone (a node killed or stopped): the next send must not go
                // to it again, so the cached leaders are refreshed now. Until the controller
                // fences the node the metadata may still name it; each send then fails fast.
                self.cluster.disconnect(Target::Broker(leader));
                let _ = self
                    .cluster
                    .refresh_metadata(Some(&[topic.to_owned()]))
                    .await;
                return Err(e);
            }
        };
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| Error::Broker {
                api: ApiKey::Produce,
                code: ErrorCode::UnknownServerError,
                context: "empty produce response".into(),
            })?;
        if let Err(code) = ErrorCode::check(p.error_code) {
            return Err(Error::Broker {
                api: ApiKey::Produce,
                code,
                context: format!("{topic}-{partition}"),
            });
        }
        Ok(p.base_offset)
    }

    /// Reads what one Fetch returns of a partition from `offset` (offsets and values), for
    /// tools and broker checks. Consumers use [`crate::Consumer`].
    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: std::time::Duration,
    ) -> Result<Vec<(i64, Option<Bytes>)>, Error> {
        use cohort_protocol::messages::{FetchRequest, fetch_request};
        use cohort_protocol::records::{BatchIter, DecodeOptions};
        let leader = self
            .leader(topic, partition, ApiKey::Fetch, Refresh::Always)
            .await?;
        let req = FetchRequest {
            replica_id: -1,
            max_wait_ms: crate::config::millis_i32(max_wait),
            min_bytes: 1,
            max_bytes: 4 << 20,
            session_epoch: -1,
            topics: vec![fetch_request::FetchTopic {
                topic: topic.to_owned().into(),
                partitions: vec![fetch_request::FetchPartition {
                    partition,
                    fetch_offset: offset,
                    log_start_offset: -1,
                    partition_max_bytes: 1 << 20,
                    current_leader_epoch: -1,
                    last_fetched_epoch: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let (_, resp) = self
            .cluster
            .send_capped(
                Target::Broker(leader),
                &req,
                max_wait + self.cluster.config().request_timeout,
                Some(12),
            )
            .await?;
        let mut out = Vec::new();
        for t in &resp.responses {
            for p in &t.partitions {
                ErrorCode::check(p.error_code).map_err(|code| Error::Broker {
                    api: ApiKey::Fetch,
                    code,
                    context: format!("{topic}-{partition}"),
                })?;
                let Some(records) = p.records.clone() else {
                    continue;
                };
                for batch in BatchIter::new(records, DecodeOptions::default()) {
                    let batch = batch.map_err(|error| Error::Protocol {
                        broker: format!("broker {leader}"),
                        error,
                    })?;
                    if batch.header.is_control {
                        continue;
                    }
                    for r in batch.records() {
                        if r.offset() >= offset {
                            out.push((r.offset(), r.value_bytes()));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Creates a topic (replication factor 1 unless the cluster needs more); an existing topic
    /// is not an error.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i16,
    ) -> Result<(), Error> {
        let req = CreateTopicsRequest {
            topics: vec![create_topics_request::CreatableTopic {
                name: name.to_owned().into(),
                num_partitions: partitions,
                replication_factor: replication,
                ..Default::default()
            }],
            timeout_ms: 30_000,
            ..Default::default()
        };
        let resp = self
            .cluster
            .send(Target::Any, &req, self.cluster.config().request_timeout)
            .await?;
        for t in &resp.topics {
            match ErrorCode::check(t.error_code) {
                Ok(()) | Err(ErrorCode::TopicAlreadyExists) => {}
                Err(code) => {
                    return Err(Error::Broker {
                        api: ApiKey::CreateTopics,
                        code,
                        context: name.to_owned(),
                    });
                }
            }
        }
        self.wait_for_partitions(name, partitions, ApiKey::CreateTopics)
            .await
    }

    /// Waits until metadata shows `partitions` partitions of `name`, each with a leader: the
    /// controller answers CreateTopics and CreatePartitions once it has committed the change,
    /// and the brokers' metadata follows a moment later (Java's tests wait the same way,
    /// `TestUtils.waitForPartitionMetadata`).
    async fn wait_for_partitions(
        &self,
        name: &str,
        partitions: i32,
        api: ApiKey,
    ) -> Result<(), Error> {
        for _ in 0..100 {
            let meta = self
                .cluster
                .refresh_metadata(Some(&[name.to_owned()]))
                .await?;
            if meta.get(name).is_some_and(|m| {
                m.error_code == 0
                    && m.partitions.len() == partitions as usize
                    && m.partitions.iter().all(|p| p.leader >= 0)
            }) {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(Error::Broker {
            api,
            code: ErrorCode::LeaderNotAvailable,
            context: format!("{name}: not {partitions} partitions with leaders after the change"),
        })
    }

    /// Grows a topic to `total` partitions (CreatePartitions). Brokers that do not support the
    /// API (Tansu does not advertise it) answer [`Error::UnsupportedVersion`].
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<(), Error> {
        let req = CreatePartitionsRequest {
            topics: vec![create_partitions_request::CreatePartitionsTopic {
                name: name.to_owned().into(),
                count: total,
                assignments: None,
                ..Default::default()
            }],
            timeout_ms: 30_000,
            validate_only: false,
            ..Default::default()
        };
        let resp = self
            .cluster
            .send(Target::Any, &req, self.cluster.config().request_timeout)
            .await?;
        for r in &resp.results {
            if let Err(code) = ErrorCode::check(r.error_code) {
                return Err(Error::Broker {
                    api: ApiKey::CreatePartitions,
                    code,
                    context: name.to_owned(),
                });
            }
        }
        self.wait_for_partitions(name, total, ApiKey::CreatePartitions)
            .await
    }

    /// Deletes topics. An unknown topic is not an error.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<(), Error> {
        // v6 names topics in `topics` (by name or id); v0-v5 in `topic_names`, which v6
        // silently drops as an ignorable field, so fill the one the broker will read.
        let by_state = self
            .cluster
            .supports(Target::Any, ApiKey::DeleteTopics, 6)
            .await?;
        let mut req = DeleteTopicsRequest {
            timeout_ms: 30_000,
            ..Default::default()
        };
        let names_iter = names.iter().map(|n| StrBytes::from((*n).to_owned()));
        let cap = if by_state {
            req.topics = names_iter
                .map(|name| delete_topics_request::DeleteTopicState {
                    name: Some(name),
                    ..Default::default()
                })
                .collect();
            None
        } else {
            req.topic_names = names_iter.collect();
            Some(5)
        };
        let (_, resp) = self
            .cluster
            .send_capped(
                Target::Any,
                &req,
                self.cluster.config().request_timeout,
                cap,
            )
            .await?;
        for r in &resp.responses {
            match ErrorCode::check(r.error_code) {
                Ok(()) | Err(ErrorCode::UnknownTopicOrPartition) => {}
                Err(code) => {
                    return Err(Error::Broker {
                        api: ApiKey::DeleteTopics,
                        code,
                        context: r.name.as_deref().unwrap_or("?").to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Deletes the records of a partition below `before` (DeleteRecords, sent to the leader):
    /// the log start moves up, and a consumer positioned below it gets OFFSET_OUT_OF_RANGE.
    /// Returns the new log start (low watermark).
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> Result<i64, Error> {
        use cohort_protocol::messages::{DeleteRecordsRequest, delete_records_request};
        let leader = self
            .leader(topic, partition, ApiKey::DeleteRecords, Refresh::Always)
            .await?;
        let req = DeleteRecordsRequest {
            topics: vec![delete_records_request::DeleteRecordsTopic {
                name: topic.to_owned().into(),
                partitions: vec![delete_records_request::DeleteRecordsPartition {
                    partition_index: partition,
                    offset: before,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            timeout_ms: 30_000,
            ..Default::default()
        };
        let resp = self
            .cluster
            .send(
                Target::Broker(leader),
                &req,
                self.cluster.config().request_timeout,
            )
            .await?;
        let p = resp
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| Error::Broker {
                api: ApiKey::DeleteRecords,
                code: ErrorCode::UnknownServerError,
                context: "empty DeleteRecords response".into(),
            })?;
        ErrorCode::check(p.error_code).map_err(|code| Error::Broker {
            api: ApiKey::DeleteRecords,
            code,
            context: format!("{topic}-{partition}"),
        })?;
        Ok(p.low_watermark)
    }

    /// End offsets (ListOffsets LATEST) of every partition of a topic.
    pub async fn end_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, Error> {
        let n = self.partitions(topic).await?;
        let tps: Vec<TopicPartition> = (0..n).map(|p| TopicPartition::new(topic, p)).collect();
        let m = crate::offsets::list_offsets(&self.cluster, &tps, crate::offsets::LATEST).await?;
        Ok(m.into_iter().map(|(tp, o)| (tp.partition, o)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka `UtilsTest.testMurmur2`.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }
}
