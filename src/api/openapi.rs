//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the
//! Swagger UI that shows it (its assets are compiled into the binary: no CDN).

use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{
    analytics, customer_orders, customers, error, events, examples, health, history, metrics,
    orders, pagination, products, segments,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dvault Customer 360 API",
        description = "Read the Customer 360 business views and append events to the log.\n\n\
            Conventions: JSON field names are snake_case; money is a decimal string with exactly two \
            decimals (`\"1234.50\"`); timestamps are RFC 3339 in UTC; errors are \
            `application/problem+json` (RFC 9457). Lists are paged with an opaque `cursor` (follow \
            `next`); `skip`/`offset` also work but are slower on deep pages. \
            With API keys configured, send `Authorization: Bearer <key>`; without, reads are open \
            and writes refused. See docs/api.md."
    ),
    paths(
        customers::list,
        customers::one,
        customer_orders::orders,
        history::customer_history,
        products::list,
        products::one,
        orders::list,
        orders::one,
        segments::list,
        segments::members,
        analytics::revenue,
        analytics::churn,
        analytics::categories,
        analytics::top_products,
        events::post,
        health::health,
        health::ready,
        metrics::render,
    ),
    components(schemas(error::Problem)),
    modifiers(&BearerAuth, &DocumentationRoutes, &PreciseParameters),
    tags(
        (name = "customers", description = "The Customer 360"),
        (name = "products", description = "Product analytics"),
        (name = "orders", description = "Orders with their lines"),
        (name = "segments", description = "RFM segments"),
        (name = "analytics", description = "Revenue series, churn, categories and top products"),
        (name = "events", description = "Append CloudEvents to the log"),
        (name = "operations", description = "Liveness, readiness, metrics")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The two routes that serve the documentation itself, so the document lists every route.
struct DocumentationRoutes;

impl Modify for DocumentationRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let route = |id: &str, summary: &str, media: &str, what: &str| {
            OperationBuilder::new()
                .operation_id(Some(id))
                .summary(Some(summary))
                .tag("operations")
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description(what)
                        .content(media, ContentBuilder::new().build()),
                )
        };
        openapi.paths.add_path_operation(
            "/openapi.json",
            vec![HttpMethod::Get],
            route(
                "getOpenApi",
                "This OpenAPI 3.1 document",
                "application/json",
                "The OpenAPI document",
            ),
        );
        openapi.paths.add_path_operation(
            "/docs",
            vec![HttpMethod::Get],
            route(
                "getDocs",
                "Swagger UI for this document (served from the binary)",
                "text/html",
                "The Swagger UI page (redirects to /docs/)",
            ),
        );
    }
}

/// The segment names `mart.rfm_segment_rules` ships with (views/20_rules.sql); the
/// server checks `segment` against the live table, a test checks that they agree.
pub const SEGMENTS: [&str; 12] = [
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "Can't Lose Them",
    "At Risk",
    "Hibernating",
    "Lost",
    "Prospect",
];

/// Query parameters are declared as strings in the handlers (so that a bad value is
/// our 400 naming it, not a generic rejection); here the document says exactly what
/// each takes: the sorts and other closed lists as enums, times as date or date-time,
/// numbers as patterns. A client (or a fuzzer) that follows the document gets no 400.
/// `offset` stays accepted as a synonym of `skip` but is not documented twice.
struct PreciseParameters;

