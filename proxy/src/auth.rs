//! JWT verification, PostgREST's way: `jwt-secret` as an HS256 secret, a
//! JSON Web Key or a JWK set (RS/PS/ES/EdDSA/HS algorithms, chosen by the
//! token's `alg` and `kid`), `@file` and `jwt-secret-is-base64`;
//! `exp`/`nbf`/`iat` with 30 s leeway, `jwt-aud`, `jwt-role-claim-key`, and a
//! cache of verified tokens (`jwt-cache-max-lifetime`) so a client reusing
//! its token is not re-verified on every request.

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use quick_cache::sync::Cache;
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tenancy_core::postgrest::claims::{audience_ok, lookup, parse_path, Step};
use tenancy_core::postgrest::ApiError;

/// Who the request runs as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub role: String,
    pub claims: Arc<Json>,
    /// `claims` as JSON text, for `request.jwt.claims`.
    pub claims_text: Arc<str>,
    /// The `tenant_id` claim (uuid or slug), if any.
    pub tenant: Option<String>,
    pub authenticated: bool,
}

impl Identity {
    /// An identity from claims (anonymous, tests, the bench baseline).
    pub fn new(role: &str, claims: Json, tenant: Option<String>, authenticated: bool) -> Identity {
        Identity {
            role: role.to_string(),
            claims_text: claims.to_string().into(),
            claims: Arc::new(claims),
            tenant,
            authenticated,
        }
    }
}

/// Allowed clock skew for exp/nbf/iat, as in PostgREST.
const LEEWAY: u64 = 30;

/// Verified tokens kept at most.
const CACHE_CAPACITY: usize = 10_000;

fn unauthorized(code: &str, message: &str) -> ApiError {
    ApiError::new(401, code, message)
}

/// The kind of key an algorithm needs: a token's `alg` must match the key's
/// family, so an RSA public key is never taken for an HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Family {
    use Algorithm::*;
    match alg {
        HS256 | HS384 | HS512 => Family::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
        ES256 | ES384 => Family::Ec,
        EdDSA => Family::Ed,
    }
}

/// One key tokens may be verified with.
pub struct VerifyKey {
    kid: Option<String>,
    family: Family,
    /// The only algorithm this key verifies, when known (a JWK's `alg`, an
    /// EC key's curve, HS256 for a plain secret).
    alg: Option<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The keys of a `jwt-secret`, and what was skipped in it.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Vec<VerifyKey>,
    /// JWKs left out, with the reason (encryption keys, curves no
    /// verifier here supports, bad components).
    pub skipped: Vec<String>,
}

/// `@path` → the file's contents with one trailing newline dropped, as
/// PostgREST reads `jwt-secret = "@file"`; anything else as given.
pub fn secret_text(value: &str) -> Result<Vec<u8>, String> {
    match value.strip_prefix('@') {
        Some(path) => {
            let mut b =
                std::fs::read(path).map_err(|e| format!("jwt-secret: cannot read {path}: {e}"))?;
            if b.ends_with(b"\n") {
                b.pop();
            }
            Ok(b)
        }
        None => Ok(value.as_bytes().to_vec()),
    }
}

/// `jwt-secret-is-base64`: PostgREST's decoding (surrounding white space
/// ignored, URL-safe `-`/`_`/`.` read as `+`/`/`/`=`).
pub fn decode_base64(secret: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(secret)
        .map_err(|_| "jwt-secret-is-base64: the secret is not text".to_string())?;
    let std: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            '.' => '=',
            c => c,
        })
        .collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(std.as_bytes())
        .map_err(|e| format!("jwt-secret-is-base64: the secret is not valid base64: {e}"))
}

