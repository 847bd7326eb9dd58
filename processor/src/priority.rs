//! # Strict priority with a starvation guard
//!
//! The processor reads three topics (high, normal, low). It always takes the next record from
//! the highest-priority topic that has one — except that a lower topic which has watched
//! `guard` records in a row go to higher topics is polled first once, so under sustained high
//! load every lower topic still gets at least one record in `guard + 2` (`guard + 1` when only
//! one lower topic is starved; the most starved one goes first).
//!
//! This module only decides the order in which the topics are polled; the consumer loop polls
//! in that order without waiting and takes the first record found, then reports which level it
//! took. Inside the scheduler levels are indices (`0` is the highest priority); the rest of
//! the processor speaks [`Priority`] and keeps one value per priority in a [`ByPriority`].

use std::ops::{Index, IndexMut};

use herald_protocol::kafka::Priority;

/// The scheduler level of `priority`: its position in [`Priority::ALL`] (0 = high).
fn level(priority: Priority) -> usize {
    match priority {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

/// One value per priority, indexed by [`Priority`] (so no bare level numbers travel around).
#[derive(Debug, Clone, Default)]
pub struct ByPriority<T>([T; 3]);

impl<T> ByPriority<T> {
    /// `f` of every priority.
    pub fn from_fn(mut f: impl FnMut(Priority) -> T) -> Self {
        ByPriority(Priority::ALL.map(&mut f))
    }

    /// The values with their priority, most urgent first.
    pub fn iter(&self) -> impl Iterator<Item = (Priority, &T)> {
        Priority::ALL.into_iter().zip(self.0.iter())
    }

    /// The values, most urgent first.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter()
    }

    /// The values with their priority, most urgent first, by value.
    pub fn into_iter_with_priority(self) -> impl Iterator<Item = (Priority, T)> {
        Priority::ALL.into_iter().zip(self.0)
    }

    /// The values as an array, most urgent first.
    pub fn into_array(self) -> [T; 3] {
        self.0
    }
}

impl<T> Index<Priority> for ByPriority<T> {
    type Output = T;
    fn index(&self, priority: Priority) -> &T {
        &self.0[level(priority)]
    }
}

impl<T> IndexMut<Priority> for ByPriority<T> {
    fn index_mut(&mut self, priority: Priority) -> &mut T {
        &mut self.0[level(priority)]
    }
}

/// Poll-order state for `LEVELS` priority levels.
#[derive(Debug, Clone)]
pub struct PriorityScheduler<const LEVELS: usize> {
    /// Per level: records taken from strictly higher levels since this level last had one.
    passed_over: [u32; LEVELS],
    /// Records a lower level may watch go to higher levels before it is polled first.
    guard: u32,
}

impl<const LEVELS: usize> PriorityScheduler<LEVELS> {
    /// A scheduler that lets a lower level be passed over at most `guard` (≥ 1) times in a row.
    pub fn new(guard: u32) -> Self {
        PriorityScheduler {
            passed_over: [0; LEVELS],
            guard: guard.max(1),
        }
    }

    /// The order in which to poll the levels for the next record: natural order (0 first),
    /// with the most starved level whose guard tripped moved to the front.
    pub fn poll_order(&self) -> [usize; LEVELS] {
        let mut order = [0; LEVELS];
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = i;
        }
        let starved = (1..LEVELS)
            .filter(|&l| self.passed_over[l] >= self.guard)
            .max_by_key(|&l| (self.passed_over[l], l));
        if let Some(l) = starved {
            order[..=l].rotate_right(1);
        }
        order
    }

    /// Records that a record of `level` was taken.
    pub fn taken(&mut self, level: usize) {
        for (l, count) in self.passed_over.iter_mut().enumerate() {
            if l == level {
                *count = 0;
            } else if l > level {
                *count = count.saturating_add(1);
            }
        }
    }
}

impl PriorityScheduler<3> {
    /// [`poll_order`](Self::poll_order) as priorities.
    pub fn priority_order(&self) -> [Priority; 3] {
        self.poll_order().map(|l| Priority::ALL[l])
    }

    /// Records that a record of `priority` was taken.
    pub fn took(&mut self, priority: Priority) {
        self.taken(level(priority));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates `rounds` picks with every level always having records, returns how many each
    /// level got.
    fn simulate(guard: u32, rounds: usize, has: [bool; 3]) -> [usize; 3] {
        let mut s = PriorityScheduler::<3>::new(guard);
        let mut got = [0; 3];
        for _ in 0..rounds {
            if let Some(&l) = s.poll_order().iter().find(|&&l| has[l]) {
                s.taken(l);
                got[l] += 1;
            }
        }
        got
    }

    #[test]
    fn natural_order_without_starvation() {
        let s = PriorityScheduler::<3>::new(4);
        assert_eq!(s.poll_order(), [0, 1, 2]);
    }

    #[test]
    fn high_only_load_takes_high_every_time() {
        assert_eq!(simulate(4, 100, [true, false, false]), [100, 0, 0]);
    }

    #[test]
    fn guard_lets_low_through_once_per_guard_plus_one() {
        let mut s = PriorityScheduler::<3>::new(3);
        for _ in 0..3 {
            assert_eq!(s.poll_order()[0], 0);
            s.taken(0);
        }
        // Low and normal both passed over 3 times; low (lowest level) goes first on the tie.
        assert_eq!(s.poll_order(), [2, 0, 1]);
        s.taken(2);
        // Taking low does not reset normal, which is still passed over 3 times.
        assert_eq!(s.poll_order(), [1, 0, 2]);
        s.taken(1);
        assert_eq!(s.poll_order(), [0, 1, 2]);
    }

    #[test]
    fn sustained_high_load_still_moves_every_level() {
        let got = simulate(9, 1000, [true, true, true]);
        assert!(got[0] > got[1] && got[0] > got[2], "{got:?}");
        // Every lower level gets at least one record in guard + LEVELS - 1 = 11 (a level
        // may also wait for the turn of a more starved one).
        assert!(got[2] >= 1000 / 11, "{got:?}");
        assert!(got[1] >= 1000 / 11, "{got:?}");
    }

    #[test]
    fn guard_tripped_on_empty_level_falls_through() {
        let mut s = PriorityScheduler::<3>::new(1);
        s.taken(0);
        let order = s.poll_order();
        assert_eq!(order[0], 2);
        // Low had nothing; the loop took high instead. The guard stays tripped.
        s.taken(0);
        assert_eq!(s.poll_order()[0], 2);
        s.taken(2);
        assert_eq!(s.poll_order()[0], 1);
    }

    #[test]
    fn normal_starved_only_by_high() {
        let mut s = PriorityScheduler::<3>::new(2);
        s.taken(1);
        s.taken(1);
        // Taking normal never starves normal; low is passed over.
        assert_eq!(s.poll_order(), [2, 0, 1]);
    }

    #[test]
    fn by_priority_indexes_by_priority_and_the_typed_order_matches() {
        let mut v = ByPriority::from_fn(|p| p.as_str().len());
        v[Priority::Low] += 10;
        assert_eq!(v.into_array(), [4, 6, 13]);
        let mut s = PriorityScheduler::<3>::new(1);
        assert_eq!(
            s.priority_order(),
            [Priority::High, Priority::Normal, Priority::Low]
        );
        s.took(Priority::High);
        assert_eq!(s.priority_order()[0], Priority::Low);
    }
}
