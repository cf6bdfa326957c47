//! The web front end served from the binary (SPEC D3): the citizen's page at `/`, the console at
//! `/console/`, beside the API at the same mount path; content types, validators, the page
//! policy, the `/console` redirect; and the API scope alone serving no page.
#![allow(clippy::unwrap_used)]

use actix_web::http::{header, StatusCode};
use actix_web::{test, web, App};

mod support;

async fn world() -> (tempfile::TempDir, platepool_gateway::Gateway) {
    let (dir, engine) = support::engine(None, None).await;
    let gw = support::gateway(&engine, support::gateway_config());
    (dir, gw)
}

fn header_of(res: &actix_web::dev::ServiceResponse, name: header::HeaderName) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn pages_and_api_share_the_root() {
    let (_dir, gw) = world().await;
    let app = test::init_service(
        App::new()
            .service(gw.pages_scope(""))
            .service(gw.scope(""))
            .default_service(web::to(platepool_gateway::not_found)),
    )
    .await;

    let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header_of(&res, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    let csp = header_of(&res, header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header_of(&res, header::CACHE_CONTROL), "no-cache");
    assert_eq!(header_of(&res, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    let etag = header_of(&res, header::ETAG);
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let body = test::read_body(res).await;
    assert!(std::str::from_utf8(&body).unwrap().contains("<html"));

    // The same file by its own name, and revalidation with the validator.
    let res = test::call_service(
        &app,
        test::TestRequest::get().uri("/index.html").to_request(),
    )
    .await;
    assert_eq!(header_of(&res, header::ETAG), etag);
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/")
            .insert_header((header::IF_NONE_MATCH, etag.as_str()))
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(test::read_body(res).await.is_empty());

    // Every embedded file answers with its content type.
    for path in platepool_gateway::pages::paths() {
        let uri = format!("/{path}");
        let res = test::call_service(&app, test::TestRequest::get().uri(&uri).to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        let ct = header_of(&res, header::CONTENT_TYPE);
        let file = if uri.ends_with('/') {
            format!("{uri}index.html")
        } else {
            uri.clone()
        };
        assert_eq!(ct, platepool_gateway::pages::content_type(&file), "{uri}");
        assert_ne!(ct, "application/octet-stream", "{uri}: unknown type");
    }

    // The console: a redirect to its folder, then its page.
    let res = test::call_service(&app, test::TestRequest::get().uri("/console").to_request()).await;
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(header_of(&res, header::LOCATION), "/console/");
    let res =
        test::call_service(&app, test::TestRequest::get().uri("/console/").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = test::read_body(res).await;
    let text = std::str::from_utf8(&body).unwrap();
    assert!(
        text.contains("<title>") && text.contains("console"),
        "{text}"
    );

    // Only GET and HEAD.
    let res = test::call_service(&app, test::TestRequest::post().uri("/").to_request()).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header_of(&res, header::ALLOW), "GET, HEAD");

    // The API still answers beside the pages; unknown paths keep the API's JSON 404.
    let res = test::call_service(
        &app,
        test::TestRequest::get().uri("/v1/offices").to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    for uri in ["/nothing.js", "/console/nothing.js", "/citizen/index.html"] {
        let res = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(header_of(&res, header::CONTENT_TYPE), "application/json");
    }
}

#[actix_rt::test]
async fn the_api_scope_alone_serves_no_page_and_pages_mount_under_a_path() {
    let (_dir, gw) = world().await;
    let api_only = test::init_service(App::new().service(gw.scope(""))).await;
    let res = test::call_service(&api_only, test::TestRequest::get().uri("/").to_request()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let mounted = test::init_service(
        App::new()
            .service(gw.pages_scope("/plates"))
            .service(gw.scope("/plates")),
    )
    .await;
    let res = test::call_service(
        &mounted,
        test::TestRequest::get().uri("/plates/").to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = test::call_service(
        &mounted,
        test::TestRequest::get().uri("/plates/console").to_request(),
    )
    .await;
    assert_eq!(header_of(&res, header::LOCATION), "/plates/console/");
    let res = test::call_service(
        &mounted,
        test::TestRequest::get()
            .uri("/plates/v1/offices")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}
