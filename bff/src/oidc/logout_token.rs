//! Logout token validation (OpenID Connect Back-Channel Logout 1.0 §2.6): the signature and
//! `iss`/`aud`/`iat` like an id_token, the back-channel logout event, no `nonce`, and a `sid`
//! or a `sub` that says whose sessions end.
//!
//! A logout token must also not work twice: it must carry `exp` and `jti` (the caller keeps each
//! `jti` until `exp`, shared by all nodes, see `routes::backchannel`), must not be older than
//! [`MAX_AGE`] (plus the clock skew), and its `typ`, when present, must be `logout+jwt`. Without
//! these, a captured token for a `sub` would log that user out again, at any later time.

use std::time::Duration;

use serde_json::{Map, Value};

use super::OidcError;
use super::discovery::ProviderMetadata;
use super::id_token::verify;
use super::jwks::JwksCache;
use crate::config::OidcConfig;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old (by `iat`) a logout token may be, on top of the configured clock skew: an issuer sends
/// it as the session ends, so minutes are plenty.
pub const MAX_AGE: Duration = Duration::from_secs(300);

/// The longest `jti` accepted (it becomes a store key's input).
const MAX_JTI_LEN: usize = 256;

/// Whose sessions a valid logout token ends.
#[derive(Debug, Clone)]
pub struct LogoutRequest {
    pub iss: String,
    pub sid: Option<String>,
    pub sub: Option<String>,
    /// The token's id: a second token with the same one is a replay.
    pub jti: String,
    /// Unix seconds when the token expires: its `jti` must be remembered until then.
    pub exp: u64,
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
    let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&format!("malformed header: {e}")))?;
    let claims: Map<String, Value> =
        verify(token, &["iat", "iss", "aud", "exp"], metadata, config, jwks, http).await.map_err(|e| match e {
            OidcError::InvalidIdToken(reason) => OidcError::InvalidLogoutToken(reason),
            other => other,
        })?;
    check_claims(&claims, header.typ.as_deref(), crate::session::now_secs(), config.clock_skew)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(LogoutRequest {
        iss: metadata.issuer.clone(),
        sid: text("sid"),
        sub: text("sub"),
        jti: text("jti").unwrap_or_default(),
        exp: claims.get("exp").and_then(Value::as_u64).unwrap_or_default(),
    })
}

/// The checks on a verified token's claims and header `typ`, at time `now` (unix seconds).
pub(super) fn check_claims(
    claims: &Map<String, Value>,
    typ: Option<&str>,
    now: u64,
    skew: Duration,
) -> Result<(), OidcError> {
    if let Some(typ) = typ
        && !typ.eq_ignore_ascii_case("logout+jwt")
        && !typ.eq_ignore_ascii_case("application/logout+jwt")
    {
        return Err(invalid("typ is not logout+jwt"));
    }
    let has_event = claims.get("events").and_then(Value::as_object).is_some_and(|events| events.contains_key(EVENT));
    if !has_event {
        return Err(invalid("events lacks the back-channel logout event"));
    }
    if claims.contains_key("nonce") {
        return Err(invalid("a logout token must not have a nonce"));
    }
    if claims.get("sid").and_then(Value::as_str).is_none() && claims.get("sub").and_then(Value::as_str).is_none() {
        return Err(invalid("neither sid nor sub"));
    }
    match claims.get("jti").and_then(Value::as_str) {
        Some(jti) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => {}
        _ => return Err(invalid("jti is missing")),
    }
    if claims.get("exp").and_then(Value::as_u64).is_none() {
        return Err(invalid("exp is missing"));
    }
    let oldest = now.saturating_sub(MAX_AGE.as_secs() + skew.as_secs());
    match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat >= oldest => Ok(()),
        _ => Err(invalid("iat is missing or too old")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const SKEW: Duration = Duration::from_secs(60);

    fn good() -> Map<String, Value> {
        let value = json!({
            "iss": "https://issuer", "aud": "client", "iat": NOW, "exp": NOW + 120, "jti": "j-1", "sub": "alice",
            "events": { EVENT: {} },
        });
        value.as_object().unwrap().clone()
    }

    fn check(claims: &Map<String, Value>, typ: Option<&str>) -> Result<(), OidcError> {
        check_claims(claims, typ, NOW, SKEW)
    }

    #[test]
    fn a_good_token_passes_with_or_without_typ() {
        for typ in [None, Some("logout+jwt"), Some("application/logout+jwt")] {
            assert!(check(&good(), typ).is_ok(), "{typ:?}");
        }
    }

    #[test]
    fn missing_jti_or_exp_stale_iat_or_wrong_typ_is_refused() {
        for (claim, value) in [
            ("jti", None),
            ("jti", Some(json!(""))),
            ("jti", Some(json!("j".repeat(MAX_JTI_LEN + 1)))),
            ("exp", None),
            ("iat", None),
            ("iat", Some(json!(NOW - MAX_AGE.as_secs() - SKEW.as_secs() - 1))),
            ("events", None),
            ("nonce", Some(json!("n"))),
            ("sub", None),
        ] {
            let mut claims = good();
            match value {
                Some(v) => claims.insert(claim.into(), v),
                None => claims.remove(claim),
            };
            assert!(check(&claims, None).is_err(), "{claim} = {:?} was accepted", claims.get(claim));
        }
        assert!(check(&good(), Some("JWT")).is_err(), "an id_token's typ");
    }
}

#[cfg(test)]
mod properties {
    //! Any claims a token may carry, and any text in the token's place: the checks and the header
    //! parser never panic, and a token missing one of its required claims never passes.

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn claim_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::from),
            Just(json!({ EVENT: {} })),
            Just(json!([EVENT])),
            (NOW - 1000..NOW + 1000).prop_map(Value::from),
        ]
    }

    fn claims() -> impl Strategy<Value = Map<String, Value>> {
        let name = prop_oneof![
            Just("iss"),
            Just("aud"),
            Just("iat"),
            Just("exp"),
            Just("jti"),
            Just("sub"),
            Just("sid"),
            Just("events"),
            Just("nonce"),
        ];
        proptest::collection::vec((name, claim_value()), 0..10)
            .prop_map(|pairs| pairs.into_iter().map(|(n, v)| (n.to_owned(), v)).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn claim_checks_never_panic_and_need_every_required_claim(
            claims in claims(),
            typ in proptest::option::of(prop_oneof![Just("logout+jwt".to_owned()), Just("JWT".to_owned()), "\\PC{0,12}"]),
        ) {
            if check_claims(&claims, typ.as_deref(), NOW, Duration::from_secs(60)).is_ok() {
                prop_assert!(claims.get("jti").and_then(Value::as_str).is_some_and(|j| !j.is_empty()));
                prop_assert!(claims.get("exp").and_then(Value::as_u64).is_some());
                prop_assert!(claims.get("iat").and_then(Value::as_u64).is_some());
                prop_assert!(!claims.contains_key("nonce"));
                prop_assert!(claims.get("sid").or(claims.get("sub")).and_then(Value::as_str).is_some());
            }
        }

        #[test]
        fn any_text_as_a_token_header_is_an_error_or_a_header(text in prop_oneof![
            "[A-Za-z0-9_.-]{0,80}",
            "eyJ[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_.-]{0,40}",
            any::<String>(),
        ]) {
            let _ = jsonwebtoken::decode_header(&text);
        }
    }
}
