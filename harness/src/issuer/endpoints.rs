//! The issuer's endpoints, written to accept what real providers (Keycloak, Entra ID, Auth0,
//! Okta) accept, so that gateways other than `bff` (mod_auth_openidc, oauth2-proxy, ...) log in
//! with their default settings:
//!
//! - PKCE: a `code_challenge` sent (`S256`, or `plain`, the default method of RFC 7636 §4.3) is
//!   enforced at the token endpoint; none sent, the confidential client's authentication is
//!   enough, unless the issuer requires PKCE. A `code_verifier` for a code issued without a
//!   challenge is refused (RFC 9700 §2.1.1, as Keycloak does): it is a downgrade.
//! - client authentication: `client_secret_basic` (id and secret form-urlencoded as RFC 6749
//!   §2.3.1 says, or raw) or `client_secret_post`.
//! - `nonce` optional; `response_mode` `query`, `fragment` or `form_post`; parameters the issuer
//!   does not use (`prompt`, `max_age`, `ui_locales`, `acr_values`, `claims`, ...) ignored.
//! - `userinfo` by `GET` or `POST`, the access token as a Bearer header or a form parameter.
//!
//! Each handler holds the state lock only to read and change the state; id_tokens are signed
//! after it is released, so logins are signed in parallel.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::Method;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::Header;
use serde_json::{Map, Value, json};

use super::exchange::{IssuerRequest, Reply};
use super::load::LoadMeter;
use super::pkce::{Challenge, pkce_string};
use super::state::{CodeGrant, IdTokenFault, IssuerOutage, IssuerState, RefreshGrant, random_token};

pub(super) struct Settings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub id_token_lifetime: Duration,
    pub rotate_refresh_tokens: bool,
    /// Registered redirect URIs; empty: any.
    pub redirect_uris: Vec<String>,
    /// Users log in through an HTML form and consent through another.
    pub form_login: bool,
    /// Every authorization request must carry a `code_challenge`.
    pub require_pkce: bool,
}

/// The issuer's endpoints, by what they are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Discovery,
    Jwks,
    Authorize,
    Token,
    Userinfo,
    EndSession,
    Revoke,
    Login,
    Consent,
}

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Discovery,
        Endpoint::Jwks,
        Endpoint::Authorize,
        Endpoint::Token,
        Endpoint::Userinfo,
        Endpoint::EndSession,
        Endpoint::Revoke,
        Endpoint::Login,
        Endpoint::Consent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
            Endpoint::Authorize => "authorize",
            Endpoint::Token => "token",
            Endpoint::Userinfo => "userinfo",
            Endpoint::EndSession => "end_session",
            Endpoint::Revoke => "revoke",
            Endpoint::Login => "login",
            Endpoint::Consent => "consent",
        }
    }

    /// Pages the browser visits (the others are called by the gateway, over connections it keeps).
    pub fn is_front_channel(self) -> bool {
        matches!(self, Endpoint::Authorize | Endpoint::Login | Endpoint::Consent | Endpoint::EndSession)
    }

    pub fn route(method: &Method, path: &str) -> Option<Endpoint> {
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        match path {
            "/.well-known/openid-configuration" if get => Some(Endpoint::Discovery),
            "/jwks" if get => Some(Endpoint::Jwks),
            "/authorize" if get => Some(Endpoint::Authorize),
            "/token" if post => Some(Endpoint::Token),
            "/userinfo" if get || post => Some(Endpoint::Userinfo),
            "/end_session" if get || post => Some(Endpoint::EndSession),
            "/revoke" if post => Some(Endpoint::Revoke),
            "/login" if post => Some(Endpoint::Login),
            "/consent" if post => Some(Endpoint::Consent),
            _ => None,
        }
    }
}

/// What every request shares: the settings, the state, the load figures, and the discovery
/// document (serialized once: it never changes).
pub(super) struct Issuer {
    pub settings: Settings,
    pub state: Mutex<IssuerState>,
    pub load: LoadMeter,
    discovery: Bytes,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn count(state: &mut IssuerState, endpoint: &'static str) {
    *state.calls.entry(endpoint).or_default() += 1;
}

fn query(req: &IssuerRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.query.as_deref().unwrap_or("").as_bytes()).into_owned().collect()
}

