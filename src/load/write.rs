//! The loader's SQL: staging with `COPY ... BINARY`, set-based inserts, and reading
//! the satellite versions a batch must be compared with. Identifiers come from
//! mappings already checked against the catalog, and are quoted.

use std::collections::HashSet;
use std::error::Error;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::{SinkExt, pin_mut};
use postgres_types::{IsNull, ToSql, Type, to_sql_checked};
use rust_decimal::Decimal;
use tokio_postgres::Transaction;

use super::LoadError;
use super::extract::{HubRow, LinkRow};
use super::satellite::{Existing, NewVersion};
use crate::db::Doing;
use crate::hash::Hash;
use crate::mapping::{ColumnType, Mappings, Satellite, Value};

/// `"name"`, with inner quotes doubled.
pub use crate::db::quote_ident as ident;

pub fn pg_type(ty: ColumnType) -> Type {
    match ty {
        ColumnType::Text => Type::TEXT,
        ColumnType::Integer => Type::INT4,
        ColumnType::Bigint => Type::INT8,
        ColumnType::Numeric(..) => Type::NUMERIC,
        ColumnType::Date => Type::DATE,
        ColumnType::Timestamptz => Type::TIMESTAMPTZ,
        ColumnType::Boolean => Type::BOOL,
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Text(s) => s.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Numeric(d) => d.to_sql(ty, out),
            Value::Date(d) => d.to_sql(ty, out),
            Value::Timestamptz(t) => t.to_sql(ty, out),
            Value::Bool(b) => b.to_sql(ty, out),
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

fn read_value(
    row: &tokio_postgres::Row,
    idx: usize,
    ty: ColumnType,
) -> Result<Option<Value>, tokio_postgres::Error> {
    Ok(match ty {
        ColumnType::Text => row.try_get::<_, Option<String>>(idx)?.map(Value::Text),
        ColumnType::Integer => row
            .try_get::<_, Option<i32>>(idx)?
            .map(|v| Value::Int(v.into())),
        ColumnType::Bigint => row.try_get::<_, Option<i64>>(idx)?.map(Value::Int),
        ColumnType::Numeric(_, scale) => row.try_get::<_, Option<Decimal>>(idx)?.map(|mut d| {
            d.rescale(scale);
            Value::Numeric(d)
        }),
        ColumnType::Date => row.try_get::<_, Option<NaiveDate>>(idx)?.map(Value::Date),
        ColumnType::Timestamptz => row
            .try_get::<_, Option<DateTime<Utc>>>(idx)?
            .map(Value::Timestamptz),
        ColumnType::Boolean => row.try_get::<_, Option<bool>>(idx)?.map(Value::Bool),
    })
}

/// The keys of `keys` already in `table`'s `key_column`.
async fn existing_keys(
    tx: &Transaction<'_>,
    table: &str,
    key_column: &str,
    keys: &[&[u8]],
) -> Result<HashSet<Hash>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &format!(
                "SELECT t.{key} FROM unnest($1::bytea[]) AS k(hk)
                   JOIN {table} t ON t.{key} = k.hk",
                key = ident(key_column)
            ),
            &[&keys],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get::<_, &[u8]>(0).map(to_hash))
        .collect()
}

/// One row's fields, encoded straight into the `COPY ... BINARY` buffer (no boxing
/// per value); the first encoding error is kept and ends the `COPY`.
struct Fields<'a> {
    buf: &'a mut BytesMut,
    types: &'a [Type],
    next: usize,
    error: Option<String>,
}

impl Fields<'_> {
    fn push(&mut self, value: &(dyn ToSql + Sync)) {
        if self.error.is_some() {
            return;
        }
        let Some(ty) = self.types.get(self.next) else {
            self.error = Some(format!("more values than the {} columns", self.types.len()));
            return;
        };
        self.next += 1;
        let at = self.buf.len();
        self.buf.put_i32(-1);
        match value.to_sql_checked(ty, self.buf) {
            Ok(IsNull::Yes) => self.buf.truncate(at + 4),
            Ok(IsNull::No) => match i32::try_from(self.buf.len() - at - 4) {
                Ok(len) => self.buf[at..at + 4].copy_from_slice(&len.to_be_bytes()),
                Err(_) => self.error = Some("a value longer than 2 GB".into()),
            },
            Err(e) => self.error = Some(e.to_string()),
        }
    }
}

