//! The loader's memory of the keys a run has written to hub and link tables that
//! were empty when it began ([`KnownKeys`]): a first load or a rebuild then never
//! looks up a new key, and the bulk path needs no index to know one.

use crate::hash::{Hash, KeySet};
use crate::mapping::{HubId, LinkId, Mappings, PerHub, PerLink};

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
    keys: Prefixes,
    recent: Prefixes,
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
        self.keys.contains(p) || self.recent.contains(p)
    }

    pub fn len(&self) -> usize {
        self.keys.len() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add sorted `new` prefixes.
    fn extend(&mut self, new: Vec<u128>) {
        self.recent.merge(new);
        if self.recent.len() > self.keys.len() / 8 {
            let recent = std::mem::take(&mut self.recent.keys);
            self.recent.index();
            self.keys.merge(recent);
        }
    }
}

/// A sorted run of prefixes with a directory of where each value of its top bits
/// starts. Keys are uniform, so a lookup reads one directory entry and a few keys
/// next to each other: a binary search over millions of keys missed the cache at
/// nearly every step (`Known::contains` was 7% of the writer's time at TPC-H SF1).
#[derive(Debug, Clone, Default)]
struct Prefixes {
    keys: Vec<u128>,
    /// `starts[b]..starts[b + 1]`: the keys whose top `bits` bits are `b`.
    starts: Vec<u32>,
    bits: u32,
}

impl std::ops::Deref for Prefixes {
    type Target = [u128];
    fn deref(&self) -> &[u128] {
        &self.keys
    }
}

impl Prefixes {
    /// About four keys per directory entry, at most 4M entries (16 MB).
    const MAX_BITS: u32 = 22;

    fn bucket(&self, p: u128) -> usize {
        p.checked_shr(128 - self.bits).unwrap_or(0) as usize
    }

    fn contains(&self, p: u128) -> bool {
        let b = self.bucket(p);
        let (Some(&from), Some(&to)) = (self.starts.get(b), self.starts.get(b + 1)) else {
            return false;
        };
        self.keys[from as usize..to as usize]
            .binary_search(&p)
            .is_ok()
    }

    /// Merge sorted `new` in and index the whole run again.
    fn merge(&mut self, new: Vec<u128>) {
        merge_into(&mut self.keys, new);
        self.index();
    }

    fn index(&mut self) {
        let per_bucket = (self.keys.len() / 4).max(1);
        self.bits = per_bucket.ilog2().min(Self::MAX_BITS);
        let buckets = 1usize << self.bits;
        self.starts.clear();
        self.starts.reserve(buckets + 1);
        let mut i = 0;
        for b in 0..buckets {
            // at most KnownKeys::LIMIT keys in all: an index fits in a u32
            self.starts.push(i as u32);
            while i < self.keys.len() && self.bucket(self.keys[i]) == b {
                i += 1;
            }
        }
        self.starts.push(i as u32);
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
    pub hubs: PerHub<Option<Known>>,
    pub links: PerLink<Option<Known>>,
    total: usize,
}

impl KnownKeys {
    /// 16M keys: 256 MB.
    pub const LIMIT: usize = 16 << 20;

    /// Nothing known: every key is looked up.
    pub fn none(m: &Mappings) -> KnownKeys {
        KnownKeys {
            hubs: m.hubs.map(|_| None),
            links: m.links.map(|_| None),
            total: 0,
        }
    }

    /// Which hub and link tables are empty now; call it holding the loader lock.
    pub async fn at_start(
        client: &impl tokio_postgres::GenericClient,
        m: &Mappings,
    ) -> Result<KnownKeys, tokio_postgres::Error> {
        let mut known = KnownKeys::none(m);
        for (h, hub) in m.hubs.with_ids() {
            if is_empty(client, &m.table(&hub.name)).await? {
                known.hubs[h] = Some(Known::default());
            }
        }
        for (l, link) in m.links.with_ids() {
            if is_empty(client, &m.table(&link.name)).await? {
                known.links[l] = Some(Known::default());
            }
        }
        Ok(known)
    }

    /// Remember keys just written to a table (`slot` is its entry in `hubs` or `links`).
    fn add(total: &mut usize, slot: &mut Option<Known>, keys: &KeySet) {
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

    pub fn add_hub(&mut self, h: HubId, keys: &KeySet) {
        Self::add(&mut self.total, &mut self.hubs[h], keys);
    }

    pub fn add_link(&mut self, l: LinkId, keys: &KeySet) {
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
        let h = m.hubs.ids().next().expect("a hub");
        known.hubs[h] = Some(Known::default());
        let batches: [&[u32]; 4] = [&[5, 1, 9], &[3, 10, 0], &[], &[7, 2, 11, 4]];
        for batch in batches {
            known.add_hub(h, &batch.iter().map(|&n| key(n)).collect());
        }
        let set = known.hubs[h].as_ref().expect("still known");
        let mut expected: Vec<u128> = [5, 1, 9, 3, 10, 0, 7, 2, 11, 4]
            .iter()
            .map(|&n| prefix(&key(n)))
            .collect();
        expected.sort_unstable();
        let mut held: Vec<u128> = set.keys.iter().chain(set.recent.iter()).copied().collect();
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