fn form(req: &IssuerRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body).into_owned().collect()
}

/// The value of an `Authorization` header of the given scheme (schemes are case-insensitive).
fn authorization<'a>(req: &'a IssuerRequest, scheme: &str) -> Option<&'a str> {
    let value = req.headers.get("authorization")?.to_str().ok()?;
    let (given, credentials) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| credentials.trim())
}

fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::new(status)
        .insert_header("cache-control", "no-store")
        .set_body_json(json!({ "error": error, "error_description": description }))
}

fn redirect(location: &str) -> Reply {
    Reply::new(302).insert_header("location", location)
}

impl Issuer {
    pub fn new(settings: Settings, state: IssuerState) -> Self {
        let discovery = Bytes::from(serde_json::to_vec(&discovery(&settings)).expect("discovery serializes"));
        let names: Vec<&'static str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        Issuer { settings, state: Mutex::new(state), load: LoadMeter::new(&names), discovery }
    }

    pub fn lock(&self) -> MutexGuard<'_, IssuerState> {
        self.state.lock().expect("issuer state lock")
    }

    /// The endpoint's answer, or the outage a test switched on.
    pub fn answer(&self, endpoint: Endpoint, req: &IssuerRequest) -> Reply {
        let outage = self.lock().outage;
        match outage {
            IssuerOutage::None => self.handle(endpoint, req),
            IssuerOutage::Latency(delay) => self.handle(endpoint, req).set_delay(delay),
            IssuerOutage::Down => Reply::new(503).set_body_string("issuer down"),
        }
    }

    fn handle(&self, endpoint: Endpoint, req: &IssuerRequest) -> Reply {
        let s = &self.settings;
        match endpoint {
            Endpoint::Discovery => {
                count(&mut self.lock(), "discovery");
                Reply::new(200).set_body_json_bytes(self.discovery.clone())
            }
            Endpoint::Jwks => {
                let jwks = {
                    let mut st = self.lock();
                    count(&mut st, "jwks");
                    st.keys.jwks()
                };
                Reply::new(200).set_body_json_bytes(jwks)
            }
            Endpoint::Authorize => authorize(s, &mut self.lock(), req),
            Endpoint::Token => self.token(req),
            Endpoint::Userinfo => userinfo(&mut self.lock(), req),
            Endpoint::EndSession => {
                count(&mut self.lock(), "end_session");
                let mut params = query(req);
                params.extend(form(req));
                match params.get("post_logout_redirect_uri") {
                    Some(target) => redirect(target),
                    None => Reply::new(200).set_body_string("logged out"),
                }
            }
            Endpoint::Revoke => {
                let mut st = self.lock();
                count(&mut st, "revoke");
                if let Some(token) = form(req).get("token") {
                    st.refresh_tokens.remove(token);
                    st.revoked.push(token.clone());
                }
                Reply::new(200)
            }
            Endpoint::Login => login(&mut self.lock(), req),
            Endpoint::Consent => consent(s, &mut self.lock(), req),
        }
    }

    /// The token endpoint: the grant is checked and the tokens recorded under the lock, the
    /// id_token signed after it.
    fn token(&self, req: &IssuerRequest) -> Reply {
        let s = &self.settings;
        let (outcome, delay) = {
            let mut st = self.lock();
            count(&mut st, "token");
            let delay = st.token_faults.delay;
            let outcome = match st.token_faults.status {
                Some(status) => Err(oauth_error(status, "server_error", "token endpoint fault switched on")),
                None => token_grant(s, &mut st, req),
            };
            (outcome, delay)
        };
        let reply = match outcome {
            Ok(tokens) => tokens.reply(),
            Err(refusal) => refusal,
        };
        match delay {
            Some(d) => reply.set_delay(d),
            None => reply,
        }
    }
}

/// The discovery document: what this issuer supports.
fn discovery(s: &Settings) -> Value {
    let i = &s.issuer;
    let challenge_methods: &[&str] = &["S256", "plain"];
    json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "end_session_endpoint": format!("{i}/end_session"),
        "revocation_endpoint": format!("{i}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": challenge_methods,
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "name", "email"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })
}

