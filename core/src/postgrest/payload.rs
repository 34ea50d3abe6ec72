//! The JSON body of an insert (`POST`) or `PUT`, checked the way PostgREST
//! checks it, without building it in memory.
//!
//! PostgREST binds the body as sent (`json_populate_recordset($1::json)`);
//! the proxy only needs to know its shape: an object or an array of objects,
//! how many, and their keys (the columns, and for `missing=default` which
//! object has which). [`scan`] reads the text once with serde, skipping every
//! value ([`IgnoredAny`]), so a 60 MB bulk insert costs about its own size
//! in memory instead of a document tree many times larger. The text bound
//! is the body itself ([`Shape::array_text`]): numbers, strings and
//! repeated keys reach PostgreSQL exactly as the client wrote them.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// What a body is, by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// The body is an array (else one object).
    pub is_array: bool,
    /// Objects in the body (1 for an object body).
    pub rows: usize,
    /// The keys of the first object, sorted, each once (none: empty array).
    pub first_keys: Vec<String>,
    /// Every key of every object, in order of first appearance (each
    /// object's keys taken sorted).
    pub all_keys: Vec<String>,
    /// Whether every object has the same set of keys as the first.
    pub keys_match: bool,
    /// Each object's keys (sorted, each once) when asked for (`keep_keys`).
    pub row_keys: Option<Vec<Vec<String>>>,
}

