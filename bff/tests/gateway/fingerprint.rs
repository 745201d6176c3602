//! `/ops/fingerprint`: the settings nodes must share, for operators only, secrets as digests keyed
//! by the ops token and the caller's nonce. Two nodes configured alike agree; nothing secret is
//! in the answer.

use crate::stack::stack;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const KEK: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn fingerprint(base: &str, token: Option<&str>, nonce: &str) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new().get(format!("{base}/ops/fingerprint?nonce={nonce}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or_default())
}

fn setting<'a>(answer: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    answer["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {answer}"))
}

#[tokio::test]
async fn operators_see_what_must_agree_and_no_secret() {
    let s = stack().nodes(2).env("BFF_OPS_TOKEN", TOKEN).env("BFF_KEY_ENCRYPTION_KEY", KEK).run().await;
    let nonce = "00112233445566778899aabbccddeeff";

    assert_eq!(fingerprint(&s.url(0), None, nonce).await.0, 401);
    assert_eq!(fingerprint(&s.url(0), Some("0123456789abcdef0123456789abcdeX"), nonce).await.0, 401);
    assert_eq!(fingerprint(&s.url(0), Some(TOKEN), "not-hex").await.0, 400);

    let (status, one) = fingerprint(&s.url(0), Some(TOKEN), nonce).await;
    assert_eq!(status, 200, "{one}");
    let (_, two) = fingerprint(&s.url(1), Some(TOKEN), nonce).await;
    assert_eq!(one["settings"], two["settings"], "two nodes configured alike agree");
    for name in [
        "version",
        "store",
        "redis.db",
        "redis.key_prefix",
        "key_ring",
        "key_encryption_key",
        "oidc.authority",
        "oidc.client_id",
        "oidc.client_secret",
        "oidc.scopes",
        "session.cookie_name",
        "session.same_site",
        "session.idle_timeout",
        "session.touch_interval",
        "session.absolute_lifetime",
        "account_prefix",
        "public_url",
        "routes",
    ] {
        setting(&one, name);
    }
    assert_eq!(setting(&one, "session.idle_timeout")["value"], "20m");
    assert_eq!(setting(&one, "session.touch_interval")["value"], "1m");
    assert_eq!(setting(&one, "oidc.client_secret")["secret"], true);
    let text = one.to_string();
    assert!(!text.contains("bff-secret") && !text.contains(KEK) && !text.contains(TOKEN), "a secret in {text}");
    assert!(one["time_ms"].as_u64().unwrap() > 0);

    // Another nonce, other digests: one answer cannot be matched against another.
    let (_, again) = fingerprint(&s.url(0), Some(TOKEN), "ffeeddccbbaa99887766554433221100").await;
    assert_ne!(setting(&again, "oidc.client_secret")["value"], setting(&one, "oidc.client_secret")["value"]);
    assert_eq!(setting(&again, "oidc.client_id")["value"], setting(&one, "oidc.client_id")["value"]);
}

#[tokio::test]
async fn without_an_ops_token_there_is_no_such_endpoint() {
    let s = stack().memory().env("BFF_OPS_TOKEN", "").run().await;
    assert_eq!(fingerprint(&s.url(0), Some(TOKEN), "00112233445566778899aabbccddeeff").await.0, 404);
}
