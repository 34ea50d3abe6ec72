//! JWT (HS256) verification, PostgREST's way.

use jsonwebtoken::{decode, errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde_json::Value as Json;
use tenancy_core::postgrest::ApiError;

/// Who the request runs as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub role: String,
    pub claims: Json,
    /// The `tenant_id` claim (uuid or slug), if any.
    pub tenant: Option<String>,
    pub authenticated: bool,
}

/// Allowed clock skew for exp/nbf/iat, as in PostgREST.
const LEEWAY: u64 = 30;

fn unauthorized(code: &str, message: &str) -> ApiError {
    ApiError::new(401, code, message)
}

pub fn key(secret: &str) -> Result<DecodingKey, String> {
    if secret.len() < 32 {
        return Err("the JWT secret must be at least 32 characters long".into());
    }
    Ok(DecodingKey::from_secret(secret.as_bytes()))
}

/// Decide the identity from an `Authorization` header value.
pub fn identify(
    header: Option<&str>,
    key: Option<&DecodingKey>,
    anon_role: Option<&str>,
) -> Result<Identity, ApiError> {
    let Some(h) = header else {
        return match anon_role {
            Some(r) => Ok(Identity {
                role: r.to_string(),
                claims: serde_json::json!({ "role": r }),
                tenant: None,
                authenticated: false,
            }),
            None => Err(unauthorized("PGRST302", "Anonymous access is disabled")),
        };
    };
    let token = h
        .strip_prefix("Bearer ")
        .or_else(|| h.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            unauthorized(
                "PGRST301",
                "Authorization header is not of the form 'Bearer <token>'",
            )
        })?;
    let key = key.ok_or_else(|| ApiError::new(500, "PGRST300", "Server lacks JWT secret"))?;
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        match iat.as_f64() {
            Some(t) if t <= (now + LEEWAY) as f64 => {}
            Some(_) => return Err(unauthorized("PGRST303", "JWT issued at future")),
            None => {
                return Err(unauthorized(
                    "PGRST303",
                    "The JWT 'iat' claim must be a number",
                ))
            }
        }
    }
    let role = match claims.get("role") {
        Some(Json::String(r)) if !r.is_empty() => r.clone(),
        Some(Json::String(_)) | None => match anon_role {
            Some(r) => r.to_string(),
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
    Ok(Identity {
        role,
        claims,
        tenant,
        authenticated: true,
    })
}
