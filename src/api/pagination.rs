//! Keyset pagination with opaque cursors, and the list query builder.
//!
//! A list is ordered by one sort key from a fixed list, then by the row's unique id.
//! A page asks for `limit + 1` rows after the cursor's (key, id); the extra row tells
//! whether there is a next page, whose cursor is the (key, id) of the page's last row.
//! Each page costs the same however deep it is. `skip`/`offset` are accepted too (they
//! read and drop the skipped rows: slower on deep pages).
//!
//! SQL is assembled only from `&'static str` fragments chosen from fixed lists; every
//! value is a bound parameter.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

/// The largest `skip`/`offset`: `skip + limit + 1` (the row that tells whether a next
/// page exists) must stay an `i64`.
pub const MAX_SKIP: i64 = i64::MAX - MAX_LIMIT - 1;

/// One way a list can be sorted: `name` as clients write it (`-` = descending).
#[derive(Debug)]
pub struct Sort {
    pub name: &'static str,
    /// A never-NULL SQL expression over the list's columns.
    pub expr: &'static str,
    /// The SQL type the key's text form is cast back to.
    pub cast: &'static str,
    pub desc: bool,
    /// Page the list's keys first (see [`Listing::keys_from`]), then read the rows.
    pub keyed: bool,
}

impl Sort {
    pub const fn new(
        name: &'static str,
        expr: &'static str,
        cast: &'static str,
        desc: bool,
    ) -> Sort {
        Sort {
            name,
            expr,
            cast,
            desc,
            keyed: false,
        }
    }

    /// This sort pages the listing's narrower key relation first: for a key that only
    /// that relation can read in index order.
    pub const fn keyed(self) -> Sort {
        Sort {
            keyed: true,
            ..self
        }
    }
}

/// Position after which a page starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cursor {
    /// The sort it was made for.
    s: String,
    /// The sort key of the last row seen, as PostgreSQL prints it.
    k: String,
    /// The id of the last row seen.
    i: String,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(raw: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// A validated page request.
#[derive(Debug)]
pub struct PageRequest {
    pub sort: &'static Sort,
    pub limit: i64,
    pub offset: i64,
    after: Option<Cursor>,
}

/// The raw paging parameters of a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Paging<'a> {
    pub sort: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub cursor: Option<&'a str>,
    pub skip: Option<&'a str>,
    pub offset: Option<&'a str>,
}

/// A `limit` parameter: `default` when absent, else a whole number from 1 to `max`
/// (an empty `limit=` is refused like any other non-number).
pub fn limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.parse::<i64>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_param(
                "limit",
                format!("{raw:?} is not a whole number from 1 to {max}"),
                &[],
            )
        })
}

impl PageRequest {
    /// Check the paging parameters against the list's sorts (the first is the default).
    pub fn parse(sorts: &'static [Sort], p: Paging<'_>) -> Result<PageRequest, ApiError> {
        let names: Vec<&str> = sorts.iter().map(|s| s.name).collect();
        let sort = match p.sort {
            None | Some("") => &sorts[0],
            Some(name) => sorts.iter().find(|s| s.name == name).ok_or_else(|| {
                ApiError::bad_param("sort", format!("unknown sort {name:?}"), &names)
            })?,
        };
        // an empty `limit=` or `skip=` is refused like any other non-number (the
        // document says they are integers); an empty `sort=` or `cursor=` means none
        let limit = limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
        let mut offset = 0;
        for (name, raw) in [("skip", p.skip), ("offset", p.offset)] {
            if let Some(raw) = raw {
                let n = raw
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (0..=MAX_SKIP).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_param(
                            name,
                            format!("{raw:?} is not a whole number from 0 to {MAX_SKIP}"),
                            &[],
                        )
                    })?;
                if offset != 0 && offset != n {
                    return Err(ApiError::bad_param(
                        "offset",
                        "skip and offset are the same parameter; give one",
                        &[],
                    ));
                }
                offset = n;
            }
        }
        let after = match p.cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => {
                let c = Cursor::decode(raw).ok_or_else(|| {
                    ApiError::bad_param(
                        "cursor",
                        "not a cursor this API made; use the `next` link of the previous page",
                        &[],
                    )
                })?;
                if c.s != sort.name {
                    return Err(ApiError::bad_param(
                        "cursor",
                        format!(
                            "this cursor belongs to sort={}, not sort={}; keep the sort while paging",
                            c.s, sort.name
                        ),
                        &[],
                    ));
                }
                if offset != 0 {
                    return Err(ApiError::bad_param(
                        "cursor",
                        "give either a cursor or skip/offset, not both",
                        &[],
                    ));
                }
                Some(c)
            }
        };
        Ok(PageRequest {
            sort,
            limit,
            offset,
            after,
        })
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// A narrower relation a listing can page instead of its own, for the sorts that only
/// it reads in index order.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    /// The relation, aliased `c` like the listing's own, with every column the
    /// listing's filters and keyed sorts use, holding the same values.
    pub from: &'static str,
    /// The column both relations have that finds the listing's row of a key.
    pub join: &'static str,
    /// A query of one boolean: whether `from` can be read now (else the listing reads
    /// its own relation alone).
    pub usable: &'static str,
}

