//! The hashing standard: hash keys and hashdiffs, SHA-256 over normalized text.
//!
//! The rule follows AutomateDV (dbt) with `hash: SHA` on PostgreSQL, so keys match
//! `sha256(convert_to(upper(trim(x)), 'UTF8'))` in a UTF-8 database:
//!
//! * each part is trimmed of spaces (U+0020 only, like SQL `TRIM`) and upper-cased
//!   with the one-to-one mapping PostgreSQL's `upper` applies (`é` → `É`, but `ß`
//!   stays `ß`); an empty result counts as NULL;
//! * a single-part key is the SHA-256 of that text; NULL gives no key;
//! * several parts (links, hashdiffs) are joined with `||`, NULL parts written `^^`;
//!   a key whose parts are all NULL is no key. A key part containing `||` or equal
//!   to `^^` is refused: it could collide with another key.
//!
//! Values reach this module as the canonical text of their type (see
//! [`crate::mapping::Value::canonical`]).

use sha2::{Digest, Sha256};

/// Bumped whenever the rule changes; a vault built with another version must be rebuilt.
pub const HASH_VERSION: &str = "1";

/// A 32-byte SHA-256 digest.
pub type Hash = [u8; 32];

/// A set of hash keys, and a map from them. A batch puts every key of every row
/// through such a set, so they hash by [`KeyHasher`].
pub type KeySet = std::collections::HashSet<Hash, KeyHashing>;
pub type KeyMap<V> = std::collections::HashMap<Hash, V, KeyHashing>;

/// Hashes a key by its first eight bytes, folded with a seed drawn once per process.
/// The keys are SHA-256 digests, uniform already: the standard SipHash spent about
/// 20 ns on 32 bytes, and foldhash, which reads them all, was still 3% of the loader's
/// instructions at TPC-H scale (callgrind). The seed and the 128-bit product folded
/// make every bit of the result depend on every bit read, so keys chosen to share
/// a bucket without the seed do not share one here.
#[derive(Debug, Clone, Copy)]
pub struct KeyHashing {
    seed: u64,
}

impl Default for KeyHashing {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
        KeyHashing { seed }
    }
}

impl std::hash::BuildHasher for KeyHashing {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { hash: self.seed }
    }
}