/// `COPY` rows straight into a vault table, in PostgreSQL's binary format, sent in
/// chunks of about 256 kB.
async fn copy_rows<R>(
    tx: &Transaction<'_>,
    table: &str,
    cols: &[String],
    types: &[Type],
    rows: &[R],
    write: impl Fn(&R, &mut Fields<'_>),
) -> Result<u64, LoadError> {
    const CHUNK: usize = 256 * 1024;
    if rows.is_empty() {
        return Ok(0);
    }
    let t = std::time::Instant::now();
    let sink = tx
        .copy_in::<_, Bytes>(&format!(
            "COPY {table} ({}) FROM STDIN BINARY",
            cols.join(", ")
        ))
        .await
        .doing("starting a COPY into the vault")?;
    pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(CHUNK + 4096);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0); // flags
    buf.put_i32(0); // header extension length
    let n_cols = i16::try_from(types.len())
        .map_err(|_| LoadError::Internal(format!("{table}: too many columns")))?;
    for r in rows {
        buf.put_i16(n_cols);
        let mut fields = Fields {
            buf: &mut buf,
            types,
            next: 0,
            error: None,
        };
        write(r, &mut fields);
        if let Some(e) = fields.error {
            return Err(LoadError::Encode(format!(
                "encoding a row for {table}: {e}"
            )));
        }
        if fields.next != types.len() {
            return Err(LoadError::Internal(format!(
                "encoding a row for {table}: {} values for {} columns",
                fields.next,
                types.len()
            )));
        }
        if buf.len() >= CHUNK {
            sink.send(buf.split().freeze())
                .await
                .doing("writing rows into the vault")?;
            buf.reserve(CHUNK + 4096);
        }
    }
    buf.put_i16(-1);
    sink.send(buf.split().freeze())
        .await
        .doing("writing rows into the vault")?;
    let n = sink.finish().await.doing("writing rows into the vault")?;
    tracing::debug!(table, rows = n, ms = t.elapsed().as_millis() as u64, "copy");
    Ok(n)
}

/// Rows whose key is new: first occurrence in the batch, not yet in the table.
/// With `known` (the table was empty when the run began: see [`KnownKeys`]), only
/// the keys whose prefix the run already wrote are looked up in the table, and
/// none at all when the table has no index to look them up with (the bulk path).
async fn new_rows<'a, R>(
    tx: &Transaction<'_>,
    table: &str,
    key_column: &str,
    rows: &'a [R],
    known: Option<&Known>,
    key: impl Fn(&R) -> Hash,
) -> Result<Vec<&'a R>, tokio_postgres::Error> {
    let mut seen = HashSet::new();
    let mut firsts: Vec<&R> = rows.iter().filter(|r| seen.insert(key(r))).collect();
    let mut surely_new = Vec::new();
    if let Some(known) = known {
        let (maybe, new): (Vec<&R>, Vec<&R>) =
            firsts.into_iter().partition(|r| known.contains(&key(r)));
        // trusted: a key the run wrote is in the table, and nothing else is
        firsts = if known.trusted { Vec::new() } else { maybe };
        surely_new = new;
    }
    if firsts.is_empty() {
        surely_new.sort_unstable_by_key(|r| key(r));
        return Ok(surely_new);
    }
    let mut keys: Vec<Hash> = firsts.iter().map(|r| key(r)).collect();
    // in index order: the probe walks the key's B-tree front to back
    keys.sort_unstable();
    let key_refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let t = std::time::Instant::now();
    let existing = existing_keys(tx, table, key_column, &key_refs).await?;
    tracing::debug!(
        table,
        keys = keys.len(),
        found = existing.len(),
        ms = t.elapsed().as_millis() as u64,
        "probe"
    );
    let mut fresh: Vec<&R> = firsts
        .into_iter()
        .filter(|r| !existing.contains(&key(r)))
        .chain(surely_new)
        .collect();
    // written in key order too: fewer index pages touched per batch
    fresh.sort_unstable_by_key(|r| key(r));
    Ok(fresh)
}

