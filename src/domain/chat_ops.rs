//! Rules for changing an existing chat: update, members, managers, disband (spec §3.3–3.12).
//!
//! Everything here is pure and runs inside the store's atomic change of one chat, against the
//! chat's latest state: caps and permissions are checked where no concurrent change can slip past.

use serde::Deserialize;

use super::chat::{
    enum_field, restricted_mode, review, Chat, ChatStatus, I18nNames, Invitation, Inviter, Owner, RestrictedModeInput,
    Setting, LABEL_SCOPE, OWNER_OR_ALL, VISIBILITY,
};
use super::directory::{App, Directory, Tenant, User, UserIdType};
use super::ids::{AppId, TenantKey, Uid};
use crate::error::{im, ChatErr, FeishuError};

pub const MAX_USERS_PER_CHAT: usize = 5000;
pub const MAX_BOTS_PER_CHAT: usize = super::chat::MAX_BOTS_PER_CHAT;
pub const MAX_USERS_PER_CALL: usize = 50;
pub const MAX_BOTS_PER_CALL: usize = 5;
pub const MAX_MANAGERS: usize = 10;

pub fn chat_dissolved() -> FeishuError {
    ChatErr::ChatDissolved.err()
}
pub fn unsupported_chat() -> FeishuError {
    ChatErr::UnsupportedChat.err()
}
pub fn invalid_chat_id() -> FeishuError {
    ChatErr::InvalidChatId.err()
}
pub fn other_tenant() -> FeishuError {
    ChatErr::OtherTenant.err()
}
pub fn not_in_chat() -> FeishuError {
    ChatErr::NotInChat.err()
}
pub fn owner_not_in_chat() -> FeishuError {
    ChatErr::OwnerNotInChat.err()
}
pub fn member_limit() -> FeishuError {
    ChatErr::MemberLimit.err()
}
pub fn only_owner_may_edit() -> FeishuError {
    ChatErr::OnlyOwnerMayEdit.err()
}
pub fn basic_fields_only() -> FeishuError {
    ChatErr::BasicFieldsOnly.err()
}
pub fn not_owner() -> FeishuError {
    ChatErr::NotOwner.err()
}
pub fn public_name_used() -> FeishuError {
    ChatErr::PublicNameUsed.err()
}
pub fn no_valid_members() -> FeishuError {
    ChatErr::NoValidMembers.err()
}
pub fn owner_cross_tenant() -> FeishuError {
    ChatErr::OwnerCrossTenant.err()
}
pub fn managers_owner_only() -> FeishuError {
    ChatErr::ManagersOwnerOnly.err()
}
pub fn manager_limit() -> FeishuError {
    ChatErr::ManagerLimit.err()
}
pub fn join_needs_approval() -> FeishuError {
    ChatErr::JoinNeedsApproval.err()
}

pub fn p2p_unsupported() -> FeishuError {
    ChatErr::P2pUnsupported.err()
}
pub fn external_into_internal() -> FeishuError {
    ChatErr::ExternalIntoInternal.err()
}

/// How the bot behind a tenant token — `app` as installed in `tenant` — stands to a chat.
///
/// A bot's membership belongs to the tenant it joined in, which is the chat's tenant: a store
/// app installed in several tenants is one bot per tenant, so its token for another tenant is
/// never a member, whatever `chat.bots` says. Every chat-scoped path decides access from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The chat's tenant, and the bot is in the chat.
    Member,
    /// The chat's tenant, the bot not in the chat.
    Outsider,
    /// Another tenant that has users in this external chat: sees it from outside, like an
    /// outsider, but can never act on it (232011).
    Guest,
    /// Another tenant with no part in the chat (every internal chat of another tenant): 232010.
    OtherTenant,
}

impl Standing {
    pub fn is_member(self) -> bool {
        self == Standing::Member
    }

    /// The chat's own tenant (member or not).
    pub fn same_tenant(self) -> bool {
        matches!(self, Standing::Member | Standing::Outsider)
    }
}

/// How a tenant stands to a chat, whoever acts for it (a bot, or a user as in aPaaS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantRelation {
    /// The chat's own tenant.
    Own,
    /// Another tenant with users in this external chat.
    Guest,
    /// Another tenant with no part in the chat.
    Foreign,
}

/// The one tenant check: compares the chat's tenants (its own, and for an external chat its
/// users') with `tenant`.
pub fn tenant_relation(dir: &Directory, tenant: &TenantKey, chat: &Chat) -> TenantRelation {
    if chat.tenant_key == *tenant {
        return TenantRelation::Own;
    }
    let users_here = chat.external && chat.users.iter().any(|u| dir.user(u).is_some_and(|u| u.tenant_key == *tenant));
    if users_here {
        TenantRelation::Guest
    } else {
        TenantRelation::Foreign
    }
}

