//! `POST /errors/{id}/triage` and `POST /problems/{id}/triage`: the group
//! pages' forms. Records the decision
//! (`action` = `resolve`, `reopen`, `ignore` with `until` and `count`,
//! `assign` with `team`) through the API's [`crate::api::decide_now`], then
//! sends the reader back to the group's page with the same filters.
//!
//! Only readers of the UI get here (the query token, when one is set, as
//! for every page; its cookie is `SameSite=Strict`, so another site cannot
//! post with it), and a browser's `Origin`, when sent, must be this site.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{error_page, secure, PageError, Params, Ui};
use crate::analysis::triage::TriageError;
use crate::analysis::AnalysisError;

/// Longest form read (an action and a few short fields).
const FORM_BYTES: usize = 16 << 10;

/// Whether the request's `Origin`, when it has one, is the site it was sent to.
fn same_origin(request: &Request) -> bool {
    let headers = request.headers();
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && origin_host == host
}

pub(super) async fn decide(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    decide_on(ui, id, query, request, "/errors").await
}

/// `POST /problems/{id}/triage`: the same for a performance problem, back
/// to its page.
pub(super) async fn decide_problem(
    State(ui): State<Arc<Ui>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    decide_on(ui, id, query, request, "/problems").await
}

/// Records the form's decision about group `id`, then back to `{page}/{id}`.
async fn decide_on(ui: Arc<Ui>, id: String, query: Option<String>, request: Request, page: &str) -> Response {
    if !same_origin(&request) {
        return error_page(&PageError::BadRequest(
            "this form can only be sent from the reporter's own pages".to_owned(),
        ));
    }
    let params = match Params::parse(query.as_deref()) {
        Ok(params) => params,
        Err(error) => return error_page(&error),
    };
    let Ok(body) = axum::body::to_bytes(request.into_body(), FORM_BYTES).await else {
        return error_page(&PageError::BadRequest("the form is too long".to_owned()));
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let action = form
        .iter()
        .find(|(k, _)| k == "action")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let group = id.clone();
    let app = ui.app.clone();
    let decided = tokio::task::spawn_blocking(move || crate::api::decide_now(&app, &group, &action, &form, "ui")).await;
    match decided {
        Ok(Ok(decision)) => {
            let back = params.href(&format!("{page}/{}", crate::format::url_component(&decision.group)));
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, back)]).into_response();
            secure(&mut response);
            response
        }
        Ok(Err(TriageError::Analysis(AnalysisError::Store(store)))) => {
            error_page(&PageError::Analysis(AnalysisError::Store(store)))
        }
        Ok(Err(TriageError::UnknownGroup(group))) => error_page(&PageError::NotFound(format!(
            "no error group or performance problem {group} in the store's history"
        ))),
        Ok(Err(error)) => error_page(&PageError::BadRequest(error.to_string())),
        Err(join) => {
            tracing::error!(error = %join, "recording a triage from the UI panicked");
            error_page(&PageError::BadRequest("the decision could not be recorded".to_owned()))
        }
    }
}