/// See [`KeyHashing`].
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher {
    hash: u64,
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // a key comes in one write of 32 bytes, the first eight as random as all of
        // it; anything else is folded in whole, eight bytes at a time
        let read = if bytes.len() == 32 {
            &bytes[..8]
        } else {
            bytes
        };
        for chunk in read.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            let product = u128::from(self.hash ^ u64::from_le_bytes(word))
                * u128::from(0x9e37_79b9_7f4a_7c15u64);
            self.hash = (product as u64) ^ ((product >> 64) as u64);
        }
    }

    fn write_usize(&mut self, len: usize) {
        // the length before a slice's bytes: always 32 for a key
        self.write(&len.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

const NULL_PART: &str = "^^";
const SEPARATOR: &str = "||";

/// Why a key cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("every part of the key is empty")]
    Empty,
    #[error("key part {0:?} contains \"||\" or is \"^^\", which could collide with another key")]
    Ambiguous(String),
}

/// `part` without leading and trailing spaces (`' '` only, as PostgreSQL's `TRIM`).
/// A byte loop: the generic `trim_matches(' ')` was 3% of the loader's instructions
/// at TPC-H scale (callgrind), for keys that nearly never have a space to trim.
pub fn trim_spaces(part: &str) -> &str {
    let bytes = part.as_bytes();
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    // a space is one byte and never part of another character: both ends are
    // character boundaries
    &part[start..end]
}

/// Trim spaces and upper-case like PostgreSQL; `None` when nothing is left.
pub fn normalize(part: &str) -> Option<String> {
    let trimmed = trim_spaces(part);
    if trimmed.is_empty() {
        return None;
    }
    Some(trimmed.chars().map(upper_one_to_one).collect())
}

/// The upper case of `c` when it is a single character, else `c` itself: what
/// glibc's `towupper` (and so PostgreSQL's `upper` in a UTF-8 database) does.
fn upper_one_to_one(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

pub fn sha256(text: &str) -> Hash {
    Sha256::digest(text.as_bytes()).into()
}

/// SHA-256 of normalized parts, fed to the digest as they come: no text is built.
/// The loader hashes three to five keys and a hashdiff per event, and building each
/// text (a `String` per part, another for the joined key) was most of what it
/// allocated.
pub struct Joined {
    sha: Sha256,
    buf: [u8; 128],
    len: usize,
    parts: usize,
    any: bool,
}

impl Default for Joined {
    fn default() -> Self {
        Joined {
            sha: Sha256::new(),
            buf: [0; 128],
            len: 0,
            parts: 0,
            any: false,
        }
    }
}

impl Joined {
    /// The next `n` bytes of the buffer (`n` at most its size), to be written; what
    /// it held goes to the digest first when they would not fit.
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.len + n > self.buf.len() {
            self.sha.update(&self.buf[..self.len]);
            self.len = 0;
        }
        self.len += n;
        &mut self.buf[self.len - n..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(self.buf.len()) {
            self.room(chunk.len()).copy_from_slice(chunk);
        }
    }

    /// `part` trimmed and upper-cased (see [`normalize`]); `false`, and nothing fed,
    /// when nothing is left of it.
    fn normalized(&mut self, part: &str) -> bool {
        let trimmed = trim_spaces(part);
        if trimmed.is_empty() {
            return false;
        }
        if trimmed.is_ascii() {
            for chunk in trimmed.as_bytes().chunks(self.buf.len()) {
                let to = self.room(chunk.len());
                to.copy_from_slice(chunk);
                to.make_ascii_uppercase();
            }
        } else {
            for c in trimmed.chars() {
                let mut utf8 = [0; 4];
                self.push(upper_one_to_one(c).encode_utf8(&mut utf8).as_bytes());
            }
        }
        true
    }

    /// The next part of a multi-part key or hashdiff: the separator (from the second
    /// part on), then the part normalized, or the NULL marker. With `check`, a part
    /// that could collide with another key is refused (see [`check_part`]).
    pub fn part(&mut self, part: Option<&str>, check: bool) -> Result<(), KeyError> {
        if self.parts > 0 {
            self.push(SEPARATOR.as_bytes());
        }
        self.parts += 1;
        if check && let Some(p) = part {
            check_part(p)?;
        }
        if part.is_some_and(|p| self.normalized(p)) {
            self.any = true;
        } else {
            self.push(NULL_PART.as_bytes());
        }
        Ok(())
    }

    /// Did any part have text?
    pub fn any(&self) -> bool {
        self.any
    }

    pub fn finish(mut self) -> Hash {
        self.sha.update(&self.buf[..self.len]);
        self.sha.finalize().into()
    }
}

/// Hash key of a single-part business key.
pub fn hash_key(part: &str) -> Result<Hash, KeyError> {
    let mut joined = Joined::default();
    if !joined.normalized(part) {
        return Err(KeyError::Empty);
    }
    Ok(joined.finish())
}

/// Refuse a key part that could collide with another key once joined: one that
/// contains `||` or is `^^` after normalization. A single-part hub key would hash
/// fine, but the same text takes part in link keys, so it is refused everywhere.
pub fn check_part(part: &str) -> Result<(), KeyError> {
    // Upper-casing maps neither `|` nor `^` nor onto them: the trimmed text tells.
    let trimmed = trim_spaces(part);
    // on bytes: `str::contains` called `memcmp` for every key part (callgrind)
    let separated = trimmed
        .as_bytes()
        .windows(2)
        .any(|w| w == SEPARATOR.as_bytes());
    if separated || trimmed == NULL_PART {
        return Err(KeyError::Ambiguous(normalize(trimmed).unwrap_or_default()));
    }
    Ok(())
}

/// Hash key over several parts (a link, a composite business key), in order.
pub fn hash_key_multi<'a>(
    parts: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<Hash, KeyError> {
    let mut joined = Joined::default();
    for part in parts {
        joined.part(part, true)?;
    }
    if !joined.any() {
        return Err(KeyError::Empty);
    }
    Ok(joined.finish())
}

/// Hashdiff of a satellite row: its payload columns' canonical text, in
/// alphabetical order of the column names (the caller sorts).
pub fn hashdiff<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> Hash {
    // Payload values are not keys: `||` inside them cannot make two rows collide
    // in a way that matters (a false "no change" would need equal texts).
    let mut joined = Joined::default();
    for part in parts {
        // without the check, nothing is refused
        let _ = joined.part(part, false);
    }
    joined.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: Hash) -> String {
        hex::encode(h)
    }

    #[test]
    fn key_sets_find_their_keys_and_spread_them() {
        use std::hash::BuildHasher;
        let keys: Vec<Hash> = (0..10_000u32)
            .map(|i| hash_key(&i.to_string()).expect("key"))
            .collect();
        let set: KeySet = keys.iter().copied().collect();
        assert_eq!(set.len(), keys.len());
        assert!(keys.iter().all(|k| set.contains(k)));
        assert!(!set.contains(&hash_key("absent").expect("key")));
        // keys equal in their first eight bytes, chosen to collide, still spread:
        // the bucket bits depend on every bit of the prefix and on the seed
        let hashing = KeyHashing::default();
        let buckets: std::collections::HashSet<u64> = (0..1024u64)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&(i << 20).to_le_bytes());
                hashing.hash_one(k) & 1023
            })
            .collect();
        assert!(buckets.len() > 500, "{} buckets of 1024", buckets.len());
    }

    #[test]
    fn spaces_are_trimmed_as_trim_matches_does() {
        for text in [
            "", " ", "   ", "a", " a", "a ", "  a b  ", "\ta\t", " é ", "é", "  ü||x ", "\u{a0}a ",
        ] {
            assert_eq!(trim_spaces(text), text.trim_matches(' '), "{text:?}");
        }
    }

    #[test]
    fn a_separator_anywhere_in_a_part_is_refused() {
        for part in ["a||b", "||", " ||", "a|||", "é||"] {
            assert!(check_part(part).is_err(), "{part:?}");
        }
        for part in ["a|b", "|", "a| |b", "^", " ^ ^", "é|"] {
            assert!(check_part(part).is_ok(), "{part:?}");
        }
        assert!(check_part(" ^^ ").is_err());
    }

    #[test]
    fn single_keys_match_known_digests() {
        assert_eq!(
            hex(hash_key("C001").expect("key")),
            "a4906a54b9b8416b9a8136e3665eb9d5c1cab6e72830f662d9b80a0d68b46b07"
        );
        assert_eq!(
            hex(hash_key(" josé").expect("key")),
            "93440b808fa3855907c19a13640c0528028b6f127c0ec7c789c0a15f18e653db"
        );
        // sha256('') is the famous e3b0...; but an empty key is no key
        assert_eq!(hash_key("   "), Err(KeyError::Empty));
        assert_eq!(
            hex(sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(sha256("ABC")),
            "b5d4045c3f466fa91fe2cc6abe79232a1a57cdf104f7a26e716e0a1e2789df78"
        );
        assert_eq!(hash_key(" abc ").expect("key"), sha256("ABC"));
        assert_eq!(hash_key("abc").expect("key"), hash_key("ABC").expect("key"));
    }

    #[test]
    fn normalization_is_postgres_upper_trim() {
        assert_eq!(normalize("  josé ").as_deref(), Some("JOSÉ"));
        assert_eq!(normalize("straße").as_deref(), Some("STRAßE"));
        assert_eq!(normalize("\tx\n").as_deref(), Some("\tX\n"));
        assert_eq!(normalize("ǆ").as_deref(), Some("Ǆ"));
        assert_eq!(normalize("ŉ").as_deref(), Some("ŉ"));
        assert_eq!(normalize("😀 a").as_deref(), Some("😀 A"));
        assert_eq!(normalize(""), None);
        assert_eq!(normalize("   "), None);
    }

    #[test]
    fn multi_part_keys_join_with_separator_and_null_marker() {
        assert_eq!(
            hex(hash_key_multi([Some("o1"), Some(" p1"), Some("1")]).expect("key")),
            "592bf6162a79afd9e703f1e84ac64f30de3f238afa7504b6fc761b23f4e29761"
        );
        assert_eq!(
            hex(hash_key_multi([Some("o1"), None, Some("")]).expect("key")),
            "de667ece8829bca562b6ed884c209a128cebb09a7e0a844dfc0da8d093b086d2"
        );
        assert_eq!(hash_key_multi([None, Some(" ")]), Err(KeyError::Empty));
        assert!(matches!(
            hash_key_multi([Some("a||b"), Some("c")]),
            Err(KeyError::Ambiguous(_))
        ));
        assert!(matches!(
            hash_key_multi([Some("^^"), Some("c")]),
            Err(KeyError::Ambiguous(_))
        ));
    }

    #[test]
    fn parts_that_could_collide_are_refused_alone_too() {
        assert!(matches!(check_part("a||b"), Err(KeyError::Ambiguous(_))));
        assert!(matches!(check_part(" ^^ "), Err(KeyError::Ambiguous(_))));
        assert_eq!(check_part("a|b"), Ok(()));
        assert_eq!(check_part("^"), Ok(()));
        assert_eq!(check_part(""), Ok(()));
    }

    #[test]
    fn hashdiff_keeps_every_column_position() {
        assert_eq!(
            hex(hashdiff([Some("Berlin"), None, Some("Ann")])),
            "04ac350907b71d41c7bdff9bfdca2a43ef248a9e3228e6cba273e75728a49007"
        );
        assert_ne!(
            hashdiff([Some("a"), None]),
            hashdiff([None, Some("a")]),
            "a value moving to another column is a change"
        );
        assert_eq!(hashdiff([None, None]), sha256("^^||^^"));
    }

    /// The standard written out: normalized parts joined with `||`, NULL parts `^^`,
    /// the SHA-256 of that text (what [`Joined`] feeds the digest piece by piece).
    fn by_text(parts: &[Option<String>]) -> (Hash, bool) {
        let normalized: Vec<Option<String>> = parts
            .iter()
            .map(|p| p.as_deref().and_then(normalize))
            .collect();
        let text = normalized
            .iter()
            .map(|p| p.as_deref().unwrap_or(NULL_PART))
            .collect::<Vec<_>>()
            .join(SEPARATOR);
        (sha256(&text), normalized.iter().any(Option::is_some))
    }

    proptest::proptest! {
        #[test]
        fn streamed_hashes_equal_the_joined_text(
            parts in proptest::collection::vec(
                proptest::option::of("( |a|Z|é|ß|ǆ|😀|\\||\\^|[0-9]){0,200}"),
                1..5,
            )
        ) {
            let (expected, any) = by_text(&parts);
            let refs = || parts.iter().map(Option::as_deref);
            proptest::prop_assert_eq!(hashdiff(refs()), expected);
            let ambiguous = parts.iter().flatten().any(|p| check_part(p).is_err());
            match hash_key_multi(refs()) {
                Ok(hk) => proptest::prop_assert!(any && !ambiguous && hk == expected),
                Err(KeyError::Empty) => proptest::prop_assert!(!any && !ambiguous),
                Err(KeyError::Ambiguous(_)) => proptest::prop_assert!(ambiguous),
            }
            if let [Some(one)] = parts.as_slice() {
                let single = normalize(one).map(|n| sha256(&n)).ok_or(KeyError::Empty);
                proptest::prop_assert_eq!(hash_key(one), single);
            }
        }
    }
}
