//! "Perhaps you meant …" suggestions, with the fuzzy matching PostgREST uses
//! for its error hints (the `fuzzyset` algorithm of fuzzyset.js): candidates
//! scored by the cosine similarity of their 3-grams (then 2-grams when no
//! 3-gram is shared) over lowercased letters, digits, spaces and commas,
//! the 50 best re-scored as `1 - levenshtein / longer length`, and those
//! scoring at least 0.33 kept, best first. An exact (case-insensitive)
//! match scores 1.

use std::collections::HashMap;

/// Scores below this are no suggestion (fuzzyset's default).
const MIN_SCORE: f64 = 0.33;

/// Longer names get no suggestion.
const MAX_QUERY_CHARS: usize = 256;

fn normalized(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || *c == ',')
        .collect()
}

/// The `size`-grams of `-value-` (padded with `-` to at least `size`).
fn gram_counts(lower: &str, size: usize) -> HashMap<String, usize> {
    let mut chars: Vec<char> = Vec::with_capacity(lower.len() + 2);
    chars.push('-');
    chars.extend(normalized(lower).chars());
    chars.push('-');
    while chars.len() < size {
        chars.push('-');
    }
    let mut counts = HashMap::new();
    for w in chars.windows(size) {
        *counts.entry(w.iter().collect::<String>()).or_insert(0) += 1;
    }
    counts
}

fn norm(counts: &HashMap<String, usize>) -> f64 {
    (counts.values().map(|c| (c * c) as f64).sum::<f64>()).sqrt()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn similarity(a: &str, b: &str) -> f64 {
    let longer = a.chars().count().max(b.chars().count());
    if longer == 0 {
        return 1.0;
    }
    1.0 - levenshtein(a, b) as f64 / longer as f64
}

/// Every candidate close enough to `query`, with its score, best first.
pub fn matches<'c>(candidates: &[&'c str], query: &str) -> Vec<(f64, &'c str)> {
    // a hint is for a mistyped name, not for whatever a client sends: past
    // this length none is computed (the Levenshtein pass is quadratic)
    if query.chars().count() > MAX_QUERY_CHARS {
        return Vec::new();
    }
    let key = query.to_lowercase();
    // distinct candidates by their lowercase form (the first spelling wins)
    let mut items: Vec<(&'c str, String)> = Vec::new();
    for c in candidates {
        let lower = c.to_lowercase();
        if !items.iter().any(|(_, l)| *l == lower) {
            items.push((c, lower));
        }
    }
    if let Some((c, _)) = items.iter().find(|(_, l)| *l == key) {
        return vec![(1.0, *c)];
    }
    for size in [3, 2] {
        let q = gram_counts(&key, size);
        let qn = norm(&q);
        let mut scored: Vec<(f64, usize)> = Vec::new();
        for (i, (_, lower)) in items.iter().enumerate() {
            let g = gram_counts(lower, size);
            let dot: usize = q
                .iter()
                .filter_map(|(gram, n)| g.get(gram).map(|m| n * m))
                .sum();
            if dot > 0 {
                scored.push((dot as f64 / (qn * norm(&g)), i));
            }
        }
        if scored.is_empty() {
            continue;
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.truncate(50);
        let mut rescored: Vec<(f64, usize)> = scored
            .into_iter()
            .map(|(_, i)| (similarity(&items[i].1, &key), i))
            .collect();
        rescored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let kept: Vec<(f64, &'c str)> = rescored
            .into_iter()
            .filter(|(s, _)| *s >= MIN_SCORE)
            .map(|(s, i)| (s, items[i].0))
            .collect();
        if !kept.is_empty() {
            return kept;
        }
    }
    Vec::new()
}

/// The closest candidate to `query`, if any is close enough.
pub fn best_match<'c>(candidates: &[&'c str], query: &str) -> Option<&'c str> {
    matches(candidates, query).first().map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The function names of postgrest-js's test database that PostgREST
    /// keeps in its schema cache.
    const FUNCTIONS: &[&str] = &[
        "get_status",
        "get_username_and_status",
        "offline_user",
        "set_users_offline",
        "void_func",
        "function_with_optional_param",
        "function_with_array_param",
        "get_user_profile",
        "get_user_profile_non_nullable",
        "get_messages",
        "get_messages_by_username",
        "get_user_messages",
        "get_active_user_messages",
        "get_recent_messages_by_username",
        "get_user_recent_messages",
        "get_user_first_message",
        "postgrest_unresolvable_function",
        "postgrest_resolvable_with_override_function",
        "polymorphic_function_with_different_return",
        "polymorphic_function_with_no_params_or_unnamed",
        "polymorphic_function_with_unnamed_json",
        "polymorphic_function_with_unnamed_jsonb",
        "polymorphic_function_with_unnamed_text",
        "polymorphic_function_with_unnamed_default",
        "polymorphic_function_with_unnamed_default_overload",
        "function_returning_row",
        "function_returning_single_row",
        "function_returning_set_of_rows",
    ];

    #[test]
    fn suggestions_postgrest_gives() {
        // the hints PostgREST answers postgrest-js's own test suite with
        assert_eq!(best_match(FUNCTIONS, "blurb_message"), Some("get_messages"));
        assert_eq!(
            best_match(FUNCTIONS, "polymorphic_function_with_unnamed_integer"),
            Some("polymorphic_function_with_unnamed_text")
        );
        // nothing close: no hint (PGRST200's `hint: null` for this pair)
        assert_eq!(
            best_match(&["channel_details", "messages"], "function_returning_row"),
            None
        );
        // exact, whatever the case, scores 1
        assert_eq!(matches(&["Users", "user"], "users"), vec![(1.0, "Users")]);
        assert_eq!(
            best_match(&["messages", "users"], "mesages"),
            Some("messages")
        );
        assert_eq!(best_match(&[], "x"), None);
        assert_eq!(best_match(&["a"], ""), None);
        assert_eq!(best_match(&["messages"], &"messages".repeat(40)), None);
    }

    #[test]
    fn levenshtein_distances() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
        assert_eq!(levenshtein("ü", "u"), 1);
    }

    proptest! {
        #[test]
        fn scores_are_ordered_and_bounded(cands in prop::collection::vec("[a-zA-Z_ ,é-]{0,12}", 0..8), q in "[a-zA-Z_ ,é-]{0,12}") {
            let refs: Vec<&str> = cands.iter().map(String::as_str).collect();
            let m = matches(&refs, &q);
            for w in m.windows(2) {
                prop_assert!(w[0].0 >= w[1].0);
            }
            for (s, c) in &m {
                prop_assert!((MIN_SCORE..=1.0).contains(s));
                prop_assert!(refs.contains(c));
            }
            if refs.iter().any(|c| c.to_lowercase() == q.to_lowercase()) {
                prop_assert_eq!(m.len(), 1);
                prop_assert_eq!(m[0].0, 1.0);
            }
        }
    }
}
