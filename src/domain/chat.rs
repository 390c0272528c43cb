//! Group chats: the stored model and the rules of `POST /open-apis/im/v1/chats` (the seed page).
//!
//! `plan_create` is pure: it takes the parsed request, the caller and the directory, and returns
//! either the chat to store or the Feishu error the seed documents. Check order (first failure wins):
//! parameters → entitlements and scopes of the body → name rules → content review → owner → users →
//! bots → combinations that depend on the final member set (external chats).

use serde::{Deserialize, Serialize};

use super::directory::{App, Directory, FastSet, Tenant, User, UserIdType};
use super::ids::{AppId, ChatId, TenantKey, Uid};
use crate::error::{im, FeishuError};

pub const DEFAULT_PRIVATE_NAME: &str = "(无主题)";
pub const DEFAULT_AVATAR_KEY: &str = "default-avatar_44ae0ca3-e140-494b-956f-78091e348435";
pub const MAX_USERS_PER_CREATE: usize = 50;
pub const MAX_BOTS_PER_CREATE: usize = 5;
pub const MAX_BOTS_PER_CHAT: usize = 15;
pub const MAX_UUID_CHARS: usize = 50;
/// How long `uuid` + `owner_id` deduplicates a create.
pub const CREATE_DEDUP_WINDOW_MS: i64 = 10 * 3600 * 1000;

/// Scope that lets an app set `labels` (not named by Feishu's page; larkstack's choice, see docs/parity.md).
pub const LABEL_SCOPE: &str = "im:chat:label";
/// Scope that lets an app tag a chat `ocic` (same caveat).
pub const OCIC_SCOPE: &str = "im:chat:ocic";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct I18nNames {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zh_cn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en_us: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja_jp: Option<String>,
}

impl I18nNames {
    pub fn is_empty(&self) -> bool {
        self.zh_cn.is_none() && self.en_us.is_none() && self.ja_jp.is_none()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &str> {
        [&self.zh_cn, &self.en_us, &self.ja_jp].into_iter().flatten().map(String::as_str)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestrictedModeSetting {
    pub status: bool,
    pub screenshot_has_permission_setting: Setting,
    pub download_has_permission_setting: Setting,
    pub message_has_permission_setting: Setting,
}

impl Default for RestrictedModeSetting {
    fn default() -> Self {
        RestrictedModeSetting {
            status: false,
            screenshot_has_permission_setting: all_members(),
            download_has_permission_setting: all_members(),
            message_has_permission_setting: all_members(),
        }
    }
}

impl RestrictedModeSetting {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Case folding for chat search, the same on every backend: each character's Unicode lower case,
/// character by character (so `Ärzte` and `Ωmega` fold as PostgreSQL's `lower()` folds them, and
/// no context rule such as a word-final sigma makes a query miss).
pub fn fold_case(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Everything about a chat that is a setting rather than membership; stored as one JSON value in
/// which settings at their default are left out (most chats store little more than their name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChatSettings {
    #[serde(default = "default_avatar", skip_serializing_if = "is_default_avatar")]
    pub avatar: Setting,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "I18nNames::is_empty")]
    pub i18n_names: I18nNames,
    #[serde(default = "group", skip_serializing_if = "is_group")]
    pub chat_mode: Setting,
    #[serde(default = "private", skip_serializing_if = "is_private")]
    pub chat_type: Setting,
    #[serde(default = "chat", skip_serializing_if = "is_chat")]
    pub group_message_type: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub join_message_visibility: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub leave_message_visibility: Setting,
    #[serde(default = "no_approval_required", skip_serializing_if = "is_no_approval_required")]
    pub membership_approval: Setting,
    #[serde(default, skip_serializing_if = "RestrictedModeSetting::is_default")]
    pub restricted_mode_setting: RestrictedModeSetting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub urgent_setting: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub video_conference_setting: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub pin_manage_setting: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub edit_permission: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub hide_member_count_setting: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub add_member_permission: Setting,
    #[serde(default = "allowed", skip_serializing_if = "is_allowed")]
    pub share_card_permission: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub at_all_permission: Setting,
    #[serde(default = "all_members", skip_serializing_if = "is_all_members")]
    pub moderation_permission: Setting,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub toolkit_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chat_tags: Vec<String>,
    /// Users invited into a chat that needs approval, waiting for the owner or a manager, oldest
    /// first; one invitation per user. Not a setting, but stored with them: a chat has few, and
    /// they change only with the chat (see docs/parity.md, "Pending invitations").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_invitations: Vec<Invitation>,
}

/// Who invited a user whose invitation waits for approval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Inviter {
    /// A user, from the Feishu client (the control API acting as them).
    User(Uid),
    /// An app, through add-members with its tenant token.
    App(AppId),
}

/// An invitation waiting for approval: the invited user, who invited them and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Invitation {
    pub uid: Uid,
    pub inviter: Inviter,
    pub at_ms: i64,
}