/// The keys in a `jwt-secret` (after `@file` and base64): a JWK set
/// (`{"keys": [...]}`), one JWK, or a passphrase of at least 32 bytes used as
/// an HS256 secret. A value that is JSON but not a usable JWK or set is an
/// error, not a passphrase.
pub fn key_set(secret: &[u8]) -> Result<KeySet, String> {
    let text = std::str::from_utf8(secret).ok().map(str::trim);
    if let Some(t) = text.filter(|t| t.starts_with('{')) {
        let v: Json = serde_json::from_str(t)
            .map_err(|e| format!("jwt-secret looks like JSON but does not parse: {e}"))?;
        let members: Vec<Json> = match v.get("keys") {
            Some(Json::Array(a)) => a.clone(),
            Some(_) => return Err("jwt-secret: \"keys\" of a JWK set must be an array".into()),
            None => vec![v],
        };
        let mut set = KeySet {
            keys: Vec::new(),
            skipped: Vec::new(),
        };
        for (i, m) in members.into_iter().enumerate() {
            let kid = m.get("kid").and_then(Json::as_str).map(str::to_string);
            let name = match &kid {
                Some(k) => format!("key {i} (kid {k:?})"),
                None => format!("key {i}"),
            };
            match jwk_key(m) {
                Ok(k) => set.keys.push(k),
                Err(e) => set.skipped.push(format!("{name}: {e}")),
            }
        }
        if set.keys.is_empty() {
            return Err(format!(
                "jwt-secret: no JWK that can verify signatures ({})",
                set.skipped.join("; ")
            ));
        }
        return Ok(set);
    }
    if secret.len() < 32 {
        return Err("the JWT secret must be at least 32 characters long".into());
    }
    Ok(KeySet {
        keys: vec![VerifyKey {
            kid: None,
            family: Family::Hmac,
            alg: Some(Algorithm::HS256),
            key: DecodingKey::from_secret(secret),
        }],
        skipped: Vec::new(),
    })
}

/// One JWK → a verifying key, or why it cannot be one.
fn jwk_key(v: Json) -> Result<VerifyKey, String> {
    let jwk: Jwk = serde_json::from_value(v).map_err(|e| format!("not a supported JWK: {e}"))?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key (\"use\": \"enc\")".into());
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops
            .iter()
            .any(|o| matches!(o, jsonwebtoken::jwk::KeyOperations::Verify))
        {
            return Err("\"key_ops\" does not include \"verify\"".into());
        }
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(signing_alg(a).ok_or("an encryption algorithm")?),
    };
    let (fam, curve_alg) = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => (Family::Hmac, None),
        AlgorithmParameters::RSA(_) => (Family::Rsa, None),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => (Family::Ec, Some(Algorithm::ES256)),
            EllipticCurve::P384 => (Family::Ec, Some(Algorithm::ES384)),
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => (Family::Ed, Some(Algorithm::EdDSA)),
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
    };
    if let Some(a) = alg {
        if family(a) != fam || curve_alg.is_some_and(|c| c != a) {
            return Err(format!("\"alg\" {a:?} does not fit the key type"));
        }
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("invalid key: {e}"))?;
    Ok(VerifyKey {
        kid: jwk.common.key_id.clone(),
        family: fam,
        alg: alg.or(curve_alg),
        key,
    })
}

/// A JWK `alg` that signs, as a verification algorithm.
fn signing_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    Some(match a {
        K::HS256 => Algorithm::HS256,
        K::HS384 => Algorithm::HS384,
        K::HS512 => Algorithm::HS512,
        K::ES256 => Algorithm::ES256,
        K::ES384 => Algorithm::ES384,
        K::RS256 => Algorithm::RS256,
        K::RS384 => Algorithm::RS384,
        K::RS512 => Algorithm::RS512,
        K::PS256 => Algorithm::PS256,
        K::PS384 => Algorithm::PS384,
        K::PS512 => Algorithm::PS512,
        K::EdDSA => Algorithm::EdDSA,
        K::RSA1_5 | K::RSA_OAEP | K::RSA_OAEP_256 => return None,
    })
}

/// A verified token: the identity and the times it must be re-checked against.
#[derive(Clone)]
struct Verified {
    identity: Identity,
    exp: Option<f64>,
    nbf: Option<f64>,
    at: Instant,
}

/// The verifier: key, audience, role claim path and the cache.
pub struct Jwt {
    keys: Option<KeySet>,
    aud: Option<String>,
    role_path: Vec<Step>,
    anon_role: Option<String>,
    cache: Option<Cache<String, Verified>>,
    max_lifetime: Duration,
}

