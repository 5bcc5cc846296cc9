//! Writing a planned event: what each event type says, and how the world changes
//! when it is written.

use std::io;

use rand::RngExt;
use rand::rngs::StdRng;

use super::calendar::Ts;
use super::format::{Cents, CustomerId, IsoDate, OrderId, ProductId, Rfc3339, SessionId};
use super::ndjson::JsonObject;
use super::random::{other_index, weighted_index};
use super::reference::{
    BRANDS, CATEGORIES, COUNTRIES, EMAIL_DOMAINS, LAST_NAMES, email_address, phone_number,
    product_name,
};
use super::schedule::{Pending, Planned, PlannedOrder, Status};
use super::simulation::Simulation;
use super::world::CustomerField;

/// What a `customer_updated` event changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CustomerChange {
    /// A new city, now and then abroad (then with a new phone number).
    Move,
    Email,
    Phone,
    LastName,
}

impl CustomerChange {
    fn random(rng: &mut StdRng) -> CustomerChange {
        const CHANGES: [CustomerChange; 4] = [
            CustomerChange::Move,
            CustomerChange::Email,
            CustomerChange::Phone,
            CustomerChange::LastName,
        ];
        CHANGES[weighted_index(rng, &[40, 30, 22, 8])]
    }
}

/// What a `product_updated` event changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProductChange {
    Price,
    Name,
    NameAndPrice,
    Brand,
    /// A new category, with a new name that fits it.
    Category,
}

impl ProductChange {
    fn random(rng: &mut StdRng) -> ProductChange {
        const CHANGES: [ProductChange; 5] = [
            ProductChange::Price,
            ProductChange::Name,
            ProductChange::NameAndPrice,
            ProductChange::Brand,
            ProductChange::Category,
        ];
        CHANGES[weighted_index(rng, &[80, 8, 5, 4, 3])]
    }
}

impl Simulation {
    /// Write `pending` as a line of `events.ndjson`, dated its business time.
    pub(super) fn emit(&mut self, pending: Pending) -> io::Result<()> {
        let time = pending.time;
        match pending.event {
            Planned::Register(c) => self.emit_registration(c, time),
            Planned::List(p) => self.emit_listing(p, time),
            Planned::CustomerUpdate(c) => self.emit_customer_update(c, time),
            Planned::ProductUpdate(p) => self.emit_product_update(p, time),
            Planned::Order(order) => self.emit_order(&order, time),
            Planned::Status { order, status } => self.emit_status(order, status, time),
            Planned::View {
                session,
                customer,
                product,
            } => self.emit_view(session, customer, product, time),
        }
    }

    fn emit_registration(&mut self, index: usize, time: Ts) -> io::Result<()> {
        let c = &self.world.customers[index];
        let mut data = self.events.event("customer_registered", "crm", time)?;
        data.token("customer_id", CustomerId(index))?;
        data.str("first_name", c.first_name);
        data.str("last_name", c.last_name);
        data.str("email", &c.email);
        data.str("phone", &c.phone);
        data.str("city", c.city_name());
        data.str("country", c.country_name());
        data.token("signup_date", IsoDate(c.registered_at))?;
        data.close();
        self.events.customer_exists(index);
        self.events.commit()
    }

    fn emit_listing(&mut self, index: usize, time: Ts) -> io::Result<()> {
        let p = &self.world.products[index];
        let mut data = self.events.event("product_listed", "catalog", time)?;
        data.token("product_id", ProductId(index))?;
        data.str("name", &p.name);
        data.str("category", CATEGORIES[p.category].name);
        data.str("brand", BRANDS[p.brand]);
        data.number("price", Cents(p.price))?;
        data.close();
        self.events.product_exists(index);
        self.events.commit()
    }

