//! Events planned but not written yet, and the queue that releases them in the
//! order they reach the file.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rand::RngExt;
use rand::rngs::StdRng;

use super::calendar::{DAY, HOUR, MINUTE, Ts};
use super::random::weighted_index;

/// Where an order is placed. Online orders come with a browsing session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Channel {
    Web,
    Mobile,
    Store,
}

impl Channel {
    pub(super) fn random(rng: &mut StdRng) -> Channel {
        [Channel::Web, Channel::Mobile, Channel::Store][weighted_index(rng, &[55, 35, 10])]
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Mobile => "mobile",
            Channel::Store => "store",
        }
    }
}

/// An order's status after `placed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Returned,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Cancelled => "cancelled",
            Status::Returned => "returned",
        }
    }
}

/// What happens to an order after it is placed: about 5 % are cancelled (half
/// before, half after payment), about 3 % returned after delivery.
pub(super) fn status_chain(rng: &mut StdRng, placed: Ts) -> Vec<(Ts, Status)> {
    let fate = rng.random::<f64>();
    let paid = placed + rng.random_range(MINUTE..=2 * HOUR);
    if fate < 0.025 {
        return vec![(
            placed + rng.random_range(10 * MINUTE..=12 * HOUR),
            Status::Cancelled,
        )];
    }
    if fate < 0.05 {
        let cancelled = paid + rng.random_range(HOUR..=DAY);
        return vec![(paid, Status::Paid), (cancelled, Status::Cancelled)];
    }
    let shipped = paid + rng.random_range(6 * HOUR..=2 * DAY);
    let delivered = shipped + rng.random_range(DAY..=5 * DAY);
    let mut chain = vec![
        (paid, Status::Paid),
        (shipped, Status::Shipped),
        (delivered, Status::Delivered),
    ];
    if fate < 0.08 {
        chain.push((
            delivered + rng.random_range(2 * DAY..=21 * DAY),
            Status::Returned,
        ));
    }
    chain
}

pub(super) struct PlannedLine {
    pub(super) product: usize,
    pub(super) quantity: i64,
    pub(super) discount_percent: i64,
}

pub(super) struct PlannedOrder {
    pub(super) customer: usize,
    pub(super) channel: Channel,
    pub(super) lines: Vec<PlannedLine>,
}

/// An event waiting to be written. Prices and changed values are decided when it
/// is written, so they follow the state at that moment. Customers and products are
/// indexes into the world's lists.
pub(super) enum Planned {
    Register(usize),
    List(usize),
    CustomerUpdate(usize),
    ProductUpdate(usize),
    Order(Box<PlannedOrder>),
    Status {
        order: u64,
        status: Status,
    },
    View {
        session: u64,
        customer: usize,
        product: usize,
    },
}

pub(super) struct Pending {
    /// Business time: the event's `time`.
    pub(super) time: Ts,
    /// When it reaches the file; later than `time` for late arrivals.
    pub(super) emit_at: Ts,
    pub(super) event: Planned,
}

impl Pending {
    /// An event that reaches the file when it happens.
    pub(super) fn on_time(time: Ts, event: Planned) -> Pending {
        Pending {
            time,
            emit_at: time,
            event,
        }
    }
}

/// A pending event in the queue; ties are broken by insertion order.
struct Queued {
    key: (Ts, u64),
    pending: Pending,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed, so the max-heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// Pending events in emission order.
#[derive(Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Queued>,
    pushed: u64,
}

impl Queue {
    pub(super) fn push(&mut self, pending: Pending) {
        self.pushed += 1;
        self.heap.push(Queued {
            key: (pending.emit_at, self.pushed),
            pending,
        });
    }

    /// The next event due before `until`.
    pub(super) fn pop_before(&mut self, until: Ts) -> Option<Pending> {
        if self.heap.peek()?.key.0 >= until {
            return None;
        }
        self.heap.pop().map(|q| q.pending)
    }
}