/// How the bot behind a tenant token stands to a chat: `tenant_relation`, then membership.
pub fn standing(dir: &Directory, app: &App, tenant: &Tenant, chat: &Chat) -> Standing {
    match tenant_relation(dir, &tenant.tenant_key, chat) {
        TenantRelation::Own if chat.has_bot(&app.app_id) => Standing::Member,
        TenantRelation::Own => Standing::Outsider,
        TenantRelation::Guest => Standing::Guest,
        TenantRelation::Foreign => Standing::OtherTenant,
    }
}

/// Checks every operation on an existing group chat shares, in Feishu's order:
/// dissolved (232009) → not a group (232008) → another tenant (232010; 232011 for a tenant with
/// users in an external chat, whose bot is not in it). Answers how the caller stands to the chat:
/// `Member` or `Outsider` of the chat's own tenant.
pub fn usable_group(dir: &Directory, app: &App, tenant: &Tenant, chat: &Chat) -> Result<Standing, FeishuError> {
    if chat.status == ChatStatus::Dissolved {
        return Err(chat_dissolved());
    }
    if !chat.is_group() {
        return Err(unsupported_chat());
    }
    match standing(dir, app, tenant, chat) {
        Standing::OtherTenant => Err(other_tenant()),
        Standing::Guest => Err(not_in_chat()),
        s => Ok(s),
    }
}

/// `usable_group` for the member endpoints, which answer 232090 for a p2p chat.
fn usable_member_group(dir: &Directory, app: &App, tenant: &Tenant, chat: &Chat) -> Result<Standing, FeishuError> {
    if chat.settings.chat_mode == "p2p" && standing(dir, app, tenant, chat).same_tenant() {
        return Err(p2p_unsupported());
    }
    usable_group(dir, app, tenant, chat)
}

/// The caller's bot must be in the chat (232011).
pub fn require_member(standing: Standing) -> Result<(), FeishuError> {
    if standing.is_member() {
        Ok(())
    } else {
        Err(not_in_chat())
    }
}

// ---------------------------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------------------------

/// `PUT /open-apis/im/v1/chats/:chat_id` body: every field optional, omitted = unchanged.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UpdateChatBody {
    pub avatar: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub i18n_names: Option<I18nNames>,
    pub add_member_permission: Option<String>,
    pub share_card_permission: Option<String>,
    pub at_all_permission: Option<String>,
    pub edit_permission: Option<String>,
    pub owner_id: Option<String>,
    pub join_message_visibility: Option<String>,
    pub leave_message_visibility: Option<String>,
    pub membership_approval: Option<String>,
    pub labels: Option<Vec<String>>,
    pub toolkit_ids: Option<Vec<serde_json::Value>>,
    pub restricted_mode_setting: Option<RestrictedModeInput>,
    pub chat_type: Option<String>,
    pub group_message_type: Option<String>,
    pub urgent_setting: Option<String>,
    pub video_conference_setting: Option<String>,
    pub pin_manage_setting: Option<String>,
    pub hide_member_count_setting: Option<String>,
}

impl UpdateChatBody {
    /// Whether the body touches anything beyond what every member may edit.
    fn touches_more_than_basics(&self) -> bool {
        let beyond_basics = UpdateChatBody { avatar: None, name: None, description: None, i18n_names: None, ..self.clone() };
        beyond_basics != UpdateChatBody::default()
    }

    /// The chat type and name the update leads to, for the public-name uniqueness check.
    pub fn resulting_public_name<'a>(&'a self, chat: &'a Chat) -> Option<&'a str> {
        let chat_type = self.chat_type.as_deref().unwrap_or(&chat.settings.chat_type);
        let name = self.name.as_deref().unwrap_or(&chat.settings.name);
        (chat_type == "public").then_some(name)
    }
}

