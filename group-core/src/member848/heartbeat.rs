//! Heartbeats of a KIP-848 member: when they go out, what they carry (everything when joining
//! or after an error, what changed otherwise), and what their answers and errors do.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cohort_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, consumer_group_heartbeat_request,
};
use cohort_protocol::{ApiKey, ErrorCode, Uuid};

use super::errors::{HeartbeatAction, heartbeat_action};
use super::state::State;
use super::{Member848, Sent, Subscription848};
use crate::error::Error;
use crate::member::{GroupEvent, OutboundRequest};

impl Member848 {
    pub(super) fn heartbeat_if_due(&mut self, now: Instant) {
        let wanted = match self.state {
            State::Joining => self.want_join,
            State::Stable | State::Revoking { .. } => true,
            _ => false,
        };
        if !wanted
            || self.coordinator.is_none()
            || self.busy(ApiKey::ConsumerGroupHeartbeat)
            || !(self.acknowledge || self.heartbeat_due.is_some_and(|t| now >= t))
        {
            return;
        }
        let req = self.heartbeat_request();
        self.acknowledge = false;
        self.heartbeat_due = None;
        self.send_heartbeat(now, req);
    }

    pub(super) fn send_heartbeat(&mut self, now: Instant, req: ConsumerGroupHeartbeatRequest) {
        self.send(
            now,
            OutboundRequest::ConsumerGroupHeartbeat(req),
            self.cfg.request_timeout,
            None,
        );
    }