impl Jwt {
    /// `secret`: `jwt-secret` as configured (see [`key_set`]; `@file` is
    /// read, base64-decoded when `secret_is_base64`); `role_claim_key` in
    /// PostgREST's syntax (`.role`); `cache_secs` 0 disables the cache.
    pub fn new(
        secret: Option<&str>,
        secret_is_base64: bool,
        aud: Option<&str>,
        role_claim_key: &str,
        anon_role: Option<&str>,
        cache_secs: u64,
    ) -> Result<Jwt, String> {
        let keys = match secret {
            None => None,
            Some(s) => {
                let mut bytes = secret_text(s)?;
                if secret_is_base64 {
                    bytes = decode_base64(&bytes)?;
                }
                Some(key_set(&bytes)?)
            }
        };
        Ok(Jwt {
            keys,
            aud: aud.filter(|a| !a.is_empty()).map(str::to_string),
            role_path: parse_path(role_claim_key)?,
            anon_role: anon_role.map(str::to_string),
            cache: (cache_secs > 0).then(|| Cache::new(CACHE_CAPACITY)),
            max_lifetime: Duration::from_secs(cache_secs),
        })
    }

    /// Decide the identity from an `Authorization` header value.
    pub fn identify(&self, header: Option<&str>) -> Result<Identity, ApiError> {
        // another scheme (`Basic …` an ingress added, say) carries no JWT:
        // the request is anonymous, as PostgREST (v12 and v13) treats it
        let bearer = |h: &str| {
            h.trim().eq_ignore_ascii_case("bearer")
                || h.split_once(' ')
                    .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        };
        let header = header.filter(|h| bearer(h));
        let Some(h) = header else {
            return match &self.anon_role {
                Some(r) => Ok(Identity::new(
                    r,
                    serde_json::json!({ "role": r }),
                    None,
                    false,
                )),
                None => Err(unauthorized("PGRST302", "Anonymous access is disabled")),
            };
        };
        let empty = || unauthorized("PGRST301", "Empty JWT is sent in Authorization header");
        // `Bearer` with nothing after it (HTTP drops the trailing space)
        if h.trim().eq_ignore_ascii_case("bearer") {
            return Err(empty());
        }
        // the scheme is case-insensitive (RFC 7235 §2.1)
        let token = h.split_once(' ').map_or("", |(_, t)| t.trim());
        if token.is_empty() {
            return Err(empty());
        }
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| ApiError::new(500, "PGRST300", "Server lacks JWT secret"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if let Some(cache) = &self.cache {
            if let Some(v) = cache.get(token) {
                if v.at.elapsed() < self.max_lifetime {
                    check_times(v.exp, v.nbf, now)?;
                    return Ok(v.identity);
                }
                cache.remove(token);
            }
        }
        let v = self.verify(token, keys, now)?;
        let identity = v.identity.clone();
        if let Some(cache) = &self.cache {
            cache.insert(token.to_string(), v);
        }
        Ok(identity)
    }

    /// The keys skipped in `jwt-secret`, for a warning at start.
    pub fn skipped_keys(&self) -> &[String] {
        self.keys.as_ref().map_or(&[], |k| &k.skipped)
    }

    fn verify(&self, token: &str, keys: &KeySet, now: f64) -> Result<Verified, ApiError> {
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(unauthorized(
                "PGRST301",
                &format!("Expected 3 parts in JWT; got {parts}"),
            ));
        }
        let invalid = || unauthorized("PGRST301", "JWSError JWSInvalidToken");
        let header = decode_header(token).map_err(|_| invalid())?;
        let alg = header.alg;
        let fits: Vec<&VerifyKey> = keys
            .keys
            .iter()
            .filter(|k| k.family == family(alg) && k.alg.is_none_or(|a| a == alg))
            .collect();
        if fits.is_empty() {
            return Err(unauthorized("PGRST301", "JWSError JWSInvalidAlgorithm"));
        }
        // a token naming its key is checked against that key only (and keys
        // without a kid)
        let candidates: Vec<&VerifyKey> = fits
            .into_iter()
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(
                unauthorized("PGRST301", "No suitable key or wrong key type")
                    .details("No suitable key was found to decode the JWT"),
            );
        }
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = true;
        v.validate_nbf = true;
        // checked below, with PostgREST's message
        v.validate_aud = false;
        v.leeway = LEEWAY;
        let mut result = Err(unauthorized("PGRST301", "JWSError JWSInvalidSignature"));
        for k in candidates {
            match decode::<Json>(token, &k.key, &v) {
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                r => {
                    result = r.map_err(|e| match e.kind() {
                        ErrorKind::ExpiredSignature => unauthorized("PGRST303", "JWT expired"),
                        ErrorKind::ImmatureSignature => {
                            unauthorized("PGRST303", "JWT not yet valid")
                        }
                        ErrorKind::InvalidAlgorithm => {
                            unauthorized("PGRST301", "JWSError JWSInvalidAlgorithm")
                        }
                        _ => invalid(),
                    });
                    break;
                }
            }
        }
        let data = result?;
        let claims = data.claims;
        if !claims.is_object() {
            return Err(unauthorized(
                "PGRST303",
                "The JWT claims must be a JSON object",
            ));
        }
        if let Some(iat) = claims.get("iat") {
            match iat.as_f64() {
                Some(t) if t <= now + LEEWAY as f64 => {}
                Some(_) => return Err(unauthorized("PGRST303", "JWT issued at future")),
                None => {
                    return Err(unauthorized(
                        "PGRST303",
                        "The JWT 'iat' claim must be a number",
                    ))
                }
            }
        }
        // `aud` is a string or an array of strings (RFC 7519 §4.1.3),
        // whether or not an audience is configured
        match claims.get("aud") {
            None | Some(Json::Null) | Some(Json::String(_)) => {}
            Some(Json::Array(a)) if a.iter().all(Json::is_string) => {}
            Some(_) => {
                return Err(unauthorized(
                    "PGRST303",
                    "The JWT 'aud' claim must be a string or an array of strings",
                ))
            }
        }
        if let Some(aud) = &self.aud {
            if !audience_ok(&claims, aud) {
                return Err(unauthorized("PGRST303", "JWT not in audience"));
            }
        }
        let role = match lookup(&claims, &self.role_path) {
            Some(Json::String(r)) if !r.is_empty() => r.clone(),
            Some(Json::String(_)) | Some(Json::Null) | None => match &self.anon_role {
                Some(r) => r.clone(),
                None => return Err(unauthorized("PGRST302", "Anonymous access is disabled")),
            },
            Some(_) => {
                return Err(unauthorized(
                    "PGRST303",
                    "The JWT 'role' claim must be a string",
                ))
            }
        };
        let tenant = match claims.get("tenant_id") {
            Some(Json::String(t)) if !t.is_empty() => Some(t.clone()),
            None | Some(Json::Null) => None,
            Some(Json::String(_)) => None,
            Some(_) => {
                return Err(unauthorized(
                    "PGRST303",
                    "The JWT 'tenant_id' claim must be a uuid or slug string",
                ))
            }
        };
        // jsonwebtoken skips an `exp`/`nbf` it cannot read as a u64 (a
        // string, a negative number): both must be numbers, checked here
        let number = |name: &str| -> Result<Option<f64>, ApiError> {
            match claims.get(name) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    unauthorized(
                        "PGRST303",
                        &format!("The JWT '{name}' claim must be a number"),
                    )
                }),
            }
        };
        let exp = number("exp")?;
        let nbf = number("nbf")?;
        check_times(exp, nbf, now)?;
        // PostgREST's "authenticated": the request runs as a role other
        // than the anonymous one (a token without a role claim is not) —
        // it decides 401 against 403 for a permission error
        let authenticated = self.anon_role.as_deref() != Some(role.as_str());
        Ok(Verified {
            identity: Identity::new(&role, claims, tenant, authenticated),
            exp,
            nbf,
            at: Instant::now(),
        })
    }
}

