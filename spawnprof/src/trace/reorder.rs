//! The reorder window: marks come from per-CPU producers slightly out of
//! time order, and the correlator needs them in order.
use std::collections::VecDeque;

use super::decode::Event;

/// Releases events in timestamp order once they are older than the newest
/// event seen minus the window.
///
/// Kept as a sorted deque rather than a heap: marks come out of the shared
/// ring buffer almost in time order, so nearly every push lands at the back
/// (O(1)) and every release is a pop from the front, without moving events
/// around a heap.
pub struct Reorder {
    window_ns: u64,
    newest: u64,
    events: VecDeque<Event>,
}

impl Reorder {
    pub fn new(window_ns: u64) -> Self {
        Self {
            window_ns,
            newest: 0,
            events: VecDeque::new(),
        }
    }

    pub fn push(&mut self, event: Event) {
        let ts = event.mark.ts_ns;
        self.newest = self.newest.max(ts);
        match self.events.back() {
            Some(last) if last.mark.ts_ns > ts => {
                // After every event with the same timestamp: ties keep
                // their arrival order.
                let at = self.events.partition_point(|e| e.mark.ts_ns <= ts);
                self.events.insert(at, event);
            }
            _ => self.events.push_back(event),
        }
    }

    /// Events old enough that nothing earlier can still arrive: older than
    /// the window before `now` (CLOCK_MONOTONIC ns), or before the newest
    /// event seen, whichever is later.
    pub fn ready(&mut self, now: u64) -> impl Iterator<Item = Event> + '_ {
        let horizon = now.max(self.newest).saturating_sub(self.window_ns);
        std::iter::from_fn(move || {
            if self.events.front()?.mark.ts_ns > horizon {
                return None;
            }
            self.events.pop_front()
        })
    }

    /// Everything left, in order (end of recording).
    pub fn drain(&mut self) -> impl Iterator<Item = Event> + '_ {
        self.events.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use spawnprof_common::{Mark, kind};

    use super::*;

    #[test]
    fn reorder_releases_in_time_order_within_the_window() {
        let mut r = Reorder::new(100);
        let ev = |ts| Event {
            mark: Mark {
                ts_ns: ts,
                kind: kind::EXIT,
                ..Default::default()
            },
            text: None,
            text_truncated: false,
        };
        for ts in [1000, 990, 1050, 1200] {
            r.push(ev(ts));
        }
        let ready: Vec<u64> = r.ready(0).map(|e| e.mark.ts_ns).collect();
        assert_eq!(ready, vec![990, 1000, 1050]);
        r.push(ev(1150));
        assert_eq!(r.ready(1249).count(), 0, "1150 is still inside the window");
        assert_eq!(
            r.ready(1250).map(|e| e.mark.ts_ns).collect::<Vec<_>>(),
            vec![1150]
        );
        let rest: Vec<u64> = r.drain().map(|e| e.mark.ts_ns).collect();
        assert_eq!(rest, vec![1200]);
    }

    #[test]
    fn reorder_keeps_the_arrival_order_of_equal_timestamps() {
        let mut r = Reorder::new(0);
        let ev = |ts, a| Event {
            mark: Mark {
                ts_ns: ts,
                a,
                ..Default::default()
            },
            text: None,
            text_truncated: false,
        };
        // (ts, arrival): a late 10 lands after the 10 already held, before 20.
        for (ts, a) in [(10, 1), (20, 2), (10, 3), (5, 4), (20, 5)] {
            r.push(ev(ts, a));
        }
        let order: Vec<(u64, u64)> = r.drain().map(|e| (e.mark.ts_ns, e.mark.a)).collect();
        assert_eq!(order, vec![(5, 4), (10, 1), (10, 3), (20, 2), (20, 5)]);
    }
}