    /// The next heartbeat: every field when joining or after a reset, what changed otherwise
    /// (Java `ConsumerHeartbeatRequestManager.HeartbeatState.buildRequestData`).
    pub(super) fn heartbeat_request(&mut self) -> ConsumerGroupHeartbeatRequest {
        let full = matches!(self.state, State::Joining);
        if full {
            self.sent.reset();
        }
        let mut req = ConsumerGroupHeartbeatRequest {
            group_id: self.cfg.group_id.clone().into(),
            member_id: self.member_id.clone().into(),
            member_epoch: self.epoch,
            instance_id: self.cfg.group_instance_id.clone().map(Into::into),
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        let timeout = crate::config::millis_i32(self.cfg.rebalance_timeout);
        if self.sent.rebalance_timeout_ms != Some(timeout) {
            req.rebalance_timeout_ms = timeout;
            self.sent.rebalance_timeout_ms = Some(timeout);
        }
        match &self.subscription {
            Subscription848::Topics(ts) => {
                if self.sent.topics.as_ref() != Some(ts) {
                    req.subscribed_topic_names =
                        Some(ts.iter().map(|t| t.clone().into()).collect());
                    self.sent.topics = Some(ts.clone());
                }
            }
            Subscription848::Regex(re) => {
                if self.sent.regex.as_ref() != Some(re) {
                    req.subscribed_topic_regex = Some(re.clone().into());
                    self.sent.regex = Some(re.clone());
                }
            }
        }
        if let Some(a) = &self.cfg.group_remote_assignor
            && self.sent.assignor.as_ref() != Some(a)
        {
            req.server_assignor = Some(a.clone().into());
            self.sent.assignor = Some(a.clone());
        }
        let owned = self.owned_by_id();
        if self.sent.owned.as_ref() != Some(&owned) {
            req.topic_partitions = Some(
                owned
                    .iter()
                    .map(
                        |(id, ps)| consumer_group_heartbeat_request::TopicPartitions {
                            topic_id: *id,
                            partitions: ps.iter().copied().collect(),
                            ..Default::default()
                        },
                    )
                    .collect(),
            );
            self.sent.owned = Some(owned);
        }
        if full {
            req.rack_id = self.cfg.rack.clone().map(Into::into);
        }
        req
    }

    /// The owned partitions by topic id (every owned topic's id is known: it came in an
    /// assignment).
    pub(super) fn owned_by_id(&self) -> BTreeMap<Uuid, BTreeSet<i32>> {
        let ids: BTreeMap<&String, Uuid> = self.names.iter().map(|(id, n)| (n, *id)).collect();
        self.owned
            .iter()
            .filter_map(|(t, ps)| ids.get(t).map(|id| (*id, ps.clone())))
            .collect()
    }

    pub(super) fn on_heartbeat(
        &mut self,
        now: Instant,
        sent: &Sent,
        r: ConsumerGroupHeartbeatResponse,
    ) {
        if let State::Leaving { then } = self.state {
            // The answer to the leave, whatever it says; a late answer to an earlier heartbeat
            // must not bring the epoch back (librdkafka #4672).
            if sent.epoch < 0 {
                self.finish(then);
            }
            return;
        }
        if !matches!(
            self.state,
            State::Joining | State::Stable | State::Revoking { .. }
        ) {
            return;
        }
        if let Err(code) = ErrorCode::check(r.error_code) {
            self.on_heartbeat_error(now, code, r.error_message.as_deref());
            return;
        }
        self.heartbeat_backoff.reset();
        if let Some(id) = r.member_id.as_ref().filter(|id| !id.is_empty()) {
            // ConsumerGroupHeartbeat v0: the coordinator names the member.
            self.member_id = id.to_string();
        }
        if r.heartbeat_interval_ms > 0 {
            self.heartbeat_interval = Duration::from_millis(r.heartbeat_interval_ms as u64);
        }
        self.last_ok = self.last_ok.max(sent.at);
        self.heartbeat_due = Some(now + self.heartbeat_interval);
        if r.member_epoch < 0 {
            return;
        }
        if matches!(self.state, State::Joining) && r.member_epoch > 0 {
            tracing::info!(group = %self.cfg.group_id, member = %self.member_id, epoch = r.member_epoch, "joined");
            self.state = State::Stable;
            self.last_poll = now;
        }
        self.epoch = r.member_epoch;
        if let Some(a) = r.assignment {
            self.target = Some(
                a.topic_partitions
                    .iter()
                    .map(|t| (t.topic_id, t.partitions.iter().copied().collect()))
                    .collect(),
            );
        }
        self.reconcile(now);
    }

    pub(super) fn on_heartbeat_error(
        &mut self,
        now: Instant,
        code: ErrorCode,
        message: Option<&str>,
    ) {
        let action = heartbeat_action(code);
        tracing::info!(group = %self.cfg.group_id, ?code, ?action, message, "heartbeat error");
        // Every error: the next heartbeat is a full one.
        self.sent.reset();
        match action {
            HeartbeatAction::Rediscover => {
                self.coordinator = None;
                self.heartbeat_due = Some(now);
            }
            HeartbeatAction::RetryWithBackoff => {
                self.heartbeat_due = Some(now + self.heartbeat_backoff.next_delay());
            }
            HeartbeatAction::Fenced => self.fence(now, &code.to_string()),
            HeartbeatAction::Report => {
                self.events.push_back(GroupEvent::Error(Error::Broker {
                    api: ApiKey::ConsumerGroupHeartbeat,
                    code,
                    context: message.unwrap_or_default().to_owned(),
                }));
                self.heartbeat_due = Some(now + self.heartbeat_interval);
            }
            HeartbeatAction::Fatal => {
                let context = match code {
                    ErrorCode::UnsupportedVersion => "the broker does not serve the consumer group protocol (KIP-848); set group.protocol=classic".to_owned(),
                    _ => format!(
                        "ConsumerGroupHeartbeat for group {}: {}",
                        self.cfg.group_id,
                        message.unwrap_or_default()
                    ),
                };
                self.fail(if code == ErrorCode::FencedInstanceId {
                    Error::Fenced {
                        instance_id: self.cfg.group_instance_id.clone().unwrap_or_default(),
                    }
                } else {
                    Error::Fatal { code, context }
                });
            }
        }
    }
}
