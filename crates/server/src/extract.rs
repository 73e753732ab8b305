//! Extractors whose rejections speak the API's error body, naming the field that is wrong,
//! and [`Auth`]: the `Authorization: Bearer` token resolved by the application.
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use keyplane_app::{App, Requester};
use serde::de::DeserializeOwned;

use crate::error::DevOpsError;

/// The caller of a DevOps route: its `Authorization: Bearer` token, resolved on every request.
pub struct Auth(pub Requester);

impl<S: Send + Sync> FromRequestParts<S> for Auth
where
    App: FromRef<S>,
{
    type Rejection = DevOpsError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, DevOpsError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(DevOpsError::MissingToken)?;
        let header = header.to_str().map_err(|_| {
            DevOpsError::MalformedHeader("the Authorization header is not ASCII".into())
        })?;
        let raw = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                DevOpsError::MalformedHeader("use the form 'Authorization: Bearer <token>'".into())
            })?;
        Ok(Auth(App::from_ref(state).authenticate(raw).await?))
    }
}

/// `axum::Json`, with 400 errors in the API's format.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = DevOpsError;

    async fn from_request(req: Request, state: &S) -> Result<Self, DevOpsError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> DevOpsError {
    match r {
        JsonRejection::JsonDataError(e) => DevOpsError::BadRequest(format!(
            "invalid request body: {}",
            strip_axum_prefix(&e.body_text())
        )),
        JsonRejection::JsonSyntaxError(e) => DevOpsError::BadRequest(format!(
            "malformed JSON: {}",
            strip_axum_prefix(&e.body_text())
        )),
        JsonRejection::MissingJsonContentType(_) => {
            DevOpsError::BadRequest("send the body with 'Content-Type: application/json'".into())
        }
        JsonRejection::BytesRejection(e) => {
            if is_length_limit(&e) {
                DevOpsError::BodyTooLarge
            } else {
                DevOpsError::BadRequest(format!(
                    "could not read the request body: {}",
                    e.body_text()
                ))
            }
        }
        other => DevOpsError::BadRequest(other.body_text()),
    }
}

fn is_length_limit(e: &dyn std::error::Error) -> bool {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains("length limit") {
            return true;
        }
        cur = err.source();
    }
    false
}

/// axum prefixes "Failed to deserialize the JSON body into the target type: "; our
/// message already says which part of the request is wrong.
fn strip_axum_prefix(s: &str) -> String {
    for p in [
        "Failed to deserialize the JSON body into the target type: ",
        "Failed to parse the request body as JSON: ",
    ] {
        if let Some(rest) = s.strip_prefix(p) {
            return rest.to_string();
        }
    }
    s.to_string()
}

/// `axum::extract::Path` with errors in the API's format.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = DevOpsError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, DevOpsError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(DevOpsError::BadParameter(
                format!("invalid path parameter: {}", e.body_text()),
            )),
            Err(other) => Err(DevOpsError::BadParameter(other.body_text())),
        }
    }
}

/// `axum::extract::Query` with errors in the API's format.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = DevOpsError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, DevOpsError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(
                DevOpsError::BadParameter(format!("invalid query parameter: {}", e.body_text())),
            ),
            Err(other) => Err(DevOpsError::BadParameter(other.body_text())),
        }
    }
}
