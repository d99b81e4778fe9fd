//! The login under a shared secret (`--secret`): the middleware that asks every request
//! but `POST /login` for the HTTP token (a bearer token or the session cookie), the 401 it
//! answers otherwise (a login form to a browser), and `POST /login` itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::FromRequest;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Secret;

/// The name of the session cookie `POST /login` sets.
pub const AUTH_COOKIE: &str = "ringswarm_auth";

/// Lets a request through if there is no secret, it is the login, or it carries the token.
pub(super) async fn require_secret(
    secret: Option<Arc<Secret>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(secret) = secret else {
        return next.run(req).await;
    };
    let login = req.uri().path() == "/login" && req.method() == axum::http::Method::POST;
    if login || presents_token(&secret, req.headers()) {
        return next.run(req).await;
    }
    unauthorized(req.headers(), None)
}

/// Whether `headers` carry the HTTP token: as a bearer token, or in the session cookie.
fn presents_token(secret: &Secret, headers: &axum::http::HeaderMap) -> bool {
    use axum::http::header::{AUTHORIZATION, COOKIE};
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .any(|t| secret.accepts_http_token(t));
    let cookie = || {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(AUTH_COOKIE)?.strip_prefix('='))
            .any(|t| secret.accepts_http_token(t))
    };
    bearer || cookie()
}

/// The 401 answer: a login form for a browser, a JSON error for anything else; `note` says
/// why a login failed.
fn unauthorized(headers: &axum::http::HeaderMap, note: Option<&str>) -> Response {
    use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
    let html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let common = [
        (WWW_AUTHENTICATE, "Bearer realm=\"ringswarm\""),
        (CACHE_CONTROL, "no-store"),
    ];
    if html {
        let note = note.map_or(String::new(), |n| format!("<p class=\"note\">{n}</p>"));
        let page = LOGIN_PAGE.replace("{note}", &note);
        return (
            StatusCode::UNAUTHORIZED,
            common,
            [(CONTENT_TYPE, "text/html; charset=utf-8")],
            page,
        )
            .into_response();
    }
    let error = note.unwrap_or(
        "this swarm's HTTP side needs its shared secret: send Authorization: Bearer TOKEN (peer http-token prints it), or sign in with the form at /",
    );
    (
        StatusCode::UNAUTHORIZED,
        common,
        Json(json!({ "error": error })),
    )
        .into_response()
}

/// The login form, shown with a 401 to a browser without the token.
const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ringswarm: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px system-ui,sans-serif;max-width:28em;margin:4em auto;padding:0 1em}
input{font:inherit;padding:.4em;width:100%;box-sizing:border-box;margin:.5em 0}
.note{color:#b00020}</style></head>
<body><h1>ringswarm</h1><p>This swarm needs its shared secret.</p>{note}
<form method="post" action="/login"><label for="secret">Shared secret</label>
<input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>
<input type="submit" value="Sign in"></form></body></html>
"#;

#[derive(Deserialize)]
struct LoginForm {
    secret: String,
}

/// `POST /login`: the right secret sets the session cookie and goes to `/`; a wrong one is a
/// 401 with the form again.
pub(super) async fn login(secret: Option<Arc<Secret>>, req: axum::extract::Request) -> Response {
    use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
    let Some(secret) = secret else {
        return (StatusCode::SEE_OTHER, [(LOCATION, "/")]).into_response();
    };
    let headers = req.headers().clone();
    let form = axum::Form::<LoginForm>::from_request(req, &()).await;
    let given = form.ok().and_then(|f| Secret::new(&f.0.secret).ok());
    match given {
        Some(g) if secret.accepts_http_token(&g.http_token()) => {
            let cookie = format!(
                "{AUTH_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                secret.http_token()
            );
            (
                StatusCode::SEE_OTHER,
                [
                    (LOCATION, "/".to_string()),
                    (SET_COOKIE, cookie),
                    (CACHE_CONTROL, "no-store".into()),
                ],
            )
                .into_response()
        }
        _ => unauthorized(&headers, Some("That is not this swarm's secret.")),
    }
}
