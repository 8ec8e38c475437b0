//! The HTTP API, driven through the router on SQLite and on a real PostgreSQL.

mod common;

use axum::{
    body::Body,
    http::{Method, StatusCode, header},
};
use common::{ADMIN_TOKEN, Backend, TestApp, request};
use serde_json::json;
use shortener::store::Link;

on_both_backends!(
    a_created_link_redirects_to_its_exact_url,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let created = app
            .create(json!({"url": "https://example.com/a?b=c#d"}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let code = created.body["code"].as_str().unwrap().to_owned();
        assert_eq!(code.len(), 7);
        assert_eq!(created.body["short_url"], format!("http://sho.rt/{code}"));
        assert_eq!(created.header("location"), format!("http://sho.rt/{code}"));
        assert_eq!(created.body["url"], "https://example.com/a?b=c#d");

        let followed = app.get(&format!("/{code}")).await;
        assert_eq!(followed.status, StatusCode::FOUND);
        assert_eq!(followed.header("location"), "https://example.com/a?b=c#d");
        // The second hit is served from the cache, with the same answer.
        let again = app.get(&format!("/{code}")).await;
        assert_eq!(again.header("location"), "https://example.com/a?b=c#d");
    }
);

on_both_backends!(
    a_custom_code_is_kept_and_cannot_be_taken_twice,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let first = app
            .create(json!({"url": "https://example.com/", "code": "my-link_1"}))
            .await;
        assert_eq!(first.status, StatusCode::CREATED);
        assert_eq!(first.body["code"], "my-link_1");
        let second = app
            .create(json!({"url": "https://example.org/", "code": "my-link_1"}))
            .await;
        second.assert_problem(StatusCode::CONFLICT, "already taken");
        assert_eq!(
            app.get("/my-link_1").await.header("location"),
            "https://example.com/"
        );
    }
);

