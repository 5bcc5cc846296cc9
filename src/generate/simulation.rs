//! The run: day by day, plan what happens, then write what is due. Planning lives
//! here; writing a planned event is in `emit`.

use std::io;

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::calendar::{MINUTE, Ts, daily_order_counts};
use super::csv_files::TransactionsWriter;
use super::ndjson::EventsWriter;
use super::random::{arrival, change_times, time_of_day, weighted_index};
use super::schedule::{Channel, Pending, Planned, PlannedLine, PlannedOrder, Queue, status_chain};
use super::world::World;
use super::{EVENTS_FILE, GenFile, GenOptions, TRANSACTIONS_FILE};

/// Average changes per customer (moves, new email or phone) and per product (mostly
/// price changes) over a year of their life.
const CUSTOMER_CHANGES_PER_YEAR: f64 = 1.2;
const PRODUCT_CHANGES_PER_YEAR: f64 = 2.0;
/// Late arrivals: share of status changes and customer updates queued 1 to 4 days
/// after their business time (about 1 % of all events).
const LATE_STATUS_SHARE: f64 = 0.02;
const LATE_CUSTOMER_UPDATE_SHARE: f64 = 0.05;
/// Before an online order: share of bought products viewed twice, and chance of a
/// view of a product that is not bought. With the browse-only sessions below this
/// makes about 3 views per order.
const REPEAT_VIEW_SHARE: f64 = 0.1;
const EXTRA_VIEW_SHARE: f64 = 0.3;
/// Browse-only sessions (1 to 3 views) per order.
const BROWSE_SESSIONS_PER_ORDER: f64 = 0.15;
/// Lines per order, 1..=6: mean about 2.5.
const LINE_COUNT_WEIGHTS: [u32; 6] = [32, 26, 19, 12, 7, 4];
/// Quantity per line, 1..=5.
const QUANTITY_WEIGHTS: [u32; 5] = [60, 22, 10, 5, 3];
/// Share of order lines with a discount, and the percentages they get.
const DISCOUNTED_LINE_SHARE: f64 = 0.1;
const DISCOUNT_PERCENTS: [i64; 4] = [5, 10, 15, 20];

/// What a finished run leaves: the final state of the world and two written files.
pub(super) struct Outcome {
    pub(super) world: World,
    pub(super) events: GenFile,
    pub(super) transactions: GenFile,
}

/// The simulation: plans each day, then writes the events in emission order.
pub(super) struct Simulation {
    pub(super) rng: StdRng,
    pub(super) world: World,
    queue: Queue,
    pub(super) events: EventsWriter,
    pub(super) transactions: TransactionsWriter,
    pub(super) orders_placed: u64,
    sessions: u64,
}

impl Simulation {
    pub(super) fn new(rng: StdRng, world: World, opts: &GenOptions) -> io::Result<Simulation> {
        Ok(Simulation {
            rng,
            world,
            queue: Queue::default(),
            events: EventsWriter::create(&opts.out.join(EVENTS_FILE), opts)?,
            transactions: TransactionsWriter::create(&opts.out.join(TRANSACTIONS_FILE))?,
            orders_placed: 0,
            sessions: 0,
        })
    }

    /// Simulate every day, writing `events.ndjson` and `transactions.csv`.
    pub(super) fn run(mut self, orders: usize) -> io::Result<Outcome> {
        let calendar = self.world.calendar;
        let lifecycle = self.plan_lifecycles();
        let per_day = daily_order_counts(&self.world, orders);
        for (day, (due, order_count)) in lifecycle.into_iter().zip(per_day).enumerate() {
            for pending in due {
                self.queue.push(pending);
            }
            for _ in 0..order_count {
                self.plan_order(day);
                if self.rng.random_bool(BROWSE_SESSIONS_PER_ORDER) {
                    self.plan_browsing(day);
                }
            }
            let until = calendar.day_start(day + 1);
            while let Some(pending) = self.queue.pop_before(until) {
                self.emit(pending)?;
            }
        }
        // late arrivals due after the last day
        while let Some(pending) = self.queue.pop_before(Ts::MAX) {
            self.emit(pending)?;
        }
        Ok(Outcome {
            events: self.events.finish()?,
            transactions: self.transactions.finish()?,
            world: self.world,
        })
    }

    /// Registrations, listings and their later updates, bucketed by the day they
    /// reach the file.
    fn plan_lifecycles(&mut self) -> Vec<Vec<Pending>> {
        let calendar = self.world.calendar;
        let horizon = calendar.horizon();
        let mut by_day: Vec<Vec<Pending>> = (0..calendar.days).map(|_| Vec::new()).collect();
        let mut add = |pending: Pending| by_day[calendar.day_of(pending.emit_at)].push(pending);
        let rng = &mut self.rng;
        for (index, c) in self.world.customers.iter().enumerate() {
            add(Pending::on_time(c.registered_at, Planned::Register(index)));
            for time in change_times(rng, c.registered_at, horizon, CUSTOMER_CHANGES_PER_YEAR) {
                add(Pending {
                    time,
                    emit_at: arrival(rng, time, LATE_CUSTOMER_UPDATE_SHARE),
                    event: Planned::CustomerUpdate(index),
                });
            }
        }
        for (index, p) in self.world.products.iter().enumerate() {
            add(Pending::on_time(p.listed_at, Planned::List(index)));
            for time in change_times(rng, p.listed_at, horizon, PRODUCT_CHANGES_PER_YEAR) {
                add(Pending::on_time(time, Planned::ProductUpdate(index)));
            }
        }
        by_day
    }