impl ChatSettings {
    /// What chat search matches a query against: the name and every `i18n_names` value,
    /// case-folded, one per line (a query never matches across two names).
    pub fn search_text(&self) -> String {
        std::iter::once(self.name.as_str()).chain(self.i18n_names.values()).map(fold_case).collect::<Vec<_>>().join("\n")
    }
}

/// A setting's value: one of a few words, so a default is borrowed rather than allocated (every
/// chat read fills in the ~16 settings its stored JSON leaves out, issue 12).
pub type Setting = std::borrow::Cow<'static, str>;

macro_rules! string_default {
    ($($make:ident / $test:ident = $value:expr;)*) => {$(
        fn $make() -> Setting {
            Setting::Borrowed($value)
        }
        fn $test(s: &str) -> bool {
            s == $value
        }
    )*};
}

string_default! {
    default_avatar / is_default_avatar = DEFAULT_AVATAR_KEY;
    group / is_group = "group";
    private / is_private = "private";
    chat / is_chat = "chat";
    all_members / is_all_members = "all_members";
    no_approval_required / is_no_approval_required = "no_approval_required";
    allowed / is_allowed = "allowed";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Owner {
    User(Uid),
    Bot(AppId),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChatStatus {
    Normal,
    Dissolved,
}

/// A group chat as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub chat_id: ChatId,
    pub tenant_key: TenantKey,
    pub creator_app: AppId,
    pub owner: Owner,
    pub external: bool,
    pub status: ChatStatus,
    pub created_at_ms: i64,
    pub settings: ChatSettings,
    /// Users in join order.
    pub users: Vec<Uid>,
    /// Join order of `users`, index for index: join time in ms × 1000 + position within the call
    /// that added them. Unlike a position in `users`, removals do not change it.
    pub user_join_keys: Vec<i64>,
    /// Bots (apps) in join order.
    pub bots: Vec<AppId>,
    pub user_managers: Vec<Uid>,
    pub bot_managers: Vec<AppId>,
    /// Time of the last message (creation time until then): the ByActiveTimeDesc order.
    pub last_active_at_ms: i64,
}

impl Chat {
    pub fn is_group(&self) -> bool {
        self.settings.chat_mode == "group"
    }

    pub fn is_dissolved(&self) -> bool {
        self.status == ChatStatus::Dissolved
    }

    pub fn has_bot(&self, app: &AppId) -> bool {
        self.bots.contains(app)
    }

    pub fn has_user(&self, uid: &Uid) -> bool {
        self.users.contains(uid)
    }

    /// Adds users who join together at `at_ms`, in the given order. A user who joins is no
    /// longer pending, however they joined.
    pub fn add_users(&mut self, uids: impl IntoIterator<Item = Uid>, at_ms: i64) {
        let before = self.users.len();
        for (i, uid) in uids.into_iter().enumerate() {
            self.users.push(uid);
            self.user_join_keys.push(join_key(at_ms, i));
        }
        if !self.settings.pending_invitations.is_empty() {
            let joined = &self.users[before..];
            self.settings.pending_invitations.retain(|inv| !joined.contains(&inv.uid));
        }
    }

    /// The pending invitation of `uid`, if any.
    pub fn invitation(&self, uid: &Uid) -> Option<&Invitation> {
        self.settings.pending_invitations.iter().find(|inv| inv.uid == *uid)
    }

    /// Owner or manager rights for a user: the user owns the chat or manages it.
    pub fn user_has_owner_rights(&self, uid: &Uid) -> bool {
        self.owner == Owner::User(uid.clone()) || self.user_managers.contains(uid)
    }

    pub fn remove_user(&mut self, uid: &Uid) {
        if let Some(i) = self.users.iter().position(|u| u == uid) {
            self.users.remove(i);
            self.user_join_keys.remove(i);
        }
        self.user_managers.retain(|u| u != uid);
    }

    /// Users ordered by (join key, uid): a total order that removals do not disturb, so page
    /// cursors over it stay valid.
    pub fn users_in_join_order(&self) -> Vec<(i64, &Uid)> {
        let mut v: Vec<(i64, &Uid)> = self.user_join_keys.iter().copied().zip(self.users.iter()).collect();
        v.sort();
        v
    }

    pub fn owned_by_bot(&self, app: &AppId) -> bool {
        self.owner == Owner::Bot(app.clone())
    }

    /// Owner or manager rights for a bot: it owns the chat, manages it, or created it and holds
    /// `im:chat:operate_as_owner`.
    pub fn bot_has_owner_rights(&self, app: &App) -> bool {
        self.owned_by_bot(&app.app_id)
            || self.bot_managers.contains(&app.app_id)
            || (self.creator_app == app.app_id && app.has_scope(OPERATE_AS_OWNER_SCOPE))
    }

    /// Strictly owner rights (disband, transfer, managers): owner, or creator with operate_as_owner.
    pub fn bot_is_owner(&self, app: &App) -> bool {
        self.owned_by_bot(&app.app_id) || (self.creator_app == app.app_id && app.has_scope(OPERATE_AS_OWNER_SCOPE))
    }
}

pub const OPERATE_AS_OWNER_SCOPE: &str = "im:chat:operate_as_owner";

/// A new p2p chat between `app`'s bot and `user` of `tenant`, owned by the bot.
pub fn new_p2p_chat(app: &App, tenant: &Tenant, user: &User, now_ms: i64) -> Chat {
    let default: ChatSettings = serde_json::from_value(serde_json::json!({"name": ""})).expect("defaults");
    Chat {
        chat_id: super::ids::new_chat_id(now_ms),
        tenant_key: tenant.tenant_key.clone(),
        creator_app: app.app_id.clone(),
        owner: Owner::Bot(app.app_id.clone()),
        external: false, // callers pass a user of `tenant`
        status: ChatStatus::Normal,
        created_at_ms: now_ms,
        settings: ChatSettings { chat_mode: "p2p".into(), avatar: DEFAULT_AVATAR_KEY.into(), ..default },
        users: vec![user.uid.clone()],
        user_join_keys: vec![join_key(now_ms, 0)],
        bots: vec![app.app_id.clone()],
        user_managers: Vec::new(),
        bot_managers: Vec::new(),
        last_active_at_ms: now_ms,
    }
}

pub fn join_key(at_ms: i64, position: usize) -> i64 {
    at_ms.saturating_mul(1000) + (position as i64 % 1000)
}

// ---------------------------------------------------------------------------------------------
// The request
// ---------------------------------------------------------------------------------------------

/// Query parameters of create-chat, already typed.
#[derive(Debug, Clone)]
pub struct CreateChatQuery {
    pub user_id_type: UserIdType,
    pub set_bot_manager: bool,
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct RestrictedModeInput {
    pub status: Option<bool>,
    pub screenshot_has_permission_setting: Option<String>,
    pub download_has_permission_setting: Option<String>,
    pub message_has_permission_setting: Option<String>,
}

/// The JSON body; unknown fields are ignored and `null` means absent, as the SDKs expect.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct CreateChatBody {
    pub avatar: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub i18n_names: Option<I18nNames>,
    pub owner_id: Option<String>,
    pub user_id_list: Option<Vec<String>>,
    pub bot_id_list: Option<Vec<String>>,
    pub group_message_type: Option<String>,
    pub chat_mode: Option<String>,
    pub chat_type: Option<String>,
    pub join_message_visibility: Option<String>,
    pub leave_message_visibility: Option<String>,
    pub membership_approval: Option<String>,
    pub restricted_mode_setting: Option<RestrictedModeInput>,
    pub urgent_setting: Option<String>,
    pub video_conference_setting: Option<String>,
    pub pin_manage_setting: Option<String>,
    pub edit_permission: Option<String>,
    pub hide_member_count_setting: Option<String>,
    pub external: Option<bool>,
    pub labels: Option<Vec<String>>,
    pub toolkit_ids: Option<Vec<serde_json::Value>>,
    pub chat_tags: Option<Vec<String>>,
}

/// Who is calling: an app acting in one tenant.
pub struct Caller<'a> {
    pub app: &'a App,
    pub tenant: &'a Tenant,
}

