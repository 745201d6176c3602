//! The issuer's endpoints as wiremock responders. wiremock responders are synchronous, so each
//! is a closure over the shared [`IssuerState`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Header, encode};
use serde_json::{Map, Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

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
}

type Shared = Arc<Mutex<IssuerState>>;
type Responder = Box<dyn Fn(&Request) -> ResponseTemplate + Send + Sync>;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn count(state: &mut IssuerState, endpoint: &'static str) {
    *state.calls.entry(endpoint).or_default() += 1;
}

fn query(req: &Request) -> HashMap<String, String> {
    req.url.query_pairs().into_owned().collect()
}

fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body).into_owned().collect()
}

fn oauth_error(status: u16, error: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "error": error, "error_description": description }))
}

fn redirect(location: &str) -> ResponseTemplate {
    ResponseTemplate::new(302).insert_header("location", location)
}

pub(super) async fn mount(server: &MockServer, settings: Arc<Settings>, state: Shared) {
    let discovery = {
        let (s, st) = (settings.clone(), state.clone());
        move |_: &Request| {
            count(&mut st.lock().expect("issuer lock"), "discovery");
            let i = &s.issuer;
            ResponseTemplate::new(200).set_body_json(json!({
                "issuer": i,
                "authorization_endpoint": format!("{i}/authorize"),
                "token_endpoint": format!("{i}/token"),
                "jwks_uri": format!("{i}/jwks"),
                "userinfo_endpoint": format!("{i}/userinfo"),
                "end_session_endpoint": format!("{i}/end_session"),
                "revocation_endpoint": format!("{i}/revoke"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
            }))
        }
    };
    let jwks = {
        let st = state.clone();
        move |_: &Request| {
            let mut st = st.lock().expect("issuer lock");
            count(&mut st, "jwks");
            ResponseTemplate::new(200).set_body_json(st.keys.jwks())
        }
    };
    let authorize = {
        let (s, st) = (settings.clone(), state.clone());
        move |req: &Request| authorize(&s, &mut st.lock().expect("issuer lock"), req)
    };
    let token = {
        let (s, st) = (settings.clone(), state.clone());
        move |req: &Request| token(&s, &mut st.lock().expect("issuer lock"), req)
    };
    let userinfo = {
        let st = state.clone();
        move |req: &Request| userinfo(&mut st.lock().expect("issuer lock"), req)
    };
    let end_session = {
        let st = state.clone();
        move |req: &Request| {
            count(&mut st.lock().expect("issuer lock"), "end_session");
            match query(req).get("post_logout_redirect_uri") {
                Some(target) => redirect(target),
                None => ResponseTemplate::new(200).set_body_string("logged out"),
            }
        }
    };
    let login = {
        let st = state.clone();
        move |req: &Request| login(&mut st.lock().expect("issuer lock"), req)
    };
    let consent = {
        let (s, st) = (settings.clone(), state.clone());
        move |req: &Request| consent(&s, &mut st.lock().expect("issuer lock"), req)
    };
    let revoke = {
        let st = state.clone();
        move |req: &Request| {
            let mut st = st.lock().expect("issuer lock");
            count(&mut st, "revoke");
            if let Some(token) = form(req).get("token") {
                st.refresh_tokens.remove(token);
                st.revoked.push(token.clone());
            }
            ResponseTemplate::new(200)
        }
    };

    let routes: Vec<(&str, &str, Responder)> = vec![
        ("GET", "/.well-known/openid-configuration", Box::new(discovery)),
        ("GET", "/jwks", Box::new(jwks)),
        ("GET", "/authorize", Box::new(authorize)),
        ("POST", "/token", Box::new(token)),
        ("GET", "/userinfo", Box::new(userinfo)),
        ("GET", "/end_session", Box::new(end_session)),
        ("POST", "/revoke", Box::new(revoke)),
        ("POST", "/login", Box::new(login)),
        ("POST", "/consent", Box::new(consent)),
    ];
    for (verb, route, responder) in routes {
        let shared = state.clone();
        let with_outage = move |req: &Request| {
            let outage = shared.lock().expect("issuer state").outage;
            match outage {
                IssuerOutage::None => responder(req),
                IssuerOutage::Latency(delay) => responder(req).set_delay(delay),
                IssuerOutage::Down => ResponseTemplate::new(503).set_body_string("issuer down"),
            }
        };
        Mock::given(method(verb)).and(path(route)).respond_with(with_outage).mount(server).await;
    }
}

fn authorize(s: &Settings, st: &mut IssuerState, req: &Request) -> ResponseTemplate {
    count(st, "authorize");
    let q = query(req);
    let Some(redirect_uri) = q.get("redirect_uri") else {
        return ResponseTemplate::new(400).set_body_string("missing redirect_uri");
    };
    if q.get("client_id") != Some(&s.client_id) {
        return ResponseTemplate::new(400).set_body_string("unknown client_id");
    }
    if !s.redirect_uris.is_empty() && !s.redirect_uris.contains(redirect_uri) {
        return ResponseTemplate::new(400).set_body_string("redirect_uri is not registered for this client");
    }
    if url::Url::parse(redirect_uri).is_err() {
        return ResponseTemplate::new(400).set_body_string("redirect_uri is not a URL");
    }
    if s.form_login && q.get("prompt").map(String::as_str) != Some("deny") {
        let request = random_token("req-");
        st.pending.insert(request.clone(), (q.clone(), None));
        return html_page("Sign in", &login_form(&request, None));
    }
    let user = st.user(q.get("login_hint").map(String::as_str)).sub;
    issue_code(s, st, &q, &user)
}

/// The end of a login: a code (or the error the request earns) back at the client's
/// `redirect_uri`.
fn issue_code(s: &Settings, st: &mut IssuerState, q: &HashMap<String, String>, sub: &str) -> ResponseTemplate {
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let Ok(mut back) = url::Url::parse(&redirect_uri) else {
        return ResponseTemplate::new(400).set_body_string("redirect_uri is not a URL");
    };
    {
        let mut pairs = back.query_pairs_mut();
        if let Some(state) = q.get("state") {
            pairs.append_pair("state", state);
        }
        if q.get("response_type").map(String::as_str) != Some("code") {
            pairs.append_pair("error", "unsupported_response_type");
        } else if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
            pairs.append_pair("error", "invalid_request");
        } else if q.get("prompt").map(String::as_str) == Some("deny") {
            pairs.append_pair("error", "access_denied");
        } else {
            let code = random_token("code-");
            st.codes.insert(
                code.clone(),
                CodeGrant {
                    client_id: s.client_id.clone(),
                    redirect_uri: redirect_uri.clone(),
                    nonce: q.get("nonce").cloned(),
                    challenge: q.get("code_challenge").cloned(),
                    sub: sub.to_owned(),
                    sid: random_token("sid-"),
                },
            );
            pairs.append_pair("code", &code);
        }
        pairs.append_pair("iss", &s.issuer);
    }
    redirect(back.as_str())
}

