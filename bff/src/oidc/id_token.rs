//! id_token validation (OpenID Connect Core §3.1.3.7): signature through the JWKS with an
//! asymmetric algorithm only, `iss`, `aud` (and `azp` when there are several audiences), `exp`,
//! `iat` and `nbf` with the configured leeway, and the `nonce` of the login it answers.

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::OidcError;
use super::discovery::ProviderMetadata;
use super::jwks::JwksCache;
use crate::config::OidcConfig;

const ALLOWED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

fn invalid(reason: impl Into<String>) -> OidcError {
    OidcError::InvalidIdToken(reason.into())
}

/// Checks the signature (JWKS, asymmetric algorithms only), `iss`, `aud`, and the times; returns
/// the claims. `required` lists the registered claims that must be present.
pub(super) async fn verify(
    token: &str,
    required: &[&str],
    metadata: &ProviderMetadata,
    config: &OidcConfig,
    jwks: &JwksCache,
    http: &reqwest::Client,
) -> Result<Map<String, Value>, OidcError> {
    let header = decode_header(token).map_err(|e| invalid(format!("malformed header: {e}")))?;
    if !ALLOWED.contains(&header.alg) {
        return Err(invalid(format!("algorithm {:?} is not accepted", header.alg)));
    }
    let kid = header.kid.as_deref();
    let jwk = match jwks.find(kid) {
        Some(jwk) => jwk,
        None => {
            jwks.refetch_for_unknown_kid(http, &metadata.jwks_uri).await?;
            jwks.find(kid).ok_or_else(|| invalid(format!("no issuer key with kid {kid:?}")))?
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(format!("unusable issuer key: {e}")))?;

    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&metadata.issuer]);
    validation.set_audience(&[&config.client_id]);
    validation.set_required_spec_claims(required);
    validation.leeway = config.clock_skew.as_secs();
    validation.validate_nbf = true;
    let claims = decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| invalid(e.to_string()))?.claims;

    let now = crate::session::now_secs();
    match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat <= now + config.clock_skew.as_secs() => {}
        _ => return Err(invalid("iat is missing or in the future")),
    }
    if let Some(Value::Array(audiences)) = claims.get("aud")
        && audiences.len() > 1
        && claims.get("azp").and_then(Value::as_str) != Some(config.client_id.as_str())
    {
        return Err(invalid("several audiences and azp is not this client"));
    }
    Ok(claims)
}

pub(super) async fn validate(
    token: &str,
    expected_nonce: &str,
    metadata: &ProviderMetadata,
    config: &OidcConfig,
    jwks: &JwksCache,
    http: &reqwest::Client,
) -> Result<Map<String, Value>, OidcError> {
    let claims = verify(token, &["exp", "iat", "iss", "aud", "sub"], metadata, config, jwks, http).await?;
    if claims.get("nonce").and_then(Value::as_str) != Some(expected_nonce) {
        return Err(invalid("nonce does not match the login"));
    }
    if !claims.get("sub").is_some_and(Value::is_string) {
        return Err(invalid("sub is missing"));
    }
    Ok(claims)
}
