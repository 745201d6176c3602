//! The operators' session API on a cluster of three primaries: a user's two sessions, created on
//! two gateway nodes and held in both nodes' caches, are listed by `sub`, ended by `sub` or by
//! `sid`, and the very next `/account/me` with each cookie is a 404 on every node; an end
//! repeated ends nothing. The sessions, the `sub` and `sid` indexes and the change notices sit
//! on slots of different primaries, so an end that needed them on one slot would fail here.

use std::collections::BTreeSet;
use std::time::Duration;

use harness::VirtualUser;
use harness::session_api::{SessionApi, Whose};

use crate::fixture::{ClusterStack, cluster_stack};
use crate::gateway::until_served_from_memory;
use crate::stack::{OPS_TOKEN, eventually, metrics};

const NODES: usize = 2;

/// Two gateway nodes on the cluster whose caches would keep a session ten minutes, each with its
/// cache switched on (its subscription to the change notices confirmed).
async fn cached_nodes_on_a_cluster() -> ClusterStack {
    let s = cluster_stack().nodes(NODES).env("BFF_SESSION_CACHE_MAX_AGE", "10m").run().await;
    for node in 0..NODES {
        eventually(&format!("node {node}'s cache is live"), Duration::from_secs(20), || async {
            metrics(&s.url(node)).await.lines().any(|l| l == "bff_session_cache_live 1")
        })
        .await;
    }
    s
}

/// `/account/me` with `user`'s cookie on every node, in node order.
async fn me_on_every_node(user: &VirtualUser, s: &ClusterStack) -> Vec<u16> {
    let mut answers = Vec::new();
    for node in 0..NODES {
        answers.push(user.me(&s.url(node)).await.unwrap().status);
    }
    answers
}

/// Logs `sub` in twice, once through each node, and waits until every node serves both sessions
/// from its cache; answers the two browsers and the issuer's `sid` of each login.
async fn two_cached_logins(s: &ClusterStack, sub: &str) -> [(VirtualUser, String); 2] {
    let logins = [VirtualUser::new(Some(sub)), VirtualUser::new(Some(sub))].map(|user| (user, String::new()));
    let mut logins = logins;
    for (node, (user, sid)) in logins.iter_mut().enumerate() {
        assert_eq!(user.login(&s.url(node)).await.unwrap().status, 302, "login of {sub} through node {node}");
        *sid = s.issuer.last_sid(sub).expect("the issuer gave the login a sid");
    }
    assert_ne!(logins[0].1, logins[1].1, "two logins at the issuer");
    for (user, _) in &logins {
        for node in 0..NODES {
            until_served_from_memory(user, &s.url(node)).await;
        }
    }
    logins
}

#[tokio::test]
async fn a_users_sessions_are_listed_and_ended_by_sub_and_by_sid_on_every_node_of_a_cluster() {
    let s = cached_nodes_on_a_cluster().await;
    let api = |node: usize| SessionApi::new(&s.url(node), OPS_TOKEN);
    // Someone else, cached on every node: no end of another user's touches them.
    let bystander = VirtualUser::new(Some("bob"));
    bystander.login(&s.url(1)).await.unwrap();
    for node in 0..NODES {
        until_served_from_memory(&bystander, &s.url(node)).await;
    }

    // By sub: both sessions listed from either node, ended through one of them.
    let alice = Whose::Sub("alice".into());
    let [(first, first_sid), (second, second_sid)] = two_cached_logins(&s, "alice").await;
    for node in 0..NODES {
        let listing = api(node).list(&alice).await.unwrap();
        let sids: BTreeSet<_> = listing.sessions.iter().filter_map(|session| session.sid.clone()).collect();
        assert_eq!(sids, BTreeSet::from([first_sid.clone(), second_sid.clone()]), "listing on node {node}");
        assert!(listing.sessions.iter().all(|session| session.sub.as_deref() == Some("alice")));
    }
    let ending = api(1).end(&alice, None).await.unwrap();
    assert_eq!(ending.ended, 2, "{ending:?}");
    assert_eq!(me_on_every_node(&first, &s).await, [404; NODES], "the first session after the end");
    assert_eq!(me_on_every_node(&second, &s).await, [404; NODES], "the second session after the end");
    assert_eq!(api(0).end(&alice, None).await.unwrap().ended, 0, "a second end ends nothing");
    assert!(api(0).list(&alice).await.unwrap().sessions.is_empty());

    // By sid: one login ends, the other of the same user stays; then the other by its handle.
    let [(third, third_sid), (fourth, fourth_sid)] = two_cached_logins(&s, "carol").await;
    let ending = api(0).end(&Whose::Sid(third_sid.clone()), None).await.unwrap();
    assert_eq!(ending.ended, 1, "{ending:?}");
    assert_eq!(me_on_every_node(&third, &s).await, [404; NODES], "the session of the ended sid");
    assert_eq!(me_on_every_node(&fourth, &s).await, [200; NODES], "the other login of the same user");
    assert_eq!(api(1).end(&Whose::Sid(third_sid), None).await.unwrap().ended, 0, "a second end ends nothing");
    let left = api(1).list(&Whose::Sub("carol".into())).await.unwrap().sessions;
    assert_eq!(left.iter().filter_map(|session| session.sid.as_deref()).collect::<Vec<_>>(), [fourth_sid.as_str()]);
    for node in 0..NODES {
        until_served_from_memory(&fourth, &s.url(node)).await;
    }
    let by_sid = Whose::Sid(fourth_sid);
    assert_eq!(api(0).end(&by_sid, Some(&left[0].id)).await.unwrap().ended, 1);
    assert_eq!(me_on_every_node(&fourth, &s).await, [404; NODES], "the session ended by its handle");
    assert_eq!(api(1).end(&by_sid, Some(&left[0].id)).await.unwrap().ended, 0, "a second end ends nothing");

    assert_eq!(me_on_every_node(&bystander, &s).await, [200; NODES], "the bystander");
    // What the end worked on was spread: the keys sit on more than one primary.
    let memory = s.cluster.memory_per_shard().await.unwrap();
    assert!(memory.iter().filter(|shard| shard.memory.keys > 0).count() >= 2, "keys on one shard only: {memory:?}");
}