    /// A moment on `day` when customers are active, not before the first order can
    /// be placed.
    fn shopping_time(&mut self, day: usize) -> Ts {
        let day_start = self.world.calendar.day_start(day);
        (day_start + time_of_day(&mut self.rng)).max(self.world.first_order_at)
    }

    /// One order on `day`; online orders come with a browsing session just before.
    fn plan_order(&mut self, day: usize) {
        let at = self.shopping_time(day);
        let channel = Channel::random(&mut self.rng);
        let lead = if channel == Channel::Store {
            0
        } else {
            self.rng.random_range(3 * MINUTE..=40 * MINUTE)
        };
        // the session starts on the same day, after the first signup and listing;
        // customer and products are picked among those that exist by then
        let day_start = self.world.calendar.day_start(day);
        let browse_from = (at - lead)
            .max(day_start)
            .max(self.world.first_order_at - 30);
        let rng = &mut self.rng;
        let Some(customer) = self.world.pick_customer(rng, browse_from) else {
            return;
        };
        let line_count = weighted_index(rng, &LINE_COUNT_WEIGHTS) + 1;
        let lines: Vec<PlannedLine> = self
            .world
            .pick_products(rng, browse_from, line_count)
            .into_iter()
            .map(|product| PlannedLine {
                product,
                quantity: weighted_index(rng, &QUANTITY_WEIGHTS) as i64 + 1,
                discount_percent: if rng.random_bool(DISCOUNTED_LINE_SHARE) {
                    DISCOUNT_PERCENTS[rng.random_range(0..DISCOUNT_PERCENTS.len())]
                } else {
                    0
                },
            })
            .collect();
        if lines.is_empty() {
            return;
        }
        if browse_from < at {
            self.plan_order_views(customer, &lines, browse_from, at);
        }
        let order = PlannedOrder {
            customer,
            channel,
            lines,
        };
        self.queue
            .push(Pending::on_time(at, Planned::Order(Box::new(order))));
    }

    /// The views before an order: each bought product (some twice) and now and then
    /// one that was not bought, at times in `from..until`.
    fn plan_order_views(&mut self, customer: usize, lines: &[PlannedLine], from: Ts, until: Ts) {
        let rng = &mut self.rng;
        let mut products = Vec::with_capacity(lines.len() + 2);
        for line in lines {
            products.push(line.product);
            if rng.random_bool(REPEAT_VIEW_SHARE) {
                products.push(line.product);
            }
        }
        if rng.random_bool(EXTRA_VIEW_SHARE)
            && let Some(extra) = self.world.pick_product(rng, from)
        {
            products.push(extra);
        }
        products.shuffle(rng);
        let mut times: Vec<Ts> = products
            .iter()
            .map(|_| rng.random_range(from..until))
            .collect();
        times.sort_unstable();
        let session = self.next_session();
        for (product, time) in products.into_iter().zip(times) {
            self.plan_view(time, session, customer, product);
        }
    }

    /// A browsing session without an order: one to three views.
    fn plan_browsing(&mut self, day: usize) {
        let at = self.shopping_time(day);
        let Some(customer) = self.world.pick_customer(&mut self.rng, at) else {
            return;
        };
        let session = self.next_session();
        let mut time = at;
        for _ in 0..self.rng.random_range(1..=3) {
            let Some(product) = self.world.pick_product(&mut self.rng, at) else {
                return;
            };
            self.plan_view(time, session, customer, product);
            time += self.rng.random_range(20..=300);
        }
    }

    fn next_session(&mut self) -> u64 {
        self.sessions += 1;
        self.sessions
    }

    fn plan_view(&mut self, time: Ts, session: u64, customer: usize, product: usize) {
        self.queue.push(Pending::on_time(
            time,
            Planned::View {
                session,
                customer,
                product,
            },
        ));
    }

    /// The status changes of an order placed at `placed`, up to the end of the
    /// period; some arrive late.
    pub(super) fn plan_statuses(&mut self, order: u64, placed: Ts) {
        let horizon = self.world.calendar.horizon();
        for (time, status) in status_chain(&mut self.rng, placed) {
            if time >= horizon {
                break;
            }
            self.queue.push(Pending {
                time,
                emit_at: arrival(&mut self.rng, time, LATE_STATUS_SHARE),
                event: Planned::Status { order, status },
            });
        }
    }
}