/// Insert the hub rows whose keys are new; returns those keys. The loader lock
/// makes the check-then-`COPY` safe: no other writer adds keys meanwhile.
pub async fn hubs(
    tx: &Transaction<'_>,
    m: &Mappings,
    h: usize,
    rows: &[HubRow],
    known: Option<&Known>,
) -> Result<HashSet<Hash>, LoadError> {
    let hub = &m.hubs[h];
    let table = m.table(&hub.name);
    let fresh = new_rows(tx, &table, &hub.hash_key, rows, known, |r| r.hk)
        .await
        .doing("looking up hub keys")?;
    let mut cols = vec![ident(&hub.hash_key)];
    cols.extend(hub.business_key.iter().map(|c| ident(c)));
    cols.extend(["load_dts".into(), "record_source".into()]);
    let mut types = vec![Type::BYTEA];
    types.extend(hub.business_key.iter().map(|_| Type::TEXT));
    types.extend([Type::TIMESTAMPTZ, Type::TEXT]);
    copy_rows(tx, &table, &cols, &types, &fresh, |r, v| {
        v.push(&&r.hk[..]);
        for k in &r.business_key {
            v.push(&k.as_str());
        }
        v.push(&r.origin.load_dts);
        v.push(&&*r.origin.source);
    })
    .await?;
    Ok(fresh.iter().map(|r| r.hk).collect())
}

/// Insert the link rows whose keys are new; returns those keys.
pub async fn links(
    tx: &Transaction<'_>,
    m: &Mappings,
    l: usize,
    rows: &[LinkRow],
    known: Option<&Known>,
) -> Result<HashSet<Hash>, LoadError> {
    let link = &m.links[l];
    let table = m.table(&link.name);
    let fresh = new_rows(tx, &table, &link.hash_key, rows, known, |r| r.hk)
        .await
        .doing("looking up link keys")?;
    let mut cols = vec![ident(&link.hash_key)];
    cols.extend(link.hubs.iter().map(|&h| ident(&m.hubs[h].hash_key)));
    cols.extend(link.dependent_keys.iter().map(|(c, _)| ident(c)));
    cols.extend(["load_dts".into(), "record_source".into()]);
    let mut types = vec![Type::BYTEA];
    types.extend(link.hubs.iter().map(|_| Type::BYTEA));
    types.extend(link.dependent_keys.iter().map(|(_, t)| pg_type(*t)));
    types.extend([Type::TIMESTAMPTZ, Type::TEXT]);
    copy_rows(tx, &table, &cols, &types, &fresh, |r, v| {
        v.push(&&r.hk[..]);
        for k in &r.hub_keys {
            v.push(&&k[..]);
        }
        for d in &r.dependent {
            v.push(&d);
        }
        v.push(&r.origin.load_dts);
        v.push(&&*r.origin.source);
    })
    .await?;
    Ok(fresh.iter().map(|r| r.hk).collect())
}

/// The versions staged rows must be compared with: per parent, the one in force at
/// `since` and every later one.
pub async fn existing_versions(
    tx: &Transaction<'_>,
    m: &Mappings,
    sat: &Satellite,
    since: &[(Hash, DateTime<Utc>)],
) -> Result<Vec<Existing>, tokio_postgres::Error> {
    if since.is_empty() {
        return Ok(Vec::new());
    }
    let key = ident(m.parent_key(sat.parent));
    let cols: Vec<String> = sat
        .columns
        .iter()
        .map(|(c, _)| format!("s.{}", ident(c)))
        .collect();
    let cols = cols.join(", ");
    let t = m.table(&sat.name);
    let sql = format!(
        "SELECT v.* FROM (
           SELECT k.hk, k.since FROM unnest($1::bytea[], $2::timestamptz[]) AS k(hk, since)
         ) k
         CROSS JOIN LATERAL (
           (SELECT s.{key}, s.applied_dts, s.event_seq, s.hashdiff, {cols} FROM {t} s
             WHERE s.{key} = k.hk AND s.applied_dts <= k.since
             ORDER BY s.applied_dts DESC, s.event_seq DESC LIMIT 1)
           UNION ALL
           (SELECT s.{key}, s.applied_dts, s.event_seq, s.hashdiff, {cols} FROM {t} s
             WHERE s.{key} = k.hk AND s.applied_dts > k.since)
         ) v"
    );
    let keys: Vec<&[u8]> = since.iter().map(|(k, _)| &k[..]).collect();
    let times: Vec<DateTime<Utc>> = since.iter().map(|(_, t)| *t).collect();
    let rows = tx.query(&sql, &[&keys, &times]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let parent: Vec<u8> = r.try_get(0)?;
        let hashdiff: Vec<u8> = r.try_get(3)?;
        let mut values = Vec::with_capacity(sat.columns.len());
        for (i, (_, ty)) in sat.columns.iter().enumerate() {
            values.push(read_value(&r, 4 + i, *ty)?);
        }
        out.push(Existing {
            parent: to_hash(&parent),
            applied_dts: r.try_get(1)?,
            seq: r.try_get(2)?,
            hashdiff: to_hash(&hashdiff),
            values,
        });
    }
    Ok(out)
}

