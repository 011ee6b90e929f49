//! A node's share of a window: its actions handled in order on one
//! thread, and what they produced (datagrams and timers for later windows,
//! events, totals, a violation), merged by [`Sim`] afterwards.

use super::*;

/// What stays fixed while a window's nodes run.
pub(super) struct World<'a> {
    pub(super) cfg: &'a SimConfig,
    pub(super) groups: &'a [u32],
    /// Takes each node's events as it runs, if the observer can.
    pub(super) observer: Option<&'a dyn NodeObserver>,
}

/// What handling one node in a window produced, merged afterwards in node
/// order.
#[derive(Default)]
pub(super) struct Effects {
    /// Actions for later windows (the datagrams it sent, its timer).
    pub(super) later: Vec<(Instant, u32, Action)>,
    /// Events for the observer, and the bytes of their values.
    pub(super) events: Vec<(Instant, Observed)>,
    pub(super) event_bytes: Vec<u8>,
    pub(super) totals: Totals,
    pub(super) violation: Option<(Instant, String)>,
    /// The last moment the node handled something at.
    pub(super) last: Instant,
}

/// One node's share of a window: its slot, what it has to handle (in
/// order), and what that produced.
pub(super) struct Job<'s> {
    pub(super) node: u32,
    pub(super) slot: &'s mut Slot,
    pub(super) actions: Actions,
    pub(super) effects: Effects,
}

/// A node being handled in a window.
pub(super) struct NodeRun<'a, 's> {
    pub(super) i: u32,
    pub(super) slot: &'a mut Slot,
    pub(super) world: &'a World<'s>,
    pub(super) now: Instant,
    /// Where the window ends: its own timers before it run in it.
    pub(super) end: Instant,
    pub(super) local: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    pub(super) pending: Vec<Option<Action>>,
    pub(super) next_seq: u64,
    pub(super) fx: &'a mut Effects,
}

/// Borrows the slots of the nodes in `due` (sorted by node), one each.
pub(super) fn jobs(slots: &mut [Slot], due: Vec<(u32, Actions)>) -> Vec<Job<'_>> {
    let mut jobs = Vec::with_capacity(due.len());
    let mut rest: &mut [Slot] = slots;
    let mut offset = 0u32;
    for (node, actions) in due {
        let skip = (node - offset) as usize;
        let Some((slot, tail)) = std::mem::take(&mut rest)
            .get_mut(skip..)
            .and_then(|s| s.split_first_mut())
        else {
            break;
        };
        rest = tail;
        offset = node + 1;
        jobs.push(Job {
            node,
            slot,
            actions,
            effects: Effects::default(),
        });
    }
    jobs
}

/// Handles one node's share of a window.
pub(super) fn run_job(
    job: &mut Job<'_>,
    world: &World<'_>,
    start: Instant,
    end: Instant,
    first_local_seq: u64,
) {
    let actions = std::mem::take(&mut job.actions);
    let mut run = NodeRun {
        i: job.node,
        slot: &mut *job.slot,
        world,
        now: start,
        end,
        local: BinaryHeap::new(),
        pending: Vec::new(),
        next_seq: first_local_seq,
        fx: &mut job.effects,
    };
    for (at, seq, action) in actions {
        run.push_local(at, seq, action);
    }
    while let Some((at, action)) = run.pop_local() {
        run.now = run.now.max(at);
        run.fx.last = run.now;
        match action {
            Action::Start => run.start(),
            Action::Timeout => run.timeout(),
            Action::Deliver { from, bytes } => run.deliver(from, bytes),
        }
    }
    run.flush_local();
}

impl NodeRun<'_, '_> {
    fn push_local(&mut self, at: Instant, seq: u64, action: Action) {
        self.local.push(Reverse((at, seq, self.pending.len())));
        self.pending.push(Some(action));
    }

    /// The node's next action within the window.
    fn pop_local(&mut self) -> Option<(Instant, Action)> {
        let Reverse((at, _, k)) = *self.local.peek()?;
        if at >= self.end {
            return None;
        }
        self.local.pop();
        let action = self.pending.get_mut(k)?.take()?;
        Some((at, action))
    }

    /// Hands what is left for later windows to the merge.
    pub(super) fn flush_local(&mut self) {
        while let Some(Reverse((at, _, k))) = self.local.pop() {
            if let Some(action) = self.pending.get_mut(k).and_then(Option::take) {
                self.fx.later.push((at, self.i, action));
            }
        }
    }

    /// Schedules `action` for node `to`: in this window if it is this node's
    /// and due before the window ends, in a later one otherwise.
    fn schedule(&mut self, at: Instant, to: u32, action: Action) {
        if to == self.i && at < self.end {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.push_local(at, seq, action);
        } else {
            self.fx.later.push((at, to, action));
        }
    }

