//! Until when the consumer may hand records to the application, readable from the
//! application's threads at the cost of a clock read.
//!
//! The driver computes the instant from [`Member::deliverable_until`](crate::member::Member::deliverable_until)
//! and stores it here; [`DeliveryDeadline::open`] compares it with the clock. A deadline and
//! not a flag the driver clears when the instant passes: a process that was stopped (SIGSTOP,
//! a paused VM, a long swap-in) resumes all its threads at once, and the application's can run
//! before the driver's has woken to clear a flag. Records delivered on the stale flag belong to
//! partitions the coordinator may already have given to another member (the smoke scenario
//! caught it: a member frozen for 9 s processed records of a partition that another member had
//! owned for 3 s, before its driver noticed the session had run out).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::member::RevokeToken;

/// No deadline: records may be delivered.
const NONE: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct DeliveryDeadline {
    /// Nanoseconds on [`clock_ns`]'s clock; [`NONE`] for no limit, 0 for closed.
    until_ns: AtomicU64,
}

impl DeliveryDeadline {
    pub(crate) fn new() -> DeliveryDeadline {
        DeliveryDeadline {
            until_ns: AtomicU64::new(NONE),
        }
    }

    /// Sets the deadline (`None`: no limit); `now` is the caller's clock for `until`.
    pub(crate) fn set(&self, now: Instant, until: Option<Instant>) {
        let v = match until {
            None => NONE,
            Some(u) if u <= now => 0,
            Some(u) => {
                let left = u64::try_from((u - now).as_nanos()).unwrap_or(NONE - 1);
                clock_ns().saturating_add(left).min(NONE - 1)
            }
        };
        self.until_ns.store(v, Ordering::Relaxed);
    }

    /// Whether records may be delivered now.
    pub(crate) fn open(&self) -> bool {
        match self.until_ns.load(Ordering::Relaxed) {
            NONE => true,
            0 => false,
            until => clock_ns() < until,
        }
    }
}

/// Losses the application has not acknowledged yet. A classic member that lost its partitions
/// rejoins at once, without waiting for the application; if the application side is still busy with an earlier event (a slow
/// `on_partitions_revoked`, say) when the new generation opens delivery again, records of the
/// lost partitions still in its buffer would go out. Delivery stays closed from the loss until
/// the application acknowledged it (the consumer drops the lost partitions' buffers first).
#[derive(Debug, Default)]
pub(crate) struct Losses(BTreeSet<RevokeToken>);

impl Losses {
    pub(crate) fn lost(&mut self, token: RevokeToken) {
        self.0.insert(token);
    }

    pub(crate) fn acknowledged(&mut self, token: RevokeToken) {
        self.0.remove(&token);
    }

    /// The delivery limit: the member's (`member`) when every loss is acknowledged, closed
    /// (`now`) otherwise.
    pub(crate) fn limit(&self, now: Instant, member: Option<Instant>) -> Option<Instant> {
        if self.0.is_empty() { member } else { Some(now) }
    }
}

/// A monotonic clock in nanoseconds. On Linux the coarse monotonic clock: under a third of the
/// cost of `Instant::now` (15 ns against 51 ns on the CI machine, read once per delivered record),
/// at a resolution of one kernel tick (4 ms at most), far inside the heartbeat interval of
/// margin that the deadline keeps.
#[cfg(target_os = "linux")]
fn clock_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn clock_ns() -> u64 {
    use std::sync::OnceLock;
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(NONE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_deadline_closes_when_its_instant_passes_without_anyone_clearing_it() {
        let d = DeliveryDeadline::new();
        assert!(d.open());
        let now = Instant::now();
        d.set(now, Some(now + Duration::from_millis(30)));
        assert!(d.open());
        // Nobody calls `set` again: the clock alone closes it (a stopped process resumes
        // with its driver behind).
        std::thread::sleep(Duration::from_millis(60));
        assert!(!d.open());
        d.set(Instant::now(), None);
        assert!(d.open());
        let now = Instant::now();
        d.set(now, Some(now));
        assert!(!d.open());
    }

    #[test]
    fn delivery_stays_closed_from_a_loss_until_the_application_acknowledged_it() {
        let d = DeliveryDeadline::new();
        let mut losses = Losses::default();
        let later = Instant::now() + Duration::from_secs(60);
        // The driver sets the limit with the instant it computed it for.
        let set = |d: &DeliveryDeadline, losses: &Losses, member: Option<Instant>| {
            let now = Instant::now();
            d.set(now, losses.limit(now, member));
        };
        losses.lost(7);
        losses.lost(9);
        // The member is back in a generation (its own limit is open), the losses are not
        // acknowledged yet.
        set(&d, &losses, Some(later));
        assert!(!d.open());
        set(&d, &losses, None);
        assert!(!d.open());
        losses.acknowledged(7);
        set(&d, &losses, None);
        assert!(!d.open(), "one loss is still unacknowledged");
        losses.acknowledged(9);
        set(&d, &losses, Some(later));
        assert!(d.open());
    }
}