pub(crate) const OWNER_OR_ALL: &[&str] = &["only_owner", "all_members"];
pub(crate) const VISIBILITY: &[&str] = &["only_owner", "all_members", "not_anyone"];
const ALLOW_OR_DENY: &[&str] = &["all_members", "not_anyone"];

/// An optional enum field: absent → `default`, otherwise one of `allowed` (as that word, not a copy).
pub(crate) fn enum_field(
    field: &str,
    value: &Option<String>,
    allowed: &'static [&'static str],
    default: impl Into<Setting>,
) -> Result<Setting, FeishuError> {
    match value.as_deref() {
        None | Some("") => Ok(default.into()),
        Some(v) => match allowed.iter().find(|a| **a == v) {
            Some(word) => Ok(Setting::Borrowed(word)),
            None => Err(FeishuError::im_invalid_param(
                field,
                Some(v),
                format!("must be one of: {}", allowed.join(", ")),
            )),
        },
    }
}

/// The restricted-mode setting `input` asks for on top of `base`, checked for consistency.
pub(crate) fn restricted_mode(
    input: Option<RestrictedModeInput>,
    base: &RestrictedModeSetting,
) -> Result<RestrictedModeSetting, FeishuError> {
    let input = input.unwrap_or_default();
    let field = |name: &str, v: &Option<String>, current: &Setting| {
        enum_field(&format!("restricted_mode_setting.{name}"), v, ALLOW_OR_DENY, current.clone())
    };
    let setting = RestrictedModeSetting {
        status: input.status.unwrap_or(base.status),
        screenshot_has_permission_setting: field(
            "screenshot_has_permission_setting",
            &input.screenshot_has_permission_setting,
            &base.screenshot_has_permission_setting,
        )?,
        download_has_permission_setting: field(
            "download_has_permission_setting",
            &input.download_has_permission_setting,
            &base.download_has_permission_setting,
        )?,
        message_has_permission_setting: field(
            "message_has_permission_setting",
            &input.message_has_permission_setting,
            &base.message_has_permission_setting,
        )?,
    };
    let perms = [
        &setting.screenshot_has_permission_setting,
        &setting.download_has_permission_setting,
        &setting.message_has_permission_setting,
    ];
    if setting.status && perms.iter().all(|p| *p == "all_members") {
        return Err(FeishuError::im_invalid_param(
            "restricted_mode_setting",
            None,
            "with status=true, the three permission settings can not all be all_members",
        ));
    }
    if !setting.status && perms.iter().any(|p| *p == "not_anyone") {
        return Err(FeishuError::im_invalid_param(
            "restricted_mode_setting",
            None,
            "with status=false, no permission setting can be not_anyone",
        ));
    }
    Ok(setting)
}

