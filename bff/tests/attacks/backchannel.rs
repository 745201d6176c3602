//! Medium 8: back-channel logout tokens. A replayed token ends nothing (a user who logged in
//! again stays logged in), on any node; a request without a token is a 400.

use harness::VirtualUser;

use crate::fixture::http;
use crate::stack::{backchannel_logout, stack};

#[tokio::test]
async fn a_replayed_logout_token_is_refused_on_every_node() {
    let s = stack().nodes(2).run().await;
    let user = VirtualUser::new(Some("erin"));
    user.login(&s.url(0)).await.unwrap();
    let token = s.issuer.logout_token(None, Some("erin"));
    assert_eq!(backchannel_logout(&s.url(0), &token).await, 200);
    assert_eq!(user.me(&s.url(0)).await.unwrap().status, 404);

    let again = VirtualUser::new(Some("erin"));
    again.login(&s.url(0)).await.unwrap();
    for node in 0..2 {
        assert_eq!(backchannel_logout(&s.url(node), &token).await, 400, "replay on node {node}");
    }
    assert_eq!(again.me(&s.url(1)).await.unwrap().status, 200, "the replay ended the new session");
}

#[tokio::test]
async fn a_request_without_a_token_is_400() {
    let s = stack().run().await;
    let url = format!("{}/account/backchannel-logout", s.url(0));
    let empty = http().post(&url).send().await.unwrap();
    assert_eq!(empty.status(), 400);
    let other = http().post(&url).header("content-type", "application/x-www-form-urlencoded").body("x=1");
    assert_eq!(other.send().await.unwrap().status(), 400);
}
