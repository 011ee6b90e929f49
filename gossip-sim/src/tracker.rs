//! Follows events to know, cheaply, which nodes reached a scenario's goal.
//!
//! The tracker's account of a node reads that node's events alone, so it
//! takes them where the node runs ([`NodeObserver`]), on the simulator's
//! threads: each node's account is a [`Row`] behind its own lock (taken
//! once per batch of events, never contended), and what the scenario reads
//! across nodes (nodes done, hits, false downs) is summed per batch into
//! counters. Sums and per-node records do not depend on which thread got
//! there first, so runs stay the same on any number of threads.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use gossip_core::{Event, Instant};

use crate::{NodeEvents, NodeObserver, Observer, Sim};

/// Pair flags in a row.
const ALIVE: u8 = 1;
/// States seen, counted in the upper bits.
const STATE_UNIT: u8 = 2;
/// States every node publishes at start.
const START_STATES: u8 = 2;

/// One observing node's account.
struct Row {
    /// Per endpoint: ALIVE and a count of state events.
    pairs: Vec<u8>,
    /// Per endpoint, a bit: this node may still hold an incarnation of the
    /// endpoint from before its last restart (a down of that one is a true
    /// one).
    stale: Vec<u64>,
    /// Endpoints seen alive with all their start states.
    complete: u32,
    /// When the watched event reached this node.
    hit: Option<Instant>,
}

impl Row {
    fn stale(&self, j: usize) -> bool {
        self.stale
            .get(j / 64)
            .is_some_and(|w| w & (1u64 << (j % 64)) != 0)
    }

    fn set_stale(&mut self, j: usize, on: bool) {
        if let Some(word) = self.stale.get_mut(j / 64) {
            let mask = 1u64 << (j % 64);
            if on {
                *word |= mask;
            } else {
                *word &= !mask;
            }
        }
    }
}

/// What a batch of one node's events changed in the counters.
#[derive(Default)]
struct Tally {
    done: isize,
    false_downs: u64,
    hits: usize,
    touched: bool,
}

/// Which event the running scenario times.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    Nothing,
    /// A node has the new value of endpoint `.0`'s `probe` key.
    Key(usize),
    /// A node marked endpoint `.0` down.
    Down(usize),
    /// A node had an event about endpoint `.0` (the scenario then reads
    /// its view).
    Touch(usize),
    /// A node sees endpoint `.0` alive with its states.
    Complete(usize),
}

pub(crate) struct Tracker {
    pub(crate) n: usize,
    rows: Vec<Mutex<Row>>,
    /// Nodes whose complete count is `full`.
    done: AtomicUsize,
    /// Endpoints a node must see complete: every other node, but a joiner
    /// not started yet.
    pub(crate) full: u32,
    /// Nodes that must reach `full` for everyone to be done.
    members: usize,
    /// Which nodes are down on purpose (crashed, left, paused).
    pub(crate) absent: Vec<bool>,
    /// An endpoint whose downs are true ones whatever its state (the
    /// `pause` scenario's frozen node: others may still time out its
    /// suspicion after it resumed).
    pub(crate) excused: Option<usize>,
    /// Each node's partition group.
    pub(crate) groups: Vec<u32>,
    false_downs: AtomicU64,
    watch: Watch,
    /// Nodes with a hit.
    hit_count: AtomicUsize,
    /// Nodes with an event about the touched endpoint since the last
    /// check.
    touched: Mutex<Vec<u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unlocked<T>(m: &mut Mutex<T>) -> &mut T {
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
}

impl Tracker {
    /// Follows `n` nodes, of which `held_back` (if any) starts late.
    pub(crate) fn new(n: usize, held_back: Option<usize>) -> Self {
        let late = usize::from(held_back.is_some());
        let mut absent = vec![false; n];
        if let Some(j) = held_back {
            absent[j] = true;
        }
        let row = || {
            Mutex::new(Row {
                pairs: vec![0; n],
                stale: vec![0; n.div_ceil(64)],
                complete: 0,
                hit: None,
            })
        };
        Self {
            n,
            rows: (0..n).map(|_| row()).collect(),
            done: AtomicUsize::new(0),
            full: (n - 1 - late) as u32,
            members: n - late,
            absent,
            excused: None,
            groups: vec![0; n],
            false_downs: AtomicU64::new(0),
            watch: Watch::Nothing,
            hit_count: AtomicUsize::new(0),
            touched: Mutex::new(Vec::new()),
        }
    }