fn html_page(title: &str, body: &str) -> ResponseTemplate {
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    );
    ResponseTemplate::new(200).insert_header("content-type", "text/html; charset=utf-8").set_body_string(page)
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
fn login(st: &mut IssuerState, req: &Request) -> ResponseTemplate {
    count(st, "login");
    let f = form(req);
    let Some(request) = f.get("request").filter(|r| st.pending.contains_key(*r)).cloned() else {
        return ResponseTemplate::new(400).set_body_string("unknown or expired login request");
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
fn consent(s: &Settings, st: &mut IssuerState, req: &Request) -> ResponseTemplate {
    count(st, "consent");
    let f = form(req);
    let Some((mut q, Some(user))) = f.get("request").and_then(|r| st.pending.remove(r)) else {
        return ResponseTemplate::new(400).set_body_string("unknown login request, or not signed in");
    };
    if f.get("consent").map(String::as_str) != Some("allow") {
        q.insert("prompt".into(), "deny".into());
    }
    issue_code(s, st, &q, &user)
}

/// Client authentication: `client_secret_basic` (RFC 6749 §2.3.1 encoding) or `client_secret_post`.
fn client_authenticated(s: &Settings, req: &Request, form: &HashMap<String, String>) -> bool {
    let decode = |v: &str| url::form_urlencoded::parse(format!("v={v}").as_bytes()).next().map(|(_, v)| v.into_owned());
    if let Some(header) = req.headers.get("authorization").and_then(|v| v.to_str().ok())
        && let Some(b64) = header.strip_prefix("Basic ")
    {
        let Some(pair) = STANDARD.decode(b64).ok().and_then(|b| String::from_utf8(b).ok()) else {
            return false;
        };
        let Some((id, secret)) = pair.split_once(':') else {
            return false;
        };
        return decode(id).as_deref() == Some(s.client_id.as_str())
            && decode(secret).as_deref() == Some(s.client_secret.as_str());
    }
    form.get("client_id") == Some(&s.client_id) && form.get("client_secret") == Some(&s.client_secret)
}

fn token(s: &Settings, st: &mut IssuerState, req: &Request) -> ResponseTemplate {
    count(st, "token");
    let delay = st.token_faults.delay;
    let with_delay = |t: ResponseTemplate| match delay {
        Some(d) => t.set_delay(d),
        None => t,
    };
    if let Some(status) = st.token_faults.status {
        return with_delay(oauth_error(status, "server_error", "token endpoint fault switched on"));
    }
    let f = form(req);
    if !client_authenticated(s, req, &f) {
        return with_delay(oauth_error(401, "invalid_client", "client authentication failed"));
    }
    let response = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(s, st, &f),
        Some("refresh_token") => {
            count(st, "refresh");
            refresh_grant(s, st, &f)
        }
        _ => oauth_error(400, "unsupported_grant_type", "grant_type"),
    };
    with_delay(response)
}

fn code_grant(s: &Settings, st: &mut IssuerState, f: &HashMap<String, String>) -> ResponseTemplate {
    let Some(grant) = f.get("code").and_then(|c| st.codes.remove(c)) else {
        return oauth_error(400, "invalid_grant", "unknown or used code");
    };
    if f.get("redirect_uri") != Some(&grant.redirect_uri) || grant.client_id != s.client_id {
        return oauth_error(400, "invalid_grant", "redirect_uri does not match");
    }
    let verified = match (&grant.challenge, f.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes())) == *challenge,
        _ => false,
    };
    if !verified {
        return oauth_error(400, "invalid_grant", "PKCE verification failed");
    }
    st.last_sid.insert(grant.sub.clone(), grant.sid.clone());
    issue_tokens(s, st, &grant.sub, &grant.sid, grant.nonce.as_deref(), None)
}

