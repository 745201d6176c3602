//! Gateway presets: how bffctl speaks to a gateway it did not write, as one small table per
//! product instead of five flags: where it logs in, where it says who is logged in (and the
//! header that call needs), what that answers without a session, where in the answer the user's
//! identity is, and how it logs out.
//!
//! A preset is *verified* only when CI runs it against the real gateway (the version is named);
//! the others are read from the product's documentation and say so. A team's own gateway is a
//! TOML file of the same fields (`--gateway my-gateway.toml`).

use serde::Deserialize;

use crate::client::{GatewayPaths, LogoutMethod};

/// One gateway's account endpoints and answers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayPreset {
    pub name: String,
    pub login_path: String,
    pub me_path: String,
    /// `Name: value` that the `me` call sends (Duende.BFF's `X-CSRF: 1`).
    #[serde(default)]
    pub me_header: Option<String>,
    /// What `me` answers without a session.
    pub anonymous_status: u16,
    /// A JSON pointer (RFC 6901) to the user's identity in `me`'s answer; none: the identity may
    /// be any string in it (a list of claims).
    #[serde(default)]
    pub identity_pointer: Option<String>,
    pub logout_path: String,
    #[serde(default = "post")]
    pub logout_method: LogoutMethod,
    /// `Name: value` that the logout sends (a CSRF header).
    #[serde(default)]
    pub logout_header: Option<String>,
    /// How it was checked: `verified: CI runs it against …`, or `from the documentation: URL`.
    pub provenance: String,
}

fn post() -> LogoutMethod {
    LogoutMethod::Post
}

#[derive(Debug, thiserror::Error)]
pub enum PresetError {
    #[error("unknown gateway {0:?}: use one of {1}, or a preset file (.toml)")]
    Unknown(String, String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("{0}: expected 'Name: value'")]
    Header(String),
}

const BUILTIN: &str = r#"
[[preset]]
name = "bff"
login_path = "/account/login"
me_path = "/account/me"
anonymous_status = 404
identity_pointer = "/sub"
logout_path = "/account/end-session"
logout_method = "post"
logout_header = "X-CSRF: 1"
provenance = "verified: CI runs every scenario against this repository's bff"

[[preset]]
name = "mod-auth-openidc"
login_path = "/login"
me_path = "/redirect_uri?info=json"
anonymous_status = 401
identity_pointer = "/id_token/sub"
logout_path = "/redirect_uri?logout=%2F"
logout_method = "get"
provenance = "verified: CI runs deploy/third-party/mod_auth_openidc (Apache mod_auth_openidc 2.4.12.3, Debian 12): /login a protected path, OIDCRedirectURI /redirect_uri, OIDCInfoHook with id_token"

[[preset]]
name = "oauth2-proxy"
login_path = "/oauth2/start"
me_path = "/oauth2/userinfo"
anonymous_status = 401
identity_pointer = "/user"
logout_path = "/oauth2/sign_out"
logout_method = "get"
provenance = "from the documentation: https://oauth2-proxy.github.io/oauth2-proxy/features/endpoints"

[[preset]]
name = "oidcproxy"
login_path = "/.auth/login"
me_path = "/.auth/me"
anonymous_status = 404
identity_pointer = "/sub"
logout_path = "/.auth/end-session"
logout_method = "get"
provenance = "from the documentation: https://github.com/thecloudnativewebapp/OidcProxy.Net"

[[preset]]
name = "duende"
login_path = "/bff/login"
me_path = "/bff/user"
me_header = "X-CSRF: 1"
anonymous_status = 401
logout_path = "/bff/logout"
logout_method = "get"
logout_header = "X-CSRF: 1"
provenance = "from the documentation: https://docs.duendesoftware.com/bff/fundamentals/session/management/"
"#;

#[derive(Deserialize)]
struct Builtin {
    preset: Vec<GatewayPreset>,
}

/// Every built-in preset, in a fixed order.
pub fn builtin() -> Vec<GatewayPreset> {
    toml::from_str::<Builtin>(BUILTIN).expect("the built-in presets parse").preset
}

impl GatewayPreset {
    /// A built-in preset by name, or a preset file (a path ending in `.toml`).
    pub fn find(name: &str) -> Result<GatewayPreset, PresetError> {
        if name.ends_with(".toml") {
            let text = std::fs::read_to_string(name)
                .map_err(|e| PresetError::File { path: name.to_owned(), reason: e.to_string() })?;
            let preset: GatewayPreset = toml::from_str(&text)
                .map_err(|e| PresetError::File { path: name.to_owned(), reason: e.to_string() })?;
            preset.paths()?;
            return Ok(preset);
        }
        let all = builtin();
        let names = all.iter().map(|p| p.name.clone()).collect::<Vec<_>>().join(", ");
        all.into_iter().find(|p| p.name == name).ok_or_else(|| PresetError::Unknown(name.to_owned(), names))
    }

    /// Whether CI runs it against the real gateway.
    pub fn verified(&self) -> bool {
        self.provenance.starts_with("verified")
    }

    /// The client's view of it.
    pub fn paths(&self) -> Result<GatewayPaths, PresetError> {
        Ok(GatewayPaths {
            login: self.login_path.clone(),
            me: self.me_path.clone(),
            me_header: self.me_header.as_deref().map(header).transpose()?,
            logout: self.logout_path.clone(),
            logout_method: self.logout_method,
            logout_header: self.logout_header.as_deref().map(header).transpose()?,
            identity_pointer: self.identity_pointer.clone(),
        })
    }
}

/// `Name: value` → (name, value).
pub fn header(text: &str) -> Result<(String, String), PresetError> {
    let (name, value) = text.split_once(':').ok_or_else(|| PresetError::Header(text.to_owned()))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(PresetError::Header(text.to_owned()));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_preset_parses_and_bff_is_the_clients_default() {
        let all = builtin();
        assert!(all.len() >= 5);
        for preset in &all {
            let paths = preset.paths().expect("valid headers");
            assert!(preset.login_path.starts_with('/') && preset.me_path.starts_with('/'), "{}", preset.name);
            if let Some(pointer) = &paths.identity_pointer {
                assert!(pointer.starts_with('/'), "{}: a JSON pointer starts with /", preset.name);
            }
        }
        let bff = GatewayPreset::find("bff").expect("bff");
        assert!(bff.verified());
        let defaults = GatewayPaths::default();
        let paths = bff.paths().unwrap();
        assert_eq!((paths.login, paths.me, paths.logout), (defaults.login, defaults.me, defaults.logout));
    }

    #[test]
    fn an_unknown_name_lists_the_presets_and_a_file_is_read() {
        let error = GatewayPreset::find("nope").unwrap_err().to_string();
        assert!(error.contains("oauth2-proxy") && error.contains("duende"), "{error}");
        let dir = std::env::temp_dir().join(format!("bffctl-preset-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("mine.toml");
        std::fs::write(
            &file,
            "name = \"mine\"\nlogin_path = \"/in\"\nme_path = \"/who\"\nanonymous_status = 401\nlogout_path = \"/out\"\nlogout_method = \"get\"\nprovenance = \"from the documentation: ours\"\n",
        )
        .unwrap();
        let preset = GatewayPreset::find(file.to_str().unwrap()).expect("a preset file");
        assert_eq!(preset.paths().unwrap().logout_method, LogoutMethod::Get);
        assert!(!preset.verified());
        std::fs::write(&file, "name = \"mine\"\nlogin = \"/in\"\n").unwrap();
        assert!(GatewayPreset::find(file.to_str().unwrap()).is_err());
    }
}
