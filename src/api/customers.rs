//! GET /customers, /customers/{id}: the Customer 360 (`mart.customer_360`,
//! `mart.customer_360_as_of(ts)`). A customer's orders are in `customer_orders.rs`,
//! the attribute history in `history.rs`.

use axum::extract::State;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{Keys, Listing, PageRequest, Sort, list_params, next_link, page_of};
use super::params::{self, AsOfParams};
use super::state::AppState;
use super::values::{Money, Timestamp, col, money, money_opt, number_opt, time_opt};

/// One customer's 360° profile. Fields without a value are null.
#[derive(Debug, Serialize, ToSchema)]
pub struct Customer {
    pub customer_id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub signup_date: Option<NaiveDate>,
    /// Personal data: null unless the server's database role may read it, and always
    /// null with `as_of`.
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Counted orders (all but cancelled and returned).
    pub orders_count: i32,
    pub orders_cancelled_or_returned: i32,
    pub total_spent: Money,
    pub avg_order_value: Option<Money>,
    pub first_order_at: Option<Timestamp>,
    pub last_order_at: Option<Timestamp>,
    pub days_since_last_order: Option<i32>,
    pub avg_days_between_orders: Option<f64>,
    pub favourite_category: Option<String>,
    /// RFM scores, 1-5; null without a counted order.
    pub recency_score: Option<i32>,
    pub frequency_score: Option<i32>,
    pub monetary_score: Option<i32>,
    pub rfm_cell: Option<String>,
    /// RFM segment (see GET /segments); `Prospect` without a counted order.
    pub segment: Option<String>,
    pub clv_historic: Money,
    pub clv_predicted_12m: Option<Money>,
    /// Null without a counted order.
    pub churn_risk: Option<ChurnRisk>,
    pub is_churned: bool,
}

const COLUMNS: &str = "c.customer_id, c.first_name, c.last_name, c.city, c.country, c.signup_date, \
     c.email, c.phone, c.orders_count, c.orders_cancelled_or_returned, c.total_spent, \
     c.avg_order_value, c.first_order_at, c.last_order_at, c.days_since_last_order, \
     c.avg_days_between_orders, c.favourite_category, c.recency_score, c.frequency_score, \
     c.monetary_score, c.rfm_cell, c.segment, c.clv_historic, c.clv_predicted_12m, \
     c.churn_risk, c.is_churned";

/// `mart.customer_360_as_of` has no contact columns.
const COLUMNS_AS_OF: &str = "c.customer_id, c.first_name, c.last_name, c.city, c.country, \
     c.signup_date, NULL::text AS email, NULL::text AS phone, c.orders_count, \
     c.orders_cancelled_or_returned, c.total_spent, c.avg_order_value, c.first_order_at, \
     c.last_order_at, c.days_since_last_order, c.avg_days_between_orders, \
     c.favourite_category, c.recency_score, c.frequency_score, c.monetary_score, c.rfm_cell, \
     c.segment, c.clv_historic, c.clv_predicted_12m, c.churn_risk, c.is_churned";

impl Customer {
    fn from_row(r: &Row) -> Result<Customer, ApiError> {
        Ok(Customer {
            customer_id: col(r, "customer_id")?,
            first_name: col(r, "first_name")?,
            last_name: col(r, "last_name")?,
            city: col(r, "city")?,
            country: col(r, "country")?,
            signup_date: col(r, "signup_date")?,
            email: col(r, "email")?,
            phone: col(r, "phone")?,
            orders_count: col(r, "orders_count")?,
            orders_cancelled_or_returned: col(r, "orders_cancelled_or_returned")?,
            total_spent: money(r, "total_spent")?,
            avg_order_value: money_opt(r, "avg_order_value")?,
            first_order_at: time_opt(r, "first_order_at")?,
            last_order_at: time_opt(r, "last_order_at")?,
            days_since_last_order: col(r, "days_since_last_order")?,
            avg_days_between_orders: number_opt(r, "avg_days_between_orders")?,
            favourite_category: col(r, "favourite_category")?,
            recency_score: col(r, "recency_score")?,
            frequency_score: col(r, "frequency_score")?,
            monetary_score: col(r, "monetary_score")?,
            rfm_cell: col(r, "rfm_cell")?,
            segment: col(r, "segment")?,
            clv_historic: money(r, "clv_historic")?,
            clv_predicted_12m: money_opt(r, "clv_predicted_12m")?,
            churn_risk: col::<Option<String>>(r, "churn_risk")?
                .map(|v| ChurnRisk::from_view(&v))
                .transpose()?,
            is_churned: col(r, "is_churned")?,
        })
    }
}

