//! The web page in headless Chromium (Debian `chromium` + `chromium-driver`, installed by
//! `scripts/test.sh`): two users connect, a unicast and a broadcast show up on their
//! pages, an ACK clicked on the page is reflected in `/messages/{id}`, and upstream sent
//! from the page reaches the app's webhook. A screenshot goes to
//! `$CARGO_TARGET_TMPDIR/push-page.png`. Once more over `https://` and `wss://` with a
//! development certificate (`--ignore-certificate-errors`, in this test only).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (Debian: apt-get install chromium chromium-driver; scripts/test.sh does it)");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver { child, url }
}

async fn browser(driver: &Driver) -> Client {
    browser_with(driver, &[]).await
}

async fn browser_with(driver: &Driver, extra: &[&str]) -> Client {
    let mut args = vec![
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1200,900",
    ];
    args.extend_from_slice(extra);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium", "args": args}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a headless Chromium session")
}

/// Waits until `script` (a JS expression) is truthy on the page.
async fn until(page: &Client, what: &str, script: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = page
            .execute(&format!("return !!({script});"), vec![])
            .await
            .unwrap();
        if v == json!(true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page never showed {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connect_as(page: &Client, base: &str, uid: &str) {
    page.goto(&format!("{base}/")).await.unwrap();
    let input = page.find(Locator::Id("uid")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(uid).await.unwrap();
    page.find(Locator::Id("connect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        page,
        "online",
        "document.getElementById('status').className === 'online'",
    )
    .await;
}

fn shows(body: &str) -> String {
    format!(
        "[...document.querySelectorAll('#messages li .body')].some(e => e.textContent === {body:?})"
    )
}

async fn push_from_panel(page: &Client, target: &str, recipients: &str, body: &str) -> u64 {
    page.find(Locator::Id("target"))
        .await
        .unwrap()
        .select_by_value(target)
        .await
        .unwrap();
    for (id, value) in [("recipients", recipients), ("body", body)] {
        let field = page.find(Locator::Id(id)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
    page.execute("document.getElementById('result').textContent = ''", vec![])
        .await
        .unwrap();
    page.find(Locator::Id("send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        page,
        "the push result",
        "document.getElementById('result').textContent.startsWith('200')",
    )
    .await;
    let id = page
        .execute("return document.getElementById('status-id').value", vec![])
        .await
        .unwrap();
    id.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn two_users_see_unicast_and_broadcast_on_the_page_and_a_clicked_ack_is_recorded() {
    // The app's webhook, to see the page's upstream arrive.
    let (hook_tx, mut hook_rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(event): axum::Json<serde_json::Value>| {
            let hook_tx = hook_tx.clone();
            async move {
                let _ = hook_tx.send(event);
            }
        }),
    );
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(hook_listener, hook).await.unwrap() });
    let s = start_with(|c| c.apps[0].webhook = Some(hook_url)).await;
    let base = s.system.center_url();
    let driver = chromedriver().await;
    let alice = browser(&driver).await;
    let bob = browser(&driver).await;
    connect_as(&alice, &base, "alice").await;
    connect_as(&bob, &base, "bob").await;
    s.wait_sessions("alice", 1).await;
    s.wait_sessions("bob", 1).await;

    // Alice's sender panel pushes to Bob; Bob's page shows it and auto-ACKs it.
    let id = push_from_panel(&alice, "unicast", "bob", "hi bob").await;
    until(&bob, "the unicast", &shows("hi bob")).await;
    s.wait_status(id, "bob", "acked").await;

    // A broadcast from Bob's panel reaches both pages.
    let id = push_from_panel(&bob, "broadcast", "", "hello everyone").await;
    until(&alice, "the broadcast", &shows("hello everyone")).await;
    until(&bob, "the broadcast", &shows("hello everyone")).await;
    s.wait_status(id, "alice", "acked").await;

    // With auto-ACK off, the message waits as delivered until the ACK button is clicked.
    alice
        .find(Locator::Id("autoack"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let id = s
        .push("unicast", json!({"uid": "alice", "body": "click to ack"}))
        .await;
    until(&alice, "the manual message", &shows("click to ack")).await;
    s.wait_status(id, "alice", "delivered").await;
    alice
        .find(Locator::Css(&format!(
            "#messages li[data-id='{id}'] button.ack"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    s.wait_status(id, "alice", "acked").await;

    // The status panel shows the same thing.
    let field = alice.find(Locator::Id("status-id")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(&id.to_string()).await.unwrap();
    alice
        .find(Locator::Id("status-get"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &alice,
        "the status",
        "document.getElementById('status-result').textContent.includes('\"acked\"')",
    )
    .await;

    // Upstream from the page reaches the webhook, and the page shows the room's answer.
    let body = alice.find(Locator::Id("upstream-body")).await.unwrap();
    body.clear().await.unwrap();
    body.send_keys("typed on the page").await.unwrap();
    alice
        .find(Locator::Id("upstream-send"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &alice,
        "the upstream reply",
        "document.getElementById('upstream-result').textContent === 'accepted'",
    )
    .await;
    loop {
        let event = tokio::time::timeout(WAIT, hook_rx.recv())
            .await
            .unwrap()
            .unwrap();
        if event["event"] == "upstream" {
            assert_eq!(
                (event["uid"].as_str(), event["body"].as_str()),
                (Some("alice"), Some("typed on the page"))
            );
            break;
        }
    }

    let png = alice.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("push-page.png");
    std::fs::write(&path, &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    println!("screenshot: {}", path.display());
    alice.close().await.unwrap();
    bob.close().await.unwrap();
}

#[tokio::test]
async fn the_page_works_over_https_and_wss_with_a_development_certificate() {
    let s = start_with(|c| {
        let made = longlink_push::tls::self_signed(&c.data_dir, &[]).unwrap();
        c.tls = Some(made.tls);
        c.room.wss_listen = "127.0.0.1:0".parse().unwrap();
        c.room.tls_listen = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let base = s.system.center_url();
    assert!(base.starts_with("https://"), "{base}");
    let driver = chromedriver().await;
    // The certificate is for localhost and 127.0.0.1, from a CA Chromium does not know.
    let page = browser_with(&driver, &["--ignore-certificate-errors"]).await;
    connect_as(&page, &base, "carol").await;
    let url = page
        .execute("return window.pushClient.url", vec![])
        .await
        .unwrap();
    assert!(
        url.as_str().is_some_and(|u| u.starts_with("wss://")),
        "{url}"
    );
    s.wait_sessions("carol", 1).await;
    let id = push_from_panel(&page, "unicast", "carol", "over tls").await;
    until(&page, "the unicast over wss", &shows("over tls")).await;
    s.wait_status(id, "carol", "acked").await;
    page.close().await.unwrap();
}
