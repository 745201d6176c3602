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
        "session.absolute_lifetime",
        "account_prefix",
        "public_url",
        "routes",
    ] {
        setting(&one, name);
    }
    assert_eq!(setting(&one, "session.idle_timeout")["value"], "20m");
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

/// The `bff_config_fingerprint` lines of a node's `/metrics`, as `setting → digest`.
async fn fingerprint_gauge(base: &str) -> std::collections::BTreeMap<String, String> {
    crate::stack::metrics(base)
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("bff_config_fingerprint{"))
        .map(|labels| {
            let label = |name: &str| labels.split(&format!("{name}=\"")).nth(1).unwrap().split('"').next().unwrap();
            (label("setting").to_owned(), label("digest").to_owned())
        })
        .collect()
}

/// The drift gauge a Prometheus alert reads (`deploy/prometheus/bff-alerts.yml`): one replica
/// with another client secret shows another digest for that setting, and only for it.
#[tokio::test]
async fn a_node_with_another_client_secret_shows_another_digest_on_metrics() {
    let s = stack().nodes(2).run().await;
    let odd_port = harness::process::free_port();
    let odd = crate::stack::node_builder(&s.issuer, s.redis.as_ref(), &s.url(0))
        .port(odd_port)
        .env("BFF_OIDC_CLIENT_SECRET", "another-secret")
        .run()
        .await
        .unwrap();
    let (one, two, other) =
        (fingerprint_gauge(&s.url(0)).await, fingerprint_gauge(&s.url(1)).await, fingerprint_gauge(&odd.url()).await);
    assert!(one.contains_key("oidc.client_secret") && one.contains_key("session.idle_timeout"), "{one:?}");
    assert_eq!(one, two, "nodes configured alike show the same digests");
    let differing: Vec<&String> = one.keys().filter(|setting| one[*setting] != other[*setting]).collect();
    assert_eq!(differing, ["oidc.client_secret"]);
}