page_of!(CustomerPage, Customer);

/// The sorts of GET /customers; the first is the default.
pub static SORTS: [Sort; 12] = [
    Sort::new("customer_id", "c.customer_id", "text", false),
    Sort::new("-customer_id", "c.customer_id", "text", true),
    Sort::new("total_spent", "c.total_spent", "numeric", false),
    Sort::new("-total_spent", "c.total_spent", "numeric", true),
    Sort::new("orders_count", "c.orders_count", "integer", false),
    Sort::new("-orders_count", "c.orders_count", "integer", true),
    Sort::new(
        "last_order_at",
        "coalesce(c.last_order_at, '-infinity')",
        "timestamptz",
        false,
    ),
    Sort::new(
        "-last_order_at",
        "coalesce(c.last_order_at, '-infinity')",
        "timestamptz",
        true,
    ),
    Sort::new(
        "signup_date",
        "coalesce(c.signup_date, '-infinity')",
        "date",
        false,
    ),
    Sort::new(
        "-signup_date",
        "coalesce(c.signup_date, '-infinity')",
        "date",
        true,
    ),
    Sort::new(
        "clv_predicted_12m",
        "coalesce(c.clv_predicted_12m, 0)",
        "numeric",
        false,
    )
    .keyed(),
    Sort::new(
        "-clv_predicted_12m",
        "coalesce(c.clv_predicted_12m, 0)",
        "numeric",
        true,
    )
    .keyed(),
];

/// The churn risks clients may filter on, and what they are in the views.
pub const CHURN_RISKS: [(&str, &str); 3] = [
    ("active", "active"),
    ("at_risk", "at risk"),
    ("churned", "churned"),
];

/// A customer's churn risk, in the words the `churn_risk` filter takes (the views say
/// `at risk`; the API says `at_risk` in both directions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChurnRisk {
    /// Ordered within the expected interval.
    Active,
    /// Overdue: no order for more than twice the usual interval.
    AtRisk,
    /// No order for a long time (business_vault.churn_risk says how long).
    Churned,
}

impl ChurnRisk {
    fn from_view(value: &str) -> Result<ChurnRisk, ApiError> {
        match value {
            "active" => Ok(ChurnRisk::Active),
            "at risk" => Ok(ChurnRisk::AtRisk),
            "churned" => Ok(ChurnRisk::Churned),
            other => Err(ApiError::Internal(format!(
                "mart.customer_360.churn_risk has an unknown value {other:?}"
            ))),
        }
    }
}

list_params! {
    pub struct ListParams {
        /// RFM segment, e.g. `Champions` (case-insensitive; GET /segments lists them).
        pub segment: Option<String>,
        /// Country, exact but case-insensitive.
        pub country: Option<String>,
        /// `active`, `at_risk` (or `at risk`) or `churned`.
        pub churn_risk: Option<String>,
        /// Customers who spent at least this much (a decimal, e.g. `100` or `99.50`).
        #[param(value_type = Option<String>, example = "100.00")]
        pub min_total_spent: Option<String>,
        /// A customer id (matched like the vault does: trimmed, case-insensitive), or
        /// words each of which begins the first or the last name (case-insensitive),
        /// e.g. `ann te`. At most 4 words.
        #[param(example = "ann te")]
        pub search: Option<String>,
    }
    sort = "`customer_id` (default), `total_spent`, `orders_count`, `last_order_at`, `signup_date`, `clv_predicted_12m`; prefix `-` for descending.";
}

