//! Tenant slug rules.
//!
//! A slug is the human handle of a tenant (`acme`, `acme-europe`): 2 to 63
//! characters of lowercase ASCII letters, digits and hyphens, starting and
//! ending with a letter or digit, with no doubled hyphen. A slug can never
//! look like a UUID, so `tenancy.resolve(text)` is never ambiguous.

use std::fmt;

/// Why a slug is rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlugError {
    Length(usize),
    Character(char),
    Edge,
    DoubleHyphen,
    LooksLikeUuid,
}

impl fmt::Display for SlugError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlugError::Length(n) => write!(f, "must be 2 to 63 characters long, not {n}"),
            SlugError::Character(c) => write!(
                f,
                "may contain only lowercase letters a-z, digits and hyphens, not {c:?}"
            ),
            SlugError::Edge => write!(f, "must start and end with a letter or digit"),
            SlugError::DoubleHyphen => write!(f, "must not contain two hyphens in a row"),
            SlugError::LooksLikeUuid => write!(f, "must not have the form of a UUID"),
        }
    }
}

/// Check a slug; `Ok(())` when it is valid.
pub fn validate(slug: &str) -> Result<(), SlugError> {
    let n = slug.chars().count();
    if !(2..=63).contains(&n) {
        return Err(SlugError::Length(n));
    }
    if let Some(c) = slug
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(SlugError::Character(c));
    }
    if slug.starts_with('-') || slug.ends_with('-') {
        return Err(SlugError::Edge);
    }
    if slug.contains("--") {
        return Err(SlugError::DoubleHyphen);
    }
    if parse_uuid(slug).is_some() {
        return Err(SlugError::LooksLikeUuid);
    }
    Ok(())
}

/// Parse a UUID exactly as PostgreSQL's `uuid` input does: 32 hex digits
/// (either case), a hyphen allowed after any group of four except the
/// last (`8-4-4-4-12` is only the usual spelling: `a0eebc999c0b4ef8-bb6d…`
/// is a UUID too), the whole optionally in braces; surrounding white space
/// is ignored. Returns the 16 bytes. Every text that `'…'::uuid` accepts
/// is accepted, so a slug can never be read as some tenant's id.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let t = text.trim();
    let t = match t.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}')?,
        None => t,
    };
    let b = t.as_bytes();
    let mut out = [0u8; 16];
    let mut pos = 0;
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = b.get(pos..pos + 2)?;
        let hex = std::str::from_utf8(pair).ok()?;
        if !pair.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        *byte = u8::from_str_radix(hex, 16).ok()?;
        pos += 2;
        if i % 2 == 1 && i < 15 && b.get(pos) == Some(&b'-') {
            pos += 1;
        }
    }
    (pos == b.len()).then_some(out)
}

/// What a tenant reference given as text is: a UUID, a slug, or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantRef {
    Id([u8; 16]),
    Slug(String),
}

/// Classify a tenant reference (`uuid` or slug).
pub fn classify(text: &str) -> Result<TenantRef, SlugError> {
    if let Some(id) = parse_uuid(text) {
        return Ok(TenantRef::Id(id));
    }
    validate(text).map(|_| TenantRef::Slug(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_good_slugs() {
        for s in ["acme", "acme-europe", "a1", "x9-y", "0k"] {
            assert_eq!(validate(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn rejects_bad_slugs_with_reason() {
        assert_eq!(validate("a"), Err(SlugError::Length(1)));
        assert_eq!(validate(&"a".repeat(64)), Err(SlugError::Length(64)));
        assert_eq!(validate("Acme"), Err(SlugError::Character('A')));
        assert_eq!(validate("acme!"), Err(SlugError::Character('!')));
        assert_eq!(validate("ac me"), Err(SlugError::Character(' ')));
        assert_eq!(validate("-acme"), Err(SlugError::Edge));
        assert_eq!(validate("acme-"), Err(SlugError::Edge));
        assert_eq!(validate("ac--me"), Err(SlugError::DoubleHyphen));
        assert_eq!(
            validate("0e4e5e6e-0000-4000-8000-000000000000"),
            Err(SlugError::LooksLikeUuid)
        );
        assert_eq!(validate("été"), Err(SlugError::Character('é')));
    }

    #[test]
    fn parses_uuid_forms() {
        let u = "123E4567-e89b-12d3-a456-426614174000";
        assert!(parse_uuid(u).is_some());
        assert!(parse_uuid("{123e4567-e89b-12d3-a456-426614174000}").is_some());
        assert!(parse_uuid("123e4567e89b12d3a456426614174000").is_some());
        assert!(parse_uuid("123e4567-e89b-12d3-a456-42661417400g").is_none());
        assert!(parse_uuid("123e4567-e89b12d3-a456-4266141740000").is_none());
        // PostgreSQL takes a hyphen after any group of four hex digits: every
        // such spelling is a UUID, never a slug (a tenant signing up with a
        // victim's id minus a hyphen must not get a slug that other code
        // reads as that id)
        for u in [
            "123e4567e89b-12d3-a456-426614174000",
            "123e-4567-e89b-12d3-a456-4266-1417-4000",
            "123e4567-e89b-12d3-a456426614174000",
            "{123e4567e89b12d3a456426614174000}",
        ] {
            assert_eq!(
                parse_uuid(u),
                parse_uuid("123e4567-e89b-12d3-a456-426614174000"),
                "{u}"
            );
            assert!(validate(u).is_err(), "{u}");
        }
        for not in [
            "123e4567-e89b-12d3-a456-426614174000-",
            "-123e4567-e89b-12d3-a456-426614174000",
            "123e4567--e89b-12d3-a456-426614174000",
            "12-3e4567-e89b-12d3-a456-426614174000",
            "{123e4567-e89b-12d3-a456-426614174000",
            "123e4567-e89b-12d3-a456-426614174000}",
            "123e4567-e89b-12d3-a456-42661417400",
        ] {
            assert!(parse_uuid(not).is_none(), "{not}");
        }
        assert_eq!(classify("acme"), Ok(TenantRef::Slug("acme".into())));
        assert!(matches!(classify(u), Ok(TenantRef::Id(_))));
        assert!(classify("Not A Slug").is_err());
    }

    proptest! {
        #[test]
        fn valid_slugs_match_the_documented_grammar(s in "[a-z0-9-]{0,70}") {
            let ok = validate(&s).is_ok();
            let grammar = s.len() >= 2 && s.len() <= 63
                && !s.starts_with('-') && !s.ends_with('-') && !s.contains("--")
                && parse_uuid(&s).is_none();
            prop_assert_eq!(ok, grammar);
        }

        #[test]
        fn a_uuid_with_hyphens_after_any_groups_is_never_a_slug(
            bytes in proptest::array::uniform16(any::<u8>()),
            hyphens in proptest::collection::vec(any::<bool>(), 7),
        ) {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut text = String::new();
            for (i, group) in hex.as_bytes().chunks(4).enumerate() {
                text.push_str(std::str::from_utf8(group).unwrap());
                if i < 7 && hyphens[i] {
                    text.push('-');
                }
            }
            prop_assert_eq!(parse_uuid(&text), Some(bytes));
            prop_assert_eq!(validate(&text), Err(SlugError::LooksLikeUuid));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
            let _ = validate(&s);
            let _ = classify(&s);
        }
    }
}
