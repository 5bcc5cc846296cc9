//! The loader's memory of the keys a run has written to hub and link tables that
//! were empty when it began ([`KnownKeys`]): a first load or a rebuild then never
//! looks up a new key, and the bulk path needs no index to know one.
//!
//! Memory is bounded ([`KnownKeys::LIMIT`] keys unless the run says otherwise).
//! Past it, on the bulk path, a table whose keys have never repeated across batches
//! is forgotten instead of looked up ([`Known::unchecked`]): its keys are all taken
//! as new, and the unique index built at the run's end proves it (a repeat makes the
//! build fail, and the run starts over remembering every table; see [`super::bulk`]).
//! At TPC-H scale that is the line item link, whose every key is new: SF3 writes 18M
//! of its 28.5M hub and link keys there, and looking them up once the memory was full
//! halved the load's rate.

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
    /// First-in-batch keys that were found here: keys a batch repeated from an
    /// earlier one.
    repeats: u64,
    /// Forgotten to make room (trusted, and no key repeated until then): nothing is
    /// remembered any more, every key is taken as new, and the table's unique index,
    /// built at the end of the run, checks that none came twice.
    unchecked: bool,
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

    /// Is this table's memory forgotten ([`Known::unchecked`])?
    pub fn unchecked(&self) -> bool {
        self.unchecked
    }

    /// Count keys of a batch found here ([`Known::contains`]).
    fn note_repeats(&mut self, n: usize) {
        self.repeats += n as u64;
    }

    /// May it be forgotten to make room?
    fn may_forget(&self) -> bool {
        self.trusted && !self.unchecked && self.repeats == 0 && !self.is_empty()
    }

    fn forget(&mut self) {
        self.keys = Prefixes::default();
        self.recent = Prefixes::default();
        self.unchecked = true;
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
    // exactly: runs merge in when they reach an eighth of this one, so this grows by
    // that at least, and a doubling capacity would hold up to twice the keys' memory
    keys.reserve_exact(new.len());
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
/// `limit` keys in all ([`KnownKeys::LIMIT`] by default). To stay under it, a bare
/// table with no repeated key is forgotten ([`Known::unchecked`], when
/// [`KnownKeys::may_forget`] allows it); failing that, the table that would pass it
/// goes back to lookups for the rest of the run (and the bulk path builds its indexes
/// first).
#[derive(Debug)]
pub struct KnownKeys {
    pub hubs: PerHub<Option<Known>>,
    pub links: PerLink<Option<Known>>,
    total: usize,
    limit: usize,
    /// May tables be forgotten ([`Known::unchecked`])? Not when a run starts over
    /// after a forgotten table's keys repeated.
    pub may_forget: bool,
    /// Per hub and link table: were most keys of the run's last batch with keys for
    /// it already there? (`None`: no batch yet.) The next batch looks up in the order
    /// that suits that ([`super::apply`]).
    pub mostly_known_hubs: PerHub<Option<bool>>,
    pub mostly_known_links: PerLink<Option<bool>>,
}

impl KnownKeys {
    /// 8M keys: 128 MB.
    pub const LIMIT: usize = 8 << 20;

    /// Nothing known: every key is looked up.
    pub fn none(m: &Mappings) -> KnownKeys {
        KnownKeys {
            hubs: m.hubs.map(|_| None),
            links: m.links.map(|_| None),
            total: 0,
            limit: Self::LIMIT,
            may_forget: true,
            mostly_known_hubs: m.hubs.map(|_| None),
            mostly_known_links: m.links.map(|_| None),
        }
    }

    /// Which hub and link tables are empty now; call it holding the loader lock.
    /// At most `limit` keys are remembered.
    pub async fn at_start(
        client: &impl tokio_postgres::GenericClient,
        m: &Mappings,
        limit: usize,
    ) -> Result<KnownKeys, tokio_postgres::Error> {
        let mut known = KnownKeys::none(m);
        // positions in a run of prefixes are u32 (`Prefixes::starts`)
        known.limit = limit.min(u32::MAX as usize);
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

    /// Forget a table that may be forgotten ([`Known::may_forget`]): the largest
    /// link, else the largest hub (a link of a transaction, a line item, is new with
    /// each event, while a hub's keys come again with every event that refers to
    /// them). False if none may.
    fn forget_largest(&mut self) -> bool {
        if !self.may_forget {
            return false;
        }
        let size = |k: &Option<Known>| k.as_ref().filter(|k| k.may_forget()).map(Known::len);
        let hubs = self
            .hubs
            .with_ids()
            .filter_map(|(h, k)| Some(((false, size(k)?), Table::Hub(h))));
        let links = self
            .links
            .with_ids()
            .filter_map(|(l, k)| Some(((true, size(k)?), Table::Link(l))));
        let Some(((is_link, freed), table)) = hubs.chain(links).max_by_key(|(rank, _)| *rank)
        else {
            return false;
        };
        if let Some(k) = self.slot(table) {
            k.forget();
        }
        self.total -= freed;
        tracing::info!(
            keys = freed,
            link = is_link,
            "key memory full: a table none of whose keys repeated is forgotten; its unique index checks it at the end"
        );
        true
    }

    /// Remember keys just written to a table, which repeated `repeats` keys of
    /// earlier batches.
    fn add(&mut self, table: Table, keys: &KeySet, repeats: usize) {
        match self.slot(table) {
            Some(k) if !k.unchecked => k.note_repeats(repeats),
            _ => return,
        }
        while self.total + keys.len() > self.limit {
            let forgotten = self.slot(table).as_ref().is_some_and(Known::unchecked);
            if forgotten {
                return;
            }
            if !self.forget_largest() {
                // nothing can be forgotten: this table goes back to lookups
                let slot = self.slot(table);
                let had = slot.as_ref().map_or(0, Known::len);
                *slot = None;
                self.total -= had;
                return;
            }
        }
        let Some(set) = self.slot(table).as_mut().filter(|k| !k.unchecked) else {
            return;
        };
        let mut new: Vec<u128> = keys.iter().map(prefix).collect();
        new.sort_unstable();
        set.extend(new);
        self.total += keys.len();
    }

    fn slot(&mut self, table: Table) -> &mut Option<Known> {
        match table {
            Table::Hub(h) => &mut self.hubs[h],
            Table::Link(l) => &mut self.links[l],
        }
    }

    pub fn add_hub(&mut self, h: HubId, keys: &KeySet, repeats: usize) {
        self.add(Table::Hub(h), keys, repeats);
    }

    pub fn add_link(&mut self, l: LinkId, keys: &KeySet, repeats: usize) {
        self.add(Table::Link(l), keys, repeats);
    }

    /// The vault names of the tables forgotten ([`Known::unchecked`]).
    pub fn forgotten(&self, m: &Mappings) -> Vec<String> {
        let forgotten = |k: &Option<Known>| k.as_ref().is_some_and(Known::unchecked);
        let hubs = m
            .hubs
            .with_ids()
            .filter(|&(h, _)| forgotten(&self.hubs[h]))
            .map(|(_, hub)| hub.name.clone());
        let links = m
            .links
            .with_ids()
            .filter(|&(l, _)| forgotten(&self.links[l]))
            .map(|(_, link)| link.name.clone());
        hubs.chain(links).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Table {
    Hub(HubId),
    Link(LinkId),
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
            known.add_hub(h, &batch.iter().map(|&n| key(n)).collect(), 0);
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

    fn keys(from: u32, to: u32) -> KeySet {
        (from..to).map(key).collect()
    }

    fn trusted() -> Option<Known> {
        Some(Known {
            trusted: true,
            ..Known::default()
        })
    }

    #[test]
    fn a_full_memory_forgets_links_then_hubs_whose_keys_never_repeated() {
        let m = Mappings::builtin().expect("mappings");
        let mut hubs = m.hubs.ids();
        let (a, b) = (
            hubs.next().expect("a hub"),
            hubs.next().expect("a second hub"),
        );
        let l = m.links.ids().next().expect("a link");
        let mut known = KnownKeys::none(&m);
        known.limit = 10;
        known.hubs[a] = trusted();
        known.hubs[b] = trusted();
        known.links[l] = trusted();
        known.add_hub(a, &keys(0, 4), 1); // a repeated a key of an earlier batch
        known.add_hub(b, &keys(10, 13), 0);
        known.add_link(l, &keys(20, 22), 0);
        assert_eq!(known.total, 9);

        // three more do not fit: the link (2 keys, none repeated) is forgotten
        // before the larger hub b
        known.add_hub(a, &keys(4, 7), 0);
        assert!(known.links[l].as_ref().is_some_and(Known::unchecked));
        assert!(known.hubs[b].as_ref().is_some_and(|k| k.contains(&key(11))));
        assert!(known.hubs[a].as_ref().is_some_and(|k| k.contains(&key(5))));
        assert_eq!(known.forgotten(&m), vec![m.links[l].name.clone()]);
        assert_eq!(known.total, 10);

        // two more: b, the hub none of whose keys repeated, goes, not a
        known.add_hub(a, &keys(7, 9), 0);
        let b_known = known.hubs[b].as_ref().expect("still there");
        assert!(b_known.unchecked() && !b_known.contains(&key(11)));
        assert_eq!(known.total, 9);

        // a forgotten table remembers nothing more
        known.add_hub(b, &keys(30, 40), 0);
        known.add_link(l, &keys(50, 60), 0);
        assert_eq!(known.total, 9);

        // three more: nothing may be forgotten, so a, which repeated keys, goes
        // back to lookups
        known.add_hub(a, &keys(40, 43), 0);
        assert!(known.hubs[a].is_none());
        assert_eq!(known.total, 0);
    }

    #[test]
    fn only_trusted_tables_are_forgotten_and_only_when_the_run_allows_it() {
        let m = Mappings::builtin().expect("mappings");
        let mut hubs = m.hubs.ids();
        let (a, b) = (
            hubs.next().expect("a hub"),
            hubs.next().expect("a second hub"),
        );
        for may_forget in [true, false] {
            let mut known = KnownKeys::none(&m);
            known.limit = 5;
            known.may_forget = may_forget;
            known.hubs[a] = trusted();
            // untrusted: the table has its indexes, lookups are cheap enough
            known.hubs[b] = Some(Known::default());
            known.add_hub(b, &keys(0, 3), 0);
            known.add_hub(a, &keys(10, 13), 0);
            assert!(known.hubs[a].is_none(), "may_forget {may_forget}");
            assert!(known.hubs[b].as_ref().is_some_and(|k| !k.unchecked()));
            assert!(known.forgotten(&m).is_empty());
            if may_forget {
                // a trusted table that fits stays; one more that would pass the
                // limit forgets it
                known.hubs[a] = trusted();
                known.add_hub(a, &keys(20, 22), 0);
                known.add_hub(b, &keys(3, 4), 0);
                assert!(known.hubs[a].as_ref().is_some_and(Known::unchecked));
                assert!(known.hubs[b].as_ref().is_some_and(|k| k.contains(&key(3))));
            }
        }
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