    /// Nodes that see every member complete.
    pub(crate) fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    pub(crate) fn all_done(&self) -> bool {
        self.done() == self.members
    }

    pub(crate) fn false_downs(&self) -> u64 {
        self.false_downs.load(Ordering::Relaxed)
    }

    pub(crate) fn reset_false_downs(&mut self) {
        *self.false_downs.get_mut() = 0;
    }

    pub(crate) fn hit_count(&self) -> usize {
        self.hit_count.load(Ordering::Relaxed)
    }

    /// When the watched event reached each node.
    pub(crate) fn hits(&mut self) -> Vec<Option<Instant>> {
        self.rows.iter_mut().map(|r| unlocked(r).hit).collect()
    }

    /// Endpoints node `i` sees complete.
    pub(crate) fn complete(&mut self, i: usize) -> u32 {
        self.rows.get_mut(i).map_or(0, |r| unlocked(r).complete)
    }

    /// Whether node `i` sees endpoint `j` alive.
    pub(crate) fn sees_alive(&mut self, i: usize, j: usize) -> bool {
        self.rows
            .get_mut(i)
            .and_then(|r| unlocked(r).pairs.get(j).copied())
            .is_some_and(|p| p & ALIVE != 0)
    }

    /// The nodes with an event about the touched endpoint since the last
    /// call, in node order.
    pub(crate) fn take_touched(&mut self) -> Vec<u32> {
        let mut all = std::mem::take(unlocked(&mut self.touched));
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Every node counts as touched once.
    pub(crate) fn touch_all(&mut self) {
        *unlocked(&mut self.touched) = (0..self.n as u32).collect();
    }

    pub(crate) fn watch(&mut self, w: Watch) {
        self.watch = w;
        for r in &mut self.rows {
            unlocked(r).hit = None;
        }
        *self.hit_count.get_mut() = 0;
        unlocked(&mut self.touched).clear();
    }

    /// The watched event reached node `i` at `now` (if it had not yet).
    pub(crate) fn hit(&mut self, i: usize, now: Instant) {
        if let Some(r) = self.rows.get_mut(i) {
            let mut tally = Tally::default();
            Self::row_hit(unlocked(r), &mut tally, now);
            *self.hit_count.get_mut() += tally.hits;
        }
    }

    /// A held-back node `j` started: everyone must now see it, and it
    /// everyone.
    pub(crate) fn joined(&mut self, j: usize) {
        if let Some(a) = self.absent.get_mut(j) {
            *a = false;
        }
        self.full = (self.n - 1) as u32;
        self.members = self.n;
        let full = self.full;
        let done = self
            .rows
            .iter_mut()
            .map(unlocked)
            .filter(|r| r.complete == full)
            .count();
        *self.done.get_mut() = done;
    }

    /// Node `j` restarts: present again, and every other node holds its old
    /// incarnation until it learns of the new one.
    pub(crate) fn rejoined(&mut self, j: usize) {
        if let Some(a) = self.absent.get_mut(j) {
            *a = false;
        }
        for (i, r) in self.rows.iter_mut().enumerate() {
            if i != j {
                unlocked(r).set_stale(j, true);
            }
        }
    }

    fn update(&self, row: &mut Row, tally: &mut Tally, j: usize, f: impl FnOnce(u8) -> u8) {
        let Some(pair) = row.pairs.get_mut(j) else {
            return;
        };
        let before = is_complete(*pair);
        *pair = f(*pair);
        let after = is_complete(*pair);
        let full = self.full;
        match (before, after) {
            (false, true) => {
                row.complete += 1;
                if row.complete == full {
                    tally.done += 1;
                }
            }
            (true, false) => {
                if row.complete == full {
                    tally.done -= 1;
                }
                row.complete -= 1;
            }
            _ => {}
        }
    }

    fn row_hit(row: &mut Row, tally: &mut Tally, now: Instant) {
        if row.hit.is_none() {
            row.hit = Some(now);
            tally.hits += 1;
        }
    }

    /// Node `i`'s account of `event`.
    fn account(&self, row: &mut Row, tally: &mut Tally, now: Instant, i: usize, event: &Event<'_>) {
        let n = self.n;
        let idx = move |addr| Sim::index_for(addr).filter(|j| *j < n);
        match *event {
            Event::Up { endpoint } => {
                if let Some(j) = idx(endpoint) {
                    self.update(row, tally, j, |p| p | ALIVE);
                }
            }
            Event::Down { endpoint } => {
                if let Some(j) = idx(endpoint) {
                    self.update(row, tally, j, |p| p & !ALIVE);
                    let reachable = self.groups.get(i) == self.groups.get(j);
                    if !self.absent.get(j).copied().unwrap_or(true)
                        && reachable
                        && !row.stale(j)
                        && self.excused != Some(j)
                    {
                        tally.false_downs += 1;
                    }
                    if self.watch == Watch::Down(j) {
                        Self::row_hit(row, tally, now);
                    }
                }
            }
            Event::Restarted { endpoint, .. } | Event::Discovered { endpoint } => {
                if let Some(j) = idx(endpoint) {
                    row.set_stale(j, false);
                }
                if let (Event::Restarted { .. }, Some(j)) = (event, idx(endpoint)) {
                    // A new incarnation publishes its states again.
                    self.update(row, tally, j, |p| p & ALIVE);
                }
            }
            Event::StateChanged { endpoint, key, .. } => {
                if let Some(j) = idx(endpoint) {
                    use gossip_core::state::{ApplicationState, StateKey};
                    if matches!(
                        key,
                        StateKey::Known(ApplicationState::Status | ApplicationState::HostId)
                    ) {
                        self.update(row, tally, j, |p| p.saturating_add(STATE_UNIT));
                    }
                    if self.watch == Watch::Key(j) && key == StateKey::User("probe") {
                        Self::row_hit(row, tally, now);
                    }
                }
            }
            _ => {}
        }
        if let Watch::Touch(j) = self.watch
            && idx(event.endpoint()) == Some(j)
        {
            tally.touched = true;
        }
        if let Watch::Complete(j) = self.watch
            && idx(event.endpoint()) == Some(j)
            && row.pairs.get(j).is_some_and(|p| is_complete(*p))
        {
            Self::row_hit(row, tally, now);
        }
    }

    /// Adds a batch's changes to the counters.
    fn settle(&self, i: usize, tally: Tally) {
        if tally.done != 0 {
            if tally.done > 0 {
                self.done
                    .fetch_add(tally.done.unsigned_abs(), Ordering::Relaxed);
            } else {
                self.done
                    .fetch_sub(tally.done.unsigned_abs(), Ordering::Relaxed);
            }
        }
        if tally.false_downs > 0 {
            self.false_downs
                .fetch_add(tally.false_downs, Ordering::Relaxed);
        }
        if tally.hits > 0 {
            self.hit_count.fetch_add(tally.hits, Ordering::Relaxed);
        }
        if tally.touched {
            lock(&self.touched).push(i as u32);
        }
    }
}

impl NodeObserver for Tracker {
    fn on_node_events(&self, now: Instant, i: usize, events: &mut NodeEvents<'_>) {
        let Some(row) = self.rows.get(i) else {
            return;
        };
        let mut row = lock(row);
        let mut tally = Tally::default();
        events(&mut |e| self.account(&mut row, &mut tally, now, i, e));
        drop(row);
        self.settle(i, tally);
    }
}

impl Observer for Tracker {
    fn on_event(&mut self, now: Instant, i: usize, event: &Event<'_>) {
        self.on_node_events(now, i, &mut |f| f(event));
    }

    /// Its account of each node reads that node's events alone.
    fn by_node(&self) -> Option<&dyn NodeObserver> {
        Some(self)
    }
}

fn is_complete(pair: u8) -> bool {
    pair & ALIVE != 0 && pair / STATE_UNIT >= START_STATES
}
