//! A PostgreSQL server that goes away mid-run: clear 503s while it is gone,
//! full service after it returns, and no link that got a 201 is lost.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::TestApp;
use serde_json::json;
use testkit::PgServer;

#[tokio::test]
async fn a_database_outage_gives_clear_503s_and_every_created_link_survives() {
    let mut server = PgServer::start().expect("a throwaway PostgreSQL server");
    let url = server.create_database().expect("a database");
    let app = TestApp::on(url, |c| c.db_timeout = Duration::from_millis(500)).await;

    let mut codes = Vec::new();
    for i in 0..20 {
        let created = app
            .create(json!({"url": format!("https://example.com/{i}")}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        codes.push(created.body["code"].as_str().unwrap().to_owned());
    }
    let cached = &codes[0].clone();
    assert_eq!(
        app.get(&format!("/{cached}")).await.status,
        StatusCode::FOUND
    );

    server.stop().expect("stop PostgreSQL");

    let refused = app.create(json!({"url": "https://example.com/lost"})).await;
    refused.assert_problem(StatusCode::SERVICE_UNAVAILABLE, "database is unavailable");
    assert_eq!(refused.header("retry-after"), "1");
    let state = &app.state;
    state.cache.remove(&codes[1]);
    app.get(&format!("/{}", codes[1]))
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "database is unavailable");
    assert_eq!(
        app.get(&format!("/{cached}")).await.status,
        StatusCode::FOUND,
        "links already in the cache keep redirecting"
    );
    assert_eq!(
        app.get(&format!("/{}", codes[2])).await.status,
        StatusCode::FOUND,
        "a link is cached when it is created"
    );
    app.get("/readyz")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "database unreachable");
    let health = app.get("/health").await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.body["services"]["database"]["status"], "down");
    assert!(state.flush_clicks().await.is_err());
    assert_eq!(state.pending_clicks(cached), 2, "unflushed clicks are kept");

    server.restart().expect("restart PostgreSQL");
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.get("/readyz").await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "never ready after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let after = app
        .create(json!({"url": "https://example.com/after"}))
        .await;
    assert_eq!(after.status, StatusCode::CREATED);
    codes.push(after.body["code"].as_str().unwrap().to_owned());
    state.cache.clear();
    for (i, code) in codes.iter().enumerate() {
        let followed = app.get(&format!("/{code}")).await;
        assert_eq!(followed.status, StatusCode::FOUND, "{code} was lost");
        if i < 20 {
            assert_eq!(
                followed.header("location"),
                format!("https://example.com/{i}")
            );
        }
    }
    state.flush_clicks().await.expect("flush after recovery");
    let stored = state.store.find(cached).await.unwrap().unwrap();
    assert_eq!(
        stored.clicks, 3,
        "clicks from before, during and after the outage"
    );
}
