//! The mock issuer over real HTTP, as gateways other than `bff` call it: PKCE optional for the
//! confidential client (and enforced when sent or required), both client authentication
//! methods, `nonce` optional, the authorization parameters real providers ignore, every
//! `response_mode`, `userinfo` by header or form, refresh token rotation, and the load figures
//! the issuer reports about itself.

use std::collections::HashMap;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use harness::MockIssuer;
use serde_json::Value;

const REDIRECT: &str = "http://rp.test/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// A relying party as a gateway is one: no redirects followed, the parameters it chooses.
struct RelyingParty {
    http: reqwest::Client,
    issuer: String,
}

impl RelyingParty {
    fn of(issuer: &MockIssuer) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        RelyingParty { http, issuer: issuer.url().to_owned() }
    }

    /// `authorize` with the usual parameters plus `extra`; the parameters it sent back to the
    /// redirect URI (query).
    async fn authorize(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let response = self.authorize_raw(extra).await;
        assert_eq!(response.status(), 302, "{}", response.text().await.unwrap());
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        assert!(location.as_str().starts_with(REDIRECT), "{location}");
        location.query_pairs().into_owned().collect()
    }

    async fn authorize_raw(&self, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", "bff-client"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email profile"),
        ];
        params.extend_from_slice(extra);
        self.http.get(format!("{}/authorize", self.issuer)).query(&params).send().await.unwrap()
    }

    async fn code(&self, extra: &[(&str, &str)]) -> String {
        let back = self.authorize(extra).await;
        back.get("code").cloned().unwrap_or_else(|| panic!("no code: {back:?}"))
    }

    /// The token endpoint with `client_secret_basic` and `form`; status and JSON body.
    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let request = self.http.post(format!("{}/token", self.issuer)).basic_auth("bff-client", Some("bff-secret"));
        send(request.form(form)).await
    }

    async fn exchange(&self, code: &str, verifier: Option<&str>) -> (u16, Value) {
        let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT)];
        if let Some(verifier) = verifier {
            form.push(("code_verifier", verifier));
        }
        self.token(&form).await
    }
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

fn claims(id_token: &Value) -> serde_json::Map<String, Value> {
    let payload = id_token.as_str().expect("an id_token").split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_confidential_client_logs_in_without_pkce() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let rp = RelyingParty::of(&issuer);
    let code = rp.code(&[("state", "s1"), ("nonce", "n1")]).await;
    let (status, body) = rp.exchange(&code, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims(&body["id_token"])["nonce"], "n1");
    assert!(body["access_token"].is_string() && body["refresh_token"].is_string());

    // Without client authentication, no PKCE: nothing proves who redeems the code.
    let code = rp.code(&[]).await;
    let form = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT)];
    let (status, body) = send(rp.http.post(format!("{}/token", rp.issuer)).form(&form)).await;
    assert_eq!((status, error_of(&body)), (401, "invalid_client"));
}

#[tokio::test]
async fn a_code_challenge_sent_is_enforced() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let rp = RelyingParty::of(&issuer);
    let challenge = s256(VERIFIER);
    let with_s256 = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];

    let code = rp.code(&with_s256).await;
    let (status, body) = rp.exchange(&code, Some(&"x".repeat(43))).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_grant"), "a wrong verifier");

    let code = rp.code(&with_s256).await;
    let (status, body) = rp.exchange(&code, None).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_grant"), "no verifier for a code with a challenge");

    let code = rp.code(&with_s256).await;
    assert_eq!(rp.exchange(&code, Some(VERIFIER)).await.0, 200);

    // `plain`, named or (RFC 7636 §4.3) by default.
    for method in [Some("plain"), None] {
        let mut params = vec![("code_challenge", VERIFIER)];
        params.extend(method.map(|m| ("code_challenge_method", m)));
        let code = rp.code(&params).await;
        assert_eq!(rp.exchange(&code, Some(VERIFIER)).await.0, 200, "{method:?}");
    }

    let back = rp.authorize(&[("code_challenge", challenge.as_str()), ("code_challenge_method", "S512")]).await;
    assert_eq!(back.get("error").map(String::as_str), Some("invalid_request"), "{back:?}");
    assert!(!back.contains_key("code"));
}

