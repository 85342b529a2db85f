//! One `tracing` span per rebalance, named `rebalance`: opened when the member starts
//! (re)joining, closed once it has its new assignment, so a subscriber sees each rebalance as
//! one unit with why it happened, the generation it produced, what moved and how long each
//! phase took (the figures Java's consumer reports as `rebalance-latency`, and more).

use std::time::{Duration, Instant};

use tracing::field::Empty;

pub(crate) struct RebalanceTrace {
    span: tracing::Span,
    started: Instant,
    /// When the member learned its generation (JoinGroup answered, or, for the consumer
    /// protocol, the first heartbeat naming a new target assignment).
    joined: Option<Instant>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RebalanceTrace {
    /// A rebalance of `group` starts now, for `reason`; `protocol` is the group protocol
    /// (`classic` or `consumer`).
    pub(crate) fn start(group: &str, protocol: &'static str, reason: &str, now: Instant) -> Self {
        let span = tracing::info_span!(
            "rebalance",
            group,
            protocol,
            reason,
            generation = Empty,
            leader = Empty,
            join_ms = Empty,
            sync_ms = Empty,
            total_ms = Empty,
            assigned = Empty,
            added = Empty,
            revoked = Empty,
        );
        span.in_scope(|| tracing::debug!("rebalance started"));
        Self {
            span,
            started: now,
            joined: None,
        }
    }

    /// The member joined generation `generation` (the join phase ends).
    pub(crate) fn joined(&mut self, now: Instant, generation: i32, leader: bool) {
        self.span.record("generation", generation);
        self.span.record("leader", leader);
        self.span
            .record("join_ms", ms(now.saturating_duration_since(self.started)));
        self.joined = Some(now);
    }

    /// The member has its assignment: `assigned` partitions, `added` of them new, `revoked`
    /// given up. Closes the span.
    pub(crate) fn finish(self, now: Instant, assigned: usize, added: usize, revoked: usize) {
        let since_join = now.saturating_duration_since(self.joined.unwrap_or(self.started));
        let total = now.saturating_duration_since(self.started);
        self.span.record("sync_ms", ms(since_join));
        self.span.record("total_ms", ms(total));
        self.span.record("assigned", assigned);
        self.span.record("added", added);
        self.span.record("revoked", revoked);
        self.span.in_scope(|| {
            tracing::info!(total_ms = ms(total), added, revoked, "rebalance done");
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::span::{Attributes, Id, Record};
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata, Subscriber};

    /// Collects every field recorded on `rebalance` spans, as `name=value` strings.
    #[derive(Clone, Default)]
    struct Fields(Arc<Mutex<Vec<String>>>);

    struct Visit<'a>(&'a mut Vec<String>);

    impl tracing::field::Visit for Visit<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push(format!("{}={value:?}", field.name()));
        }
    }

    impl Subscriber for Fields {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::always()
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            if attrs.metadata().name() == "rebalance" {
                attrs.record(&mut Visit(&mut self.0.lock().unwrap()));
            }
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, values: &Record<'_>) {
            values.record(&mut Visit(&mut self.0.lock().unwrap()));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the test needs an instant to start from"
    )]
    fn a_rebalance_span_carries_its_reason_generation_moves_and_phase_times() {
        let fields = Fields::default();
        tracing::subscriber::with_default(fields.clone(), || {
            let t0 = Instant::now();
            let mut t = RebalanceTrace::start("g", "classic", "member joined", t0);
            t.joined(t0 + Duration::from_millis(120), 7, true);
            t.finish(t0 + Duration::from_millis(150), 4, 2, 1);
        });
        let got = fields.0.lock().unwrap().join(" ");
        for want in [
            "group=\"g\"",
            "protocol=\"classic\"",
            "reason=\"member joined\"",
            "generation=7",
            "leader=true",
            "join_ms=120",
            "sync_ms=30",
            "total_ms=150",
            "assigned=4",
            "added=2",
            "revoked=1",
        ] {
            assert!(got.contains(want), "{want} missing from {got}");
        }
    }
}
