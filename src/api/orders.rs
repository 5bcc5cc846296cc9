//! GET /orders and /orders/{id}: orders with their lines (`mart.orders`,
//! `mart.order_lines`).

use std::collections::HashMap;

use axum::extract::State;
use chrono::NaiveDate;
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{Listing, PageRequest, Sort, list_params, next_link, page_of};
use super::params::{self, NoParams, check_range, parse_from, parse_to};
use super::state::AppState;
use super::values::{Money, Timestamp, col, money, money_opt, time};

use crate::mapping::ORDER_STATUSES;

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLine {
    /// 1-based position of the line in the order, in the order of `line_key`.
    pub line_no: i64,
    /// The line's key as its source gave it: the line number of an `order_placed`
    /// event (`"1"`, `"2"`...) or the transaction id of a flat transaction file.
    pub line_key: String,
    pub product_id: String,
    /// The product's current name and category.
    pub product_name: Option<String>,
    pub category: Option<String>,
    pub quantity: Option<i32>,
    pub unit_price: Option<Money>,
    /// Money off the line (an amount, not a rate).
    pub discount: Option<Money>,
    /// quantity × unit_price − discount.
    pub line_amount: Option<Money>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    pub ordered_at: Timestamp,
    pub order_date: NaiveDate,
    pub channel: Option<String>,
    /// Current status; `placed` when the source sent none (see `status_known`).
    pub status: String,
    pub status_known: bool,
    /// False when cancelled or returned: the order is in no revenue figure.
    pub is_counted: bool,
    pub line_count: i32,
    pub units: i64,
    /// Sum of the line amounts, whatever the status.
    pub amount: Money,
    /// Ordered by line number.
    pub lines: Vec<OrderLine>,
}

const COLUMNS: &str = "o.order_id, o.customer_id, o.ordered_at, o.order_date, o.channel, o.status, \
     o.status_known, o.is_counted, o.lines, o.units, o.amount, o.hk_order";

const LINES: &str = "
    SELECT l.hk_order, l.line_no, l.product_id, l.product_name, l.category, l.quantity,
           l.unit_price, l.discount, l.line_amount
      FROM mart.order_line_items l
     WHERE l.hk_order = ANY($1)
     ORDER BY l.hk_order, length(l.line_no), l.line_no";

impl Order {
    fn from_row(r: &Row, lines: Vec<OrderLine>) -> Result<Order, ApiError> {
        Ok(Order {
            order_id: col(r, "order_id")?,
            customer_id: col(r, "customer_id")?,
            ordered_at: time(r, "ordered_at")?,
            order_date: col(r, "order_date")?,
            channel: col(r, "channel")?,
            status: col(r, "status")?,
            status_known: col(r, "status_known")?,
            is_counted: col(r, "is_counted")?,
            line_count: col(r, "lines")?,
            units: col(r, "units")?,
            amount: money(r, "amount")?,
            lines,
        })
    }
}

/// The orders of `rows` with their lines, fetched in one query.
async fn with_lines(
    client: &deadpool_postgres::Client,
    rows: &[Row],
) -> Result<Vec<Order>, ApiError> {
    let keys: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| col(r, "hk_order"))
        .collect::<Result<_, _>>()?;
    let stmt = client.prepare_cached(LINES).await?;
    let mut lines: HashMap<Vec<u8>, Vec<OrderLine>> = HashMap::new();
    for r in client.query(&stmt, &[&keys]).await? {
        let hk: Vec<u8> = col(&r, "hk_order")?;
        let entry = lines.entry(hk).or_default();
        let line = OrderLine {
            // the lines come in key order, numbers by their value
            line_no: entry.len() as i64 + 1,
            line_key: col(&r, "line_no")?,
            product_id: col(&r, "product_id")?,
            product_name: col(&r, "product_name")?,
            category: col(&r, "category")?,
            quantity: col(&r, "quantity")?,
            unit_price: money_opt(&r, "unit_price")?,
            discount: money_opt(&r, "discount")?,
            line_amount: money_opt(&r, "line_amount")?,
        };
        entry.push(line);
    }
    rows.iter()
        .zip(keys)
        .map(|(r, k)| Order::from_row(r, lines.remove(&k).unwrap_or_default()))
        .collect()
}

page_of!(OrderPage, Order);

pub static SORTS: [Sort; 4] = [
    Sort::new("-ordered_at", "o.ordered_at", "timestamptz", true),
    Sort::new("ordered_at", "o.ordered_at", "timestamptz", false),
    Sort::new("-amount", "o.amount", "numeric", true),
    Sort::new("amount", "o.amount", "numeric", false),
];

list_params! {
    pub struct ListParams {
        /// Orders placed at or after this time (RFC 3339, or a date: its midnight UTC).
        #[param(value_type = Option<String>, example = "2025-01-01")]
        pub from: Option<String>,
        /// Orders placed before this time (RFC 3339), or on or before this date.
        #[param(value_type = Option<String>, example = "2025-01-31")]
        pub to: Option<String>,
        /// Current status: placed, paid, shipped, delivered, cancelled or returned.
        pub status: Option<String>,
    }
    sort = "`-ordered_at` (newest first, the default), `ordered_at`, `-amount`, `amount`.";
}

/// A page of orders with their lines.
#[utoipa::path(
    get,
    path = "/orders",
    operation_id = "listOrders",
    tag = "orders",
    params(ListParams),
    responses(
        (status = 200, description = "A page of orders", body = OrderPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListParams>,
) -> Result<Json<OrderPage>, ApiError> {
    let page = PageRequest::parse(&SORTS, q.paging())?;
    let from = q
        .from
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_from("from", s))
        .transpose()?;
    let to =
        q.to.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_to("to", s))
            .transpose()?;
    check_range(from, to)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(
            ORDER_STATUSES
                .iter()
                .find(|s| s.eq_ignore_ascii_case(raw.trim()))
                .ok_or_else(|| {
                    ApiError::bad_param(
                        "status",
                        format!("unknown status {raw:?}"),
                        &ORDER_STATUSES,
                    )
                })?
                .to_string(),
        ),
    };
    let client = state.reads().await?;
    let mut listing = Listing::new(COLUMNS, "mart.orders o", "o.order_id");
    if let Some(from) = from {
        listing.filter("o.ordered_at >= {}", from);
    }
    if let Some(to) = to {
        listing.filter("o.ordered_at < {}", to);
    }
    if let Some(status) = status {
        listing.filter("o.status = {}", status);
    }
    let (rows, cursor) = listing.page(&client, &page).await?;
    let items = with_lines(&client, &rows).await?;
    let link_params = [
        ("from", q.from.as_deref()),
        ("to", q.to.as_deref()),
        ("status", q.status.as_deref()),
        ("sort", q.sort.as_deref()),
        ("limit", q.limit.as_deref()),
    ];
    Ok(Json(OrderPage {
        items,
        limit: page.limit,
        next: cursor.map(|c| next_link("/orders", &link_params, &c)),
    }))
}

/// One order with its lines.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    operation_id = "getOrder",
    tag = "orders",
    params(("id" = String, Path, description = "Order id (trimmed, case-insensitive)")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 400, description = "An unknown parameter, or a path segment that is not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Json<Order>, ApiError> {
    let not_found = || ApiError::not_found("order", &id);
    let hk = params::hash_key(&id).ok_or_else(not_found)?;
    let client = state.reads().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM mart.orders o WHERE o.hk_order = $1"
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&hk.as_slice()])
        .await?
        .ok_or_else(not_found)?;
    let mut orders = with_lines(&client, std::slice::from_ref(&row)).await?;
    orders
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::Internal("an order vanished".into()))
}
