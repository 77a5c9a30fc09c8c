//! Cross-origin requests at a token-checking edge, as real processes on
//! loopback (127.77.N.x): whatever the answer (a preflight, a refused
//! method), the token in the path never reaches the access log.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use common::*;
use http::Method;
use outpost_bench::client::{HttpsClient, Tcp};
use outpost_proto::token::{issue, Grant, TokenKey};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_and_refused_methods_never_log_the_token() -> Result<()> {
    let dir = test_dir("cors-token-log");
    let (o, e) = ("127.77.1.1", "127.77.1.2");
    let _origin = start_origin(&dir, o, "").await?;
    let edge = start_edge(&dir, e, o, &token_section()).await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let tok = issue(
        &TokenKey {
            id: TOKEN_KEY_ID.into(),
            secret: TOKEN_SECRET.as_bytes().to_vec(),
        },
        &Grant {
            path_prefix: "/synth/t0001/".into(),
            expires_at: now + 600,
            not_before: None,
            client_network: None,
            session: Some("cors-test".into()),
        },
        now,
    );
    let h1 = HttpsClient::new(Some(&ca(&dir)), Tcp::H1)?;
    let url = format!("https://{e}:{EDGE_PORT}/t/{tok}/synth/t0001/r1/seg00001.m4s");
    let pre = h1
        .request(
            Method::OPTIONS,
            &url,
            &[
                ("origin", "https://page.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await?;
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.headers.get_all("vary").iter().count(),
        0,
        "one set of CORS headers, no Vary for `*`"
    );
    let post = h1.request(Method::POST, &url, &[]).await?;
    assert_eq!(post.status, 405);
    let refused = metric_sum(
        &metrics(&edge.admin).await?,
        "outpost_edge_refused_total",
        &["reason=\"method\""],
    );
    assert_eq!(refused, 1.0, "the POST is refused as a method, the preflight is not");
    let get = h1.request(Method::GET, &url, &[]).await?;
    assert_eq!(get.status, 200);
    // The access lines are written when each request ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let log = loop {
        let log = edge.log_text();
        if log.matches(" access: ").count() >= 3 || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let access: Vec<&str> = log.lines().filter(|l| l.contains(" access: ")).collect();
    assert!(access.len() >= 3, "{log}");
    for method in ["OPTIONS", "POST", "GET"] {
        assert!(
            access
                .iter()
                .any(|l| l.contains(&format!("method={method} path=/synth/t0001/r1/seg00001.m4s"))),
            "{method} logged without the token: {access:?}"
        );
    }
    assert!(!log.contains(&tok), "the token is in the edge's log");
    Ok(())
}
