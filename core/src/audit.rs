//! The audit log's hash chain.
//!
//! Each entry's hash is the SHA-256 of an unambiguous encoding of its fields
//! followed by the previous entry's hash. Fields are length-prefixed (a NULL
//! is encoded differently from an empty string), so no two different entries
//! share an encoding. Changing, removing or reordering any entry breaks every
//! link after it; [`verify_chain`] reports the first broken one.

use sha2::{Digest, Sha256};

/// The `prev_hash` of the very first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex SHA-256 over length-prefixed fields. `None` is SQL NULL.
pub fn digest(fields: &[Option<&str>]) -> String {
    let mut h = Sha256::new();
    h.update(b"pg_tenancy.audit.v1");
    h.update((fields.len() as u64).to_be_bytes());
    for f in fields {
        match f {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// One stored entry as the verifier sees it: sequence number, the content
/// fields (without hashes), the stored previous hash and the stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub fields: Vec<Option<String>>,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash an entry must carry: its fields, then `prev_hash`.
pub fn entry_hash(seq: i64, fields: &[Option<String>], prev_hash: &str) -> String {
    let seq = seq.to_string();
    let mut all: Vec<Option<&str>> = Vec::with_capacity(fields.len() + 2);
    all.push(Some(&seq));
    all.extend(fields.iter().map(|f| f.as_deref()));
    all.push(Some(prev_hash));
    digest(&all)
}

/// What is wrong with the first broken link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// A sequence number is missing (an entry was deleted) or repeated.
    Gap { expected: i64, found: i64 },
    /// The entry's `prev_hash` is not the previous entry's hash.
    Link { seq: i64 },
    /// The entry's content no longer matches its hash (it was edited).
    Content { seq: i64 },
}

/// Verify a chain given in sequence order starting at seq 1.
pub fn verify_chain<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<usize, Break> {
    let mut prev = GENESIS.to_string();
    let mut n = 0usize;
    for (i, e) in entries.into_iter().enumerate() {
        let expected = i as i64 + 1;
        if e.seq != expected {
            return Err(Break::Gap {
                expected,
                found: e.seq,
            });
        }
        if e.prev_hash != prev {
            return Err(Break::Link { seq: e.seq });
        }
        if entry_hash(e.seq, &e.fields, &e.prev_hash) != e.hash {
            return Err(Break::Content { seq: e.seq });
        }
        prev = e.hash.clone();
        n += 1;
    }
    Ok(n)
}

/// `text` with control characters (newlines, carriage returns, terminal
/// escape sequences) written as Rust-style escapes (`\n`, `\u{1b}`): a
/// server-log line built from role and table names stays one line, so a
/// name cannot add lines that look like pg_tenancy's own.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chain(contents: &[Vec<Option<String>>]) -> Vec<Entry> {
        let mut prev = GENESIS.to_string();
        let mut out = Vec::new();
        for (i, fields) in contents.iter().enumerate() {
            let seq = i as i64 + 1;
            let hash = entry_hash(seq, fields, &prev);
            out.push(Entry {
                seq,
                fields: fields.clone(),
                prev_hash: prev.clone(),
                hash: hash.clone(),
            });
            prev = hash;
        }
        out
    }

    #[test]
    fn null_and_empty_differ_and_boundaries_matter() {
        assert_ne!(digest(&[None]), digest(&[Some("")]));
        assert_ne!(
            digest(&[Some("ab"), Some("c")]),
            digest(&[Some("a"), Some("bc")])
        );
        assert_eq!(digest(&[Some("x")]).len(), 64);
    }

    #[test]
    fn known_vector_is_stable() {
        // Pinned (computed independently with Python's hashlib) so that a
        // change of encoding, which would break every stored chain, cannot
        // go unnoticed.
        assert_eq!(
            entry_hash(1, &[Some("create_tenant".into()), None], GENESIS),
            "713bdbb2c147a9011cd7755abb34fd9c0d08825e83e16f83206e151d8b1e6923"
        );
    }

    proptest! {
        #[test]
        fn intact_chain_verifies_and_any_tamper_is_found(
            contents in prop::collection::vec(prop::collection::vec(prop::option::of("[a-z]{0,6}"), 1..4), 1..12),
            victim in any::<prop::sample::Index>(),
            kind in 0u8..3,
        ) {
            let mut c = chain(&contents);
            prop_assert_eq!(verify_chain(&c), Ok(c.len()));
            let i = victim.index(c.len());
            match kind {
                0 => { // edit content
                    c[i].fields.push(Some("tampered".into()));
                    prop_assert_eq!(verify_chain(&c), Err(Break::Content { seq: i as i64 + 1 }));
                }
                1 => { // delete an entry
                    c.remove(i);
                    if i < c.len() {
                        prop_assert_eq!(verify_chain(&c), Err(Break::Gap { expected: i as i64 + 1, found: i as i64 + 2 }));
                    } else {
                        prop_assert_eq!(verify_chain(&c), Ok(c.len()));
                    }
                }
                _ => { // rewrite an entry and its hash consistently: next link breaks
                    c[i].fields.push(Some("forged".into()));
                    c[i].hash = entry_hash(c[i].seq, &c[i].fields, &c[i].prev_hash);
                    if i + 1 < c.len() {
                        prop_assert_eq!(verify_chain(&c), Err(Break::Link { seq: i as i64 + 2 }));
                    }
                }
            }
        }
    }

    #[test]
    fn escape_controls_keeps_one_line() {
        let name = "ops\nLOG:  pg_tenancy super-admin access: forged\r\u{1b}[2J";
        let out = escape_controls(name);
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert_eq!(
            out,
            "ops\\nLOG:  pg_tenancy super-admin access: forged\\r\\u{1b}[2J"
        );
        assert_eq!(
            escape_controls("esg.\"Data Points\" by ü"),
            "esg.\"Data Points\" by ü"
        );
    }

    proptest::proptest! {
        #[test]
        fn escape_controls_never_leaves_a_control(s in ".*") {
            let out = escape_controls(&s);
            proptest::prop_assert!(!out.chars().any(char::is_control));
            if !s.chars().any(char::is_control) {
                proptest::prop_assert_eq!(out, s);
            }
        }
    }
}
