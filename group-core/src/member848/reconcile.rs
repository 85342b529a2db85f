//! Reconciliation of a KIP-848 member's target assignment (one at a time, revoke first), and
//! giving everything up when fenced.

use std::time::Instant;

use cohort_protocol::{ApiKey, Uuid};

use super::Member848;
use super::state::State;
use crate::member::{Assignment, GroupEvent, OutboundRequest, RevokeToken, count, minus};

impl Member848 {
    /// Takes up the latest target assignment if the member can: its topic names resolved, no
    /// other reconciliation under way (KIP-848: one at a time).
    pub(super) fn reconcile(&mut self, now: Instant) {
        if !matches!(self.state, State::Stable) {
            return;
        }
        let Some(target) = &self.target else {
            return;
        };
        let unknown: Vec<Uuid> = target
            .keys()
            .filter(|id| !self.names.contains_key(id))
            .copied()
            .collect();
        if !unknown.is_empty() {
            // A target partition whose topic is not in metadata yet waits for it.
            if !self.busy(ApiKey::Metadata) {
                self.send(
                    now,
                    OutboundRequest::TopicNames(unknown),
                    self.cfg.request_timeout,
                    None,
                );
            }
            return;
        }
        let mut resolved = Assignment::new();
        for (id, ps) in target {
            if !ps.is_empty() {
                resolved
                    .entry(self.names[id].clone())
                    .or_default()
                    .extend(ps);
            }
        }
        self.target = None;
        if resolved == self.owned {
            // Nothing moves; the broker still hears that this epoch is reconciled.
            self.acknowledge = true;
            return;
        }
        self.rebalance_started.get_or_insert(now);
        let reason = format!("new target assignment at epoch {}", self.epoch);
        self.trace_rebalance(now, &reason);
        if let Some(t) = &mut self.rebalance_trace {
            // The consumer protocol has no join phase of its own: it ends with the target.
            t.joined(now, self.epoch, false);
        }
        self.events.push_back(GroupEvent::Rebalancing { reason });
        let revoked = minus(&self.owned, &resolved);
        if revoked.is_empty() {
            self.assign(now, resolved);
        } else {
            // Revoke first: the application stops fetching them, commits what it processed and
            // acknowledges; only then does the member take the rest of the target.
            let token = self.token();
            self.events.push_back(GroupEvent::Revoked {
                generation: self.epoch,
                partitions: revoked.clone(),
                token,
            });
            self.state = State::Revoking {
                token,
                deadline: now + self.cfg.rebalance_timeout,
                revoked,
                target: resolved,
            };
        }
    }

    /// The application let revoked partitions go (or ran out of time): take the target.
    pub(super) fn finish_revoking(&mut self, now: Instant) {
        let State::Revoking {
            revoked, target, ..
        } = std::mem::replace(&mut self.state, State::Stable)
        else {
            return;
        };
        self.owned = minus(&self.owned, &revoked);
        self.assign(now, target);
    }

    /// The target becomes the assignment; the next heartbeat, sent at once, reports it.
    /// Opens the `rebalance` span unless one is open.
    fn trace_rebalance(&mut self, now: Instant, reason: &str) {
        if self.rebalance_trace.is_none() {
            self.rebalance_trace = Some(crate::member::trace::RebalanceTrace::start(
                &self.cfg.group_id,
                "consumer",
                reason,
                now,
            ));
        }
    }

    pub(super) fn assign(&mut self, now: Instant, target: Assignment) {
        let added = minus(&target, &self.owned);
        let revoked = minus(&self.owned, &target);
        self.owned = target;
        self.acknowledge = true;
        self.state = State::Stable;
        self.stats.rebalances += 1;
        if let Some(start) = self.rebalance_started.take() {
            let d = now.saturating_duration_since(start);
            self.stats.last_rebalance = d;
            self.stats.rebalancing_total += d;
        }
        if let Some(t) = self.rebalance_trace.take() {
            t.finish(now, count(&self.owned), count(&added), count(&revoked));
        }
        tracing::info!(group = %self.cfg.group_id, epoch = self.epoch, partitions = count(&self.owned), added = count(&added), "assigned");
        self.events.push_back(GroupEvent::Assigned {
            generation: self.epoch,
            member_id: self.member_id.clone(),
            leader: false,
            protocol: self
                .cfg
                .group_remote_assignor
                .clone()
                .unwrap_or_else(|| "consumer".into()),
            assignment: self.owned.clone(),
            added,
        });
        // A target that came while this one was reconciled is next.
        self.reconcile(now);
    }

    /// Out of the group: every partition lost; heartbeats stop until the application let go,
    /// then the member joins again with epoch 0.
    pub(super) fn fence(&mut self, now: Instant, reason: &str) {
        tracing::info!(group = %self.cfg.group_id, member = %self.member_id, reason, "fenced");
        self.epoch = 0;
        self.target = None;
        self.sent.reset();
        self.rebalance_started.get_or_insert(now);
        self.trace_rebalance(now, reason);
        match self.lose_all() {
            Some(token) => self.state = State::Fenced { token },
            None => self.rejoin(now),
        }
    }

    pub(super) fn rejoin(&mut self, now: Instant) {
        self.epoch = 0;
        self.state = State::Joining;
        self.sent.reset();
        self.heartbeat_due = Some(now);
        self.rebalance_started.get_or_insert(now);
        self.trace_rebalance(now, "joining");
    }

    /// Every owned partition is lost; the token the application acknowledges with, if there
    /// was any.
    pub(super) fn lose_all(&mut self) -> Option<RevokeToken> {
        if let State::Revoking { .. } = self.state {
            self.state = State::Stable;
        }
        if self.owned.is_empty() {
            return None;
        }
        let partitions = std::mem::take(&mut self.owned);
        let token = self.token();
        self.events
            .push_back(GroupEvent::Lost { partitions, token });
        Some(token)
    }
}