/// Applies an update to `chat` as `app` (calling in `tenant`) asks for it.
pub fn apply_update(
    dir: &Directory,
    app: &App,
    tenant: &Tenant,
    id_type: UserIdType,
    chat: &mut Chat,
    body: UpdateChatBody,
) -> Result<(), FeishuError> {
    require_member(usable_group(dir, app, tenant, chat)?)?;
    if !chat.bot_has_owner_rights(app) {
        if chat.settings.edit_permission == "only_owner" {
            return Err(only_owner_may_edit());
        }
        if body.touches_more_than_basics() {
            return Err(basic_fields_only());
        }
    }
    let s = chat.settings.clone();
    let mut next = s.clone();
    let keep = |v: &Option<String>, field: &str, allowed: &'static [&'static str], current: &Setting| {
        enum_field(field, v, allowed, current.clone())
    };
    next.chat_type = keep(&body.chat_type, "chat_type", &["private", "public"], &s.chat_type)?;
    next.group_message_type = keep(&body.group_message_type, "group_message_type", &["chat", "thread"], &s.group_message_type)?;
    next.at_all_permission = keep(&body.at_all_permission, "at_all_permission", OWNER_OR_ALL, &s.at_all_permission)?;
    next.edit_permission = keep(&body.edit_permission, "edit_permission", OWNER_OR_ALL, &s.edit_permission)?;
    next.join_message_visibility =
        keep(&body.join_message_visibility, "join_message_visibility", VISIBILITY, &s.join_message_visibility)?;
    next.leave_message_visibility =
        keep(&body.leave_message_visibility, "leave_message_visibility", VISIBILITY, &s.leave_message_visibility)?;
    next.membership_approval = keep(
        &body.membership_approval,
        "membership_approval",
        &["no_approval_required", "approval_required"],
        &s.membership_approval,
    )?;
    next.urgent_setting = keep(&body.urgent_setting, "urgent_setting", OWNER_OR_ALL, &s.urgent_setting)?;
    next.video_conference_setting =
        keep(&body.video_conference_setting, "video_conference_setting", OWNER_OR_ALL, &s.video_conference_setting)?;
    next.pin_manage_setting = keep(&body.pin_manage_setting, "pin_manage_setting", OWNER_OR_ALL, &s.pin_manage_setting)?;
    next.hide_member_count_setting = keep(
        &body.hide_member_count_setting,
        "hide_member_count_setting",
        &["all_members", "only_owner"],
        &s.hide_member_count_setting,
    )?;
    // add_member_permission and share_card_permission travel together: only_owner ↔ not_allowed.
    let add = body.add_member_permission.as_deref().map(|v| enum_field("add_member_permission", &Some(v.into()), OWNER_OR_ALL, "")).transpose()?;
    let share = body
        .share_card_permission
        .as_deref()
        .map(|v| enum_field("share_card_permission", &Some(v.into()), &["allowed", "not_allowed"], ""))
        .transpose()?;
    let paired = |add: &str| if add == "only_owner" { "not_allowed" } else { "allowed" };
    match (add, share) {
        (Some(a), Some(sh)) if paired(&a) != sh => {
            return Err(FeishuError::im_invalid_param(
                "share_card_permission",
                Some(&sh),
                "must pair with add_member_permission: only_owner↔not_allowed, all_members↔allowed",
            ))
        }
        (Some(a), _) => {
            next.share_card_permission = Setting::Borrowed(paired(&a));
            next.add_member_permission = a;
        }
        (None, Some(sh)) => {
            next.add_member_permission = Setting::Borrowed(if sh == "not_allowed" { "only_owner" } else { "all_members" });
            next.share_card_permission = sh;
        }
        (None, None) => {}
    }
    next.restricted_mode_setting = restricted_mode(body.restricted_mode_setting, &s.restricted_mode_setting)?;
    if let Some(avatar) = body.avatar.filter(|a| !a.is_empty()) {
        next.avatar = avatar.into();
    }
    if let Some(name) = body.name {
        next.name = name;
    }
    if let Some(description) = body.description {
        next.description = description;
    }
    if let Some(i18n) = body.i18n_names {
        next.i18n_names = i18n;
    }
    if let Some(labels) = body.labels {
        if !labels.is_empty() && !app.has_scope(LABEL_SCOPE) {
            return Err(im::no_label_authority());
        }
        next.labels = labels;
    }
    if let Some(ids) = body.toolkit_ids {
        next.toolkit_ids = ids.into_iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect();
    }

    // Entitlements and the rules that depend on the resulting chat.
    if next.chat_type == "public" && s.chat_type != "public" {
        if !tenant.public_chats {
            return Err(im::public_not_allowed());
        }
        if chat.external {
            return Err(im::external_cannot_be_public());
        }
    }
    if next.chat_type == "public" {
        if next.name.trim().is_empty() {
            return Err(im::public_name_empty());
        }
        if next.name.chars().count() < 2 {
            return Err(im::public_name_too_short());
        }
    } else if next.name.is_empty() {
        next.name = super::chat::DEFAULT_PRIVATE_NAME.to_string();
    }
    if next.restricted_mode_setting.status && !s.restricted_mode_setting.status && !tenant.restricted_mode {
        return Err(im::restricted_mode_not_allowed());
    }
    if next.hide_member_count_setting == "only_owner" && s.hide_member_count_setting != "only_owner" {
        if !tenant.hide_member_count {
            return Err(im::hide_member_count_not_allowed());
        }
        if chat.external {
            return Err(im::hide_member_count_unsupported());
        }
    }
    review(tenant, &next.name, &next.description, &next.i18n_names)?;

    // Owner transfer: owner rights only; the new owner is an active member of this tenant.
    if let Some(raw) = body.owner_id.filter(|o| !o.is_empty()) {
        if !chat.bot_is_owner(app) {
            return Err(basic_fields_only());
        }
        let user = dir
            .resolve_user(app, &tenant.tenant_key, id_type, &raw)
            .ok_or_else(|| im::invalid_user_id().with_field("owner_id", Some(&raw), "no such user for this app"))?;
        if user.tenant_key != chat.tenant_key {
            return Err(owner_cross_tenant());
        }
        if !user.is_active() {
            return Err(im::user_resigned().with_field("owner_id", Some(&raw), "the new owner has resigned"));
        }
        if !chat.has_user(&user.uid) {
            return Err(owner_not_in_chat());
        }
        chat.owner = Owner::User(user.uid.clone());
        chat.user_managers.retain(|m| *m != user.uid);
    }
    chat.settings = next;
    Ok(())
}