on_both_backends!(bad_input_names_the_field_to_fix, |backend| async move {
    let app = TestApp::new(backend).await;
    app.create(json!({"url": "ftp://example.com/"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "scheme");
    app.create(json!({"url": "not a url"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "absolute URL");
    let long = format!("https://example.com/{}", "a".repeat(2100));
    app.create(json!({ "url": long }))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "2048");
    let reserved = app
        .create(json!({"url": "https://example.com/", "code": "healthz"}))
        .await;
    reserved.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "reserved");
    assert_eq!(reserved.body["field"], "code");
    app.create(json!({"url": "https://example.com/", "code": "a b"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "characters");
    app.create(json!({"link": "https://example.com/"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "link");
    app.create(json!({"url": "https://example.com/", "expires_at": "tomorrow"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "expires_at");
    app.create(json!({"url": "https://example.com/", "expires_at": "2001-01-01T00:00:00Z"}))
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "future");
});

on_both_backends!(
    malformed_and_oversized_bodies_are_refused,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let post = |body: Body, content_type: &str| {
            request(Method::POST, "/api/v1/links")
                .header(header::CONTENT_TYPE, content_type)
                .body(body)
                .unwrap()
        };
        app.send(post(Body::from("{\"url\":"), "application/json"))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, "");
        app.send(post(Body::from("url=x"), "text/plain"))
            .await
            .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json");
        let huge = json!({"url": format!("https://example.com/{}", "a".repeat(9000))}).to_string();
        app.send(post(Body::from(huge), "application/json"))
            .await
            .assert_problem(StatusCode::PAYLOAD_TOO_LARGE, "8 KiB");
    }
);

on_both_backends!(unknown_and_expired_codes_say_so, |backend| async move {
    let app = TestApp::new(backend).await;
    app.get("/nosuchcode")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "nosuchcode");
    app.get("/a/b/c")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "");
    let past = Link {
        code: "expired1".into(),
        url: "https://example.com/".into(),
        created_at: 0,
        expires_at: Some(1),
        clicks: 0,
    };
    app.state.store.insert(&past).await.unwrap();
    // Read from the database through the router, then answered from the cache before it.
    for _ in 0..2 {
        app.get("/expired1")
            .await
            .assert_problem(StatusCode::GONE, "expired");
    }
    assert!(app.state.cache.get("expired1").is_some());
    let future = app
        .create(json!({"url": "https://example.com/", "expires_at": "2999-01-01T00:00:00Z"}))
        .await;
    assert_eq!(future.body["expires_at"], "2999-01-01T00:00:00Z");
    let code = future.body["code"].as_str().unwrap();
    assert_eq!(app.get(&format!("/{code}")).await.status, StatusCode::FOUND);
});

on_both_backends!(
    clicks_are_counted_without_writing_until_flushed,
    |backend| async move {
        let app = TestApp::new(backend).await;
        app.create(json!({"url": "https://example.com/", "code": "clicked"}))
            .await;
        for _ in 0..3 {
            app.get("/clicked").await;
        }
        let shown = app.get("/api/v1/links/clicked").await;
        assert_eq!(shown.status, StatusCode::OK);
        assert_eq!(shown.body["clicks"], 3);
        assert_eq!(shown.body["expired"], false);
        assert_eq!(
            app.state
                .store
                .find("clicked")
                .await
                .unwrap()
                .unwrap()
                .clicks,
            0
        );

        let state = &app.state;
        state.flush_clicks().await.unwrap();
        assert_eq!(
            state.store.find("clicked").await.unwrap().unwrap().clicks,
            3
        );
        assert_eq!(app.get("/api/v1/links/clicked").await.body["clicks"], 3);
    }
);

on_both_backends!(
    a_deleted_link_takes_its_clicks_along_and_its_code_starts_again_from_none,
    |backend| async move {
        let app = TestApp::new(backend).await;
        let link = json!({"url": "https://example.com/", "code": "reborn"});
        app.create(link.clone()).await;
        for _ in 0..2 {
            app.get("/reborn").await;
        }
        app.state.flush_clicks().await.unwrap();
        let deleted = app
            .admin(Method::DELETE, "/api/v1/links/reborn", Some(ADMIN_TOKEN))
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        // A redirect that held the link while it was deleted counts its click afterwards;
        // the flush drops it, and a flush of links it has never heard of is no error.
        app.state.clicks.add(&"reborn".into(), 5);
        app.state.clicks.add(&"never".into(), 1);
        app.state.flush_clicks().await.unwrap();

        assert_eq!(app.create(link).await.status, StatusCode::CREATED);
        assert_eq!(app.get("/api/v1/links/reborn").await.body["clicks"], 0);
        app.get("/reborn").await;
        app.state.flush_clicks().await.unwrap();
        assert_eq!(
            app.state
                .store
                .find("reborn")
                .await
                .unwrap()
                .unwrap()
                .clicks,
            1
        );
    }
);

on_both_backends!(
    deleting_needs_the_admin_token_and_ends_redirects,
    |backend| async move {
        let app = TestApp::new(backend).await;
        app.create(json!({"url": "https://example.com/", "code": "doomed"}))
            .await;
        assert_eq!(app.get("/doomed").await.status, StatusCode::FOUND);
        app.admin(Method::DELETE, "/api/v1/links/doomed", None)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "Bearer");
        app.admin(Method::DELETE, "/api/v1/links/doomed", Some("wrong"))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "Bearer");
        let deleted = app
            .admin(Method::DELETE, "/api/v1/links/doomed", Some(ADMIN_TOKEN))
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert_eq!(app.get("/doomed").await.status, StatusCode::NOT_FOUND);
        app.admin(Method::DELETE, "/api/v1/links/doomed", Some(ADMIN_TOKEN))
            .await
            .assert_problem(StatusCode::NOT_FOUND, "doomed");
    }
);

on_both_backends!(
    health_endpoints_report_database_and_memory,
    |backend| async move {
        let app = TestApp::new(backend).await;
        assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
        assert_eq!(app.get("/readyz").await.body["status"], "ready");
        let health = app.get("/health").await;
        assert_eq!(health.status, StatusCode::OK);
        assert_eq!(health.body["status"], "ok");
        assert_eq!(health.body["services"]["database"]["status"], "up");
        assert_eq!(health.body["services"]["memory"]["status"], "ok");
        assert!(
            health.body["services"]["memory"]["resident_bytes"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(health.body["time"].as_str().unwrap().ends_with('Z'));
    }
);

#[tokio::test]
async fn metrics_expose_memory_cache_http_and_pool_figures() {
    let app = TestApp::new(Backend::Sqlite).await;
    app.create(json!({"url": "https://example.com/", "code": "metered"}))
        .await;
    app.get("/metered").await;
    let reply = app.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = String::from_utf8(reply.bytes).unwrap();
    for name in [
        "shortener_memory_resident_bytes",
        "shortener_memory_limit_bytes",
        "shortener_memory_usage_ratio",
        "shortener_allocator_allocated_bytes",
        "shortener_allocator_active_bytes",
        "shortener_allocator_resident_bytes",
        "shortener_allocator_mapped_bytes",
        "shortener_allocator_retained_bytes",
        "shortener_allocator_metadata_bytes",
        "shortener_cache_entries 1",
        "shortener_cache_bytes",
        "shortener_load_shed_total",
        "shortener_db_pool_connections{state=\"idle\"}",
        "shortener_db_pool_max_connections",
        "shortener_http_requests_total{route=\"redirect\",status=\"302\"} 1",
        "shortener_http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
}

#[tokio::test]
async fn a_redirect_is_counted_and_timed_alike_from_the_cache_or_the_database() {
    let app = TestApp::new(Backend::Sqlite).await;
    app.create(json!({"url": "https://example.com/", "code": "twice"}))
        .await;
    app.state.cache.remove("twice");
    for _ in 0..2 {
        let followed = app.get("/twice").await;
        assert_eq!(followed.status, StatusCode::FOUND);
        assert_eq!(followed.header("location"), "https://example.com/");
    }
    let text = String::from_utf8(app.get("/metrics").await.bytes).unwrap();
    for line in [
        "shortener_http_requests_total{route=\"redirect\",status=\"302\"} 2",
        "shortener_http_request_duration_seconds_count{route=\"redirect\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert_eq!(app.state.pending_clicks("twice"), 2);
}

#[tokio::test]
async fn admin_endpoints_are_disabled_without_a_token() {
    let app = TestApp::with(Backend::Sqlite, |c| c.admin_token = None).await;
    app.admin(Method::GET, "/api/v1/memory/stats", Some("anything"))
        .await
        .assert_problem(StatusCode::FORBIDDEN, "SHORTENER_ADMIN_TOKEN");
}

#[tokio::test]
async fn memory_stats_and_manual_trims_are_served_to_the_admin() {
    let app = TestApp::new(Backend::Sqlite).await;
    app.create(json!({"url": "https://example.com/", "code": "cached"}))
        .await;
    app.get("/cached").await;
    let stats = app
        .admin(Method::GET, "/api/v1/memory/stats", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(stats.status, StatusCode::OK);
    assert!(stats.body["allocator"]["allocated"].as_u64().unwrap() > 0);
    assert_eq!(stats.body["cache_entries"], 1);
    let trimmed = app
        .admin(
            Method::POST,
            "/api/v1/memory/trim?clear_cache=true",
            Some(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(trimmed.status, StatusCode::OK);
    assert_eq!(trimmed.body["reason"], "manual");
    assert!(trimmed.body["cache_freed_bytes"].as_u64().unwrap() > 0);
    assert_eq!(app.state.cache.entries(), 0);
    let text = String::from_utf8(app.get("/metrics").await.bytes).unwrap();
    assert!(text.contains("shortener_memory_trims_total{reason=\"manual\"} 1"));
}

#[tokio::test]
async fn heap_profiles_are_off_unless_enabled() {
    let app = TestApp::new(Backend::Sqlite).await;
    app.admin(Method::GET, "/debug/pprof/heap", Some(ADMIN_TOKEN))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "SHORTENER_PPROF");
}

#[tokio::test]
async fn the_redirect_status_is_configurable() {
    let app = TestApp::with(Backend::Sqlite, |c| c.redirect_status = 307).await;
    app.create(json!({"url": "https://example.com/", "code": "temp"}))
        .await;
    assert_eq!(
        app.get("/temp").await.status,
        StatusCode::TEMPORARY_REDIRECT
    );
}

#[tokio::test]
async fn a_configured_base_url_makes_the_short_url() {
    let app = TestApp::with(Backend::Sqlite, |c| {
        c.base_url = Some("https://s.example/x/".parse().unwrap())
    })
    .await;
    let created = app
        .create(json!({"url": "https://example.com/", "code": "based"}))
        .await;
    assert_eq!(created.body["short_url"], "https://s.example/x/based");
}

#[tokio::test]
async fn wrong_methods_get_a_problem_document() {
    let app = TestApp::new(Backend::Sqlite).await;
    app.send(
        request(Method::PUT, "/healthz")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .assert_problem(StatusCode::METHOD_NOT_ALLOWED, "method");
}