impl ListParams {
    fn link_params(&self) -> [(&'static str, Option<&str>); 7] {
        [
            ("search", self.search.as_deref()),
            ("segment", self.segment.as_deref()),
            ("country", self.country.as_deref()),
            ("churn_risk", self.churn_risk.as_deref()),
            ("min_total_spent", self.min_total_spent.as_deref()),
            ("sort", self.sort.as_deref()),
            ("limit", self.limit.as_deref()),
        ]
    }
}

/// A page of customers, filtered and sorted.
#[utoipa::path(
    get,
    path = "/customers",
    operation_id = "listCustomers",
    tag = "customers",
    params(ListParams),
    responses(
        (status = 200, description = "A page of customers", body = CustomerPage),
        (status = 400, description = "A parameter is invalid; `parameter` and `allowed` say which and what would do", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListParams>,
) -> Result<Json<CustomerPage>, ApiError> {
    let client = state.reads().await?;
    let mut listing =
        Listing::new(COLUMNS, "mart.customer_360 c", "c.customer_id").keys_from(Keys {
            from: "mart.customer_list_keys c",
            join: "hk_customer",
            usable: "SELECT d.is_today FROM mart.customer_scores_day d",
        });
    if let Some(segment) = q.segment.as_deref().filter(|s| !s.is_empty()) {
        let segment = params::segment(&client, "segment", segment).await?;
        listing.filter("c.segment = {}", segment);
    }
    if let Some(country) = q.country.clone().filter(|s| !s.is_empty()) {
        listing.filter("upper(c.country) = upper({})", country);
    }
    if let Some(risk) = q.churn_risk.as_deref().filter(|s| !s.is_empty()) {
        listing.filter("c.churn_risk = {}", churn_risk(risk)?.to_string());
    }
    if let Some(min) = q.min_total_spent.as_deref().filter(|s| !s.is_empty()) {
        let min: Decimal = min.trim().parse().map_err(|_| {
            ApiError::bad_param(
                "min_total_spent",
                format!("{min:?} is not a decimal number"),
                &["a decimal such as 100 or 99.50"],
            )
        })?;
        listing.filter("c.total_spent >= {}", min);
    }
    if let Some(search) = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        search_filter(&mut listing, search)?;
    }
    let page = PageRequest::parse(&SORTS, q.paging())?;
    let (rows, cursor) = listing.page(&client, &page).await?;
    let items = rows
        .iter()
        .map(Customer::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(CustomerPage {
        items,
        limit: page.limit,
        next: cursor.map(|c| next_link("/customers", &q.link_params(), &c)),
    }))
}

/// The most words `search` takes.
const SEARCH_WORDS: usize = 4;

/// The characters that separate the words of `search`: Unicode `White_Space`, which is
/// what `str::split_whitespace` splits on, spelled out for the OpenAPI pattern (a
/// regex's `\s` differs between dialects: Python's also takes U+001C..U+001F).
const WHITE_SPACE: &str =
    "\\u0009-\\u000d\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// The OpenAPI pattern of `search`: no NUL (PostgreSQL text cannot hold one) and at
/// most [`SEARCH_WORDS`] words, so that a client can tell a valid search from the
/// document alone.
pub fn search_pattern() -> String {
    let (space, word) = (
        format!("[{WHITE_SPACE}]"),
        format!("[^{WHITE_SPACE}\\u0000]"),
    );
    let more = SEARCH_WORDS - 1;
    format!("^{space}*({word}+({space}+{word}+){{0,{more}}})?{space}*$")
}

/// `search`: the customer with that id, or those whose first or last name each word
/// begins (a `LIKE` prefix, its `%` and `_` taken literally).
fn search_filter(listing: &mut Listing, search: &str) -> Result<(), ApiError> {
    let words: Vec<String> = search
        .split_whitespace()
        .map(|w| {
            let w = w.to_lowercase();
            let escaped = w
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("{escaped}%")
        })
        .collect();
    if words.len() > SEARCH_WORDS {
        return Err(ApiError::bad_param(
            "search",
            format!("{} words; at most {SEARCH_WORDS}", words.len()),
            &[],
        ));
    }
    let id = params::hash_key(search).map(|k| k.to_vec());
    listing.filter_group(
        "c.hk_customer = {} OR ",
        id,
        "(lower(c.first_name) LIKE {} OR lower(c.last_name) LIKE {})",
        " AND ",
        words,
    );
    Ok(())
}

/// The members of one segment, like GET /customers?segment=NAME.
pub async fn list_segment(
    state: AppState,
    segment: String,
    mut q: ListParams,
) -> Result<Json<CustomerPage>, ApiError> {
    if q.segment.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_param(
            "segment",
            "the segment is already in the path",
            &[],
        ));
    }
    let path = format!(
        "/segments/{}/customers",
        super::pagination::percent_encode(&segment)
    );
    q.segment = Some(segment);
    let Json(mut page) = list(State(state), Query(q)).await?;
    // the link keeps the path form, without the segment parameter
    page.next = page.next.map(|link| {
        let query = link.split_once('?').map_or("", |(_, q)| q);
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.starts_with("segment="))
            .collect();
        format!("{path}?{}", kept.join("&"))
    });
    Ok(Json(page))
}

