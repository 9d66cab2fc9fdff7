//! [`Pool::assert_invariants`]: the invariants documented on [`Pool`], checked from scratch.

use super::Pool;
use crate::slot::{Counts, State};
use crate::storage::{Holder, KeyIndex, Queue, Storage};
use crate::timer::Timer;
use crate::{Handoff, Io, Time};

type StageTest<C, K> = fn(&State<C, K>) -> bool;

impl<C, K: Eq + Clone, S: Storage<C, K>> Pool<C, K, S> {
    /// Recompute everything the pool keeps incrementally and panic on any disagreement. Costs
    /// O(slots² + waiters²); the test kit's driver calls it after every step.
    pub fn assert_invariants(&self) {
        let slots = crate::storage::Buffer::as_slice(&self.slots);

        // 1. counts, and `max` (through the shrink ceiling).
        let mut counts = Counts::default();
        for s in slots {
            counts.add(s.state.stage());
        }
        assert_eq!(counts, self.counts, "per-state counts drifted");
        assert!(self.ceiling >= self.config.max);
        assert!(
            counts.occupied() <= self.ceiling,
            "more connections than max"
        );

        // 2. the idle queue.
        assert_eq!(
            self.idle.len(),
            counts.idle(),
            "idle queue and idle slots disagree"
        );
        let mut last = None;
        for p in 0..self.idle.len() {
            let i = usize::from(*self.idle.get(p).expect("len"));
            assert!(
                matches!(slots[i].state, State::Idle(_)),
                "idle queue names a non-idle slot"
            );
            assert_eq!(
                self.idle.position(|&j| usize::from(j) == i),
                Some(p),
                "slot idle twice"
            );
            let here = (slots[i].idle_since, slots[i].idle_seq);
            assert!(last < Some(here), "idle queue out of order");
            last = Some(here);
        }

        // 3. keys: unique holders, and the index finds each.
        let mut keyed = 0;
        for (i, s) in slots.iter().enumerate() {
            if let Some(k) = s.key() {
                keyed += 1;
                assert_eq!(
                    self.keys.find(k, slots, &self.waiters),
                    Some(Holder::Slot(i as u16)),
                    "key lost"
                );
            }
        }
        for p in 0..self.waiters.len() {
            let w = self.waiters.get(p).expect("len");
            if let Some(k) = &w.key {
                keyed += 1;
                assert_eq!(
                    self.keys.find(k, slots, &self.waiters),
                    Some(Holder::Waiter(w.id)),
                    "key lost"
                );
            }
            if p > 0 {
                assert!(
                    self.waiters.get(p - 1).expect("len").id < w.id,
                    "waiters out of arrival order"
                );
            }
        }
        if let Some(recorded) = self.keys.recorded() {
            assert_eq!(recorded, keyed, "key index holds keys nobody holds");
        }

        // 4. waiters are served before anything idles — or, under a fairness bound none of them
        // has reached, woken to claim it — and have opens coming when opens are allowed.
        if !self.waiters.is_empty() && counts.idle() > 0 && self.line.vetting < self.waiters.len() {
            assert!(
                !self.front_starving(),
                "a checkout waits while a connection is idle, past the fairness bound"
            );
            assert!(
                self.line.woken >= counts.idle().min(self.waiters.len() - self.line.vetting),
                "a connection is idle and too few waiters are woken to claim it"
            );
        }
        let woken =
            (0..self.waiters.len()).filter(|&p| self.waiters.get(p).is_some_and(|w| w.woken));
        assert_eq!(woken.count(), self.line.woken, "woken waiters miscounted");
        assert!(
            self.line.woken <= self.storage_capacity(),
            "more woken waiters than slots"
        );
        for p in 0..self.wakes.len() {
            let q = self.wakes.get(p).expect("len");
            let pos = self
                .waiter_pos(q.item)
                .expect("a wake for a waiter not in line");
            assert!(
                self.waiters.get(pos).is_some_and(|w| w.woken),
                "a wake for a waiter not woken"
            );
            assert_eq!(
                self.wakes.position(|o| o.item == q.item),
                Some(p),
                "two wakes for one waiter"
            );
            if p > 0 {
                assert!(
                    self.wakes.get(p - 1).expect("len").seq < q.seq,
                    "wakes out of order"
                );
            }
        }
        let backing_off = self.retry_at.is_some_and(|t| self.now < t);
        if !self.closed && !backing_off && counts.occupied() < self.config.max {
            assert!(
                self.waiters.len() <= counts.coming(),
                "a waiter has no open coming"
            );
            assert!(
                !self.config.refill || counts.open() + counts.opening() >= self.config.min,
                "below min with room to open"
            );
            assert!(
                !self.config.refill || counts.coming() >= self.waiters.len() + self.config.min_idle,
                "below min_idle with room to open"
            );
        }
        assert!(
            self.waiters.len() + self.fails.len() <= self.waiter_capacity(),
            "waiters over the storage's bound"
        );
        let waiting = (0..self.waiters.len()).filter(|&p| {
            self.waiters
                .get(p)
                .is_some_and(|w| !w.fail_fast && !w.for_vet)
        });
        assert!(
            waiting.count() <= self.waiter_bound(),
            "waiters over max_waiting"
        );

        // 5. every queued I/O or grant matches its slot's stage and flag; one per slot at most.
        let queued = slots.iter().filter(|s| s.queued).count();
        assert_eq!(
            queued,
            self.io.len() + self.grants.len(),
            "queued flags and the I/O and grant queues disagree"
        );
        for p in 0..self.io.len() {
            let (r, ok): (_, StageTest<C, K>) = match self.io.get(p).expect("len") {
                Io::Open(t) => (t.0, |s| matches!(s, State::Opening)),
                Io::Close { ticket, .. } => (ticket.0, |s| matches!(s, State::Closing)),
                Io::Reset { ticket, .. } => (ticket.0, |s| matches!(s, State::Resetting)),
                Io::Check { ticket, .. } | Io::Vet { ticket, .. } => {
                    (ticket.0, |s| matches!(s, State::Checking))
                }
            };
            let s = &slots[usize::from(r.index)];
            assert!(
                s.queued && s.gen == r.gen && ok(&s.state),
                "queued I/O does not match its slot"
            );
        }
        for p in 0..self.grants.len() {
            let q = self.grants.get(p).expect("len");
            let Handoff::Grant { lease, .. } = &q.item else {
                panic!("a grant queue holds {:?}", q.item.waiter());
            };
            let s = &slots[usize::from(lease.0.index)];
            assert!(
                s.queued && s.gen == lease.0.gen && matches!(s.state, State::InUse(_)),
                "queued grant does not match its slot"
            );
            if p > 0 {
                assert!(
                    self.grants.get(p - 1).expect("len").seq < q.seq,
                    "grants out of order"
                );
            }
        }

        // 6. after close.
        if self.closed {
            assert!(
                self.waiters.is_empty() && counts.idle() == 0,
                "closed pool keeps waiters or idle"
            );
            assert!(self.io.position(|io| matches!(io, Io::Open(_))).is_none());
        }

        // Vets on behalf of waiters: each vetting waiter has exactly one connection out for a vet
        // for it, and a vet for a waiter still in line is for a vetting one.
        let vetting = (0..self.waiters.len())
            .filter_map(|p| self.waiters.get(p))
            .filter(|w| w.vetting);
        assert_eq!(
            vetting.clone().count(),
            self.line.vetting,
            "vetting waiters miscounted"
        );
        for w in vetting {
            let vets = slots.iter().filter(|s| s.vet_for == Some(w.id)).count();
            assert_eq!(vets, 1, "a vetting waiter with {vets} vets for it");
            assert!(!w.woken, "a vetting waiter is woken");
        }
        for s in slots.iter().filter(|s| s.vet_for.is_some()) {
            assert!(
                matches!(s.state, State::Checking),
                "a vet for a slot not out"
            );
            if let Some(p) = s.vet_for.and_then(|id| self.waiter_pos(id)) {
                assert!(
                    self.waiters.get(p).is_some_and(|w| w.vetting),
                    "a vet for a waiter not vetting"
                );
            }
        }

        // The line's summary.
        let queued = (0..self.waiters.len()).filter_map(|p| self.waiters.get(p));
        let fail_fast = queued.clone().filter(|w| w.fail_fast).count();
        assert_eq!(
            self.line.fail_fast, fail_fast,
            "fail-fast waiters miscounted"
        );
        let from = self.line.unsorted_from;
        let mut last = None;
        for d in queued
            .filter(|w| from.is_none_or(|u| w.id >= u))
            .filter_map(|w| w.deadline)
        {
            assert!(
                last <= Some(d),
                "line marked sorted there, deadlines are not"
            );
            last = Some(d);
        }
        assert!(
            last.is_none() || last <= self.line.last_deadline,
            "last deadline forgotten"
        );

        // 7. the timer table, recomputed from its definitions.
        let [wait, lifetime, _, _] = self.deadlines_by_search();
        assert_eq!(self.timers.get(Timer::Wait), wait, "waiter timer");
        assert_eq!(self.timers.get(Timer::Lifetime), lifetime, "lifetime timer");
        let leak = (0..slots.len()).filter_map(|i| self.leak_deadline(i)).min();
        assert_eq!(self.timers.get(Timer::Leak), leak, "leak timer");
        for p in 0..self.leaks.len() {
            let (lease, _) = self.leaks.get(p).expect("len").item;
            let s = &slots[usize::from(lease.0.index)];
            assert!(
                s.gen == lease.0.gen && s.leak_told && matches!(s.state, State::InUse(_)),
                "a leak report for a lease no longer out"
            );
            let same = |q: &crate::storage::Queued<_>| {
                let (l, _): (crate::Lease, Time) = q.item;
                l.0.index == lease.0.index
            };
            assert_eq!(
                self.leaks.position(same),
                Some(p),
                "two leak reports for one slot"
            );
        }
        assert_eq!(self.poll_timeout(), self.deadline_by_search());
    }