/// The tenant's content review of a chat's texts (232023).
pub(crate) fn review(tenant: &Tenant, name: &str, description: &str, i18n_names: &I18nNames) -> Result<(), FeishuError> {
    let texts = [name, description].into_iter().chain(i18n_names.values());
    for text in texts {
        if tenant.blocked_words.iter().any(|w| !w.is_empty() && text.contains(w.as_str())) {
            return Err(im::review_failed());
        }
    }
    Ok(())
}

/// A chat ready to be stored, or the error Feishu answers. `now_ms` stamps the creation time.
pub fn plan_create(
    dir: &Directory,
    caller: &Caller<'_>,
    query: &CreateChatQuery,
    body: CreateChatBody,
    chat_id: ChatId,
    now_ms: i64,
) -> Result<Chat, FeishuError> {
    plan_create_with(dir, caller, query, body, People::Named, chat_id, now_ms)
}

/// Who a new chat holds besides the bots.
pub enum People<'d> {
    /// As the body names them: `owner_id` and `user_id_list` in the query's `user_id_type`,
    /// resolved and checked by [`plan_create_with`].
    Named,
    /// People a caller already resolved and checked (active, visible to the app): the owner and
    /// the other users, in order. The body's `owner_id` and `user_id_list` add nothing then.
    Resolved { owner: &'d User, users: &'d [&'d User] },
}

/// [`plan_create`], with the people given as `people`: create-chat names them in the body,
/// aPaaS's chat_group passes the users it resolved from Kunlun IDs. Every other rule is the same.
pub fn plan_create_with<'d>(
    dir: &'d Directory,
    caller: &Caller<'_>,
    query: &CreateChatQuery,
    body: CreateChatBody,
    people: People<'d>,
    chat_id: ChatId,
    now_ms: i64,
) -> Result<Chat, FeishuError> {
    let (resolved_owner, resolved_users): (Option<&'d User>, &'d [&'d User]) = match people {
        People::Named => (None, &[]),
        People::Resolved { owner, users } => (Some(owner), users),
    };
    let app = caller.app;
    let tenant = caller.tenant;

    // 1. Shape of the parameters.
    let user_ids = body.user_id_list.unwrap_or_default();
    if user_ids.len() + resolved_users.len() > MAX_USERS_PER_CREATE {
        return Err(FeishuError::im_invalid_param(
            "user_id_list",
            None,
            format!("at most {MAX_USERS_PER_CREATE} users per request"),
        ));
    }
    let bot_ids = body.bot_id_list.unwrap_or_default();
    if bot_ids.len() > MAX_BOTS_PER_CREATE {
        return Err(FeishuError::im_invalid_param(
            "bot_id_list",
            None,
            format!("at most {MAX_BOTS_PER_CREATE} bots per request"),
        ));
    }
    let chat_mode = enum_field("chat_mode", &body.chat_mode, &["group"], "group")?;
    let chat_type = enum_field("chat_type", &body.chat_type, &["private", "public"], "private")?;
    let group_message_type = enum_field("group_message_type", &body.group_message_type, &["chat", "thread"], "chat")?;
    let join_vis = enum_field("join_message_visibility", &body.join_message_visibility, VISIBILITY, "all_members")?;
    let leave_vis = enum_field("leave_message_visibility", &body.leave_message_visibility, VISIBILITY, "all_members")?;
    let approval = enum_field(
        "membership_approval",
        &body.membership_approval,
        &["no_approval_required", "approval_required"],
        "no_approval_required",
    )?;
    let urgent = enum_field("urgent_setting", &body.urgent_setting, OWNER_OR_ALL, "all_members")?;
    let video = enum_field("video_conference_setting", &body.video_conference_setting, OWNER_OR_ALL, "all_members")?;
    let pin = enum_field("pin_manage_setting", &body.pin_manage_setting, OWNER_OR_ALL, "all_members")?;
    let edit = enum_field("edit_permission", &body.edit_permission, OWNER_OR_ALL, "all_members")?;
    let hide_count = enum_field(
        "hide_member_count_setting",
        &body.hide_member_count_setting,
        &["all_members", "only_owner"],
        "all_members",
    )?;
    let restricted = restricted_mode(body.restricted_mode_setting, &RestrictedModeSetting::default())?;
    if query.user_id_type == UserIdType::UserId && app.kind == super::directory::AppKind::Store {
        return Err(FeishuError::im_invalid_param(
            "user_id_type",
            Some("user_id"),
            "store apps can not use user_id; use open_id or union_id",
        ));
    }
    let toolkit_ids = body
        .toolkit_ids
        .unwrap_or_default()
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            other => Err(FeishuError::im_invalid_param("toolkit_ids", Some(&other.to_string()), "must be strings")),
        })
        .collect::<Result<Vec<_>, _>>()?;

    // 2. Tenant entitlements and body fields that need their own scope.
    if chat_type == "public" && !tenant.public_chats {
        return Err(im::public_not_allowed());
    }
    if restricted.status && !tenant.restricted_mode {
        return Err(im::restricted_mode_not_allowed());
    }
    if hide_count == "only_owner" && !tenant.hide_member_count {
        return Err(im::hide_member_count_not_allowed());
    }
    let labels = body.labels.unwrap_or_default();
    if !labels.is_empty() && !app.has_scope(LABEL_SCOPE) {
        return Err(im::no_label_authority());
    }
    let chat_tags = body.chat_tags.unwrap_or_default();
    if chat_tags.iter().any(|t| t == "ocic") && !app.has_scope(OCIC_SCOPE) {
        return Err(im::no_ocic_authority());
    }

    // 3. Name rules.
    let raw_name = body.name.unwrap_or_default();
    let name = if chat_type == "public" {
        if raw_name.trim().is_empty() {
            return Err(im::public_name_empty());
        }
        if raw_name.chars().count() < 2 {
            return Err(im::public_name_too_short());
        }
        raw_name
    } else if raw_name.is_empty() {
        DEFAULT_PRIVATE_NAME.to_string()
    } else {
        raw_name
    };

    // 4. Content review against the tenant's blocked words.
    let description = body.description.unwrap_or_default();
    let i18n_names = body.i18n_names.unwrap_or_default();
    review(tenant, &name, &description, &i18n_names)?;

    // 5. Owner.
    let owner_user: Option<&User> = match body.owner_id.as_deref() {
        _ if resolved_owner.is_some() => resolved_owner,
        None | Some("") => None,
        Some(raw) => {
            let user = dir
                .resolve_user(app, &tenant.tenant_key, query.user_id_type, raw)
                .ok_or_else(|| im::invalid_user_id().with_field("owner_id", Some(raw), "no such user for this app"))?;
            if user.tenant_key != tenant.tenant_key {
                return Err(im::owner_other_tenant());
            }
            if !user.is_active() {
                return Err(im::user_resigned().with_field("owner_id", Some(raw), "the owner has resigned"));
            }
            if !app.can_see(user) {
                return Err(im::unavailable_ids().with_field("owner_id", Some(raw), "outside the app's availability"));
            }
            Some(user)
        }
    };

    // 6. Users: resolve all first so one answer names every unusable ID. A repeat is the same
    // directory entry (one per uid), told by its address: a pointer hashes in a few instructions,
    // a uid in ~100, and a create checks every member (issue 12).
    let mut users: Vec<Uid> = Vec::with_capacity(user_ids.len() + 1);
    let mut seen: FastSet<*const User> = FastSet::with_capacity_and_hasher(user_ids.len() + 1, Default::default());
    if let Some(owner) = owner_user {
        users.push(owner.uid.clone());
        seen.insert(owner);
    }
    let mut unavailable = im::unavailable_ids();
    let mut resigned = im::user_resigned();
    let mut external_members: Vec<&User> = Vec::new();
    for &user in resolved_users {
        if user.tenant_key != tenant.tenant_key {
            external_members.push(user);
        }
        if seen.insert(user) {
            users.push(user.uid.clone());
        }
    }
    for raw in &user_ids {
        let Some(user) = dir.resolve_user(app, &tenant.tenant_key, query.user_id_type, raw) else {
            unavailable = unavailable.with_field("user_id_list", Some(raw), "no such user for this app");
            continue;
        };
        if user.tenant_key != tenant.tenant_key {
            external_members.push(user);
        } else if !app.can_see(user) {
            unavailable = unavailable.with_field("user_id_list", Some(raw), "outside the app's availability");
            continue;
        }
        if !user.is_active() {
            resigned = resigned.with_field("user_id_list", Some(raw), "resigned");
            continue;
        }
        if seen.insert(user) {
            users.push(user.uid.clone());
        }
    }
    if !unavailable.field_violations.is_empty() {
        return Err(unavailable);
    }
    if !resigned.field_violations.is_empty() {
        return Err(resigned);
    }

    // 7. Bots: the caller joins by itself; invited ones must be real, bot-enabled and installed here.
    let mut bots: Vec<AppId> = vec![app.app_id.clone()];
    let mut invited_bots: Vec<&App> = Vec::new();
    for raw in &bot_ids {
        let id = AppId(raw.clone());
        if id == app.app_id || bots.contains(&id) {
            continue;
        }
        let bot = match dir.app(&id) {
            Some(b) if b.bot => b,
            _ => return Err(im::bot_not_found().with_field("bot_id_list", Some(raw), "no bot with this app_id")),
        };
        if !bot.enabled_in(&tenant.tenant_key) {
            return Err(im::unavailable_ids().with_field("bot_id_list", Some(raw), "the bot is not available in this tenant"));
        }
        bots.push(id);
        invited_bots.push(bot);
    }
    debug_assert!(bots.len() <= MAX_BOTS_PER_CHAT);

    // 8. External chats: any member from another tenant.
    let external = !external_members.is_empty();
    if external {
        if !app.external_chats || invited_bots.iter().any(|b| !b.external_chats) {
            return Err(im::no_external_authority());
        }
        if chat_type == "public" {
            return Err(im::external_cannot_be_public());
        }
        let Some(owner) = owner_user else {
            return Err(FeishuError::im_invalid_param(
                "owner_id",
                None,
                "an external chat needs a user as owner; a bot can not own it",
            ));
        };
        let mut not_friends = im::unavailable_ids();
        for u in &external_members {
            if !owner.friends.contains(&u.uid) {
                not_friends = not_friends.with_field(
                    "user_id_list",
                    Some(&dir.user_external_id(app, u, query.user_id_type)),
                    "external users must be friends of the owner",
                );
            }
        }
        if !not_friends.field_violations.is_empty() {
            return Err(not_friends);
        }
        if hide_count == "only_owner" {
            return Err(im::hide_member_count_unsupported());
        }
    }

    let owner = match owner_user {
        Some(u) => Owner::User(u.uid.clone()),
        None => Owner::Bot(app.app_id.clone()),
    };
    let bot_managers = if query.set_bot_manager && matches!(owner, Owner::User(_)) {
        vec![app.app_id.clone()]
    } else {
        Vec::new()
    };
    Ok(Chat {
        chat_id,
        tenant_key: tenant.tenant_key.clone(),
        creator_app: app.app_id.clone(),
        owner,
        external,
        status: ChatStatus::Normal,
        created_at_ms: now_ms,
        settings: ChatSettings {
            avatar: body.avatar.filter(|a| !a.is_empty()).map_or(Setting::Borrowed(DEFAULT_AVATAR_KEY), Setting::Owned),
            name,
            description,
            i18n_names,
            chat_mode,
            chat_type,
            group_message_type,
            join_message_visibility: join_vis,
            leave_message_visibility: leave_vis,
            membership_approval: approval,
            restricted_mode_setting: restricted,
            urgent_setting: urgent,
            video_conference_setting: video,
            pin_manage_setting: pin,
            edit_permission: edit,
            hide_member_count_setting: hide_count,
            add_member_permission: all_members(),
            share_card_permission: allowed(),
            at_all_permission: all_members(),
            moderation_permission: all_members(),
            labels,
            toolkit_ids,
            chat_tags,
            pending_invitations: Vec::new(),
        },
        user_join_keys: (0..users.len()).map(|i| join_key(now_ms, i)).collect(),
        users,
        bots,
        user_managers: Vec::new(),
        bot_managers,
        last_active_at_ms: now_ms,
    })
}