fn authorize(s: &Settings, st: &mut IssuerState, req: &IssuerRequest) -> Reply {
    count(st, "authorize");
    let q = query(req);
    let Some(redirect_uri) = q.get("redirect_uri") else {
        return Reply::new(400).set_body_string("missing redirect_uri");
    };
    if q.get("client_id") != Some(&s.client_id) {
        return Reply::new(400).set_body_string("unknown client_id");
    }
    if !s.redirect_uris.is_empty() && !s.redirect_uris.contains(redirect_uri) {
        return Reply::new(400).set_body_string("redirect_uri is not registered for this client");
    }
    if url::Url::parse(redirect_uri).is_err() {
        return Reply::new(400).set_body_string("redirect_uri is not a URL");
    }
    if s.form_login && q.get("prompt").map(String::as_str) == Some("none") {
        // No single sign-on session here: a real provider answers `login_required`.
        return respond_to_client(s, &q, vec![("error", "login_required".into())]);
    }
    if s.form_login && q.get("prompt").map(String::as_str) != Some("deny") {
        let request = random_token("req-");
        st.pending.insert(request.clone(), (q.clone(), None));
        return html_page("Sign in", &login_form(&request, None));
    }
    let user = st.user(q.get("login_hint").map(String::as_str)).sub;
    issue_code(s, st, &q, &user)
}

/// The challenge of an authorization request, none when it sent none (and PKCE is not
/// required), or why the request is invalid.
fn challenge_of(s: &Settings, q: &HashMap<String, String>) -> Result<Option<Challenge>, &'static str> {
    let method = q.get("code_challenge_method").map(String::as_str);
    match (q.get("code_challenge"), method) {
        (None, Some(_)) => Err("code_challenge_method without code_challenge"),
        (None, None) if s.require_pkce => Err("code_challenge required"),
        (None, None) => Ok(None),
        (Some(value), method) => {
            let s256 = match method {
                Some("S256") => true,
                Some("plain") | None => false,
                Some(_) => return Err("unsupported code_challenge_method"),
            };
            if !pkce_string(value) || (s256 && value.len() != 43) {
                return Err("invalid code_challenge");
            }
            Ok(Some(Challenge { value: value.clone(), s256 }))
        }
    }
}

/// The end of a login: a code (or the error the request earns) back at the client's
/// `redirect_uri`.
fn issue_code(s: &Settings, st: &mut IssuerState, q: &HashMap<String, String>, sub: &str) -> Reply {
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let invalid = |description: &str| {
        vec![("error", "invalid_request".to_owned()), ("error_description", description.to_owned())]
    };
    let params = if q.get("response_type").map(String::as_str) != Some("code") {
        vec![("error", "unsupported_response_type".to_owned())]
    } else if q.get("prompt").map(String::as_str) == Some("deny") {
        vec![("error", "access_denied".to_owned())]
    } else {
        match challenge_of(s, q) {
            Err(why) => invalid(why),
            Ok(challenge) => {
                let code = random_token("code-");
                st.codes.insert(
                    code.clone(),
                    CodeGrant {
                        client_id: s.client_id.clone(),
                        redirect_uri,
                        nonce: q.get("nonce").cloned(),
                        challenge,
                        sub: sub.to_owned(),
                        sid: random_token("sid-"),
                        auth_time: now(),
                    },
                );
                vec![("code", code)]
            }
        }
    };
    respond_to_client(s, q, params)
}