#[tokio::test]
async fn a_verifier_for_a_code_issued_without_challenge_is_refused() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let rp = RelyingParty::of(&issuer);
    let code = rp.code(&[]).await;
    let (status, body) = rp.exchange(&code, Some(VERIFIER)).await;
    assert_eq!((status, error_of(&body)), (400, "invalid_grant"), "{body}");
}

#[tokio::test]
async fn require_pkce_refuses_an_authorization_request_without_challenge() {
    let issuer = MockIssuer::builder().require_pkce(true).run().await.unwrap();
    let rp = RelyingParty::of(&issuer);
    let back = rp.authorize(&[("state", "s1")]).await;
    assert_eq!(back.get("error").map(String::as_str), Some("invalid_request"), "{back:?}");
    assert_eq!(back.get("state").map(String::as_str), Some("s1"));
    assert!(!back.contains_key("code"));

    let challenge = s256(VERIFIER);
    let code = rp.code(&[("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")]).await;
    assert_eq!(rp.exchange(&code, Some(VERIFIER)).await.0, 200);
}

#[tokio::test]
async fn both_client_authentication_methods_are_accepted() {
    // A secret with characters RFC 6749 §2.3.1's form-encoding changes.
    let secret = "s3cr3t with space+plus:colon%/";
    let issuer = MockIssuer::builder().client("rp client", secret).run().await.unwrap();
    let rp = RelyingParty::of(&issuer);
    let code_for = |rp: &RelyingParty| {
        let params =
            [("response_type", "code"), ("client_id", "rp client"), ("redirect_uri", REDIRECT), ("scope", "openid")];
        let request = rp.http.get(format!("{}/authorize", rp.issuer)).query(&params);
        async move {
            let response = request.send().await.unwrap();
            let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
            location.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned()
        }
    };
    let token = |code: String, basic: Option<String>, post: bool| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", REDIRECT.to_owned()),
        ];
        if post {
            form.push(("client_id", "rp client".into()));
            form.push(("client_secret", secret.into()));
        }
        let mut request = rp.http.post(format!("{}/token", rp.issuer)).form(&form);
        if let Some(credentials) = basic {
            request = request.header("authorization", format!("Basic {}", STANDARD.encode(credentials)));
        }
        send(request)
    };
    let encode = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();

    let encoded = format!("{}:{}", encode("rp client"), encode(secret));
    assert_eq!(token(code_for(&rp).await, Some(encoded), false).await.0, 200, "client_secret_basic, form-encoded");
    // curl_easy_escape (mod_auth_openidc) writes a space as %20, not `+`.
    let percent = format!("rp%20client:{}", encode(secret).replace('+', "%20"));
    assert_eq!(token(code_for(&rp).await, Some(percent), false).await.0, 200, "client_secret_basic, %20");
    assert_eq!(token(code_for(&rp).await, None, true).await.0, 200, "client_secret_post");
    let (status, body) = token(code_for(&rp).await, Some(format!("rp client:{secret}x")), false).await;
    assert_eq!((status, error_of(&body)), (401, "invalid_client"), "a wrong secret");
}

#[tokio::test]
async fn an_id_token_carries_a_nonce_only_when_the_request_had_one() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let rp = RelyingParty::of(&issuer);
    let code = rp.code(&[("state", "s")]).await;
    let (status, body) = rp.exchange(&code, None).await;
    assert_eq!(status, 200);
    let claims = claims(&body["id_token"]);
    assert!(!claims.contains_key("nonce"), "{claims:?}");
    assert!(claims["auth_time"].is_u64() && claims["sub"] == "alice", "{claims:?}");
}

