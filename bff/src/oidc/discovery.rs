//! OpenID Connect Discovery: the issuer's metadata document.

use serde::Deserialize;
use url::Url;

use super::OidcError;

#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub jwks_uri: Url,
    pub userinfo_endpoint: Option<Url>,
    pub end_session_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
}

pub(super) async fn fetch(http: &reqwest::Client, authority: &Url) -> Result<ProviderMetadata, OidcError> {
    let mut url = authority.clone();
    url.set_path(&format!("{}/.well-known/openid-configuration", authority.path().trim_end_matches('/')));
    let sent = tracing::Instrument::instrument(http.get(url.clone()).send(), crate::traces::spans::issuer("discovery"));
    let response = sent.await.map_err(|e| OidcError::Unreachable(format!("{url}: {e}")))?;
    if !response.status().is_success() {
        return Err(OidcError::Unreachable(format!("{url} answered {}", response.status())));
    }
    let metadata: ProviderMetadata =
        response.json().await.map_err(|e| OidcError::BadIssuerResponse(format!("discovery document: {e}")))?;
    if metadata.issuer.trim_end_matches('/') != authority.as_str().trim_end_matches('/') {
        return Err(OidcError::BadIssuerResponse(format!(
            "discovery says issuer {:?}, configured authority is {:?}",
            metadata.issuer,
            authority.as_str()
        )));
    }
    Ok(metadata)
}
