//! A cache of built read statements.
//!
//! Clients repeat the same few reads (a list page, an object by key) with
//! the same query strings over and over. Parsing the query string and
//! building the statement is most of the proxy's own work per request, and
//! its result depends only on what [`ReadKey`] holds: the schema cache load,
//! the resource, the raw query string, the `Range` header and the statement
//! options. The role and the tenant are not in it — they are applied by the
//! database (privileges and row-level security) when the statement runs,
//! and the cached statement carries no values of theirs.
//!
//! Bounded by the bytes of its keys and statements
//! (`TENANCY_STATEMENT_CACHE_BYTES`); least recently used entries go first.
//! A schema reload makes every entry unreachable (the generation changes)
//! and they age out. Only statements that were built are cached: a query
//! string that fails to parse fails again, with the same error, every time.

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use std::sync::Arc;
use tenancy_core::postgrest::sql::{Options, Statement};

/// Everything a read statement is built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReadKey {
    /// [`tenancy_core::postgrest::schema::Schema::generation`].
    pub generation: u64,
    pub schema: String,
    pub table: String,
    /// The request's raw query string.
    pub query: String,
    /// The `Range` header (used when the query string sets no limit/offset).
    pub range: Option<String>,
    pub options: Options,
    /// Whether the statement counts every row (`Prefer: count=exact`).
    pub exact: bool,
}

/// A built read: the statement and the first row's offset (for `Content-Range`).
#[derive(Debug)]
pub struct Read {
    pub statement: Statement,
    pub from: u64,
    /// `Content-Location`: `/table?` and the canonical query string.
    pub location: String,
}

#[derive(Clone)]
struct Bytes;

impl Weighter<ReadKey, Arc<Read>> for Bytes {
    fn weight(&self, k: &ReadKey, v: &Arc<Read>) -> u64 {
        let s = &v.statement;
        let params: usize = s.params.iter().flatten().map(|p| p.len() + 24).sum();
        (k.schema.len()
            + k.table.len()
            + k.query.len()
            + k.range.as_ref().map_or(0, String::len)
            + s.sql.len()
            + s.count_query.as_ref().map_or(0, String::len)
            + params
            + 256) as u64
    }
}

/// The cache; `None` inside when disabled (capacity 0).
pub struct Statements {
    reads: Option<Cache<ReadKey, Arc<Read>, Bytes>>,
    // registered once: no registry lookup per request
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl Statements {
    /// A cache of at most `bytes` (0 = no cache). Create it after the
    /// metrics recorder is installed.
    pub fn new(bytes: u64) -> Statements {
        let reads = (bytes > 0).then(|| {
            // a typical entry is about 1 kB
            let items = (bytes / 1024).clamp(16, 1 << 20) as usize;
            Cache::with_weighter(items, bytes, Bytes)
        });
        Statements {
            reads,
            hits: metrics::counter!("tenancy_proxy_statement_cache_hits_total"),
            misses: metrics::counter!("tenancy_proxy_statement_cache_misses_total"),
        }
    }

    /// The cached read for `key`, or the one `build` makes (kept when it
    /// succeeds).
    pub fn read<E>(
        &self,
        key: ReadKey,
        build: impl FnOnce() -> Result<Read, E>,
    ) -> Result<Arc<Read>, E> {
        let Some(cache) = &self.reads else {
            return build().map(Arc::new);
        };
        if let Some(r) = cache.get(&key) {
            self.hits.increment(1);
            return Ok(r);
        }
        self.misses.increment(1);
        let r = Arc::new(build()?);
        cache.insert(key, r.clone());
        Ok(r)
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.reads.as_ref().map_or(0, Cache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: &str) -> ReadKey {
        ReadKey {
            generation: 1,
            schema: "esg".into(),
            table: "t".into(),
            query: q.into(),
            range: None,
            options: Options::default(),
            exact: false,
        }
    }

    fn read(sql: &str) -> Read {
        Read {
            statement: Statement {
                sql: sql.into(),
                params: vec![Some("1".into())],
                count_query: None,
            },
            from: 0,
            location: "/t".into(),
        }
    }

    #[test]
    fn builds_once_per_key() {
        let c = Statements::new(1 << 20);
        let mut built = 0;
        for _ in 0..3 {
            let r = c
                .read(key("id=eq.1"), || {
                    built += 1;
                    Ok::<_, ()>(read("A"))
                })
                .unwrap();
            assert_eq!(r.statement.sql, "A");
        }
        assert_eq!(built, 1);
        // any part of the key differing is another statement
        let mut k = key("id=eq.1");
        k.generation = 2;
        let r = c.read(k, || Ok::<_, ()>(read("B"))).unwrap();
        assert_eq!(r.statement.sql, "B");
        let mut k = key("id=eq.1");
        k.options.csv = true;
        let r = c.read(k, || Ok::<_, ()>(read("C"))).unwrap();
        assert_eq!(r.statement.sql, "C");
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn errors_are_not_cached() {
        let c = Statements::new(1 << 20);
        assert_eq!(
            c.read(key("x"), || Err::<Read, _>("bad")).unwrap_err(),
            "bad"
        );
        assert!(c.is_empty());
        let r = c.read(key("x"), || Ok::<_, &str>(read("ok"))).unwrap();
        assert_eq!(r.statement.sql, "ok");
    }

    #[test]
    fn disabled_and_bounded() {
        let off = Statements::new(0);
        let mut built = 0;
        for _ in 0..2 {
            off.read(key("q"), || {
                built += 1;
                Ok::<_, ()>(read("A"))
            })
            .unwrap();
        }
        assert_eq!(built, 2);
        assert!(off.is_empty());
        // 64 kB holds a few dozen 1 kB statements, not thousands
        let small = Statements::new(64 * 1024);
        let big = "x".repeat(1000);
        for i in 0..2000 {
            small
                .read(key(&format!("id=eq.{i}")), || Ok::<_, ()>(read(&big)))
                .unwrap();
        }
        assert!(small.len() < 100, "{} entries", small.len());
    }
}
