//! GET /customers/{id}/orders: a customer's orders (`mart.customer_orders`), newest
//! first, with the running figures the view computes per customer (order number,
//! days since the previous order, cumulative spend).

use axum::extract::State;
use chrono::NaiveDate;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{Listing, PageRequest, Sort, list_params, next_link, page_of};
use super::params;
use super::state::AppState;
use super::values::{Money, Timestamp, col, money, time};

/// One of a customer's orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerOrder {
    pub order_id: String,
    pub ordered_at: Timestamp,
    pub order_date: NaiveDate,
    pub channel: Option<String>,
    pub status: String,
    /// False when cancelled or returned: the order is in no revenue figure.
    pub is_counted: bool,
    pub line_count: i32,
    pub units: i64,
    pub amount: Money,
    /// 1 for the customer's first order, 2 for the second, ...
    pub order_number: i64,
    pub days_since_previous_order: Option<i32>,
    /// The customer's counted spend up to and including this order.
    pub cumulative_spent: Money,
}

page_of!(CustomerOrderPage, CustomerOrder);

pub static ORDER_SORTS: [Sort; 2] = [
    Sort::new("-ordered_at", "o.ordered_at", "timestamptz", true),
    Sort::new("ordered_at", "o.ordered_at", "timestamptz", false),
];

list_params! {
    pub struct OrdersParams {
    }
    sort = "`-ordered_at` (newest first, the default) or `ordered_at`.";
}

/// A customer's orders, newest first.
#[utoipa::path(
    get,
    path = "/customers/{id}/orders",
    operation_id = "listCustomerOrders",
    tag = "customers",
    params(("id" = String, Path, description = "Customer id"), OrdersParams),
    responses(
        (status = 200, description = "A page of the customer's orders", body = CustomerOrderPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn orders(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<OrdersParams>,
) -> Result<Json<CustomerOrderPage>, ApiError> {
    let not_found = || ApiError::not_found("customer", &id);
    let hk = params::hash_key(&id).ok_or_else(not_found)?;
    let page = PageRequest::parse(&ORDER_SORTS, q.paging())?;
    let client = state.reads().await?;
    let mut listing = Listing::new(
        "o.order_id, o.ordered_at, o.order_date, o.channel, o.status, o.is_counted, \
         o.lines, o.units, o.amount, o.order_number, o.days_since_previous_order, o.cumulative_spent",
        "mart.customer_orders o",
        "o.order_id",
    );
    listing.filter("o.hk_customer = {}", hk.to_vec());
    let (rows, cursor) = listing.page(&client, &page).await?;
    if rows.is_empty() && !params::customer_exists(&client, &hk).await? {
        return Err(not_found());
    }
    let items = rows
        .iter()
        .map(|r| {
            Ok(CustomerOrder {
                order_id: col(r, "order_id")?,
                ordered_at: time(r, "ordered_at")?,
                order_date: col(r, "order_date")?,
                channel: col(r, "channel")?,
                status: col(r, "status")?,
                is_counted: col(r, "is_counted")?,
                line_count: col(r, "lines")?,
                units: col(r, "units")?,
                amount: money(r, "amount")?,
                order_number: col(r, "order_number")?,
                days_since_previous_order: col(r, "days_since_previous_order")?,
                cumulative_spent: money(r, "cumulative_spent")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let path = format!(
        "/customers/{}/orders",
        super::pagination::percent_encode(&id)
    );
    let link_params = [("sort", q.sort.as_deref()), ("limit", q.limit.as_deref())];
    Ok(Json(CustomerOrderPage {
        items,
        limit: page.limit,
        next: cursor.map(|c| next_link(&path, &link_params, &c)),
    }))
}