fn churn_risk(raw: &str) -> Result<&'static str, ApiError> {
    let wanted = raw.trim().to_ascii_lowercase().replace([' ', '-'], "_");
    CHURN_RISKS
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            ApiError::bad_param(
                "churn_risk",
                format!("unknown churn risk {raw:?}"),
                &CHURN_RISKS.map(|(name, _)| name),
            )
        })
}

/// One customer's Customer 360 profile, now or as it was at `as_of`.
#[utoipa::path(
    get,
    path = "/customers/{id}",
    operation_id = "getCustomer",
    tag = "customers",
    params(("id" = String, Path, description = "Customer id (business key; matched like the vault does: trimmed, case-insensitive)"), AsOfParams),
    responses(
        (status = 200, description = "The customer", body = Customer),
        (status = 400, description = "`as_of` is not a timestamp", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such customer (at `as_of`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<AsOfParams>,
) -> Result<Json<Customer>, ApiError> {
    let as_of = q.time()?;
    let not_found = || ApiError::not_found_at("customer", &id, as_of);
    let hk = params::hash_key(&id).ok_or_else(not_found)?;
    let client = state.reads().await?;
    let row = match as_of {
        None => {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM mart.customer_360 c WHERE c.hk_customer = $1"
                ))
                .await?;
            client.query_opt(&stmt, &[&hk.as_slice()]).await?
        }
        Some(ts) => {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {COLUMNS_AS_OF} FROM mart.customer_360_as_of($1, $2) c"
                ))
                .await?;
            client.query_opt(&stmt, &[&ts, &hk.as_slice()]).await?
        }
    };
    Ok(Json(Customer::from_row(&row.ok_or_else(not_found)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_risk_speaks_the_filters_words() {
        for (filter, view) in CHURN_RISKS {
            let risk = ChurnRisk::from_view(view).expect("a known value");
            assert_eq!(serde_json::to_value(risk).expect("json"), filter);
            assert_eq!(churn_risk(filter).expect("accepted"), view);
        }
        assert_eq!(churn_risk("At Risk").expect("old spelling"), "at risk");
        assert!(ChurnRisk::from_view("maybe").is_err());
    }

    /// The document's pattern for `search` accepts exactly what `search_filter` takes:
    /// every code point is a separator in both or in neither, and the word count agrees.
    #[test]
    fn the_search_pattern_is_the_servers_word_count() {
        let pattern = regex::Regex::new(&search_pattern()).expect("a regex");
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let text = format!("a{c}b c d e");
            let words = text.split_whitespace().count();
            assert_eq!(
                pattern.is_match(&text),
                c != '\0' && words <= SEARCH_WORDS,
                "U+{:04X}: {words} words",
                c as u32
            );
        }
        let five = "\u{10A887}a\rb:\rC\u{18}U\ne\u{23E}t\u{0B}j14";
        assert_eq!(five.split_whitespace().count(), 5);
        for (text, ok) in [
            ("", true),
            ("  ", true),
            ("ann", true),
            (" ann te  x y\n", true),
            ("a b c d e", false),
            (five, false),
            ("a\u{1C}b c d e", true),
        ] {
            assert_eq!(pattern.is_match(text), ok, "{text:?}");
            assert_eq!(
                text.split_whitespace().count() <= SEARCH_WORDS,
                ok,
                "{text:?}"
            );
        }
    }
}
