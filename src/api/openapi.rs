//! The OpenAPI 3.1 document, generated from the handlers' annotations, and the
//! Swagger UI that shows it (its assets are compiled into the binary: no CDN).

use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{
    analytics, customers, error, events, health, history, metrics, orders, products, segments,
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
        customers::orders,
        history::customer_history,
        products::list,
        products::one,
        orders::list,
        orders::one,
        segments::list,
        segments::members,
        analytics::revenue,
        analytics::churn,
        events::post,
        health::health,
        health::ready,
        metrics::render,
    ),
    components(schemas(error::Problem)),
    modifiers(&BearerAuth, &DocumentationRoutes),
    tags(
        (name = "customers", description = "The Customer 360"),
        (name = "products", description = "Product analytics"),
        (name = "orders", description = "Orders with their lines"),
        (name = "segments", description = "RFM segments"),
        (name = "analytics", description = "Revenue series and churn"),
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
        let route = |summary: &str, media: &str, what: &str| {
            OperationBuilder::new()
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
                "This OpenAPI 3.1 document",
                "application/json",
                "The OpenAPI document",
            ),
        );
        openapi.paths.add_path_operation(
            "/docs",
            vec![HttpMethod::Get],
            route(
                "Swagger UI for this document (served from the binary)",
                "text/html",
                "The Swagger UI page (redirects to /docs/)",
            ),
        );
    }
}

/// The Swagger UI at /docs, reading /openapi.json (which it also serves).
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi())
}