/// The image-key → URL mapping Feishu applies to avatars in responses.
pub fn avatar_url(key: &str) -> String {
    format!("https://p3-lark-file.byteimg.com/img/lark-avatar-staging/{key}~100x100.jpg")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Directory {
        Directory::demo()
    }

    fn run(dir: &Directory, app_key: &str, body: serde_json::Value) -> Result<Chat, FeishuError> {
        run_q(dir, app_key, body, UserIdType::OpenId, false)
    }

    fn run_q(
        dir: &Directory,
        app_key: &str,
        body: serde_json::Value,
        t: UserIdType,
        set_bot_manager: bool,
    ) -> Result<Chat, FeishuError> {
        let app = dir.apps().iter().find(|a| a.key == app_key).unwrap();
        let tenant = dir.tenant(app.home_tenant.as_ref().unwrap()).unwrap();
        let body: CreateChatBody = serde_json::from_value(body).unwrap();
        let q = CreateChatQuery { user_id_type: t, set_bot_manager, uuid: None };
        plan_create(dir, &Caller { app, tenant }, &q, body, ChatId("oc_test".into()), 1)
    }

    fn open(dir: &Directory, app_key: &str, user_key: &str) -> String {
        let app = dir.apps().iter().find(|a| a.key == app_key).unwrap();
        let user = dir.users().iter().find(|u| u.key == user_key).unwrap();
        dir.open_id(app, user).0
    }

    #[test]
    fn defaults_follow_the_seed() {
        let d = fixture();
        let chat = run(&d, "demo-bot", serde_json::json!({})).unwrap();
        assert_eq!(chat.settings.name, DEFAULT_PRIVATE_NAME);
        assert_eq!(chat.settings.chat_type, "private");
        assert_eq!(chat.settings.chat_mode, "group");
        assert_eq!(chat.settings.group_message_type, "chat");
        assert_eq!(chat.settings.membership_approval, "no_approval_required");
        assert!(!chat.settings.restricted_mode_setting.status);
        assert!(matches!(chat.owner, Owner::Bot(_)));
        assert_eq!(chat.bots.len(), 1, "the creating bot joins");
        assert!(chat.users.is_empty());
    }

    #[test]
    fn stored_settings_leave_out_defaults_and_read_back_whole() {
        let d = fixture();
        let chat = run(&d, "demo-bot", serde_json::json!({"name": "n", "edit_permission": "only_owner"})).unwrap();
        let stored = serde_json::to_value(&chat.settings).unwrap();
        assert_eq!(stored, serde_json::json!({"name": "n", "edit_permission": "only_owner"}));
        let back: ChatSettings = serde_json::from_value(stored).unwrap();
        assert_eq!(back, chat.settings);
    }

    #[test]
    fn owner_joins_and_bot_manager_only_with_user_owner() {
        let d = fixture();
        let alice = open(&d, "demo-bot", "alice");
        let chat = run_q(&d, "demo-bot", serde_json::json!({"owner_id": alice}), UserIdType::OpenId, true).unwrap();
        assert_eq!(chat.users.len(), 1);
        assert_eq!(chat.bot_managers.len(), 1);
        let chat = run_q(&d, "demo-bot", serde_json::json!({}), UserIdType::OpenId, true).unwrap();
        assert!(chat.bot_managers.is_empty());
    }

    #[test]
    fn each_rule_answers_its_code() {
        let d = fixture();
        let code = |app: &str, body| run(&d, app, body).unwrap_err().code;
        let many: Vec<String> = (0..51).map(|i| format!("ou_{i}")).collect();
        assert_eq!(code("demo-bot", serde_json::json!({"user_id_list": many})), 232001);
        assert_eq!(code("demo-bot", serde_json::json!({"chat_mode": "topic"})), 232001);
        assert_eq!(code("demo-bot", serde_json::json!({"restricted_mode_setting": {"status": true}})), 232001);
        assert_eq!(
            code("demo-bot", serde_json::json!({"restricted_mode_setting": {"message_has_permission_setting": "not_anyone"}})),
            232001
        );
        assert_eq!(code("demo-bot", serde_json::json!({"chat_type": "public"})), 232042);
        assert_eq!(code("demo-bot", serde_json::json!({"chat_type": "public", "name": "x"})), 232020);
        assert_eq!(code("globex-bot", serde_json::json!({"chat_type": "public", "name": "xy"})), 232091);
        assert_eq!(
            code("globex-bot", serde_json::json!({"restricted_mode_setting": {"status": true, "screenshot_has_permission_setting": "not_anyone"}})),
            232057
        );
        assert_eq!(code("globex-bot", serde_json::json!({"hide_member_count_setting": "only_owner"})), 232078);
        assert_eq!(code("demo-bot", serde_json::json!({"name": "有违禁词的群"})), 232023);
        assert_eq!(code("demo-bot", serde_json::json!({"owner_id": "ou_nobody"})), 232030);
        assert_eq!(code("demo-bot", serde_json::json!({"user_id_list": [open(&d, "demo-bot", "dave")]})), 232022);
        assert_eq!(code("demo-bot", serde_json::json!({"user_id_list": ["ou_nobody"]})), 232043);
        assert_eq!(code("narrow-app", serde_json::json!({"user_id_list": [open(&d, "narrow-app", "carol")]})), 232043);
        assert_eq!(code("demo-bot", serde_json::json!({"bot_id_list": ["cli_0000000000000000"]})), 232021);
        assert_eq!(code("helper-bot", serde_json::json!({"labels": ["x"]})), 232037);
        assert_eq!(code("demo-bot", serde_json::json!({"chat_tags": ["ocic"]})), 232095);
        let gina = open(&d, "demo-bot", "gina");
        let alice = open(&d, "demo-bot", "alice");
        let bob = open(&d, "demo-bot", "bob");
        assert_eq!(code("helper-bot", serde_json::json!({"user_id_list": [open(&d, "helper-bot", "gina")]})), 232033);
        assert_eq!(code("demo-bot", serde_json::json!({"owner_id": alice, "user_id_list": [gina], "chat_type": "public", "name": "ext"})), 232069);
        assert_eq!(code("demo-bot", serde_json::json!({"owner_id": bob, "user_id_list": [gina]})), 232043);
        assert_eq!(code("demo-bot", serde_json::json!({"user_id_list": [gina]})), 232001);
        assert_eq!(
            code("demo-bot", serde_json::json!({"owner_id": alice, "user_id_list": [gina], "hide_member_count_setting": "only_owner"})),
            232079
        );
        assert_eq!(code("demo-bot", serde_json::json!({"owner_id": open(&d, "demo-bot", "hank")})), 232032);
        let ok = run(&d, "demo-bot", serde_json::json!({"owner_id": alice, "user_id_list": [gina]})).unwrap();
        assert!(ok.external);
    }

    #[test]
    fn resolved_people_build_the_chat_named_ones_do() {
        let d = fixture();
        let app = d.apps().iter().find(|a| a.key == "demo-bot").unwrap();
        let tenant = d.tenant(app.home_tenant.as_ref().unwrap()).unwrap();
        let user = |key: &str| d.users().iter().find(|u| u.key == key).unwrap();
        let (alice, bob) = (user("alice"), user("bob"));
        let named = run(
            &d,
            "demo-bot",
            serde_json::json!({"name": "n", "owner_id": open(&d, "demo-bot", "alice"),
                "user_id_list": [open(&d, "demo-bot", "bob"), open(&d, "demo-bot", "alice")]}),
        )
        .unwrap();
        let q = CreateChatQuery { user_id_type: UserIdType::OpenId, set_bot_manager: false, uuid: None };
        let body = CreateChatBody { name: Some("n".into()), ..Default::default() };
        let users = [bob, alice];
        let people = People::Resolved { owner: alice, users: &users };
        let resolved =
            plan_create_with(&d, &Caller { app, tenant }, &q, body, people, ChatId("oc_test".into()), 1).unwrap();
        assert_eq!(resolved, named);
        // Create-chat's rules still apply to what the body says (here: a public chat needs a name).
        let body = CreateChatBody { chat_type: Some("public".into()), ..Default::default() };
        let people = People::Resolved { owner: alice, users: &users };
        let err = plan_create_with(&d, &Caller { app, tenant }, &q, body, people, ChatId("oc_test".into()), 1).unwrap_err();
        assert_eq!(err.code, im::public_name_empty().code);
    }
}
