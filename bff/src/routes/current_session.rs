//! [`CurrentSession`]: the extractor that loads the caller's session. Without one it rejects with
//! [`AppError::NoSession`] (404 on `/account/me`); when the store is down, with a 503.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::cookies;
use crate::error::AppError;
use crate::session::{Session, SessionId};
use crate::state::AppState;

pub struct CurrentSession {
    pub id: SessionId,
    pub session: std::sync::Arc<Session>,
}

impl FromRequestParts<AppState> for CurrentSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let id = cookies::read(&parts.headers, state.config.cookie_name())
            .and_then(|v| SessionId::parse(&v))
            .ok_or(AppError::NoSession)?;
        let session = state.sessions.load(&id).await?.ok_or(AppError::NoSession)?;
        Ok(CurrentSession { id, session })
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for CurrentSession {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Self::Rejection> {
        match <Self as FromRequestParts<AppState>>::from_request_parts(parts, state).await {
            Ok(current) => Ok(Some(current)),
            Err(AppError::NoSession) => Ok(None),
            Err(other) => Err(other),
        }
    }
}
