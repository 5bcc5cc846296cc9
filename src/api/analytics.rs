//! GET /analytics/revenue (`mart.revenue_daily|weekly|monthly`), /analytics/churn
//! (`mart.churn`), /analytics/categories (`mart.categories`) and
//! /analytics/top-products (`mart.products` by revenue); each also as it was at a past
//! business time (`as_of`, the `mart.*_as_of` functions).

use axum::extract::State;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{Json, Query};
use super::pagination;
use super::params::{self, AsOfParams, check_range, parse_date};
use super::state::AppState;
use super::values::{Money, col, money, money_opt, number_opt, whole};

/// The most points one series answer holds. A longer series is refused (400
/// `series-too-long`) before more than this many rows are read: the answer stays a
/// few MB however far apart the first and last orders are.
pub const MAX_SERIES_POINTS: usize = 10_000;

/// The periods of the revenue series and the view of each.
pub const PERIODS: [(&str, &str); 3] = [
    ("day", "mart.revenue_daily"),
    ("week", "mart.revenue_weekly"),
    ("month", "mart.revenue_monthly"),
];

/// The columns of a revenue point after its `period_start`.
const POINT: &str = "orders, customers, units, revenue, avg_order_value, \
                     orders_cancelled_or_returned, revenue_lost";

/// The series of `period` between `$1` and `$2` (dates, either NULL), from its view or,
/// `then`, as it was at the business time `$3`. Fixed text per period and reading.
fn series_sql(period: &str, view: &str, then: bool) -> String {
    let source = if then {
        format!("SELECT period_start, {POINT} FROM mart.revenue_as_of($3, '{period}')")
    } else {
        format!("SELECT {period} AS period_start, {POINT} FROM {view}")
    };
    format!(
        "SELECT period_start, {POINT} FROM ({source}) AS s
          WHERE ($1::date IS NULL OR period_start >= date_trunc('{period}', $1::timestamp)::date)
            AND ($2::date IS NULL OR period_start <= $2)
          ORDER BY period_start"
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevenueParams {
    /// `day`, `week` (ISO, starting Monday) or `month`.
    #[param(value_type = String, example = "month")]
    pub period: Option<String>,
    /// First day to include (YYYY-MM-DD); the period containing it is included.
    #[param(value_type = Option<String>, example = "2025-01-01")]
    pub from: Option<String>,
    /// Last day to include (YYYY-MM-DD): periods starting on or before it.
    #[param(value_type = Option<String>, example = "2025-12-31")]
    pub to: Option<String>,
    /// The series as it was at this business time: RFC 3339, or a date (its end, UTC).
    /// Orders placed by then, counted by their status then. The first request for a
    /// given `as_of` computes the sales at that time (seconds on a large vault); later
    /// ones read them back until a load changes that past.
    #[param(value_type = Option<String>, example = "2025-06-30")]
    pub as_of: Option<String>,
}

/// Revenue of one period. Only counted orders (not cancelled or returned, by their
/// current status, or by their status then with `as_of`) make revenue; an order belongs
/// to the period of its `ordered_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevenuePoint {
    /// First day of the period (UTC).
    pub period_start: NaiveDate,
    pub orders: i64,
    pub customers: i64,
    pub units: i64,
    pub revenue: Money,
    pub avg_order_value: Option<Money>,
    pub orders_cancelled_or_returned: i64,
    /// Amount of the orders of the period now cancelled or returned.
    pub revenue_lost: Money,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revenue {
    #[schema(example = "month")]
    pub period: String,
    /// Every period between the first and the last order (also those without any).
    pub series: Vec<RevenuePoint>,
}

/// A revenue series by day, week or month.
#[utoipa::path(
    get,
    path = "/analytics/revenue",
    operation_id = "getRevenue",
    tag = "analytics",
    params(RevenueParams),
    responses(
        (status = 200, description = "The series, oldest period first", body = Revenue),
        (status = 400, description = "`period` missing or unknown, a bad date or `as_of`, or a series of more than 10,000 points (`series-too-long`: narrow it with `from` and `to`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn revenue(
    State(state): State<AppState>,
    Query(q): Query<RevenueParams>,
) -> Result<Json<Revenue>, ApiError> {
    let names = PERIODS.map(|(name, _)| name);
    let raw = q
        .period
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_param("period", "is required", &names))?;
    let (period, view) = PERIODS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(raw.trim()))
        .ok_or_else(|| ApiError::bad_param("period", format!("unknown period {raw:?}"), &names))?;
    let from = q
        .from
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| parse_date("from", s))
        .transpose()?;
    let to =
        q.to.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_date("to", s))
            .transpose()?;
    check_range(from, to)?;
    let as_of = AsOfParams { as_of: q.as_of }.time()?;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from, &to];
    if let Some(ts) = &as_of {
        params.push(ts);
    }
    let sql = series_sql(period, view, as_of.is_some());
    let client = state.reads().await?;
    // one row more than an answer may hold tells that the series is too long
    let most = MAX_SERIES_POINTS + 1;
    let stmt = client
        .prepare_cached(&format!("{sql} LIMIT {most}"))
        .await?;
    let rows = client.query(&stmt, &params).await?;
    if rows.len() > MAX_SERIES_POINTS {
        let extent = client
            .prepare_cached(&format!(
                "SELECT count(*), min(period_start), max(period_start) FROM ({sql}) AS s"
            ))
            .await?;
        let r = client.query_one(&extent, &params).await?;
        return Err(ApiError::SeriesTooLong {
            period: period.to_string(),
            points: col(&r, "count")?,
            first: col(&r, "min")?,
            last: col(&r, "max")?,
            limit: MAX_SERIES_POINTS,
        });
    }
    let series = rows
        .iter()
        .map(|r| {
            Ok(RevenuePoint {
                period_start: col(r, "period_start")?,
                orders: col(r, "orders")?,
                customers: col(r, "customers")?,
                units: whole(r, "units")?,
                revenue: money(r, "revenue")?,
                avg_order_value: money_opt(r, "avg_order_value")?,
                orders_cancelled_or_returned: col(r, "orders_cancelled_or_returned")?,
                revenue_lost: money(r, "revenue_lost")?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(Revenue {
        period: period.to_string(),
        series,
    }))
}

/// Churn today (or at `as_of`): customers with a counted order by churn risk, and the rates.
#[derive(Debug, Serialize, ToSchema)]
pub struct Churn {
    pub customers: i64,
    pub customers_with_orders: i64,
    pub active: i64,
    pub at_risk: i64,
    pub churned: i64,
    /// churned / customers_with_orders (0..1); null without customers with orders.
    pub churn_rate: Option<f64>,
    /// at_risk / customers_with_orders (0..1).
    pub at_risk_rate: Option<f64>,
    /// Customers without a counted order (not in the rates).
    pub prospects: i64,
}

/// Churn rate, churned, at risk and total, now or as they were at `as_of`.
#[utoipa::path(
    get,
    path = "/analytics/churn",
    operation_id = "getChurn",
    tag = "analytics",
    params(AsOfParams),
    responses(
        (status = 200, description = "Churn figures", body = Churn),
        (status = 400, description = "An unknown parameter, `as_of` not a time, or a path segment that is not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn churn(
    State(state): State<AppState>,
    Query(q): Query<AsOfParams>,
) -> Result<Json<Churn>, ApiError> {
    const COLUMNS: &str = "customers, customers_with_orders, active, at_risk, churned, \
                           churn_rate, at_risk_rate, prospects";
    let as_of = q.time()?;
    let client = state.reads().await?;
    let rows = params::now_or_then(
        &client,
        as_of,
        &format!("SELECT {COLUMNS} FROM mart.churn"),
        &format!("SELECT {COLUMNS} FROM mart.churn_as_of($1)"),
        &[],
    )
    .await?;
    let r = rows
        .first()
        .ok_or_else(|| ApiError::Internal("the churn view answered no row".into()))?;
    Ok(Json(Churn {
        customers: col(r, "customers")?,
        customers_with_orders: col(r, "customers_with_orders")?,
        active: col(r, "active")?,
        at_risk: col(r, "at_risk")?,
        churned: col(r, "churned")?,
        churn_rate: number_opt(r, "churn_rate")?,
        at_risk_rate: number_opt(r, "at_risk_rate")?,
        prospects: col(r, "prospects")?,
    }))
}

/// One product category: its products' sales.
#[derive(Debug, Serialize, ToSchema)]
pub struct Category {
    /// The current category (with `as_of`, that of then); null for the products without one.
    pub category: Option<String>,
    /// Its products (with `as_of`, those known by then: with details in force or sold).
    pub products: i64,
    /// Units in counted orders (not cancelled or returned).
    pub units_sold: i64,
    /// Line amounts (after discounts) in counted orders.
    pub revenue: Money,
    /// Share of all revenue, percent; null without revenue.
    pub revenue_pct: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Categories {
    /// Every category, by revenue (highest first).
    pub items: Vec<Category>,
}

/// Sales per product category, by revenue, now or as they were at `as_of`.
#[utoipa::path(
    get,
    path = "/analytics/categories",
    operation_id = "listCategories",
    tag = "analytics",
    params(AsOfParams),
    responses(
        (status = 200, description = "Every category, by revenue", body = Categories),
        (status = 400, description = "An unknown parameter, `as_of` not a time, or a path segment that is not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn categories(
    State(state): State<AppState>,
    Query(q): Query<AsOfParams>,
) -> Result<Json<Categories>, ApiError> {
    const COLUMNS: &str = "category, products, units_sold, revenue, revenue_pct";
    let as_of = q.time()?;
    let client = state.reads().await?;
    let items = params::now_or_then(
        &client,
        as_of,
        &format!("SELECT {COLUMNS} FROM mart.categories"),
        &format!("SELECT {COLUMNS} FROM mart.categories_as_of($1)"),
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(Category {
            category: col(r, "category")?,
            products: col(r, "products")?,
            units_sold: col(r, "units_sold")?,
            revenue: money(r, "revenue")?,
            revenue_pct: number_opt(r, "revenue_pct")?,
        })
    })
    .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(Categories { items }))
}

/// The most products a top-products answer lists (what is remembered per `as_of`).
pub const MAX_TOP_PRODUCTS: i64 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TopProductsParams {
    /// How many products, 1 to 100 (default 10).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100, example = 10)]
    pub limit: Option<String>,
    /// The products as they were at this business time: RFC 3339, or a date (its end,
    /// UTC); their name and category then, orders placed by then counted by their status
    /// then. Computed once per `as_of`, like the revenue series.
    #[param(value_type = Option<String>, example = "2025-06-30")]
    pub as_of: Option<String>,
}

/// One of the products with the most revenue.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopProduct {
    /// 1 for the most revenue; ties are ranked by product id.
    pub rank: i32,
    pub product_id: String,
    /// Name and category now (with `as_of`, then); null without product details.
    pub name: Option<String>,
    pub category: Option<String>,
    /// Units in counted orders (not cancelled or returned).
    pub units_sold: i64,
    /// Line amounts (after discounts) in counted orders.
    pub revenue: Money,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopProducts {
    /// The products with revenue, the most first (fewer than `limit` if fewer sold).
    pub items: Vec<TopProduct>,
}

/// The products with the most revenue, now or as they were at `as_of`.
#[utoipa::path(
    get,
    path = "/analytics/top-products",
    operation_id = "listTopProducts",
    tag = "analytics",
    params(TopProductsParams),
    responses(
        (status = 200, description = "The products with the most revenue, the most first", body = TopProducts),
        (status = 400, description = "An unknown parameter, `limit` not from 1 to 100, `as_of` not a time, or a path segment that is not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn top_products(
    State(state): State<AppState>,
    Query(q): Query<TopProductsParams>,
) -> Result<Json<TopProducts>, ApiError> {
    const COLUMNS: &str = "rank, product_id, name, category, units_sold, revenue";
    let limit = pagination::limit(q.limit.as_deref(), 10, MAX_TOP_PRODUCTS)?;
    let as_of = AsOfParams { as_of: q.as_of }.time()?;
    let client = state.reads().await?;
    // today: the product summary's revenue index read backwards, ties sorted by id
    let items = params::now_or_then(
        &client,
        as_of,
        &format!(
            "SELECT {COLUMNS}
               FROM (SELECT row_number() OVER (ORDER BY p.revenue DESC, p.product_id)::integer AS rank,
                            p.product_id, p.name, p.category, p.units_sold, p.revenue
                       FROM mart.products p
                      WHERE p.revenue > 0
                      ORDER BY p.revenue DESC, p.product_id
                      LIMIT $1) AS t
              ORDER BY rank"
        ),
        &format!("SELECT {COLUMNS} FROM mart.top_products_as_of($2) WHERE rank <= $1::bigint ORDER BY rank"),
        &[&limit],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(TopProduct {
            rank: col(r, "rank")?,
            product_id: col(r, "product_id")?,
            name: col(r, "name")?,
            category: col(r, "category")?,
            units_sold: col(r, "units_sold")?,
            revenue: money(r, "revenue")?,
        })
    })
    .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(TopProducts { items }))
}
