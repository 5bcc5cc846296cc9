//! The Customer 360 dashboard at `/dashboard`: static pages (HTML, JS, CSS and the
//! vendored uPlot chart library) compiled into the binary, like the Swagger UI, so it
//! works offline and no request leaves the server's origin.
//!
//! The pages hold no data and need no key: their scripts call the JSON API from the
//! browser with the read key the user pastes (kept in `sessionStorage`), so the
//! dashboard has no database access path of its own and shows exactly what the API
//! answers. Every page is served with a Content-Security-Policy that allows scripts,
//! styles and requests from this origin only (the pages have no inline script).

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::state::AppState;

/// Scripts, styles, images and requests from this origin only; nothing may frame the
/// pages (the key is typed into them).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// What every page shares (the header with the search box, the search results, the API
/// key form, the error line, the footer), with `{{...}}` slots for what each page
/// fills in; each page's own `assets/dashboard/<page>.html` is what goes between.
const LAYOUT: &str = include_str!("../../assets/dashboard/layout.html");

/// One page: the layout's slots filled.
struct Page {
    title: &'static str,
    /// More `<link>` and `<script>` elements for the head.
    head: &'static str,
    nav: &'static str,
    body: &'static str,
    /// Credits after the footer's sentence.
    credits: &'static str,
}

impl Page {
    fn html(&self) -> String {
        LAYOUT
            .replace("{{title}}", self.title)
            .replace("{{head}}", self.head)
            .replace("{{nav}}", self.nav)
            .replace("{{body}}", self.body)
            .replace("{{credits}}", self.credits)
    }
}

const DOCS: &str = r#"<a href="/docs/">API docs</a>"#;
const OVERVIEW_AND_DOCS: &str =
    r#"<a href="/dashboard">Overview</a> <a href="/docs/">API docs</a>"#;

static OVERVIEW: LazyLock<String> = LazyLock::new(|| {
    Page {
        title: "dvault · Customer 360 dashboard",
        head: r#"<link rel="stylesheet" href="/dashboard/assets/uPlot.min.css">
<script src="/dashboard/assets/uPlot.iife.min.js" defer></script>
<script src="/dashboard/assets/overview.js" defer></script>"#,
        nav: DOCS,
        body: include_str!("../../assets/dashboard/overview.html"),
        credits: r#" Charts: uPlot (<a href="/dashboard/assets/uPlot-LICENSE.txt">MIT</a>)."#,
    }
    .html()
});

static CUSTOMER: LazyLock<String> = LazyLock::new(|| {
    Page {
        title: "dvault · Customer",
        head: r#"<script src="/dashboard/assets/customer.js" defer></script>"#,
        nav: OVERVIEW_AND_DOCS,
        body: include_str!("../../assets/dashboard/customer.html"),
        credits: "",
    }
    .html()
});

static SEGMENT: LazyLock<String> = LazyLock::new(|| {
    Page {
        title: "dvault · Segment",
        head: r#"<script src="/dashboard/assets/segment.js" defer></script>"#,
        nav: OVERVIEW_AND_DOCS,
        body: include_str!("../../assets/dashboard/segment.html"),
        credits: "",
    }
    .html()
});

/// The files under `/dashboard/assets/`: name, content type, contents.
const ASSETS: [(&str, &str, &str); 8] = [
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard/dashboard.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/common.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/overview.js"),
    ),
    (
        "customer.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/customer.js"),
    ),
    (
        "segment.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/segment.js"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/dashboard/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard/vendor/uplot/uPlot.min.css"),
    ),
    (
        "uPlot-LICENSE.txt",
        "text/plain; charset=utf-8",
        include_str!("../../assets/dashboard/vendor/uplot/LICENSE"),
    ),
];

/// The dashboard's routes; they need no key (the data comes from the API, which does).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(overview))
        .route("/dashboard/", get(overview))
        .route("/dashboard/customers/{id}", get(customer))
        .route("/dashboard/segments/{name}", get(segment))
        .route("/dashboard/assets/{file}", get(asset))
}

async fn overview() -> Response {
    page(OVERVIEW.as_str())
}

/// The page reads the id from its own address, so any id gets the page (an unknown
/// one is said so by the page, from the API's 404).
async fn customer() -> Response {
    page(CUSTOMER.as_str())
}

async fn segment() -> Response {
    page(SEGMENT.as_str())
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::not_found("dashboard asset", &file))?;
    Ok(static_response(content_type, body))
}

fn page(html: &'static str) -> Response {
    let mut response = static_response("text/html; charset=utf-8", html);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
        .headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn static_response(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // compiled into the binary: revalidate so an upgraded server is seen at once
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No page or script of ours may reach another origin or carry an inline script
    /// (the CSP would block it); the vendored library is checked by the browser test.
    #[test]
    fn pages_are_self_contained() {
        for html in [&OVERVIEW, &CUSTOMER, &SEGMENT] {
            assert!(!html.contains("{{"), "a slot of the layout left unfilled");
            assert!(!html.contains("http://") && !html.contains("https://"));
            assert!(!html.contains("<script>"), "inline script");
            assert!(!html.contains(" style="), "inline style");
            for handler in [" onclick=", " onload=", " onsubmit=", " onerror="] {
                assert!(!html.contains(handler), "inline event handler {handler}");
            }
        }
        for (name, _, body) in ASSETS {
            if !name.starts_with("uPlot") {
                assert!(
                    !body.contains("http://") && !body.contains("https://"),
                    "{name}"
                );
            }
        }
    }
}