/// Why a body is refused (PostgREST's messages, PGRST102).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// Empty or not JSON.
    Invalid,
    /// A JSON value other than an object or an array.
    NotObjectOrArray,
    /// An array element that is not an object.
    ElementNotObject,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`]: PostgreSQL's
    /// JSON parser would run out of stack (500 54001) on it.
    TooDeep,
}

/// How deep arrays and objects may nest in an insert body. PostgreSQL's own
/// limit is its stack (`max_stack_depth`), a few thousand levels.
pub const MAX_DEPTH: usize = 1000;

/// Whether arrays and objects in the JSON text nest deeper than `max`
/// (strings skipped; the text is not otherwise checked here).
fn nests_deeper_than(body: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    for b in body.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

impl PayloadError {
    /// PostgREST's message for the error.
    pub fn message(&self) -> &'static str {
        match self {
            PayloadError::Invalid => "Empty or invalid json",
            PayloadError::NotObjectOrArray => {
                "The request body must be a JSON object or an array of objects"
            }
            // PostgREST's wording: an element that is not an object has
            // no keys to match the first's
            PayloadError::ElementNotObject => "All object keys must match",
            PayloadError::TooDeep => {
                "The JSON body nests arrays and objects more than 1000 levels deep"
            }
        }
    }
}

/// Read `body`'s shape. `first_only`: only the first element of an array
/// counts (PUT); the rest must still be objects. `keep_keys`: keep each
/// object's keys (`missing=default`, where absent keys take defaults).
pub fn scan(body: &str, first_only: bool, keep_keys: bool) -> Result<Shape, PayloadError> {
    if nests_deeper_than(body, MAX_DEPTH) {
        return Err(PayloadError::TooDeep);
    }
    let mut de = serde_json::Deserializer::from_str(body);
    let shape = de
        .deserialize_any(TopVisitor {
            first_only,
            keep_keys,
        })
        .map_err(|e| match classify(&e) {
            // a document that is not JSON at all is refused as such, even
            // when a bad element comes before the syntax error
            _ if serde_json::from_str::<IgnoredAny>(body).is_err() => PayloadError::Invalid,
            kind => kind,
        })?;
    de.end().map_err(|_| PayloadError::Invalid)?;
    Ok(shape)
}

impl Shape {
    /// The text to bind as the JSON array of rows: the body itself when it
    /// is an array of which every element counts; else the object (or the
    /// first element, `first_only`) in brackets.
    pub fn array_text(&self, body: &str, first_only: bool) -> String {
        if self.is_array && !(first_only && self.rows > 1) {
            return body.to_string();
        }
        let one = if self.is_array {
            first_element(body).unwrap_or("")
        } else {
            body.trim()
        };
        format!("[{one}]")
    }
}

/// The first element of a JSON array text, as written.
pub fn first_element(body: &str) -> Option<&str> {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(body).ok()?;
    items.first().map(|r| r.get())
}

/// A serde error caused by our own visitors (not by the JSON's syntax).
const NOT_OBJECT_OR_ARRAY: &str = "tenancy: not an object or array";
const ELEMENT_NOT_OBJECT: &str = "tenancy: element not an object";

fn classify(e: &serde_json::Error) -> PayloadError {
    let text = e.to_string();
    if text.starts_with(NOT_OBJECT_OR_ARRAY) {
        PayloadError::NotObjectOrArray
    } else if text.starts_with(ELEMENT_NOT_OBJECT) {
        PayloadError::ElementNotObject
    } else {
        PayloadError::Invalid
    }
}

struct TopVisitor {
    first_only: bool,
    keep_keys: bool,
}

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
        let keys = object_keys(map)?;
        Ok(Shape {
            is_array: false,
            rows: 1,
            first_keys: keys.clone(),
            all_keys: keys.clone(),
            keys_match: true,
            row_keys: self.keep_keys.then(|| vec![keys]),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut shape = Shape {
            is_array: true,
            rows: 0,
            first_keys: Vec::new(),
            all_keys: Vec::new(),
            keys_match: true,
            row_keys: self.keep_keys.then(Vec::new),
        };
        if self.first_only {
            if let Some(keys) = seq.next_element_seed(ElementSeed)? {
                shape.rows = 1;
                shape.first_keys = keys.clone();
                shape.all_keys = keys.clone();
                if let Some(r) = &mut shape.row_keys {
                    r.push(keys);
                }
                // the rest is ignored, but must be objects
                while seq.next_element_seed(ElementSeed)?.is_some() {
                    shape.rows += 1;
                }
            }
            return Ok(shape);
        }
        // the keys seen so far, for a linear scan however many distinct
        // keys the objects have (all_keys keeps their first-seen order)
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        while let Some(keys) = seq.next_element_seed(ElementSeed)? {
            if shape.rows == 0 {
                shape.first_keys = keys.clone();
            } else if keys != shape.first_keys {
                shape.keys_match = false;
            }
            for k in &keys {
                if !seen.contains(k) {
                    seen.insert(k.clone());
                    shape.all_keys.push(k.clone());
                }
            }
            shape.rows += 1;
            if let Some(r) = &mut shape.row_keys {
                r.push(keys);
            }
        }
        Ok(shape)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
        Err(E::custom(NOT_OBJECT_OR_ARRAY))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
        Err(E::custom(NOT_OBJECT_OR_ARRAY))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
        Err(E::custom(NOT_OBJECT_OR_ARRAY))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
        Err(E::custom(NOT_OBJECT_OR_ARRAY))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
        Err(E::custom(NOT_OBJECT_OR_ARRAY))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Err(E::custom(NOT_OBJECT_OR_ARRAY))
    }
}

/// One array element: its keys if it is an object.
struct ElementSeed;

impl<'de> DeserializeSeed<'de> for ElementSeed {
    type Value = Vec<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(ElementVisitor)
    }
}

struct ElementVisitor;

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<String>, A::Error> {
        object_keys(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Vec<String>, A::Error> {
        Err(de::Error::custom(ELEMENT_NOT_OBJECT))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Vec<String>, E> {
        Err(E::custom(ELEMENT_NOT_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Vec<String>, E> {
        Err(E::custom(ELEMENT_NOT_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Vec<String>, E> {
        Err(E::custom(ELEMENT_NOT_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Vec<String>, E> {
        Err(E::custom(ELEMENT_NOT_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Vec<String>, E> {
        Err(E::custom(ELEMENT_NOT_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
        Err(E::custom(ELEMENT_NOT_OBJECT))
    }
}

/// A key, borrowed from the body unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// An object's keys, sorted, each once; its values skipped.
fn object_keys<'de, A: MapAccess<'de>>(mut map: A) -> Result<Vec<String>, A::Error> {
    let mut keys: Vec<Cow<'de, str>> = Vec::new();
    while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
        map.next_value::<IgnoredAny>()?;
        keys.push(k);
    }
    keys.sort_unstable();
    keys.dedup();
    Ok(keys.into_iter().map(Cow::into_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn many_distinct_keys_scan_in_linear_time() {
        // 100k objects, each with a key of its own: first-seen order, and
        // no quadratic search (was ~5e9 comparisons, seconds to minutes)
        let n = 100_000;
        let body = format!(
            "[{}]",
            (0..n)
                .map(|i| format!("{{\"k{i}\":1}}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let t = std::time::Instant::now();
        let s = scan(&body, false, false).unwrap();
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(s.all_keys.len(), n);
        assert_eq!(s.all_keys[..3], ["k0", "k1", "k2"]);
        assert!(!s.keys_match);
    }

    #[test]
    fn objects_and_arrays() {
        let s = scan(r#"{"b": 1, "a": [1, {"x": 2}], "b": 3}"#, false, true).unwrap();
        assert!(!s.is_array);
        assert_eq!(s.rows, 1);
        assert_eq!(s.first_keys, ["a", "b"]);
        assert_eq!(
            s.row_keys,
            Some(vec![vec!["a".to_string(), "b".to_string()]])
        );
        let s = scan(r#"[{"a":1,"b":2},{"b":null,"a":"x"}]"#, false, false).unwrap();
        assert!(s.is_array && s.keys_match);
        assert_eq!((s.rows, s.row_keys), (2, None));
        let s = scan(r#"[{"a":1},{"b":2,"a":1}]"#, false, true).unwrap();
        assert!(!s.keys_match);
        assert_eq!(s.all_keys, ["a", "b"]);
        assert_eq!(
            s.row_keys.unwrap(),
            vec![
                vec!["a".to_string()],
                vec!["a".to_string(), "b".to_string()]
            ]
        );
        let s = scan("[]", false, false).unwrap();
        assert_eq!((s.is_array, s.rows, s.first_keys.len()), (true, 0, 0));
        // escaped keys are unescaped
        let s = scan(r#"{"a\"b": 1, "\u0063": 2}"#, false, false).unwrap();
        assert_eq!(s.first_keys, ["a\"b", "c"]);
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "  ",
            "{",
            "[1,",
            r#"{"a":1} x"#,
            "nul",
            r#"{"a":1}{"a":2}"#,
        ] {
            assert_eq!(
                scan(bad, false, false),
                Err(PayloadError::Invalid),
                "{bad:?}"
            );
        }
        for bad in ["1", "\"x\"", "null", "true", "-2.5"] {
            assert_eq!(
                scan(bad, false, false),
                Err(PayloadError::NotObjectOrArray),
                "{bad:?}"
            );
        }
        for bad in [r#"[{"a":1}, 2]"#, "[[]]", "[null]", r#"[{"a":1}, "x"]"#] {
            assert_eq!(
                scan(bad, false, false),
                Err(PayloadError::ElementNotObject),
                "{bad:?}"
            );
        }
        // a document that is not JSON is that, whatever comes first
        assert_eq!(scan("[1, {", false, false), Err(PayloadError::Invalid));
        assert_eq!(scan("3 4", false, false), Err(PayloadError::Invalid));
        // PUT: the keys of elements after the first do not count
        let s = scan(r#"[{"id":1}, {"x": 2}, {}]"#, true, false).unwrap();
        assert_eq!((s.rows, s.first_keys.clone()), (3, vec!["id".to_string()]));
        assert!(s.keys_match);
        assert_eq!(
            scan(r#"[{"id":1}, 2]"#, true, false),
            Err(PayloadError::ElementNotObject)
        );
        assert_eq!(
            scan(r#"[{"id":1}, 2,"#, true, false),
            Err(PayloadError::Invalid)
        );
        assert_eq!(
            scan("[2]", true, false),
            Err(PayloadError::ElementNotObject)
        );
        // nesting: up to MAX_DEPTH levels (the body's own brackets count),
        // brackets inside strings do not
        let nested = |levels: usize| {
            format!(
                r#"{{"a": "[[{{", "b": {}1{}}}"#,
                "[".repeat(levels - 1),
                "]".repeat(levels - 1)
            )
        };
        assert!(scan(&nested(MAX_DEPTH), false, false).is_ok());
        assert_eq!(
            scan(&nested(MAX_DEPTH + 1), false, false),
            Err(PayloadError::TooDeep)
        );
        assert_eq!(
            scan(&"[".repeat(200_000), false, false),
            Err(PayloadError::TooDeep)
        );
        assert!(scan(
            &format!(r#"{{"s": "{}"}}"#, "[\\\"".repeat(5000)),
            false,
            false
        )
        .is_ok());
    }

    #[test]
    fn array_text_is_the_body() {
        let body = r#" [ {"a": 1e400, "a": "dup"} ] "#;
        let s = scan(body, false, false).unwrap();
        assert_eq!(s.array_text(body, false), body);
        let body = r#"{"a": 1}"#;
        assert_eq!(
            scan(body, false, false).unwrap().array_text(body, false),
            r#"[{"a": 1}]"#
        );
        let body = r#"[{"id": 1}, {"id": 2}]"#;
        assert_eq!(
            scan(body, true, false).unwrap().array_text(body, true),
            r#"[{"id": 1}]"#
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-z\"\\\\é]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-d\"]{1,2}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The scan agrees with a full parse: shape, keys, row count, and
        /// what is refused.
        #[test]
        fn agrees_with_a_full_parse(v in json_value()) {
            let text = v.to_string();
            let got = scan(&text, false, true);
            let keys = |o: &Value| -> Vec<String> {
                o.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
            };
            match &v {
                Value::Object(_) => {
                    let s = got.unwrap();
                    prop_assert_eq!(s.first_keys, keys(&v));
                    prop_assert_eq!(s.rows, 1);
                }
                Value::Array(a) if a.iter().all(Value::is_object) => {
                    let s = got.unwrap();
                    prop_assert_eq!(s.rows, a.len());
                    let first = a.first().map(keys).unwrap_or_default();
                    prop_assert_eq!(s.keys_match, a.iter().all(|o| keys(o) == first));
                    prop_assert_eq!(s.first_keys, first);
                    prop_assert_eq!(s.row_keys.unwrap(), a.iter().map(keys).collect::<Vec<_>>());
                }
                Value::Array(_) => prop_assert_eq!(got, Err(PayloadError::ElementNotObject)),
                _ => prop_assert_eq!(got, Err(PayloadError::NotObjectOrArray)),
            }
        }
    }
}