/// Sends the authorization response's parameters (with `state` and `iss`) back to the client's
/// `redirect_uri` as its `response_mode` asks: in the query (the code flow's default), in the
/// fragment, or as a form the browser posts.
fn respond_to_client(s: &Settings, q: &HashMap<String, String>, mut params: Vec<(&str, String)>) -> Reply {
    let Ok(mut back) = url::Url::parse(q.get("redirect_uri").map(String::as_str).unwrap_or_default()) else {
        return Reply::new(400).set_body_string("redirect_uri is not a URL");
    };
    if let Some(state) = q.get("state") {
        params.insert(0, ("state", state.clone()));
    }
    params.push(("iss", s.issuer.clone()));
    match q.get("response_mode").map(String::as_str) {
        Some("form_post") => {
            let fields: String = params
                .iter()
                .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", html_escape(v)))
                .collect();
            let page = format!(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Submit</title></head>\
                 <body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">{fields}\
                 <noscript><button type=\"submit\">Continue</button></noscript></form></body></html>",
                html_escape(back.as_str())
            );
            Reply::new(200)
                .insert_header("content-type", "text/html; charset=utf-8")
                .insert_header("cache-control", "no-store")
                .set_body_string(page)
        }
        Some("fragment") => {
            let fragment: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
            back.set_fragment(Some(&fragment));
            redirect(back.as_str())
        }
        _ => {
            back.query_pairs_mut().extend_pairs(&params);
            redirect(back.as_str())
        }
    }
}

fn html_escape(value: &str) -> String {
    value.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

fn html_page(title: &str, body: &str) -> Reply {
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    );
    Reply::new(200).insert_header("content-type", "text/html; charset=utf-8").set_body_string(page)
}

fn login_form(request: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"error\">{e}</p>")).unwrap_or_default();
    format!(
        "{error}<form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <label>Username <input type=\"text\" name=\"username\" autocomplete=\"username\"></label>\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label>\
         <button type=\"submit\" name=\"action\" value=\"login\">Sign in</button></form>"
    )
}

/// `POST /login`: the login form's answer. A known user with the right password gets the
/// consent form; anything else gets the login form again.
fn login(st: &mut IssuerState, req: &IssuerRequest) -> Reply {
    count(st, "login");
    let f = form(req);
    let Some(request) = f.get("request").filter(|r| st.pending.contains_key(*r)).cloned() else {
        return Reply::new(400).set_body_string("unknown or expired login request");
    };
    let user = f.get("username").cloned().unwrap_or_default();
    let known = st.passwords.get(&user).is_some_and(|p| Some(p) == f.get("password"));
    if !known {
        return html_page("Sign in", &login_form(&request, Some("Invalid username or password.")));
    }
    if let Some(pending) = st.pending.get_mut(&request) {
        pending.1 = Some(user.clone());
    }
    html_page(
        "Allow access",
        &format!(
            "<p>Allow the application to sign you in as {user}?</p>\
             <form method=\"post\" action=\"/consent\"><input type=\"hidden\" name=\"request\" value=\"{request}\">\
             <button type=\"submit\" name=\"consent\" value=\"deny\">Deny</button>\
             <button type=\"submit\" name=\"consent\" value=\"allow\">Allow</button></form>"
        ),
    )
}

/// `POST /consent`: allowed, the code goes back to the client; denied, `access_denied`.
fn consent(s: &Settings, st: &mut IssuerState, req: &IssuerRequest) -> Reply {
    count(st, "consent");
    let f = form(req);
    let Some((mut q, Some(user))) = f.get("request").and_then(|r| st.pending.remove(r)) else {
        return Reply::new(400).set_body_string("unknown login request, or not signed in");
    };
    if f.get("consent").map(String::as_str) != Some("allow") {
        q.insert("prompt".into(), "deny".into());
    }
    issue_code(s, st, &q, &user)
}

/// Client authentication: `client_secret_basic` or `client_secret_post`. RFC 6749 §2.3.1 has
/// the Basic credentials form-urlencoded first (mod_auth_openidc, Go's oauth2 and `bff` do);
/// some clients send them raw, and providers accept both.
fn client_authenticated(s: &Settings, req: &IssuerRequest, form: &HashMap<String, String>) -> bool {
    let decode = |v: &str| url::form_urlencoded::parse(format!("v={v}").as_bytes()).next().map(|(_, v)| v.into_owned());
    let matches = |given: &str, expected: &str| given == expected || decode(given).as_deref() == Some(expected);
    if let Some(b64) = authorization(req, "Basic") {
        let Some(pair) = STANDARD.decode(b64).ok().and_then(|b| String::from_utf8(b).ok()) else {
            return false;
        };
        let Some((id, secret)) = pair.split_once(':') else {
            return false;
        };
        return matches(id, &s.client_id) && matches(secret, &s.client_secret);
    }
    form.get("client_id") == Some(&s.client_id) && form.get("client_secret") == Some(&s.client_secret)
}