    pub(super) fn fail(&mut self, what: String) {
        if self.fx.violation.is_none() {
            self.fx.violation = Some((self.now, what));
        }
    }

    pub(super) fn start(&mut self) {
        let i = self.i as usize;
        let cfg = self.world.cfg;
        let rng = Xoshiro256PlusPlus::seed_from_u64(
            cfg.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ self.slot.generation,
        );
        match Node::new(
            cfg.node.clone(),
            self.slot.addr,
            Generation(self.slot.generation),
            &[node_addr(0)],
            rng,
            self.now,
        ) {
            Ok(mut node) => {
                if cfg.reserve_peers {
                    // In huge pages, where the CLI installs the arena.
                    crate::arena::long_lived(|| node.reserve_peers(cfg.nodes.saturating_sub(1)));
                }
                for (key, value) in cfg
                    .start_states
                    .map(|f| f(i, self.slot.generation))
                    .unwrap_or_default()
                {
                    if let Err(e) = node.set_local_state(StateKey::parse(key), &value) {
                        return self.fail(format!("node {i} refused its start state {key}: {e}"));
                    }
                }
                self.slot.node = Some(node);
                self.drain();
            }
            Err(e) => self.fail(format!("node {i} did not start: {e}")),
        }
    }

    fn timeout(&mut self) {
        let now = self.now;
        if let Some(until) = self.slot.paused_until {
            if now < until {
                return;
            }
            self.slot.paused_until = None;
        } else if self.slot.scheduled != Some(now) {
            // Set for a deadline that has since moved.
            return;
        }
        self.slot.scheduled = None;
        if let Some(node) = self.slot.node.as_mut() {
            node.handle_timeout(now);
        }
        self.drain();
    }

    fn deliver(&mut self, from: u32, bytes: Vec<u8>) {
        let now = self.now;
        if self.slot.node.is_none() {
            self.fx.totals.lost += 1;
            recycle(bytes);
            return;
        }
        if let Some(until) = self.slot.paused_until
            && now < until
        {
            // Waits in the socket buffer until the node resumes.
            self.schedule(until, self.i, Action::Deliver { from, bytes });
            return;
        }
        self.fx.totals.delivered += 1;
        let sender = node_addr(from as usize);
        if let Some(node) = self.slot.node.as_mut() {
            node.handle_datagram(now, sender, &bytes);
        }
        recycle(bytes);
        self.check_views();
        self.drain();
    }

    /// Checks that no view the datagram's deltas were merged into went
    /// back: each endpoint is at the generation and version the node had
    /// before, or past them. (The slot still holds the endpoint: handling
    /// one datagram never removes one.)
    fn check_views(&mut self) {
        let Some(node) = self.slot.node.as_ref() else {
            return;
        };
        let broken = node.merged_views().find_map(|(slot, generation, version)| {
            let p = node.endpoint_at(slot)?;
            let now = (p.state().generation(), p.state().max_version());
            (now < (generation, version)).then(|| {
                format!(
                    "node {}'s view of {} went back from {:?} to {now:?}",
                    self.i,
                    p.addr(),
                    (generation, version)
                )
            })
        });
        if let Some(what) = broken {
            self.fail(what);
        }
    }

    /// The drain rule: transmits, then the timeout, then events.
    pub(super) fn drain(&mut self) {
        let now = self.now;
        let max = self.world.cfg.node.max_datagram_size;
        let mut buf = DRAIN_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        buf.resize(max, 0);
        let (mut out, mut events) = DRAIN_OUT.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let mut deadline = None;
        if let Some(node) = self.slot.node.as_mut() {
            while let Some(t) = node.poll_transmit(now, &mut buf) {
                out.push((t.destination, datagram(buf.get(..t.size).unwrap_or(&[]))));
            }
            deadline = node.poll_timeout();
            if let Some(observer) = self.world.observer {
                // Straight to the observer; the events the checks below
                // read (none with a value) are kept for them.
                observer.on_node_events(now, self.i as usize, &mut |f| {
                    while let Some(e) = node.poll_event() {
                        f(&e);
                        if watched(&e) {
                            events.push(Observed::of(&e, &mut self.fx.event_bytes));
                        }
                    }
                });
            } else {
                while let Some(e) = node.poll_event() {
                    events.push(Observed::of(&e, &mut self.fx.event_bytes));
                }
            }
        }
        DRAIN_BUF.with(|b| *b.borrow_mut() = buf);
        for (to, bytes) in out.drain(..) {
            if bytes.len() > max {
                self.fail(format!(
                    "node {} sent {} bytes (max {max})",
                    self.i,
                    bytes.len()
                ));
            }
            self.send(to, bytes);
        }
        if let Some(at) = deadline.map(|at| at.max(now))
            && self.slot.scheduled != Some(at)
        {
            self.slot.scheduled = Some(at);
            self.schedule(at, self.i, Action::Timeout);
        }
        let to_observer = self.world.observer.is_none();
        for e in events.drain(..) {
            self.watch(&e);
            if to_observer {
                self.fx.events.push((now, e));
            }
        }
        DRAIN_OUT.with(|b| *b.borrow_mut() = (out, events));
    }