/// Disbanding: owner rights in the strict sense (owner, or creator with operate_as_owner).
pub fn apply_disband(dir: &Directory, app: &App, tenant: &Tenant, chat: &mut Chat) -> Result<(), FeishuError> {
    usable_group(dir, app, tenant, chat)?;
    if !chat.bot_is_owner(app) {
        return Err(not_owner());
    }
    chat.status = ChatStatus::Dissolved;
    // Nobody joins a disbanded chat: its pending invitations go with it (no event of their own).
    chat.settings.pending_invitations.clear();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------------------------

/// `member_id_type`: a user ID type, or `app_id` for bots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberIdType {
    User(UserIdType),
    App,
}

/// `member_id_type` as it travels: the query enum (and its OpenAPI schema) that
/// [`MemberIdType::parse`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberIdTypeName {
    OpenId,
    UnionId,
    UserId,
    AppId,
}

impl MemberIdType {
    pub fn parse(s: Option<&str>) -> Result<Self, FeishuError> {
        match s {
            None | Some("") => Ok(MemberIdType::User(UserIdType::OpenId)),
            Some(v) => match super::wire_name::<MemberIdTypeName>(v) {
                Some(MemberIdTypeName::OpenId) => Ok(MemberIdType::User(UserIdType::OpenId)),
                Some(MemberIdTypeName::UnionId) => Ok(MemberIdType::User(UserIdType::UnionId)),
                Some(MemberIdTypeName::UserId) => Ok(MemberIdType::User(UserIdType::UserId)),
                Some(MemberIdTypeName::AppId) => Ok(MemberIdType::App),
                None => Err(FeishuError::im_invalid_param(
                    "member_id_type",
                    Some(v),
                    "must be open_id, union_id, user_id or app_id",
                )),
            },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MemberIdType::User(t) => t.as_str(),
            MemberIdType::App => "app_id",
        }
    }
}

pub fn check_id_list(ids: &[String], id_type: MemberIdType, field: &str) -> Result<(), FeishuError> {
    let max = if id_type == MemberIdType::App { MAX_BOTS_PER_CALL } else { MAX_USERS_PER_CALL };
    if ids.is_empty() {
        return Err(FeishuError::im_invalid_param(field, None, "must not be empty"));
    }
    if ids.len() > max {
        return Err(FeishuError::im_invalid_param(field, None, format!("at most {max} per request for {}", id_type.as_str())));
    }
    Ok(())
}

/// What an add-members call will do, decided against the directory before touching the chat.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AddPlan {
    pub users: Vec<Uid>,
    pub bots: Vec<AppId>,
    pub invalid_id_list: Vec<String>,
    pub not_existed_id_list: Vec<String>,
    pub pending_approval_id_list: Vec<String>,
    /// The users behind `pending_approval_id_list` who are not members: their invitations wait.
    pub pending_users: Vec<Uid>,
}

enum Verdict<'a> {
    Usable(&'a User),
    Resigned,
    Unusable,
    /// Another tenant's user, and the chat is internal.
    CrossTenant,
    Unknown,
}

fn judge_user<'d>(dir: &'d Directory, app: &App, tenant: &Tenant, chat: &Chat, t: UserIdType, raw: &str) -> Verdict<'d> {
    let Some(user) = dir.resolve_user(app, &tenant.tenant_key, t, raw) else {
        return Verdict::Unknown;
    };
    if !user.is_active() {
        return Verdict::Resigned;
    }
    let external = user.tenant_key != chat.tenant_key;
    if external && !chat.external {
        return Verdict::CrossTenant;
    }
    if (external && !app.external_chats) || (!external && !app.can_see(user)) {
        return Verdict::Unusable;
    }
    Verdict::Usable(user)
}