    /// A move (sometimes abroad, then with a new phone), a new email, a new phone or
    /// a new last name. A late update does not overwrite a newer one in the state.
    fn emit_customer_update(&mut self, index: usize, time: Ts) -> io::Result<()> {
        let rng = &mut self.rng;
        let c = &mut self.world.customers[index];
        let mut data = self.events.event("customer_updated", "crm", time)?;
        data.token("customer_id", CustomerId(index))?;
        match CustomerChange::random(rng) {
            CustomerChange::Move => {
                let abroad = rng.random_bool(0.3);
                let country = if abroad {
                    other_index(rng, c.country, COUNTRIES.len())
                } else {
                    c.country
                };
                let cities = COUNTRIES[country].cities.len();
                let city = if abroad {
                    rng.random_range(0..cities)
                } else {
                    other_index(rng, c.city, cities)
                };
                data.str("city", COUNTRIES[country].cities[city]);
                data.str("country", COUNTRIES[country].name);
                if abroad {
                    let phone = phone_number(rng, country);
                    data.str("phone", &phone);
                    if c.accepts(CustomerField::Phone, time) {
                        c.phone = phone;
                    }
                }
                if c.accepts(CustomerField::Address, time) {
                    c.country = country;
                    c.city = city;
                }
            }
            CustomerChange::Email => {
                let domain = other_index(rng, c.email_domain, EMAIL_DOMAINS.len());
                let email = email_address(c.first_name, c.last_name, index, domain);
                data.str("email", &email);
                if c.accepts(CustomerField::Email, time) {
                    c.email = email;
                    c.email_domain = domain;
                }
            }
            CustomerChange::Phone => {
                let phone = phone_number(rng, c.country);
                data.str("phone", &phone);
                if c.accepts(CustomerField::Phone, time) {
                    c.phone = phone;
                }
            }
            CustomerChange::LastName => {
                let current = LAST_NAMES.iter().position(|&n| n == c.last_name);
                let last_name =
                    LAST_NAMES[other_index(rng, current.unwrap_or(0), LAST_NAMES.len())];
                data.str("last_name", last_name);
                if c.accepts(CustomerField::Name, time) {
                    c.last_name = last_name;
                }
            }
        }
        data.close();
        self.events.commit()
    }

    /// Mostly a price change; sometimes a new name (with or without a new price), a
    /// new brand, or a new category (with a name that fits it). Product updates are
    /// never late, so the state simply follows them.
    fn emit_product_update(&mut self, index: usize, time: Ts) -> io::Result<()> {
        use ProductChange::{Brand, Category, Name, NameAndPrice, Price};
        let rng = &mut self.rng;
        let p = &mut self.world.products[index];
        let mut data = self.events.event("product_updated", "catalog", time)?;
        data.token("product_id", ProductId(index))?;
        // members in a fixed order: name, category, brand, price
        let change = ProductChange::random(rng);
        if change == Category {
            p.category = other_index(rng, p.category, CATEGORIES.len());
        }
        if matches!(change, Name | NameAndPrice | Category) {
            p.name = product_name(rng, p.category);
            data.str("name", &p.name);
        }
        if change == Category {
            data.str("category", CATEGORIES[p.category].name);
        }
        if change == Brand {
            p.brand = other_index(rng, p.brand, BRANDS.len());
            data.str("brand", BRANDS[p.brand]);
        }
        if matches!(change, Price | NameAndPrice) {
            p.price = p.repriced(rng);
            data.number("price", Cents(p.price))?;
        }
        data.close();
        self.events.commit()
    }

    /// The order at current prices, its `transactions.csv` rows, and its future
    /// status changes (none after the last day).
    fn emit_order(&mut self, order: &PlannedOrder, time: Ts) -> io::Result<()> {
        self.orders_placed += 1;
        let id = OrderId(self.orders_placed);
        let mut data = self.events.event("order_placed", "shop", time)?;
        data.token("order_id", &id)?;
        data.token("customer_id", CustomerId(order.customer))?;
        data.token("ordered_at", Rfc3339(time))?;
        data.token("channel", order.channel.as_str())?;
        data.token("status", "placed")?;
        let lines = data.member("lines");
        lines.push(b'[');
        for (i, line) in order.lines.iter().enumerate() {
            if i > 0 {
                lines.push(b',');
            }
            let unit_price = self.world.products[line.product].price;
            let discount = unit_price * line.quantity * line.discount_percent / 100;
            let mut json = JsonObject::open(lines);
            json.number("line_no", i + 1)?;
            json.token("product_id", ProductId(line.product))?;
            json.number("quantity", line.quantity)?;
            json.number("unit_price", Cents(unit_price))?;
            json.number("discount", Cents(discount))?;
            json.close();
            self.transactions
                .row(&id, order.customer, line, unit_price, time)?;
        }
        lines.push(b']');
        data.close();
        self.events.commit()?;
        self.plan_statuses(id.0, time);
        Ok(())
    }

    fn emit_status(&mut self, order: u64, status: Status, time: Ts) -> io::Result<()> {
        let mut data = self.events.event("order_status_changed", "shop", time)?;
        data.token("order_id", OrderId(order))?;
        data.token("status", status.as_str())?;
        data.close();
        self.events.commit()
    }

    fn emit_view(
        &mut self,
        session: u64,
        customer: usize,
        product: usize,
        time: Ts,
    ) -> io::Result<()> {
        let mut data = self.events.event("product_viewed", "web", time)?;
        data.token("session_id", SessionId(session))?;
        data.token("customer_id", CustomerId(customer))?;
        data.token("product_id", ProductId(product))?;
        data.token("viewed_at", Rfc3339(time))?;
        data.close();
        self.events.commit()
    }
}