impl Modify for PreciseParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use serde_json::{Value, json};
        use utoipa::openapi::RefOr;
        use utoipa::openapi::path::ParameterIn;
        // (an empty value is still taken as "not given", as for every filter, but the
        // document does not offer it)
        let names = |sorts: &[pagination::Sort]| -> Value {
            json!(sorts.iter().map(|s| s.name).collect::<Vec<_>>())
        };
        let time = json!({"oneOf": [
            {"type": "string", "format": "date"},
            {"type": "string", "format": "date-time"}
        ]});
        let date = json!({"type": "string", "format": "date"});
        let sorts_of = |path: &str| match path {
            "/customers" | "/segments/{name}/customers" => Some(names(&customers::SORTS)),
            "/customers/{id}/orders" => Some(names(&customer_orders::ORDER_SORTS)),
            "/products" => Some(names(&products::SORTS)),
            "/orders" => Some(names(&orders::SORTS)),
            _ => None,
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(params) = item.get.as_mut().and_then(|op| op.parameters.as_mut()) else {
                continue;
            };
            // the segment of /segments/{name}/customers is in its path
            let members = path == "/segments/{name}/customers";
            params.retain(|p| {
                !matches!(p, RefOr::T(p) if p.name == "offset" || (members && p.name == "segment"))
            });
            for p in params.iter_mut() {
                let RefOr::T(p) = p else { continue };
                let in_path = matches!(p.parameter_in, ParameterIn::Path);
                let schema = match (p.name.as_str(), in_path) {
                    ("sort", _) => sorts_of(path).map(|e| json!({"type": "string", "enum": e})),
                    ("churn_risk", _) => Some(
                        json!({"type": "string", "enum": customers::CHURN_RISKS.map(|(n, _)| n)}),
                    ),
                    ("status", _) => {
                        Some(json!({"type": "string", "enum": crate::mapping::ORDER_STATUSES}))
                    }
                    ("period", _) => Some(json!({"type": "string",
                        "enum": analytics::PERIODS.map(|(n, _)| n)})),
                    ("segment", _) => Some(json!({"type": "string", "enum": SEGMENTS})),
                    ("name", true) => Some(json!({"type": "string", "enum": SEGMENTS})),
                    ("from" | "to", _) if path == "/analytics/revenue" => Some(date.clone()),
                    ("from" | "to" | "as_of", _) => Some(time.clone()),
                    ("min_total_spent", _) => Some(json!({"type": "string",
                        "pattern": "^(-?[0-9]{1,15}(\\.[0-9]{1,2})?)?$", "example": "100.00"})),
                    ("search", _) => Some(json!({"type": "string",
                        "pattern": customers::search_pattern()})),
                    // free text; PostgreSQL text cannot hold a NUL, so it is a 400
                    ("country" | "category", _) => Some(json!({"type": "string",
                        "pattern": "^[^\\u0000]*$"})),
                    ("limit", _) if path == "/analytics/top-products" => Some(json!({
                        "type": "integer", "format": "int64",
                        "minimum": 1, "maximum": analytics::MAX_TOP_PRODUCTS})),
                    ("limit", _) => Some(json!({"type": "integer", "format": "int64",
                        "minimum": 1, "maximum": pagination::MAX_LIMIT})),
                    ("skip", _) => Some(json!({"type": "integer", "format": "int64",
                        "minimum": 0, "maximum": pagination::MAX_SKIP})),
                    _ => None,
                };
                if let Some(schema) = schema {
                    match serde_json::from_value(schema.clone()) {
                        Ok(s) => p.schema = Some(s),
                        Err(e) => panic!("{path} {}: {schema} is not a schema: {e}", p.name),
                    }
                }
            }
        }
    }
}

/// The OpenAPI document as served: [`ApiDoc`] with the examples and request bodies
/// of `api::examples`, for data generated up to the month before `today`.
pub fn document(today: chrono::NaiveDate) -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    examples::add_schemas(&mut doc);
    examples::apply(&mut doc, today);
    doc
}

/// The Swagger UI at /docs, reading /openapi.json (which it also serves).
pub fn swagger_ui() -> SwaggerUi {
    let today = chrono::Utc::now().date_naive();
    SwaggerUi::new("/docs").external_url_unchecked("/openapi.json", document(today))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_precise() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let params = &doc["paths"]["/customers"]["get"]["parameters"];
        let names: Vec<&str> = params
            .as_array()
            .expect("parameters")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(!names.contains(&"offset"), "{names:?}");
        let sort = params
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "sort"))
            .expect("sort");
        assert!(
            sort["schema"]["enum"]
                .as_array()
                .is_some_and(|e| e.iter().any(|v| v == "-total_spent")),
            "{sort}"
        );
        let from = &doc["paths"]["/analytics/revenue"]["get"]["parameters"][1]["schema"];
        assert_eq!(from["format"], "date", "{from}");
        let text = doc.to_string();
        assert!(!text.contains(r#""enum":["""#), "no empty value in an enum");
    }
}