/// Decides an add-members call. `succeed_type` 0: unknown or unusable IDs fail the call (232043),
/// resigned users are skipped and reported; 1: every usable ID is added and the rest reported;
/// 2: any unusable ID fails the call.
pub fn plan_add(
    dir: &Directory,
    app: &App,
    tenant: &Tenant,
    chat: &Chat,
    id_type: MemberIdType,
    ids: &[String],
    succeed_type: u8,
) -> Result<AddPlan, FeishuError> {
    require_member(usable_member_group(dir, app, tenant, chat)?)?;
    let rights = chat.bot_has_owner_rights(app);
    if chat.settings.add_member_permission == "only_owner" && !rights {
        return Err(not_owner());
    }
    let mut plan = AddPlan::default();
    let mut failing = im::unavailable_ids();
    let mut cross_tenant = external_into_internal();
    for raw in ids {
        match id_type {
            MemberIdType::App => match dir.app(&AppId(raw.clone())) {
                Some(bot) if bot.bot && bot.enabled_in(&chat.tenant_key) => {
                    if !plan.bots.contains(&bot.app_id) {
                        plan.bots.push(bot.app_id.clone());
                    }
                }
                Some(bot) if bot.bot => {
                    plan.invalid_id_list.push(raw.clone());
                    failing = failing.with_field("id_list", Some(raw), "the bot is not available in this tenant");
                }
                _ => {
                    plan.not_existed_id_list.push(raw.clone());
                    failing = failing.with_field("id_list", Some(raw), "no bot with this app_id");
                }
            },
            MemberIdType::User(t) => match judge_user(dir, app, tenant, chat, t, raw) {
                Verdict::Usable(user) => {
                    if chat.settings.membership_approval == "approval_required" && !rights {
                        plan.pending_approval_id_list.push(raw.clone());
                        if !chat.has_user(&user.uid) && !plan.pending_users.contains(&user.uid) {
                            plan.pending_users.push(user.uid.clone());
                        }
                    } else if !plan.users.contains(&user.uid) {
                        plan.users.push(user.uid.clone());
                    }
                }
                Verdict::Resigned => {
                    plan.invalid_id_list.push(raw.clone());
                    if succeed_type == 2 {
                        failing = failing.with_field("id_list", Some(raw), "resigned");
                    }
                }
                Verdict::Unusable => {
                    plan.invalid_id_list.push(raw.clone());
                    failing = failing.with_field("id_list", Some(raw), "outside the app's availability or another tenant");
                }
                Verdict::CrossTenant => {
                    plan.invalid_id_list.push(raw.clone());
                    cross_tenant = cross_tenant.with_field("id_list", Some(raw), "another tenant's user; this chat is internal");
                }
                Verdict::Unknown => {
                    plan.not_existed_id_list.push(raw.clone());
                    failing = failing.with_field("id_list", Some(raw), "no such user for this app");
                }
            },
        }
    }
    // External users never go into an internal chat: the members page's own code, 232028.
    if succeed_type != 1 && !cross_tenant.field_violations.is_empty() {
        return Err(cross_tenant);
    }
    if succeed_type != 1 && !failing.field_violations.is_empty() {
        return Err(failing);
    }
    let nothing_usable = plan.users.is_empty() && plan.bots.is_empty() && plan.pending_approval_id_list.is_empty();
    if succeed_type == 0 && nothing_usable {
        return Err(no_valid_members());
    }
    Ok(plan)
}

/// Adds the planned members to the chat's latest state at `now_ms`; the caps are checked here.
/// The planned pending users become invitations of `inviter` (a user already pending keeps the
/// invitation they have).
pub fn apply_add(chat: &mut Chat, plan: &AddPlan, inviter: &Inviter, now_ms: i64) -> Result<(), FeishuError> {
    let new_users: Vec<&Uid> = plan.users.iter().filter(|u| !chat.has_user(u)).collect();
    let new_bots: Vec<&AppId> = plan.bots.iter().filter(|b| !chat.has_bot(b)).collect();
    if chat.users.len() + new_users.len() > MAX_USERS_PER_CHAT || chat.bots.len() + new_bots.len() > MAX_BOTS_PER_CHAT {
        return Err(member_limit());
    }
    chat.add_users(new_users.into_iter().cloned(), now_ms);
    chat.bots.extend(new_bots.into_iter().cloned());
    for uid in &plan.pending_users {
        invite(chat, uid, inviter, now_ms);
    }
    Ok(())
}

/// Records `uid`'s invitation by `inviter` at `at_ms`, unless they are a member or already pending.
fn invite(chat: &mut Chat, uid: &Uid, inviter: &Inviter, at_ms: i64) {
    if !chat.has_user(uid) && chat.invitation(uid).is_none() {
        chat.settings.pending_invitations.push(Invitation { uid: uid.clone(), inviter: inviter.clone(), at_ms });
    }
}

// ---------------------------------------------------------------------------------------------
// Pending invitations (the control API acts as a user of the Feishu client)
// ---------------------------------------------------------------------------------------------

