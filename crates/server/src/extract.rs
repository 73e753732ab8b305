//! Extractors whose rejections speak the API's error body, naming the field that is wrong.
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::ApiError;

/// `axum::Json`, with 400 errors in the API's format.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::BadRequest(format!(
            "invalid request body: {}",
            strip_axum_prefix(&e.body_text())
        )),
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(format!(
            "malformed JSON: {}",
            strip_axum_prefix(&e.body_text())
        )),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::BadRequest("send the body with 'Content-Type: application/json'".into())
        }
        JsonRejection::BytesRejection(e) => {
            if is_length_limit(&e) {
                ApiError::BodyTooLarge
            } else {
                ApiError::BadRequest(format!(
                    "could not read the request body: {}",
                    e.body_text()
                ))
            }
        }
        other => ApiError::BadRequest(other.body_text()),
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

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::BadParameter(
                format!("invalid path parameter: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::BadParameter(other.body_text())),
        }
    }
}

/// `axum::extract::Query` with errors in the API's format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::BadParameter(
                format!("invalid query parameter: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::BadParameter(other.body_text())),
        }
    }
}
