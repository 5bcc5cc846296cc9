//! GET /products and /products/{id}: product analytics from `mart.products`.

use axum::extract::State;
use serde::Serialize;
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{Listing, PageRequest, Sort, list_params, next_link, page_of};
use super::params::{self, NoParams};
use super::state::AppState;
use super::values::{Money, col, money, money_opt, number_opt};

/// A product with its sales and views. Sales count only orders that are not
/// cancelled or returned.
#[derive(Debug, Serialize, ToSchema)]
pub struct Product {
    pub product_id: String,
    pub name: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    /// Current list price.
    pub price: Option<Money>,
    pub units_sold: i64,
    /// Line amounts after discounts.
    pub revenue: Money,
    pub orders: i64,
    /// Distinct customers who bought it.
    pub buyers: i64,
    pub views: i64,
    /// Distinct customers who viewed it.
    pub viewers: i64,
    pub viewers_who_bought: i64,
    /// viewers_who_bought / viewers (0..1); null without views.
    pub view_to_purchase_rate: Option<f64>,
    /// Rank by revenue within its category (1 = best; ties share a rank).
    pub rank_in_category: i64,
}

const COLUMNS: &str = "p.product_id, p.name, p.category, p.brand, p.price, p.units_sold, \
     p.revenue, p.orders, p.buyers, p.views, p.viewers, p.viewers_who_bought, \
     p.view_to_purchase_rate, p.rank_in_category";

impl Product {
    fn from_row(r: &Row) -> Result<Product, ApiError> {
        Ok(Product {
            product_id: col(r, "product_id")?,
            name: col(r, "name")?,
            category: col(r, "category")?,
            brand: col(r, "brand")?,
            price: money_opt(r, "price")?,
            units_sold: col(r, "units_sold")?,
            revenue: money(r, "revenue")?,
            orders: col(r, "orders")?,
            buyers: col(r, "buyers")?,
            views: col(r, "views")?,
            viewers: col(r, "viewers")?,
            viewers_who_bought: col(r, "viewers_who_bought")?,
            view_to_purchase_rate: number_opt(r, "view_to_purchase_rate")?,
            rank_in_category: col(r, "rank_in_category")?,
        })
    }
}

page_of!(ProductPage, Product);

pub static SORTS: [Sort; 8] = [
    Sort::new("product_id", "p.product_id", "text", false),
    Sort::new("-product_id", "p.product_id", "text", true),
    Sort::new("revenue", "p.revenue", "numeric", false),
    Sort::new("-revenue", "p.revenue", "numeric", true),
    Sort::new("units_sold", "p.units_sold", "bigint", false),
    Sort::new("-units_sold", "p.units_sold", "bigint", true),
    Sort::new("price", "coalesce(p.price, 0)", "numeric", false),
    Sort::new("-price", "coalesce(p.price, 0)", "numeric", true),
];

list_params! {
    pub struct ListParams {
        /// Current category, exact but case-insensitive.
        pub category: Option<String>,
    }
    sort = "`product_id` (default), `revenue`, `units_sold`, `price`; prefix `-` for descending.";
}

/// A page of products.
#[utoipa::path(
    get,
    path = "/products",
    operation_id = "listProducts",
    tag = "products",
    params(ListParams),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListParams>,
) -> Result<Json<ProductPage>, ApiError> {
    let page = PageRequest::parse(&SORTS, q.paging())?;
    let client = state.reads().await?;
    let mut listing = Listing::new(COLUMNS, "mart.products p", "p.product_id");
    if let Some(category) = q.category.clone().filter(|c| !c.is_empty()) {
        listing.filter("upper(p.category) = upper({})", category);
    }
    let (rows, cursor) = listing.page(&client, &page).await?;
    let items = rows
        .iter()
        .map(Product::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let link_params = [
        ("category", q.category.as_deref()),
        ("sort", q.sort.as_deref()),
        ("limit", q.limit.as_deref()),
    ];
    Ok(Json(ProductPage {
        items,
        limit: page.limit,
        next: cursor.map(|c| next_link("/products", &link_params, &c)),
    }))
}

/// One product.
#[utoipa::path(
    get,
    path = "/products/{id}",
    operation_id = "getProduct",
    tag = "products",
    params(("id" = String, Path, description = "Product id (trimmed, case-insensitive)")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 400, description = "An unknown parameter, or a path segment that is not UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Database unavailable", body = Problem, content_type = "application/problem+json")
    ),
    security((), ("api_key" = ["read"]))
)]
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(NoParams {}): Query<NoParams>,
) -> Result<Json<Product>, ApiError> {
    let not_found = || ApiError::not_found("product", &id);
    let hk = params::hash_key(&id).ok_or_else(not_found)?;
    let client = state.reads().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM mart.products p WHERE p.hk_product = $1"
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&hk.as_slice()])
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(Product::from_row(&row)?))
}