    fn send(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        let totals = &mut self.fx.totals;
        totals.datagrams += 1;
        totals.bytes += bytes.len() as u64;
        totals.max_datagram = totals.max_datagram.max(bytes.len());
        let net = &self.world.cfg.network;
        let Some(to) = index_in(&to, self.world.groups.len()) else {
            totals.lost += 1;
            recycle(bytes);
            return;
        };
        let connected =
            self.world.groups.get(self.i as usize) == self.world.groups.get(to as usize);
        if !connected || chance(&mut self.slot.rng, net.loss) {
            self.fx.totals.lost += 1;
            recycle(bytes);
            return;
        }
        let copies = if chance(&mut self.slot.rng, net.duplicate) {
            self.fx.totals.duplicated += 1;
            2
        } else {
            1
        };
        let mut bytes = Some(bytes);
        for copy in 0..copies {
            let jitter = net.jitter.as_micros() as u64;
            let extra = if jitter > 0 {
                self.slot.rng.next_u64() % (jitter + 1)
            } else {
                0
            };
            let at = self.now + net.latency + Duration::from_micros(extra);
            // The last copy takes the bytes, earlier ones clone them.
            let bytes = if copy + 1 == copies {
                bytes.take()
            } else {
                bytes.clone()
            };
            if let Some(bytes) = bytes {
                self.schedule(
                    at,
                    to,
                    Action::Deliver {
                        from: self.i,
                        bytes,
                    },
                );
            }
        }
    }

    /// Invariant bookkeeping on events (those [`watched`] says).
    fn watch(&mut self, e: &Observed) {
        let i = self.i;
        let n = self.world.groups.len();
        let generation_of = |slot: &Slot, addr: &SocketAddr| {
            slot.node
                .as_ref()
                .and_then(|node| node.endpoint(addr))
                .map(|p| p.state().generation())
        };
        match *e {
            Observed::Down(addr) => {
                if let Some(j) = index_in(&addr, n)
                    && let Some(g) = generation_of(self.slot, &addr)
                {
                    self.slot.down_generation.insert(j, g);
                }
            }
            Observed::Removed(addr) => {
                if let Some(j) = index_in(&addr, n)
                    && let Some(g) = self.slot.down_generation.remove(&j)
                {
                    self.slot.removed.insert(j, g);
                }
            }
            Observed::Discovered(addr) => {
                if let Some(j) = index_in(&addr, n)
                    && let Some(g) = self.slot.removed.get(&j).copied()
                {
                    if generation_of(self.slot, &addr).is_some_and(|now| now <= g) {
                        self.fail(format!(
                            "node {i} resurrected removed {addr} at generation {g:?}"
                        ));
                    } else {
                        self.slot.removed.remove(&j);
                    }
                }
            }
            _ => {}
        }
    }
}

thread_local! {
    /// The datagram buffer `drain` lends to `poll_transmit`, one per thread.
    static DRAIN_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// What `drain` collects from a node before handling it (its
    /// datagrams, its events), kept for the next drain on the thread.
    static DRAIN_OUT: std::cell::RefCell<DrainOut> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    /// Buffers of datagrams handled (or lost), for the next ones sent on
    /// this thread: a run sends tens of millions, and the allocator is not
    /// asked for each.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A drain's datagrams and events.
type DrainOut = (Vec<(SocketAddr, Vec<u8>)>, Vec<Observed>);

/// Spare datagram buffers a thread keeps at most (about 6 MB).
const SPARE_BUFFERS: usize = 4096;

/// `bytes` in a buffer of their own, a spare one if the thread has one.
fn datagram(bytes: &[u8]) -> Vec<u8> {
    let mut buf = SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    buf.clear();
    buf.extend_from_slice(bytes);
    buf
}

/// Keeps a datagram's buffer for a later one.
fn recycle(buf: Vec<u8>) {
    SPARE.with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < SPARE_BUFFERS {
            spare.push(buf);
        }
    });
}

fn chance(rng: &mut Xoshiro256PlusPlus, p: f64) -> bool {
    p > 0.0 && (rng.next_u64() as f64 / u64::MAX as f64) < p
}

/// Whether [`NodeRun::watch`] reads `e`: downs, removals and discoveries
/// (none with a value to copy).
fn watched(e: &Event<'_>) -> bool {
    matches!(
        e,
        Event::Down { .. } | Event::Removed { .. } | Event::Discovered { .. }
    )
}