/// A list query: columns and source from fixed text, filters from fixed fragments.
pub struct Listing {
    columns: &'static str,
    from: &'static str,
    /// The unique id that breaks ties (text).
    id: &'static str,
    conditions: Vec<String>,
    params: Vec<Param>,
    /// For keyed sorts: where their keys are read when they can be.
    keys: Option<Keys>,
}

impl Listing {
    pub fn new(columns: &'static str, from: &'static str, id: &'static str) -> Listing {
        Listing {
            columns,
            from,
            id,
            conditions: Vec::new(),
            params: Vec::new(),
            keys: None,
        }
    }

    /// For the sorts marked [`Sort::keyed`]: page `keys.from` when `keys.usable` says
    /// so, then read the page's rows from `from`.
    pub fn keys_from(mut self, keys: Keys) -> Listing {
        self.keys = Some(keys);
        self
    }

    fn bind(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    /// Add `fragment` (with one `{}` where the value goes) to the WHERE clause.
    pub fn filter<T: ToSql + Sync + Send + 'static>(&mut self, fragment: &'static str, value: T) {
        let placeholder = self.bind(Box::new(value));
        self.conditions.push(fragment.replace("{}", &placeholder));
    }

    /// Add `fragment` once per value, its `{}` bound to that value, the copies joined
    /// by `join` (` AND `, ` OR `) in parentheses, and the whole put after `prefix`
    /// (a fragment ending where the group goes, e.g. `c.id = {} OR `, whose `{}` is
    /// bound to `first`). For conditions of several values, from fixed text only.
    pub fn filter_group<F, T>(
        &mut self,
        prefix: &'static str,
        first: F,
        fragment: &'static str,
        join: &'static str,
        values: Vec<T>,
    ) where
        F: ToSql + Sync + Send + 'static,
        T: ToSql + Sync + Send + 'static,
    {
        let first = self.bind(Box::new(first));
        let group: Vec<String> = values
            .into_iter()
            .map(|v| fragment.replace("{}", &self.bind(Box::new(v))))
            .collect();
        self.conditions.push(format!(
            "({}({}))",
            prefix.replace("{}", &first),
            group.join(join)
        ));
    }

    /// Run the query for one page: its rows and the cursor of the next page, if any.
    pub async fn page(
        mut self,
        client: &deadpool_postgres::Client,
        page: &PageRequest,
    ) -> Result<(Vec<Row>, Option<String>), ApiError> {
        let sort = page.sort;
        if let Some(after) = &page.after {
            let op = if sort.desc { "<" } else { ">" };
            let k = self.bind(Box::new(after.k.clone()));
            let i = self.bind(Box::new(after.i.clone()));
            self.conditions.push(format!(
                "({}, {}) {op} ({k}::text::{}, {i}::text)",
                sort.expr, self.id, sort.cast
            ));
        }
        let limit = self.bind(Box::new(page.limit + 1));
        let offset = self.bind(Box::new(page.offset));
        let keys = match self.keys.filter(|_| sort.keyed) {
            Some(keys) => usable(client, keys).await?,
            None => None,
        };
        let sql = self.sql(sort, keys, &limit, &offset);
        let stmt = client.prepare_cached(&sql).await?;
        let params: Vec<&(dyn ToSql + Sync)> = self
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let mut rows = client.query(&stmt, &params).await.map_err(|e| {
            // a tampered cursor can carry a key that does not cast (class 22: data exception)
            match e.code() {
                Some(code) if page.after.is_some() && code.code().starts_with("22") => {
                    ApiError::bad_param("cursor", "this cursor is damaged", &[])
                }
                _ => ApiError::from(e),
            }
        })?;
        let next = next_cursor(&mut rows, page)?;
        Ok((rows, next))
    }

