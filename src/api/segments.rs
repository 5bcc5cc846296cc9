//! GET /segments (the RFM segment summary, `mart.segments`) and
//! /segments/{name}/customers (its members, from `mart.customer_360`).

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::customers::{self, CustomerPage, ListParams};
use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use super::params::{self, AsOfParams};
use super::state::AppState;
use super::values::{Money, col, money, number_opt};

#[derive(Debug, Serialize, ToSchema)]
pub struct Segment {
    pub segment: String,
    pub description: Option<String>,
    pub customers: i64,
    /// Share of all customers, percent.
    pub customers_pct: Option<f64>,
    /// All-time spend (counted orders) of the segment's customers.
    pub revenue: Money,
    /// Share of all revenue, percent.
    pub revenue_pct: Option<f64>,
    pub avg_orders: Option<f64>,
    pub avg_total_spent: Option<Money>,
    pub avg_days_since_last_order: Option<f64>,
    pub clv_predicted_12m: Money,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Segments {
    /// Every segment, in the rule table's order (also the empty ones).
    pub items: Vec<Segment>,
}

const COLUMNS: &str = "segment, description, customers, customers_pct, revenue, revenue_pct, \
     avg_orders, avg_total_spent, avg_days_since_last_order, clv_predicted_12m";

/// The RFM segment summary: customers and revenue per segment, now or as it was at
/// `as_of`.
#[utoipa::path(
    get,
    path = "/segments",
    operation_id = "listSegments",
    tag = "segments",
    params(AsOfParams),
    responses(
        (status = 200, description = "Every segment", body = Segments),
        (status = 400, description = "An unknown parameter, `as_of` not a time, or a path segment that is not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<AsOfParams>,
) -> Result<Json<Segments>, ApiError> {
    let as_of = q.time()?;
    let client = state.reads().await?;
    let rows = params::now_or_then(
        &client,
        as_of,
        &format!("SELECT {COLUMNS} FROM mart.segments"),
        &format!("SELECT {COLUMNS} FROM mart.segments_as_of($1)"),
        &[],
    )
    .await?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(Segment {
                segment: col(r, "segment")?,
                description: col(r, "description")?,
                customers: col(r, "customers")?,
                customers_pct: number_opt(r, "customers_pct")?,
                revenue: money(r, "revenue")?,
                revenue_pct: number_opt(r, "revenue_pct")?,
                avg_orders: number_opt(r, "avg_orders")?,
                avg_total_spent: col::<Option<rust_decimal::Decimal>>(r, "avg_total_spent")?
                    .map(Money),
                avg_days_since_last_order: number_opt(r, "avg_days_since_last_order")?,
                clv_predicted_12m: money(r, "clv_predicted_12m")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(Segments { items }))
}

/// The customers of one RFM segment; filters, sorts and paging as GET /customers.
#[utoipa::path(
    get,
    path = "/segments/{name}/customers",
    operation_id = "listSegmentCustomers",
    tag = "segments",
    params(("name" = String, Path, description = "Segment name, e.g. `Champions` (case-insensitive)"), ListParams),
    responses(
        (status = 200, description = "A page of the segment's customers", body = CustomerPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such segment; the detail lists them", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn members(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Json<CustomerPage>, ApiError> {
    let segment = {
        let client = state.reads().await?;
        let names = params::segment_names(&client).await?;
        names
            .iter()
            .find(|s| s.eq_ignore_ascii_case(name.trim()))
            .cloned()
            .ok_or_else(|| ApiError::NotFound {
                what: "segment",
                id: name.clone(),
                allowed: names.clone(),
                as_of: None,
            })?
    };
    customers::list_segment(state, segment, q).await
}
