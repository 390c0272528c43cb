//! Feishu errors as values: a code, its documented message, and the optional `error` details.
//! No HTTP here — `envelope.rs` decides the status and the JSON.

use std::borrow::Cow;

use serde::Serialize;

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
    /// Transport-level failures (404, 405, 413) carry their own HTTP status.
    pub http_status: Option<u16>,
}

impl FeishuError {
    pub fn new(code: i64, msg: impl Into<Cow<'static, str>>) -> Self {
        FeishuError {
            code,
            msg: msg.into(),
            field_violations: Vec::new(),
            permission_violations: Vec::new(),
            rate_limited: None,
            http_status: None,
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

    pub fn with_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    // --- gateway ------------------------------------------------------------------------------

    pub fn missing_token() -> Self {
        Self::new(99991661, "Missing access token for authorization. Please make a request with token attached.")
    }

    pub fn invalid_token() -> Self {
        Self::new(99991663, "Invalid access token for authorization. Please make a request with token attached.")
    }

    pub fn scope_missing(scopes: &[&str]) -> Self {
        let mut e = Self::new(
            99991672,
            format!(
                "Access denied. One of the following scopes is required: [{}].",
                scopes.join(", ")
            ),
        );
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

    pub fn rate_limited(limit: u32, reset_secs: u64) -> Self {
        let mut e = Self::new(99991400, "request trigger frequency limit");
        e.rate_limited = Some(RateLimited { limit, reset_secs });
        e
    }

    // --- IM chats (seed table of POST /open-apis/im/v1/chats, and spec §3.15) ------------------

    pub fn im_invalid_param(field: &str, value: Option<&str>, why: impl Into<String>) -> Self {
        Self::new(232001, "Your request contains an invalid request parameter.").with_field(field, value, why)
    }
}

/// The catalog of codes with their documented messages, so every place uses the same words.
pub mod im {
    use super::FeishuError;

    pub fn app_not_exist() -> FeishuError {
        FeishuError::new(232004, "Such an app does NOT exist.")
    }
    pub fn rate_limited() -> FeishuError {
        FeishuError::new(232019, "The request has been rate limited.")
    }
    pub fn public_name_too_short() -> FeishuError {
        FeishuError::new(232020, "Name can NOT be less than two characters for public chats.")
    }
    pub fn bot_not_found() -> FeishuError {
        FeishuError::new(232021, "Bot can NOT be found.")
    }
    pub fn user_resigned() -> FeishuError {
        FeishuError::new(232022, "User has already resigned.")
    }
    pub fn review_failed() -> FeishuError {
        FeishuError::new(232023, "Chat information review failed while updating the chat.")
    }
    pub fn bot_ability_inactive() -> FeishuError {
        FeishuError::new(232025, "Bot ability is not activated.")
    }
    pub fn invalid_user_id() -> FeishuError {
        FeishuError::new(232030, "Your request specifies a user_id which is invalid.")
    }
    pub fn owner_other_tenant() -> FeishuError {
        FeishuError::new(
            232032,
            "The operator who will create the chat and the designated chat owner must be in the same tenant.",
        )
    }
    pub fn no_external_authority() -> FeishuError {
        FeishuError::new(
            232033,
            "The operator or invited bots does NOT have the authority to manage external chats without the scope.",
        )
    }
    pub fn app_unavailable() -> FeishuError {
        FeishuError::new(232034, "The app is unavailable or inactivated by the tenant.")
    }
    pub fn no_label_authority() -> FeishuError {
        FeishuError::new(
            232037,
            "The operator or invited bots does NOT have the authority to manage chat labels without the scope.",
        )
    }
    pub fn public_name_empty() -> FeishuError {
        FeishuError::new(232042, "Public group chat's name should not be empty.")
    }
    pub fn unavailable_ids() -> FeishuError {
        FeishuError::new(232043, "Your request contains unavailable ids.")
    }
    pub fn restricted_mode_not_allowed() -> FeishuError {
        FeishuError::new(232057, "The operator tenant doesn't have the permission to use restricted mode.")
    }
    pub fn being_created() -> FeishuError {
        FeishuError::new(232068, "The group is being created, please wait a moment.")
    }
    pub fn external_cannot_be_public() -> FeishuError {
        FeishuError::new(232069, "current chat type unsupported to set public.")
    }
    pub fn hide_member_count_not_allowed() -> FeishuError {
        FeishuError::new(232078, "The operator tenant doesn't have the permission to use hide_member_count_setting.")
    }
    pub fn hide_member_count_unsupported() -> FeishuError {
        FeishuError::new(232079, "Chat type not supported by hide_member_count_setting.")
    }
    pub fn public_not_allowed() -> FeishuError {
        FeishuError::new(
            232091,
            "Due to the security control requirements of this tenant, this tenant does not allow public group.",
        )
    }
    pub fn no_ocic_authority() -> FeishuError {
        FeishuError::new(
            232095,
            "The operator does NOT have the authority to manage ocic type tag without the scope.",
        )
    }
}