/// Why a user's action on an invitation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationRefusal {
    Disbanded,
    NotAGroup,
    /// The acting user is not in the chat.
    ActorNotMember,
    /// Only the owner and managers may add members to this chat.
    AddOwnerOnly,
    /// The invitee is of another tenant and the chat is internal.
    CrossTenant,
    /// No pending invitation for the user.
    NotPending,
    /// Approve and reject are the owner's and managers'.
    NotOwnerOrManager,
    /// Withdrawing is the inviter's, the owner's and managers'.
    NotInviterOwnerOrManager,
    Full,
}

impl InvitationRefusal {
    pub fn why(self) -> &'static str {
        match self {
            InvitationRefusal::Disbanded => "the chat has been disbanded",
            InvitationRefusal::NotAGroup => "only group chats take invitations",
            InvitationRefusal::ActorNotMember => "the acting user is not in the chat",
            InvitationRefusal::AddOwnerOnly => "only the owner and managers may add members to this chat",
            InvitationRefusal::CrossTenant => "users of another tenant only join external chats",
            InvitationRefusal::NotPending => "the user has no pending invitation to this chat",
            InvitationRefusal::NotOwnerOrManager => "only the owner and managers approve or reject invitations",
            InvitationRefusal::NotInviterOwnerOrManager => "only the inviter, the owner and managers withdraw an invitation",
            InvitationRefusal::Full => "the chat is full",
        }
    }
}

/// What an invitation by a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invited {
    Joined,
    Pending,
    AlreadyMember,
}

fn usable_by(chat: &Chat, actor: &Uid) -> Result<(), InvitationRefusal> {
    if chat.is_dissolved() {
        return Err(InvitationRefusal::Disbanded);
    }
    if !chat.is_group() {
        return Err(InvitationRefusal::NotAGroup);
    }
    if !chat.has_user(actor) {
        return Err(InvitationRefusal::ActorNotMember);
    }
    Ok(())
}

/// A member invites a user (`invitee` of `invitee_tenant`) from the Feishu client at `now_ms`.
/// Where approval is required, a member without owner or manager rights only invites: the user
/// waits until the owner or a manager approves. Otherwise the user joins.
pub fn apply_user_invites(
    chat: &mut Chat,
    actor: &Uid,
    invitee: &Uid,
    invitee_tenant: &TenantKey,
    now_ms: i64,
) -> Result<Invited, InvitationRefusal> {
    usable_by(chat, actor)?;
    let rights = chat.user_has_owner_rights(actor);
    if chat.settings.add_member_permission == "only_owner" && !rights {
        return Err(InvitationRefusal::AddOwnerOnly);
    }
    if *invitee_tenant != chat.tenant_key && !chat.external {
        return Err(InvitationRefusal::CrossTenant);
    }
    if chat.has_user(invitee) {
        return Ok(Invited::AlreadyMember);
    }
    if chat.settings.membership_approval == "approval_required" && !rights {
        invite(chat, invitee, &Inviter::User(actor.clone()), now_ms);
        return Ok(Invited::Pending);
    }
    if chat.users.len() >= MAX_USERS_PER_CHAT {
        return Err(InvitationRefusal::Full);
    }
    chat.add_users([invitee.clone()], now_ms);
    Ok(Invited::Joined)
}

/// What a user does with a pending invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The owner or a manager lets the user in: they join.
    Approve,
    /// The owner or a manager turns the user away: the invitation is dropped.
    Reject,
    /// The inviter, the owner or a manager takes the invitation back.
    Withdraw,
}

/// `actor` decides `invitee`'s pending invitation at `now_ms`; answers the invitation decided.
pub fn apply_decision(
    chat: &mut Chat,
    actor: &Uid,
    invitee: &Uid,
    decision: Decision,
    now_ms: i64,
) -> Result<Invitation, InvitationRefusal> {
    usable_by(chat, actor)?;
    let invitation = chat.invitation(invitee).cloned().ok_or(InvitationRefusal::NotPending)?;
    let rights = chat.user_has_owner_rights(actor);
    match decision {
        Decision::Approve | Decision::Reject if !rights => return Err(InvitationRefusal::NotOwnerOrManager),
        Decision::Withdraw if !rights && invitation.inviter != Inviter::User(actor.clone()) => {
            return Err(InvitationRefusal::NotInviterOwnerOrManager)
        }
        _ => {}
    }
    if decision == Decision::Approve && chat.users.len() >= MAX_USERS_PER_CHAT {
        return Err(InvitationRefusal::Full);
    }
    chat.settings.pending_invitations.retain(|inv| inv.uid != *invitee);
    if decision == Decision::Approve {
        chat.add_users([invitee.clone()], now_ms);
    }
    Ok(invitation)
}

