//! Logout token validation (OpenID Connect Back-Channel Logout 1.0 §2.6): the signature and
//! `iss`/`aud`/`iat` like an id_token, the back-channel logout event, no `nonce`, and a `sid`
//! or a `sub` that says whose sessions end.

use serde_json::{Map, Value};

use super::OidcError;
use super::discovery::ProviderMetadata;
use super::id_token::verify;
use super::jwks::JwksCache;
use crate::config::OidcConfig;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Whose sessions a valid logout token ends.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    pub iss: String,
    pub sid: Option<String>,
    pub sub: Option<String>,
}

fn invalid(reason: &str) -> OidcError {
    OidcError::InvalidLogoutToken(reason.to_owned())
}

pub(super) async fn validate(
    token: &str,
    metadata: &ProviderMetadata,
    config: &OidcConfig,
    jwks: &JwksCache,
    http: &reqwest::Client,
) -> Result<LogoutRequest, OidcError> {
    let claims: Map<String, Value> =
        verify(token, &["iat", "iss", "aud"], metadata, config, jwks, http).await.map_err(|e| match e {
            OidcError::InvalidIdToken(reason) => OidcError::InvalidLogoutToken(reason),
            other => other,
        })?;
    let has_event = claims.get("events").and_then(Value::as_object).is_some_and(|events| events.contains_key(EVENT));
    if !has_event {
        return Err(invalid("events lacks the back-channel logout event"));
    }
    if claims.contains_key("nonce") {
        return Err(invalid("a logout token must not have a nonce"));
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let (sid, sub) = (text("sid"), text("sub"));
    if sid.is_none() && sub.is_none() {
        return Err(invalid("neither sid nor sub"));
    }
    Ok(LogoutRequest { iss: metadata.issuer.clone(), sid, sub })
}