/// The tokens of a grant, the id_token not yet signed.
struct IssuedTokens {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
    id_token: UnsignedIdToken,
}

struct UnsignedIdToken {
    header: Header,
    claims: Map<String, Value>,
    key: std::sync::Arc<super::keys::SigningKey>,
}

impl IssuedTokens {
    fn reply(self) -> Reply {
        let id_token = self.id_token.key.sign(&self.id_token.header, &self.id_token.claims);
        Reply::new(200).insert_header("cache-control", "no-store").set_body_json(json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "id_token": id_token,
            "scope": "openid profile email offline_access",
        }))
    }
}

fn token_grant(s: &Settings, st: &mut IssuerState, req: &IssuerRequest) -> Result<IssuedTokens, Reply> {
    let f = form(req);
    if !client_authenticated(s, req, &f) {
        return Err(oauth_error(401, "invalid_client", "client authentication failed")
            .insert_header("www-authenticate", "Basic realm=\"token\""));
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(s, st, &f),
        Some("refresh_token") => {
            count(st, "refresh");
            refresh_grant(s, st, &f)
        }
        _ => Err(oauth_error(400, "unsupported_grant_type", "grant_type")),
    }
}

fn code_grant(s: &Settings, st: &mut IssuerState, f: &HashMap<String, String>) -> Result<IssuedTokens, Reply> {
    let Some(grant) = f.get("code").and_then(|c| st.codes.remove(c)) else {
        return Err(oauth_error(400, "invalid_grant", "unknown or used code"));
    };
    if f.get("redirect_uri") != Some(&grant.redirect_uri) || grant.client_id != s.client_id {
        return Err(oauth_error(400, "invalid_grant", "redirect_uri does not match"));
    }
    match (&grant.challenge, f.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if challenge.verified_by(verifier) => {}
        (Some(_), Some(_)) => return Err(oauth_error(400, "invalid_grant", "PKCE verification failed")),
        (Some(_), None) => return Err(oauth_error(400, "invalid_grant", "code_verifier required")),
        (None, Some(_)) => {
            return Err(oauth_error(
                400,
                "invalid_grant",
                "code_verifier sent for a code issued without code_challenge",
            ));
        }
        (None, None) => {}
    }
    st.last_sid.insert(grant.sub.clone(), grant.sid.clone());
    let login = Login { sub: &grant.sub, sid: &grant.sid, auth_time: grant.auth_time };
    Ok(issue_tokens(s, st, &login, grant.nonce.as_deref(), None))
}

fn refresh_grant(s: &Settings, st: &mut IssuerState, f: &HashMap<String, String>) -> Result<IssuedTokens, Reply> {
    let Some(presented) = f.get("refresh_token") else {
        return Err(oauth_error(400, "invalid_request", "missing refresh_token"));
    };
    *st.refresh_presentations.entry(presented.clone()).or_default() += 1;
    let Some(grant) = st.refresh_tokens.get(presented) else {
        return Err(oauth_error(400, "invalid_grant", "unknown, revoked or rotated refresh token"));
    };
    let (sub, sid, auth_time) = (grant.sub.clone(), grant.sid.clone(), grant.auth_time);
    let keep = if s.rotate_refresh_tokens {
        st.refresh_tokens.remove(presented);
        None
    } else {
        Some(presented.clone())
    };
    Ok(issue_tokens(s, st, &Login { sub: &sub, sid: &sid, auth_time }, None, keep))
}

/// The login a grant stands for.
struct Login<'a> {
    sub: &'a str,
    sid: &'a str,
    auth_time: u64,
}