/// Removes members. Others may be removed by owner/managers only; anyone may remove itself;
/// the owner can not be removed (transfer first). Unknown, non-member and protected IDs are
/// reported in `invalid_id_list`.
pub fn apply_remove(
    dir: &Directory,
    app: &App,
    tenant: &Tenant,
    chat: &mut Chat,
    id_type: MemberIdType,
    ids: &[String],
) -> Result<Vec<String>, FeishuError> {
    require_member(usable_member_group(dir, app, tenant, chat)?)?;
    let rights = chat.bot_has_owner_rights(app);
    let mut invalid = Vec::new();
    for raw in ids {
        match id_type {
            MemberIdType::App => {
                let bot = AppId(raw.clone());
                let allowed = rights || bot == app.app_id;
                if !chat.has_bot(&bot) || chat.owner == Owner::Bot(bot.clone()) || !allowed {
                    invalid.push(raw.clone());
                    continue;
                }
                chat.bots.retain(|b| *b != bot);
                chat.bot_managers.retain(|b| *b != bot);
            }
            MemberIdType::User(t) => {
                let Some(user) = dir.resolve_user(app, &tenant.tenant_key, t, raw) else {
                    invalid.push(raw.clone());
                    continue;
                };
                if !chat.has_user(&user.uid) || chat.owner == Owner::User(user.uid.clone()) || !rights {
                    invalid.push(raw.clone());
                    continue;
                }
                chat.remove_user(&user.uid);
            }
        }
    }
    Ok(invalid)
}

/// A member adds a bot to a group chat from the Feishu client (the control API acts as them):
/// `Err` says why not. Where only the owner may add members, only the owner and managers may.
/// A bot already in the chat is no change.
pub fn apply_user_adds_bot(chat: &mut Chat, user: &Uid, bot: &App) -> Result<(), &'static str> {
    if chat.is_dissolved() {
        return Err("the chat has been disbanded");
    }
    if !chat.is_group() {
        return Err("bots are added to group chats only");
    }
    if !chat.has_user(user) {
        return Err("the user is not in the chat");
    }
    let owner_or_manager = chat.owner == Owner::User(user.clone()) || chat.user_managers.contains(user);
    if chat.settings.add_member_permission == "only_owner" && !owner_or_manager {
        return Err("only the owner and managers may add members to this chat");
    }
    if !bot.bot || !bot.enabled_in(&chat.tenant_key) {
        return Err("the app has no bot enabled in the chat's tenant");
    }
    if chat.has_bot(&bot.app_id) {
        return Ok(());
    }
    if chat.bots.len() >= MAX_BOTS_PER_CHAT {
        return Err("the chat has the most bots it can have");
    }
    chat.bots.push(bot.app_id.clone());
    Ok(())
}