fn refresh_grant(s: &Settings, st: &mut IssuerState, f: &HashMap<String, String>) -> ResponseTemplate {
    let Some(presented) = f.get("refresh_token") else {
        return oauth_error(400, "invalid_request", "missing refresh_token");
    };
    *st.refresh_presentations.entry(presented.clone()).or_default() += 1;
    let Some(grant) = st.refresh_tokens.get(presented) else {
        return oauth_error(400, "invalid_grant", "unknown, revoked or rotated refresh token");
    };
    let (sub, sid) = (grant.sub.clone(), grant.sid.clone());
    let keep = if s.rotate_refresh_tokens {
        st.refresh_tokens.remove(presented);
        None
    } else {
        Some(presented.clone())
    };
    issue_tokens(s, st, &sub, &sid, None, keep)
}

fn issue_tokens(
    s: &Settings,
    st: &mut IssuerState,
    sub: &str,
    sid: &str,
    nonce: Option<&str>,
    keep_refresh: Option<String>,
) -> ResponseTemplate {
    let access_token = random_token("at-");
    st.access_tokens.insert(access_token.clone(), sub.to_owned());
    let refresh_token = keep_refresh.unwrap_or_else(|| {
        let rt = random_token("rt-");
        st.refresh_tokens.insert(rt.clone(), RefreshGrant { sub: sub.to_owned(), sid: sid.to_owned() });
        rt
    });
    let id_token = id_token(s, st, sub, sid, nonce);
    ResponseTemplate::new(200).insert_header("cache-control", "no-store").set_body_json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": st.access_token_lifetime.as_secs(),
        "refresh_token": refresh_token,
        "id_token": id_token,
        "scope": "openid profile email offline_access",
    }))
}

fn id_token(s: &Settings, st: &mut IssuerState, sub: &str, sid: &str, nonce: Option<&str>) -> String {
    let user = st.user(Some(sub));
    let now = now();
    let mut claims: Map<String, Value> = user.claims.clone();
    claims.insert("iss".into(), s.issuer.clone().into());
    claims.insert("sub".into(), sub.into());
    claims.insert("aud".into(), s.client_id.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + s.id_token_lifetime.as_secs()).into());
    claims.insert("sid".into(), sid.into());
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    let mut key = &st.keys.current;
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
        Some(IdTokenFault::WrongSignature) => key = &st.keys.rogue,
        Some(IdTokenFault::UnknownKid) => kid = "key-nobody-published".into(),
        Some(IdTokenFault::MissingSub) => {
            claims.remove("sub");
        }
    }
    let mut header = Header::new(key.alg);
    header.kid = Some(kid);
    encode(&header, &claims, &key.encoding).expect("mock issuer signs")
}

fn userinfo(st: &mut IssuerState, req: &Request) -> ResponseTemplate {
    count(st, "userinfo");
    let token = req
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let Some(sub) = token.and_then(|t| st.access_tokens.get(&t).cloned()) else {
        return ResponseTemplate::new(401).insert_header("www-authenticate", "Bearer error=\"invalid_token\"");
    };
    let user = st.user(Some(&sub));
    let mut claims = user.claims;
    claims.insert("sub".into(), sub.into());
    ResponseTemplate::new(200).set_body_json(Value::Object(claims))
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
    encode(&header, &claims, &key.encoding).expect("mock issuer signs")
}