fn issue_tokens(
    s: &Settings,
    st: &mut IssuerState,
    login: &Login<'_>,
    nonce: Option<&str>,
    keep_refresh: Option<String>,
) -> IssuedTokens {
    let access_token = random_token("at-");
    st.access_tokens.insert(access_token.clone(), login.sub.to_owned());
    let refresh_token = keep_refresh.unwrap_or_else(|| {
        let rt = random_token("rt-");
        let grant = RefreshGrant { sub: login.sub.to_owned(), sid: login.sid.to_owned(), auth_time: login.auth_time };
        st.refresh_tokens.insert(rt.clone(), grant);
        rt
    });
    IssuedTokens {
        access_token,
        refresh_token,
        expires_in: st.access_token_lifetime.as_secs(),
        id_token: id_token(s, st, login, nonce),
    }
}

fn id_token(s: &Settings, st: &mut IssuerState, login: &Login<'_>, nonce: Option<&str>) -> UnsignedIdToken {
    let user = st.user(Some(login.sub));
    let now = now();
    let mut claims: Map<String, Value> = user.claims.clone();
    claims.insert("iss".into(), s.issuer.clone().into());
    claims.insert("sub".into(), login.sub.into());
    claims.insert("aud".into(), s.client_id.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + s.id_token_lifetime.as_secs()).into());
    claims.insert("auth_time".into(), login.auth_time.into());
    claims.insert("sid".into(), login.sid.into());
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    let mut key = st.keys.current.clone();
    let mut kid = key.kid.clone();
    match st.id_token_fault {
        None => {}
        Some(IdTokenFault::WrongAudience) => {
            claims.insert("aud".into(), "some-other-client".into());
        }
        Some(IdTokenFault::WrongIssuer) => {
            claims.insert("iss".into(), "https://impostor.example".into());
        }
        Some(IdTokenFault::WrongNonce) => {
            claims.insert("nonce".into(), "not-the-nonce-of-this-login".into());
        }
        Some(IdTokenFault::Expired) => {
            claims.insert("iat".into(), (now - 7200).into());
            claims.insert("exp".into(), (now - 3600).into());
        }
        Some(IdTokenFault::IssuedInTheFuture) => {
            claims.insert("iat".into(), (now + 3600).into());
            claims.insert("exp".into(), (now + 7200).into());
        }
        Some(IdTokenFault::WrongSignature) => key = st.keys.rogue.clone(),
        Some(IdTokenFault::UnknownKid) => kid = "key-nobody-published".into(),
        Some(IdTokenFault::MissingSub) => {
            claims.remove("sub");
        }
    }
    let mut header = Header::new(key.alg);
    header.kid = Some(kid);
    UnsignedIdToken { header, claims, key }
}

/// `userinfo` (OpenID Connect Core §5.3): the access token as a Bearer header, or (RFC 6750
/// §2.2) as the `access_token` form parameter of a `POST`.
fn userinfo(st: &mut IssuerState, req: &IssuerRequest) -> Reply {
    count(st, "userinfo");
    let token = authorization(req, "Bearer").map(str::to_owned).or_else(|| form(req).remove("access_token"));
    let Some(sub) = token.and_then(|t| st.access_tokens.get(&t).cloned()) else {
        return Reply::new(401).insert_header("www-authenticate", "Bearer error=\"invalid_token\"");
    };
    let user = st.user(Some(&sub));
    let mut claims = user.claims;
    claims.insert("sub".into(), sub.into());
    Reply::new(200).set_body_json(Value::Object(claims))
}

/// A back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.4).
pub(super) fn logout_token(s: &Settings, st: &IssuerState, sid: Option<&str>, sub: Option<&str>) -> String {
    let now = now();
    let mut claims = Map::new();
    claims.insert("iss".into(), s.issuer.clone().into());
    claims.insert("aud".into(), s.client_id.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + 120).into());
    claims.insert("jti".into(), random_token("jti-").into());
    claims.insert("events".into(), json!({ "http://schemas.openid.net/event/backchannel-logout": {} }));
    if let Some(sid) = sid {
        claims.insert("sid".into(), sid.into());
    }
    if let Some(sub) = sub {
        claims.insert("sub".into(), sub.into());
    }
    let key = &st.keys.current;
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = Some("logout+jwt".into());
    key.sign(&header, &claims)
}
