//! Feishu errors as values: a code, its documented message, its HTTP status, and the optional
//! `error` details. Every code comes from the catalogue (`error/catalogue.rs`); `envelope.rs`
//! turns an error into the JSON reply. `InfraError` is the other kind of failure: larkstack's own
//! store or Redis failing.

use std::borrow::Cow;

use serde::Serialize;

pub mod catalogue;

pub use catalogue::{ApaasErr, AuthErr, CardErr, ChatErr, ControlErr, ContactErr, CustomBotErr, GatewayErr, LongConnErr, MessageErr, ResourceErr, ReactionErr, ServerErr, TransportErr};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PermissionViolation {
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub description: String,
}

/// Why a rate limit refused a call: the limit that was hit and whole seconds until it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub limit: u32,
    pub reset_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeishuError {
    pub code: i64,
    pub msg: Cow<'static, str>,
    pub field_violations: Vec<FieldViolation>,
    pub permission_violations: Vec<PermissionViolation>,
    pub rate_limited: Option<RateLimited>,
    /// The HTTP status of the reply, from the catalogue entry. Private, so that a `FeishuError`
    /// can only be made in `crate::error`.
    http_status: u16,
}

impl FeishuError {
    /// Private to `crate::error`: everything else starts from a catalogue entry.
    fn new(code: i64, msg: impl Into<Cow<'static, str>>) -> Self {
        FeishuError {
            code,
            msg: msg.into(),
            field_violations: Vec::new(),
            permission_violations: Vec::new(),
            rate_limited: None,
            http_status: 400,
        }
    }

    pub fn with_field(mut self, field: &str, value: Option<&str>, description: impl Into<String>) -> Self {
        self.field_violations.push(FieldViolation {
            field: field.to_string(),
            value: value.map(str::to_string),
            description: description.into(),
        });
        self
    }

    pub fn http_status(&self) -> u16 {
        self.http_status
    }

    fn with_status(mut self, status: u16) -> Self {
        self.http_status = status;
        self
    }

    // --- gateway ------------------------------------------------------------------------------

    pub fn missing_token() -> Self {
        GatewayErr::MissingToken.err()
    }

    pub fn invalid_token() -> Self {
        GatewayErr::InvalidToken.err()
    }

    pub fn scope_missing(scopes: &[&str]) -> Self {
        let mut e = GatewayErr::ScopeMissing.with_msg(format!(
            "Access denied. One of the following scopes is required: [{}].",
            scopes.join(", ")
        ));
        e.permission_violations = scopes
            .iter()
            .map(|s| PermissionViolation {
                kind: "action_scope_required".into(),
                subject: (*s).to_string(),
                description: format!("The app needs the scope {s} for this call."),
            })
            .collect();
        e
    }

    /// The gateway's 99992402, naming the field and why.
    pub fn field_validation(field: &str, why: impl Into<String>) -> Self {
        GatewayErr::FieldValidation.with_msg(format!("field validation failed: {field}")).with_field(field, None, why)
    }

    pub fn rate_limited(limit: u32, reset_secs: u64) -> Self {
        let mut e = GatewayErr::RateLimited.err();
        e.rate_limited = Some(RateLimited { limit, reset_secs });
        e
    }

    // --- IM chats (seed table of POST /open-apis/im/v1/chats, and spec §3.15) ------------------

    pub fn im_invalid_param(field: &str, value: Option<&str>, why: impl Into<String>) -> Self {
        ChatErr::InvalidParam.err().with_field(field, value, why)
    }
}

/// The IM chat errors by the names the domain code uses (entries of `catalogue::ChatErr`).
pub mod im {
    use super::{ChatErr, FeishuError};

    pub fn app_not_exist() -> FeishuError {
        ChatErr::AppNotExist.err()
    }
    pub fn rate_limited() -> FeishuError {
        ChatErr::RateLimited.err()
    }
    pub fn public_name_too_short() -> FeishuError {
        ChatErr::PublicNameTooShort.err()
    }
    pub fn bot_not_found() -> FeishuError {
        ChatErr::BotNotFound.err()
    }
    pub fn user_resigned() -> FeishuError {
        ChatErr::UserResigned.err()
    }
    pub fn review_failed() -> FeishuError {
        ChatErr::ReviewFailed.err()
    }
    pub fn bot_ability_inactive() -> FeishuError {
        ChatErr::BotAbilityInactive.err()
    }
    pub fn invalid_user_id() -> FeishuError {
        ChatErr::InvalidUserId.err()
    }
    pub fn owner_other_tenant() -> FeishuError {
        ChatErr::OwnerOtherTenant.err()
    }
    pub fn no_external_authority() -> FeishuError {
        ChatErr::NoExternalAuthority.err()
    }
    pub fn app_unavailable() -> FeishuError {
        ChatErr::AppUnavailable.err()
    }
    pub fn no_label_authority() -> FeishuError {
        ChatErr::NoLabelAuthority.err()
    }
    pub fn public_name_empty() -> FeishuError {
        ChatErr::PublicNameEmpty.err()
    }
    pub fn unavailable_ids() -> FeishuError {
        ChatErr::UnavailableIds.err()
    }
    pub fn restricted_mode_not_allowed() -> FeishuError {
        ChatErr::RestrictedModeNotAllowed.err()
    }
    pub fn being_created() -> FeishuError {
        ChatErr::BeingCreated.err()
    }
    pub fn external_cannot_be_public() -> FeishuError {
        ChatErr::ExternalCannotBePublic.err()
    }
    pub fn hide_member_count_not_allowed() -> FeishuError {
        ChatErr::HideMemberCountNotAllowed.err()
    }
    pub fn hide_member_count_unsupported() -> FeishuError {
        ChatErr::HideMemberCountUnsupported.err()
    }
    pub fn public_not_allowed() -> FeishuError {
        ChatErr::PublicNotAllowed.err()
    }
    pub fn no_ocic_authority() -> FeishuError {
        ChatErr::NoOcicAuthority.err()
    }
}
