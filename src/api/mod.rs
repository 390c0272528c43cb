//! HTTP handlers, one module per Feishu API family. Handlers are thin: parse → domain → store → answer.

pub mod apaas;
pub mod auth;
pub mod bot;
pub mod contact;
pub mod custom_bot;
pub mod extract;
pub mod multipart;
pub mod im;

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::domain::directory::{App, Directory, Tenant};
use crate::envelope::ApiError;
use crate::error::{FeishuError, GatewayErr};
use crate::ratelimit::Family;
use crate::state::AppState;
use crate::store::TokenRecord;

/// A tenant-token call outside IM, checked in gateway order: bearer → the endpoint's rate budget
/// → the app exists, is installed and enabled in the token's tenant (99991662) → holds one of
/// `scopes` (99991672; none asked: any app). Bot ability is not needed.
pub struct AppCall {
    pub dir: Arc<Directory>,
    pub token: Arc<TokenRecord>,
}

impl AppCall {
    pub async fn begin(state: &AppState, headers: &HeaderMap, family: Family, scopes: &[&str]) -> Result<AppCall, ApiError> {
        let token = auth::tenant_token(state, headers).await?;
        let dir = state.directory();
        let rate_override = dir.app(&token.app_id).and_then(|a| a.rate_limit);
        state.limits.check(&token.app_id, &token.tenant_key, family, rate_override).await?;
        let call = AppCall { dir, token };
        let (app, _) = call.caller()?;
        if !scopes.is_empty() && !app.has_any_scope(scopes) {
            return Err(ApiError::Feishu(FeishuError::scope_missing(scopes)));
        }
        Ok(call)
    }

    /// The app and the tenant the token was issued for.
    pub fn caller(&self) -> Result<(&App, &Tenant), ApiError> {
        let unavailable = || ApiError::Feishu(GatewayErr::AppUnavailable.err());
        let app = self.dir.app(&self.token.app_id).ok_or_else(unavailable)?;
        let tenant = self.dir.tenant(&self.token.tenant_key).filter(|_| app.enabled_in(&self.token.tenant_key)).ok_or_else(unavailable)?;
        Ok((app, tenant))
    }
}
pub mod longconn;