/// `exp`/`nbf` of a cached token against the clock, with the leeway.
fn check_times(exp: Option<f64>, nbf: Option<f64>, now: f64) -> Result<(), ApiError> {
    if exp.is_some_and(|e| now > e + LEEWAY as f64) {
        return Err(unauthorized("PGRST303", "JWT expired"));
    }
    if nbf.is_some_and(|n| now + (LEEWAY as f64) < n) {
        return Err(unauthorized("PGRST303", "JWT not yet valid"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn token(claims: Json) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn now() -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    }

    #[test]
    fn cached_tokens_still_expire() {
        let jwt = Jwt::new(Some(SECRET), false, None, ".role", Some("anon"), 3600).unwrap();
        let t = token(json!({"role": "r", "exp": now() as u64 + 3600}));
        let h = format!("Bearer {t}");
        assert_eq!(jwt.identify(Some(&h)).unwrap().role, "r");
        // served from the cache
        assert_eq!(jwt.identify(Some(&h)).unwrap().role, "r");
        let n = now();
        assert!(check_times(Some(n - 31.0), None, n).is_err());
        assert!(check_times(Some(n - 29.0), None, n).is_ok());
        assert!(check_times(None, Some(n + 31.0), n).is_err());
        // a bad signature is never cached as good
        let bad = format!("Bearer {}x", t);
        assert!(jwt.identify(Some(&bad)).is_err());
        assert!(jwt.identify(Some(&bad)).is_err());
    }

    #[test]
    fn audience_and_role_path() {
        let jwt = Jwt::new(Some(SECRET), false, Some("api"), ".app.role", None, 0).unwrap();
        let ok = token(json!({"aud": ["api"], "app": {"role": "editor"}}));
        assert_eq!(
            jwt.identify(Some(&format!("Bearer {ok}"))).unwrap().role,
            "editor"
        );
        let other = token(json!({"aud": "web", "app": {"role": "editor"}}));
        let e = jwt.identify(Some(&format!("Bearer {other}"))).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("PGRST303", "JWT not in audience")
        );
        // no role at the path and no anon role: anonymous access is disabled
        let none = token(json!({"aud": "api", "role": "x"}));
        let e = jwt.identify(Some(&format!("Bearer {none}"))).unwrap_err();
        assert_eq!(e.code, "PGRST302");
        assert!(Jwt::new(Some(SECRET), false, None, "role", None, 0).is_err());
        assert!(Jwt::new(Some("short"), false, None, ".role", None, 0).is_err());
    }

    #[test]
    fn anonymous_fallback_empty_token_and_malformed_aud() {
        let jwt = Jwt::new(Some(SECRET), false, None, ".role", Some("anon"), 0).unwrap();
        // a token without a role runs as the anonymous role and counts as
        // unauthenticated (a permission error is then 401), like one naming it
        for claims in [json!({"id": "jdoe"}), json!({}), json!({"role": "anon"})] {
            let i = jwt
                .identify(Some(&format!("Bearer {}", token(claims))))
                .unwrap();
            assert_eq!((i.role.as_str(), i.authenticated), ("anon", false));
        }
        let i = jwt
            .identify(Some(&format!("Bearer {}", token(json!({"role": "r"})))))
            .unwrap();
        assert!(i.authenticated);
        // `Bearer` with no token
        for h in ["Bearer", "bearer ", "Bearer    "] {
            let e = jwt.identify(Some(h)).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str(), e.message.as_str()),
                (401, "PGRST301", "Empty JWT is sent in Authorization header"),
                "{h:?}"
            );
        }
        // `aud` must be a string or strings, with or without an audience set
        for aud in [
            json!({"invalid": "value"}),
            json!([{"invalid": "value"}, "test"]),
            json!(3),
        ] {
            let t = token(json!({"aud": aud, "role": "r"}));
            let e = jwt.identify(Some(&format!("Bearer {t}"))).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str(), e.message.as_str()),
                (
                    401,
                    "PGRST303",
                    "The JWT 'aud' claim must be a string or an array of strings"
                )
            );
        }
        for aud in [json!("x"), json!(["x", "y"]), json!(null)] {
            let t = token(json!({"aud": aud, "role": "r"}));
            assert!(jwt.identify(Some(&format!("Bearer {t}"))).is_ok());
        }
    }

    const JWKS: &str = include_str!("../tests/fixtures/jwt/jwks.json");

    fn signed(alg: Algorithm, kid: Option<&str>, pem: &str, claims: Json) -> String {
        let key = match family(alg) {
            Family::Rsa => EncodingKey::from_rsa_pem(pem.as_bytes()),
            Family::Ec => EncodingKey::from_ec_pem(pem.as_bytes()),
            Family::Ed => EncodingKey::from_ed_pem(pem.as_bytes()),
            Family::Hmac => Ok(EncodingKey::from_secret(pem.as_bytes())),
        }
        .unwrap();
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        encode(&h, &claims, &key).unwrap()
    }

    fn role_of(jwt: &Jwt, token: &str) -> Result<String, (String, String)> {
        jwt.identify(Some(&format!("Bearer {token}")))
            .map(|i| i.role)
            .map_err(|e| (e.code, e.message))
    }

    const RSA: &str = include_str!("../tests/fixtures/jwt/rsa.pem");
    const EC: &str = include_str!("../tests/fixtures/jwt/ec.pem");
    const ED: &str = include_str!("../tests/fixtures/jwt/ed.pem");

    #[test]
    fn jwk_set_picks_the_key_by_alg_and_kid() {
        let jwt = Jwt::new(Some(JWKS), false, None, ".role", None, 0).unwrap();
        assert!(jwt.skipped_keys().is_empty(), "{:?}", jwt.skipped_keys());
        let c = json!({"role": "r"});
        for (alg, kid, pem) in [
            (Algorithm::RS256, Some("rsa-1"), RSA),
            (Algorithm::RS256, None, RSA),
            (Algorithm::ES256, Some("ec-1"), EC),
            (Algorithm::ES256, None, EC),
            (Algorithm::EdDSA, Some("ed-1"), ED),
        ] {
            let t = signed(alg, kid, pem, c.clone());
            assert_eq!(role_of(&jwt, &t).as_deref(), Ok("r"), "{alg:?} {kid:?}");
        }
        // the RSA key says RS256: PS256 with the same private key is refused
        let ps = signed(Algorithm::PS256, Some("rsa-1"), RSA, c.clone());
        assert_eq!(
            role_of(&jwt, &ps).unwrap_err().1,
            "JWSError JWSInvalidAlgorithm"
        );
        // an unknown kid
        let t = signed(Algorithm::RS256, Some("rsa-2"), RSA, c.clone());
        assert_eq!(
            role_of(&jwt, &t).unwrap_err(),
            (
                "PGRST301".into(),
                "No suitable key or wrong key type".into()
            )
        );
        // the right kid, signed by another key: a bad signature
        let other_ec = include_str!("../tests/fixtures/jwt/ec-other.pem");
        let t = signed(Algorithm::ES256, Some("ec-1"), other_ec, c.clone());
        assert_eq!(
            role_of(&jwt, &t).unwrap_err().1,
            "JWSError JWSInvalidSignature"
        );
        // HS256 "signed" with the RSA public key's modulus (algorithm
        // confusion): no HMAC key in the set
        let n = serde_json::from_str::<Json>(JWKS).unwrap()["keys"][0]["n"]
            .as_str()
            .unwrap()
            .to_string();
        let t = signed(Algorithm::HS256, Some("rsa-1"), &n, c.clone());
        assert_eq!(
            role_of(&jwt, &t).unwrap_err().1,
            "JWSError JWSInvalidAlgorithm"
        );
        // an asymmetric token against a plain secret
        let hs = Jwt::new(Some(SECRET), false, None, ".role", None, 0).unwrap();
        let t = signed(Algorithm::RS256, None, RSA, c.clone());
        assert_eq!(
            role_of(&hs, &t).unwrap_err().1,
            "JWSError JWSInvalidAlgorithm"
        );
        // time claims still apply to asymmetric tokens
        let t = signed(
            Algorithm::EdDSA,
            None,
            ED,
            json!({"role": "r", "exp": now() as u64 - 600}),
        );
        assert_eq!(role_of(&jwt, &t).unwrap_err().1, "JWT expired");
    }

    #[test]
    fn one_jwk_and_unusable_members() {
        let set: Json = serde_json::from_str(JWKS).unwrap();
        let ec = set["keys"][1].to_string();
        let jwt = Jwt::new(Some(&ec), false, None, ".role", None, 0).unwrap();
        let t = signed(Algorithm::ES256, None, EC, json!({"role": "r"}));
        assert_eq!(role_of(&jwt, &t).as_deref(), Ok("r"));
        let t = signed(Algorithm::RS256, None, RSA, json!({"role": "r"}));
        assert!(role_of(&jwt, &t).is_err());
        // an oct JWK is an HMAC key (any HS algorithm unless its alg says)
        let oct = json!({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"})
            .to_string();
        let jwt = Jwt::new(Some(&oct), false, None, ".role", None, 0).unwrap();
        let t = signed(
            Algorithm::HS384,
            None,
            "secret-secret-secret-secret-secret",
            json!({"role": "r"}),
        );
        assert_eq!(role_of(&jwt, &t).as_deref(), Ok("r"));
        // encryption keys, unknown curves and broken members are skipped;
        // a set with nothing usable is refused
        let mixed = json!({"keys": [
            set["keys"][0],
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
            {"kty": "nope"},
        ]})
        .to_string();
        let jwt = Jwt::new(Some(&mixed), false, None, ".role", None, 0).unwrap();
        assert_eq!(jwt.skipped_keys().len(), 4, "{:?}", jwt.skipped_keys());
        let only_bad =
            json!({"keys": [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}]}).to_string();
        let e = Jwt::new(Some(&only_bad), false, None, ".role", None, 0)
            .err()
            .unwrap();
        assert!(e.contains("no JWK that can verify"), "{e}");
        for bad in [
            "{not json",
            r#"{"keys": 3}"#,
            r#"{"kty": "EC", "crv": "P-256"}"#,
        ] {
            assert!(
                Jwt::new(Some(bad), false, None, ".role", None, 0).is_err(),
                "{bad}"
            );
        }
        // alg that does not fit the key
        let wrong = json!({"kty": "EC", "alg": "RS256", "crv": "P-256", "x": set["keys"][1]["x"], "y": set["keys"][1]["y"]}).to_string();
        assert!(Jwt::new(Some(&wrong), false, None, ".role", None, 0).is_err());
    }

    #[test]
    fn secret_from_file_and_base64() {
        let dir = std::env::temp_dir().join(format!("tenancy-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        std::fs::write(&f, format!("{SECRET}\n")).unwrap();
        let at = format!("@{}", f.display());
        let jwt = Jwt::new(Some(&at), false, None, ".role", None, 0).unwrap();
        assert_eq!(
            role_of(&jwt, &token(json!({"role": "r"}))).as_deref(),
            Ok("r")
        );
        // a JWK set from a file
        let f2 = dir.join("jwks.json");
        std::fs::write(&f2, JWKS).unwrap();
        let jwt = Jwt::new(
            Some(&format!("@{}", f2.display())),
            false,
            None,
            ".role",
            None,
            0,
        )
        .unwrap();
        let t = signed(Algorithm::EdDSA, None, ED, json!({"role": "r"}));
        assert_eq!(role_of(&jwt, &t).as_deref(), Ok("r"));
        let e = Jwt::new(Some("@/no/such/file"), false, None, ".role", None, 0)
            .err()
            .unwrap();
        assert!(e.contains("cannot read /no/such/file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        // base64, standard or URL-safe, padded or not: the secret's bytes
        let raw: Vec<u8> = (0u8..48)
            .map(|i| i.wrapping_mul(37).wrapping_add(250))
            .collect();
        for enc in [
            base64::engine::general_purpose::STANDARD.encode(&raw),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw),
            format!(
                "  {}\n",
                base64::engine::general_purpose::URL_SAFE.encode(&raw)
            ),
        ] {
            let jwt = Jwt::new(Some(&enc), true, None, ".role", None, 0).unwrap();
            let t = encode(
                &Header::default(),
                &json!({"role": "r"}),
                &EncodingKey::from_secret(&raw),
            )
            .unwrap();
            assert_eq!(role_of(&jwt, &t).as_deref(), Ok("r"), "{enc}");
        }
        assert!(Jwt::new(Some("not base64 at all!!"), true, None, ".role", None, 0).is_err());
        // decoded to fewer than 32 bytes
        assert!(Jwt::new(Some("c2hvcnQ="), true, None, ".role", None, 0).is_err());
    }
}