#[tokio::test]
async fn what_oauth2_proxy_and_mod_auth_openidc_send_by_default_is_accepted() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let rp = RelyingParty::of(&issuer);
    // oauth2-proxy: a `nonce:redirect` state, no nonce, `approval_prompt`; others: the
    // parameters real providers accept and a mock has no use for.
    let extra = [
        ("state", "9f2c1a0e6b7d4c3f:/app/page?x=1"),
        ("approval_prompt", "force"),
        ("response_mode", "query"),
        ("prompt", "login consent"),
        ("max_age", "3600"),
        ("ui_locales", "fr-CA fr en"),
        ("acr_values", "urn:mace:incommon:iap:silver"),
        ("claims", r#"{"id_token":{"email":{"essential":true}}}"#),
        ("login_hint", "bob"),
        ("display", "page"),
    ];
    let back = rp.authorize(&extra).await;
    assert_eq!(back.get("state").map(String::as_str), Some("9f2c1a0e6b7d4c3f:/app/page?x=1"));
    assert_eq!(back.get("iss").map(String::as_str), Some(issuer.url()));
    let (status, body) = rp.exchange(&back["code"], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims(&body["id_token"])["sub"], "bob");

    // `fragment` and `form_post`.
    let response = rp.authorize_raw(&[("response_mode", "fragment"), ("state", "f")]).await;
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let fragment: HashMap<String, String> =
        url::form_urlencoded::parse(location.fragment().unwrap_or("").as_bytes()).into_owned().collect();
    assert!(fragment.contains_key("code") && fragment["state"] == "f", "{location}");
    let response = rp.authorize_raw(&[("response_mode", "form_post"), ("state", "p")]).await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains(&format!("action=\"{REDIRECT}\"")) && page.contains("name=\"code\""), "{page}");

    // Discovery says what is supported.
    let (status, discovery) = send(rp.http.get(format!("{}/.well-known/openid-configuration", rp.issuer))).await;
    assert_eq!(status, 200);
    assert_eq!(discovery["code_challenge_methods_supported"], serde_json::json!(["S256", "plain"]));
    assert_eq!(
        discovery["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    assert_eq!(discovery["response_modes_supported"], serde_json::json!(["query", "fragment", "form_post"]));
}

#[tokio::test]
async fn userinfo_takes_the_access_token_as_bearer_or_form() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    let rp = RelyingParty::of(&issuer);
    let code = rp.code(&[]).await;
    let (_, tokens) = rp.exchange(&code, None).await;
    let access_token = tokens["access_token"].as_str().unwrap();
    let url = format!("{}/userinfo", rp.issuer);
    let (status, info) = send(
        rp.http
            .get(&url)
            .header("authorization", format!("Bearer {access_token}"))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!((status, info["sub"].as_str()), (200, Some("alice")));
    let (status, info) = send(rp.http.post(&url).form(&[("access_token", access_token)])).await;
    assert_eq!((status, info["sub"].as_str()), (200, Some("alice")));
    assert_eq!(send(rp.http.get(&url).bearer_auth("at-unknown")).await.0, 401);
}

#[tokio::test]
async fn refresh_tokens_rotate_only_when_told_to() {
    for rotate in [false, true] {
        let issuer = MockIssuer::builder().rotate_refresh_tokens(rotate).run().await.unwrap();
        let rp = RelyingParty::of(&issuer);
        let code = rp.code(&[]).await;
        let (_, tokens) = rp.exchange(&code, None).await;
        let refresh_token = tokens["refresh_token"].as_str().unwrap();
        let refresh = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        let (status, first) = rp.token(&refresh).await;
        assert_eq!(status, 200);
        assert_eq!(first["refresh_token"].as_str() == Some(refresh_token), !rotate);
        let (status, body) = rp.token(&refresh).await;
        let expected = if rotate { (400, "invalid_grant") } else { (200, "") };
        assert_eq!((status, error_of(&body)), expected, "rotate = {rotate}");
    }
}

#[tokio::test]
async fn the_load_figures_follow_the_requests() {
    let issuer = MockIssuer::builder().run().await.unwrap();
    assert_eq!(issuer.load().overall.requests, 0);
    let rp = RelyingParty::of(&issuer);
    for _ in 0..5 {
        let code = rp.code(&[]).await;
        assert_eq!(rp.exchange(&code, None).await.0, 200);
    }
    issuer.set_outage(harness::issuer::IssuerOutage::Down);
    assert_eq!(rp.authorize_raw(&[]).await.status(), 503);

    let load = issuer.load();
    assert_eq!(load.endpoint("token").requests, 5);
    assert_eq!(load.endpoint("authorize").requests, 6);
    assert_eq!(load.endpoint("authorize").errors_5xx, 1);
    assert_eq!((load.overall.requests, load.overall.errors_5xx), (11, 1));
    let token = load.endpoint("token");
    assert!(token.max_in_flight >= 1 && token.p50_ms > 0.0 && token.p99_ms >= token.p50_ms, "{token:?}");
    assert!(load.to_string().contains("11 requests, 1 answered 5xx"), "{load}");
}