/// The first 16 bytes of a hash key: what [`KnownKeys`] remembers of it.
pub fn prefix(key: &Hash) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(&key[..16]);
    u128::from_be_bytes(b)
}

/// What a run knows of a hub or link table that was empty when it began: the
/// prefixes ([`prefix`]) of the keys it has written there, sorted.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Sorted prefixes in two runs: new keys are merged into the short `recent` run,
    /// which is merged into `keys` once it holds an eighth as many. Merging every
    /// batch into one run of millions moved the whole run each time (new keys are
    /// uniform, so they land everywhere): 12% of the loader's main thread at TPC-H SF1
    /// in `memmove`. Two runs move each key about 8 times in all instead.
    keys: Vec<u128>,
    recent: Vec<u128>,
    /// The table has no index to look keys up with (the bulk path): a key whose
    /// prefix is here is taken as present, every other key as new. Two different
    /// keys of one table sharing 128 bits of SHA-256 is as unlikely as the 128-bit
    /// event ids colliding (about 1e-25 at 10 million keys). Untrusted, a prefix
    /// here only means "look it up".
    pub trusted: bool,
}

impl Known {
    pub fn contains(&self, key: &Hash) -> bool {
        let p = prefix(key);
        self.keys.binary_search(&p).is_ok() || self.recent.binary_search(&p).is_ok()
    }

    pub fn len(&self) -> usize {
        self.keys.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add sorted `new` prefixes.
    fn extend(&mut self, new: Vec<u128>) {
        merge_into(&mut self.recent, new);
        if self.recent.len() > self.keys.len() / 8 {
            let recent = std::mem::take(&mut self.recent);
            merge_into(&mut self.keys, recent);
        }
    }
}

/// Merge sorted `new` into sorted `keys`, in place from the back: no second copy of a
/// run of millions of keys.
fn merge_into(keys: &mut Vec<u128>, mut new: Vec<u128>) {
    let mut i = keys.len();
    keys.resize(i + new.len(), 0);
    let mut k = keys.len();
    while let Some(&y) = new.last() {
        k -= 1;
        if i > 0 && keys[i - 1] > y {
            keys[k] = keys[i - 1];
            i -= 1;
        } else {
            keys[k] = y;
            new.pop();
        }
    }
}

/// For each hub and link table that was empty when a run began, what the run knows
/// of its keys ([`Known`]). The loader lock keeps other writers out, so a key whose
/// prefix is not there cannot be in the table and needs no lookup: on a first load or
/// a rebuild, new keys are never probed for. Memory is 16 bytes a key, at most
/// [`KnownKeys::LIMIT`] keys in all; a table that would pass it goes back to lookups
/// for the rest of the run (and the bulk path builds its indexes first).
#[derive(Debug, Default)]
pub struct KnownKeys {
    pub hubs: Vec<Option<Known>>,
    pub links: Vec<Option<Known>>,
    total: usize,
}

impl KnownKeys {
    /// 16M keys: 256 MB.
    pub const LIMIT: usize = 16 << 20;

    /// Nothing known: every key is looked up.
    pub fn none(m: &Mappings) -> KnownKeys {
        KnownKeys {
            hubs: vec![None; m.hubs.len()],
            links: vec![None; m.links.len()],
            total: 0,
        }
    }

    /// Which hub and link tables are empty now; call it holding the loader lock.
    pub async fn at_start(
        client: &impl tokio_postgres::GenericClient,
        m: &Mappings,
    ) -> Result<KnownKeys, tokio_postgres::Error> {
        let mut known = KnownKeys::none(m);
        for (h, hub) in m.hubs.iter().enumerate() {
            if is_empty(client, &m.table(&hub.name)).await? {
                known.hubs[h] = Some(Known::default());
            }
        }
        for (l, link) in m.links.iter().enumerate() {
            if is_empty(client, &m.table(&link.name)).await? {
                known.links[l] = Some(Known::default());
            }
        }
        Ok(known)
    }