/// A bot joins a public chat by itself.
pub fn apply_me_join(dir: &Directory, app: &App, tenant: &Tenant, chat: &mut Chat) -> Result<(), FeishuError> {
    usable_group(dir, app, tenant, chat)?;
    if chat.settings.chat_type != "public" {
        return Err(unsupported_chat());
    }
    if chat.has_bot(&app.app_id) {
        return Ok(());
    }
    if chat.settings.membership_approval == "approval_required" {
        return Err(join_needs_approval());
    }
    if chat.bots.len() >= MAX_BOTS_PER_CHAT {
        return Err(member_limit());
    }
    chat.bots.push(app.app_id.clone());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Managers
// ---------------------------------------------------------------------------------------------

/// Adds (`add = true`) or removes managers. Owner only; managers must be members; at most 10.
pub fn apply_managers(
    dir: &Directory,
    app: &App,
    tenant: &Tenant,
    chat: &mut Chat,
    id_type: MemberIdType,
    ids: &[String],
    add: bool,
) -> Result<(), FeishuError> {
    require_member(usable_group(dir, app, tenant, chat)?)?;
    if !chat.bot_is_owner(app) {
        return Err(managers_owner_only());
    }
    let mut not_members = no_valid_members();
    let mut users = Vec::new();
    let mut bots = Vec::new();
    for raw in ids {
        match id_type {
            MemberIdType::App => {
                let bot = AppId(raw.clone());
                if chat.has_bot(&bot) {
                    bots.push(bot);
                } else {
                    not_members = not_members.with_field("manager_ids", Some(raw), "not a bot of this chat");
                }
            }
            MemberIdType::User(t) => match dir.resolve_user(app, &tenant.tenant_key, t, raw) {
                Some(u) if chat.has_user(&u.uid) => users.push(u.uid.clone()),
                _ => not_members = not_members.with_field("manager_ids", Some(raw), "not a member of this chat"),
            },
        }
    }
    if add {
        if !not_members.field_violations.is_empty() {
            return Err(not_members);
        }
        for u in users {
            if chat.owner != Owner::User(u.clone()) && !chat.user_managers.contains(&u) {
                chat.user_managers.push(u);
            }
        }
        for b in bots {
            if chat.owner != Owner::Bot(b.clone()) && !chat.bot_managers.contains(&b) {
                chat.bot_managers.push(b);
            }
        }
        if chat.user_managers.len() + chat.bot_managers.len() > MAX_MANAGERS {
            return Err(manager_limit());
        }
    } else {
        chat.user_managers.retain(|u| !users.contains(u));
        chat.bot_managers.retain(|b| !bots.contains(b));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chat::ChatSettings;
    use crate::domain::ids::ChatId;

    fn uid(s: &str) -> Uid {
        Uid(s.into())
    }

    /// A chat owned by `owner` with member `member` that needs approval.
    fn gated() -> Chat {
        let settings: ChatSettings =
            serde_json::from_value(serde_json::json!({"name": "g", "membership_approval": "approval_required"})).unwrap();
        Chat {
            chat_id: ChatId("oc_1".into()),
            tenant_key: TenantKey("t".into()),
            creator_app: AppId("cli_a".into()),
            owner: Owner::User(uid("owner")),
            external: false,
            status: ChatStatus::Normal,
            created_at_ms: 1,
            settings,
            users: vec![uid("owner"), uid("member")],
            user_join_keys: vec![1000, 1001],
            bots: vec![AppId("cli_a".into())],
            user_managers: vec![],
            bot_managers: vec![],
            last_active_at_ms: 1,
        }
    }

    fn pending(chat: &Chat) -> Vec<&str> {
        chat.settings.pending_invitations.iter().map(|i| i.uid.0.as_str()).collect()
    }

    #[test]
    fn a_member_without_rights_only_invites_once_and_the_owner_lets_in() {
        let mut c = gated();
        let t = TenantKey("t".into());
        assert_eq!(apply_user_invites(&mut c, &uid("member"), &uid("x"), &t, 5), Ok(Invited::Pending));
        assert_eq!(apply_user_invites(&mut c, &uid("member"), &uid("x"), &t, 9), Ok(Invited::Pending));
        assert_eq!(c.settings.pending_invitations, [Invitation { uid: uid("x"), inviter: Inviter::User(uid("member")), at_ms: 5 }]);
        assert!(!c.has_user(&uid("x")));
        assert_eq!(apply_user_invites(&mut c, &uid("x"), &uid("y"), &t, 5), Err(InvitationRefusal::ActorNotMember));
        assert_eq!(apply_user_invites(&mut c, &uid("member"), &uid("y"), &TenantKey("other".into()), 5), Err(InvitationRefusal::CrossTenant));
        assert_eq!(apply_user_invites(&mut c, &uid("owner"), &uid("y"), &t, 5), Ok(Invited::Joined));
        assert_eq!(apply_user_invites(&mut c, &uid("owner"), &uid("y"), &t, 5), Ok(Invited::AlreadyMember));
        // Joining another way ends the wait.
        c.add_users([uid("x")], 7);
        assert!(pending(&c).is_empty());
    }

    #[test]
    fn who_decides_what() {
        let mut c = gated();
        let t = TenantKey("t".into());
        apply_user_invites(&mut c, &uid("member"), &uid("x"), &t, 5).unwrap();
        apply_add(&mut c, &AddPlan { pending_users: vec![uid("y"), uid("x")], ..AddPlan::default() }, &Inviter::App(AppId("cli_b".into())), 6).unwrap();
        assert_eq!(pending(&c), ["x", "y"], "x keeps the member's invitation");
        assert_eq!(apply_decision(&mut c, &uid("member"), &uid("x"), Decision::Approve, 7), Err(InvitationRefusal::NotOwnerOrManager));
        assert_eq!(apply_decision(&mut c, &uid("member"), &uid("x"), Decision::Reject, 7), Err(InvitationRefusal::NotOwnerOrManager));
        assert_eq!(apply_decision(&mut c, &uid("member"), &uid("y"), Decision::Withdraw, 7), Err(InvitationRefusal::NotInviterOwnerOrManager));
        assert_eq!(apply_decision(&mut c, &uid("member"), &uid("z"), Decision::Withdraw, 7), Err(InvitationRefusal::NotPending));
        let inv = apply_decision(&mut c, &uid("member"), &uid("x"), Decision::Withdraw, 7).unwrap();
        assert_eq!(inv.inviter, Inviter::User(uid("member")));
        assert_eq!(pending(&c), ["y"]);
        c.user_managers.push(uid("member"));
        apply_decision(&mut c, &uid("member"), &uid("y"), Decision::Approve, 8).unwrap();
        assert!(c.has_user(&uid("y")) && pending(&c).is_empty());
        // Disbanding drops what still waits.
        apply_add(&mut c, &AddPlan { pending_users: vec![uid("w")], ..AddPlan::default() }, &Inviter::App(AppId("cli_b".into())), 9).unwrap();
        assert_eq!(pending(&c), ["w"]);
        c.status = ChatStatus::Dissolved;
        assert_eq!(apply_decision(&mut c, &uid("owner"), &uid("w"), Decision::Reject, 9), Err(InvitationRefusal::Disbanded));
    }
}