    /// The page's statement: the listing alone, or its keys paged first (`keys`)
    /// and the page's rows read from the listing by them.
    fn sql(&self, sort: &Sort, keys: Option<Keys>, limit: &str, offset: &str) -> String {
        let dir = if sort.desc { "DESC" } else { "ASC" };
        let wheres = if self.conditions.is_empty() {
            "true".to_string()
        } else {
            self.conditions.join(" AND ")
        };
        match keys {
            None => format!(
                "SELECT {cols}, ({key})::text AS page_key, ({id})::text AS page_id FROM {from} \
                 WHERE {wheres} ORDER BY {key} {dir}, {id} {dir} LIMIT {limit} OFFSET {offset}",
                cols = self.columns,
                key = sort.expr,
                id = self.id,
                from = self.from,
            ),
            Some(Keys {
                from: keys, join, ..
            }) => format!(
                "SELECT {cols}, k.page_key, k.page_id \
                   FROM (SELECT c.{join} AS page_join, ({key})::text AS page_key, \
                                ({id})::text AS page_id, {key} AS page_sort, {id} AS page_tie \
                           FROM {keys} WHERE {wheres} \
                          ORDER BY {key} {dir}, {id} {dir} LIMIT {limit} OFFSET {offset}) k \
                   JOIN {from} ON c.{join} = k.page_join \
                  ORDER BY k.page_sort {dir}, k.page_tie {dir}",
                cols = self.columns,
                key = sort.expr,
                id = self.id,
                from = self.from,
            ),
        }
    }
}

/// `keys` if its relation can be read now (its `usable` query says so).
async fn usable(client: &deadpool_postgres::Client, keys: Keys) -> Result<Option<Keys>, ApiError> {
    let usable = client.prepare_cached(keys.usable).await?;
    let usable = match client.query_opt(&usable, &[]).await? {
        Some(row) => row.try_get::<_, Option<bool>>(0)?.unwrap_or(false),
        None => false,
    };
    Ok(Some(keys).filter(|_| usable))
}

/// Drop the extra row that tells a next page exists, and make that page's cursor
/// from the last row kept.
fn next_cursor(rows: &mut Vec<Row>, page: &PageRequest) -> Result<Option<String>, ApiError> {
    if rows.len() as i64 <= page.limit {
        return Ok(None);
    }
    rows.truncate(page.limit as usize);
    let last = rows
        .last()
        .ok_or_else(|| ApiError::Internal("empty page".into()))?;
    let cursor = Cursor {
        s: page.sort.name.to_string(),
        k: last
            .try_get("page_key")
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        i: last
            .try_get("page_id")
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    Ok(Some(cursor.encode()))
}

/// The link to the next page: `path`, the request's own parameters (paging ones
/// dropped) and the cursor.
pub fn next_link(path: &str, params: &[(&str, Option<&str>)], cursor: &str) -> String {
    let mut link = String::from(path);
    let mut sep = '?';
    for (name, value) in params {
        if matches!(*name, "cursor" | "skip" | "offset") {
            continue;
        }
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            link.push(sep);
            link.push_str(name);
            link.push('=');
            link.push_str(&percent_encode(value));
            sep = '&';
        }
    }
    link.push(sep);
    link.push_str("cursor=");
    link.push_str(cursor);
    link
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A list's query parameters: its own filters, then `sort` (documented per list) and
/// the paging parameters every list shares, with `paging()` to read them. A macro
/// because `#[serde(deny_unknown_fields)]` cannot be combined with `#[serde(flatten)]`.
macro_rules! list_params {
    (
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident: $ty:ty, )*
        }
        sort = $sort_doc:literal;
    ) => {
        #[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            #[doc = $sort_doc]
            pub sort: Option<String>,
            /// Page size, 1-1000 (default 50).
            #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
            pub limit: Option<String>,
            /// Opaque cursor from the `next` link of the previous page.
            pub cursor: Option<String>,
            /// Skip this many rows (slower than a cursor on deep pages).
            #[param(value_type = Option<i64>, minimum = 0)]
            pub skip: Option<String>,
            /// Same as `skip`.
            #[param(value_type = Option<i64>, minimum = 0)]
            pub offset: Option<String>,
        }

        impl $name {
            /// The paging parameters, for [`PageRequest::parse`](crate::api::pagination::PageRequest::parse).
            pub fn paging(&self) -> $crate::api::pagination::Paging<'_> {
                $crate::api::pagination::Paging {
                    sort: self.sort.as_deref(),
                    limit: self.limit.as_deref(),
                    cursor: self.cursor.as_deref(),
                    skip: self.skip.as_deref(),
                    offset: self.offset.as_deref(),
                }
            }
        }
    };
}
pub(crate) use list_params;

/// A page type per item type (so that the OpenAPI document names each).
macro_rules! page_of {
    ($page:ident, $item:ty) => {
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub struct $page {
            pub items: Vec<$item>,
            /// The page size used.
            pub limit: i64,
            /// Link to the next page (same filters and sort, with a cursor); null on the last page.
            pub next: Option<String>,
        }
    };
}
pub(crate) use page_of;

#[cfg(test)]
#[path = "pagination_tests.rs"]
mod tests;