    /// Remember keys just written to a table (`slot` is its entry in `hubs` or `links`).
    fn add(total: &mut usize, slot: &mut Option<Known>, keys: &HashSet<Hash>) {
        let Some(set) = slot else {
            return;
        };
        if *total + keys.len() > Self::LIMIT {
            *total -= set.len();
            *slot = None;
            return;
        }
        *total += keys.len();
        let mut new: Vec<u128> = keys.iter().map(prefix).collect();
        new.sort_unstable();
        set.extend(new);
    }

    pub fn add_hub(&mut self, h: usize, keys: &HashSet<Hash>) {
        Self::add(&mut self.total, &mut self.hubs[h], keys);
    }

    pub fn add_link(&mut self, l: usize, keys: &HashSet<Hash>) {
        Self::add(&mut self.total, &mut self.links[l], keys);
    }
}

/// Is `table` (qualified and quoted) empty?
pub async fn is_empty(
    client: &impl tokio_postgres::GenericClient,
    table: &str,
) -> Result<bool, tokio_postgres::Error> {
    client
        .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {table})"), &[])
        .await?
        .try_get(0)
}

fn to_hash(bytes: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    let n = bytes.len().min(32);
    h[..n].copy_from_slice(&bytes[..n]);
    h
}

/// Append new satellite versions straight into the satellite.
pub async fn satellite(
    tx: &Transaction<'_>,
    m: &Mappings,
    sat: &Satellite,
    rows: &[NewVersion],
) -> Result<u64, LoadError> {
    let mut cols = vec![
        ident(m.parent_key(sat.parent)),
        "applied_dts".into(),
        "event_seq".into(),
        "load_dts".into(),
        "hashdiff".into(),
        "record_source".into(),
    ];
    cols.extend(sat.columns.iter().map(|(c, _)| ident(c)));
    let mut types = vec![
        Type::BYTEA,
        Type::TIMESTAMPTZ,
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::BYTEA,
        Type::TEXT,
    ];
    types.extend(sat.columns.iter().map(|(_, t)| pg_type(*t)));
    copy_rows(tx, &m.table(&sat.name), &cols, &types, rows, |r, v| {
        v.push(&&r.parent[..]);
        v.push(&r.origin.applied_dts);
        v.push(&r.origin.seq);
        v.push(&r.origin.load_dts);
        v.push(&&r.hashdiff[..]);
        v.push(&&*r.origin.source);
        for value in &r.values {
            v.push(&value);
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> Hash {
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&n.to_be_bytes());
        h[31] = 1;
        h
    }

    #[test]
    fn remembered_keys_stay_sorted_as_batches_merge_in() {
        let m = Mappings::builtin().expect("mappings");
        let mut known = KnownKeys::none(&m);
        known.hubs[0] = Some(Known::default());
        let batches: [&[u32]; 4] = [&[5, 1, 9], &[3, 10, 0], &[], &[7, 2, 11, 4]];
        for batch in batches {
            known.add_hub(0, &batch.iter().map(|&n| key(n)).collect());
        }
        let set = known.hubs[0].as_ref().expect("still known");
        let mut expected: Vec<u128> = [5, 1, 9, 3, 10, 0, 7, 2, 11, 4]
            .iter()
            .map(|&n| prefix(&key(n)))
            .collect();
        expected.sort_unstable();
        let mut held: Vec<u128> = set.keys.iter().chain(&set.recent).copied().collect();
        assert!(set.keys.is_sorted() && set.recent.is_sorted());
        held.sort_unstable();
        assert_eq!(held, expected);
        assert!(set.contains(&key(11)) && set.contains(&key(0)));
        assert!(!set.contains(&key(6)));
    }

    #[test]
    fn many_batches_keep_both_runs_sorted_and_every_key_found() {
        let mut set = Known::default();
        let mut all = Vec::new();
        // pseudo-random keys, in batches of growing size, as a load adds them
        let mut x: u32 = 1;
        for batch in 1..60u32 {
            let mut new = Vec::new();
            for _ in 0..batch * 7 {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                new.push(prefix(&key(x)));
                all.push(x);
            }
            new.sort_unstable();
            set.extend(new);
            assert!(set.keys.is_sorted() && set.recent.is_sorted());
            assert!(set.recent.len() <= set.keys.len() / 8 + batch as usize * 7);
        }
        assert_eq!(set.len(), all.len());
        assert!(all.iter().all(|&n| set.contains(&key(n))));
        assert!(!set.contains(&key(0)));
    }
}