    /// Each timer's deadline, recomputed from its definition by searching the waiters and idle
    /// connections.
    fn deadlines_by_search(&self) -> [Option<Time>; 4] {
        use crate::timer::min_opt;
        let deadlines = (0..self.waiters.len()).filter_map(|p| self.waiters.get(p)?.deadline);
        let ends = (0..self.idle.len()).filter_map(|p| self.slot_at_idle(p)?.expires);
        let idle = self
            .config
            .max_idle
            .filter(|_| {
                self.counts.open() > self.config.min && self.counts.idle() > self.config.min_idle
            })
            .and_then(|d| Some(self.slot_at_idle(0)?.idle_since.saturating_add(d)));
        let retry = self
            .retry_at
            .filter(|_| self.open_deficit() > 0 && self.counts.occupied() < self.config.max);
        let starve = match self.config.fairness {
            crate::Fairness::Bounded(b)
                if self.idle.len() > 0 && self.line.vetting < self.waiters.len() =>
            {
                (0..self.waiters.len())
                    .filter_map(|p| self.waiters.get(p))
                    .map(|w| w.since.saturating_add(b))
                    .min()
            }
            _ => None,
        };
        let leak = (0..crate::storage::Buffer::as_slice(&self.slots).len())
            .filter_map(|i| self.leak_deadline(i))
            .min();
        [
            deadlines.min(),
            ends.min(),
            idle,
            min_opt(retry, min_opt(starve, leak)),
        ]
    }

    /// The next deadline by search: what `poll_timeout` computed before the timer table.
    pub(crate) fn deadline_by_search(&self) -> Option<Time> {
        self.deadlines_by_search().into_iter().flatten().min()
    }
}
