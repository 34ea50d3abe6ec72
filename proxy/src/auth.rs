//! JWT (HS256) verification, PostgREST's way: `exp`/`nbf`/`iat` with 30 s
//! leeway, `jwt-aud`, `jwt-role-claim-key`, and a cache of verified tokens
//! (`jwt-cache-max-lifetime`) so a client reusing its token is not re-verified
//! on every request.

use jsonwebtoken::{decode, errors::ErrorKind, Algorithm, DecodingKey, Validation};
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

pub fn key(secret: &str) -> Result<DecodingKey, String> {
    if secret.len() < 32 {
        return Err("the JWT secret must be at least 32 characters long".into());
    }
    Ok(DecodingKey::from_secret(secret.as_bytes()))
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
    key: Option<DecodingKey>,
    aud: Option<String>,
    role_path: Vec<Step>,
    anon_role: Option<String>,
    cache: Option<Cache<String, Verified>>,
    max_lifetime: Duration,
}

impl Jwt {
    /// `secret` ≥ 32 characters; `role_claim_key` in PostgREST's syntax
    /// (`.role`); `cache_secs` 0 disables the cache.
    pub fn new(
        secret: Option<&str>,
        aud: Option<&str>,
        role_claim_key: &str,
        anon_role: Option<&str>,
        cache_secs: u64,
    ) -> Result<Jwt, String> {
        Ok(Jwt {
            key: secret.map(key).transpose()?,
            aud: aud.filter(|a| !a.is_empty()).map(str::to_string),
            role_path: parse_path(role_claim_key)?,
            anon_role: anon_role.map(str::to_string),
            cache: (cache_secs > 0).then(|| Cache::new(CACHE_CAPACITY)),
            max_lifetime: Duration::from_secs(cache_secs),
        })
    }

    /// Decide the identity from an `Authorization` header value.
    pub fn identify(&self, header: Option<&str>) -> Result<Identity, ApiError> {
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
        // the scheme is case-insensitive (RFC 7235 §2.1)
        let token = h
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| {
                unauthorized(
                    "PGRST301",
                    "Authorization header is not of the form 'Bearer <token>'",
                )
            })?;
        let key = self
            .key
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
        let v = self.verify(token, key, now)?;
        let identity = v.identity.clone();
        if let Some(cache) = &self.cache {
            cache.insert(token.to_string(), v);
        }
        Ok(identity)
    }

    fn verify(&self, token: &str, key: &DecodingKey, now: f64) -> Result<Verified, ApiError> {
        let parts = token.split('.').count();
        if parts != 3 {
            return Err(unauthorized(
                "PGRST301",
                &format!("Expected 3 parts in JWT; got {parts}"),
            ));
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = true;
        v.validate_nbf = true;
        // checked below, with PostgREST's message
        v.validate_aud = false;
        v.leeway = LEEWAY;
        let data = decode::<Json>(token, key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => unauthorized("PGRST303", "JWT expired"),
            ErrorKind::ImmatureSignature => unauthorized("PGRST303", "JWT not yet valid"),
            ErrorKind::InvalidSignature => unauthorized("PGRST301", "JWSError JWSInvalidSignature"),
            ErrorKind::InvalidAlgorithm => unauthorized("PGRST301", "JWSError JWSInvalidAlgorithm"),
            _ => unauthorized("PGRST301", "JWSError JWSInvalidToken"),
        })?;
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
        let exp = claims.get("exp").and_then(Json::as_f64);
        let nbf = claims.get("nbf").and_then(Json::as_f64);
        Ok(Verified {
            identity: Identity::new(&role, claims, tenant, true),
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
        let jwt = Jwt::new(Some(SECRET), None, ".role", Some("anon"), 3600).unwrap();
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
        let jwt = Jwt::new(Some(SECRET), Some("api"), ".app.role", None, 0).unwrap();
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
        assert!(Jwt::new(Some(SECRET), None, "role", None, 0).is_err());
        assert!(Jwt::new(Some("short"), None, ".role", None, 0).is_err());
    }
}
