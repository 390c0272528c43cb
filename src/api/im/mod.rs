//! The IM family (`/open-apis/im/v1/…`).

pub mod chats;

use crate::domain::directory::{App, Directory, Tenant};
use crate::envelope::ApiError;
use crate::error::{im, FeishuError};
use crate::store::TokenRecord;

/// The app and tenant behind a tenant token, after the checks every IM call shares:
/// the app still exists (232004), holds one of `scopes` (99991672), is installed and enabled in
/// the tenant (232034) and has bot ability (232025).
pub fn im_caller<'d>(dir: &'d Directory, token: &TokenRecord, scopes: &[&str]) -> Result<(&'d App, &'d Tenant), ApiError> {
    let app = dir.app(&token.app_id).ok_or_else(|| ApiError(im::app_not_exist()))?;
    if !app.has_any_scope(scopes) {
        return Err(ApiError(FeishuError::scope_missing(scopes)));
    }
    let tenant = dir.tenant(&token.tenant_key).filter(|_| app.enabled_in(&token.tenant_key));
    let tenant = tenant.ok_or_else(|| ApiError(im::app_unavailable()))?;
    if !app.bot {
        return Err(ApiError(im::bot_ability_inactive()));
    }
    Ok((app, tenant))
}
