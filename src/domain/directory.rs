//! Who exists: tenants, developers, apps and users, loaded from a fixture (TOML, see docs/fixture.md).
//!
//! The directory is immutable once built; a new fixture builds a new `Directory`. All lookups are
//! in-memory hash maps, so request handlers never touch storage to learn who someone is.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::ids::*;

/// A hash map of the directory's indexes: foldhash, not std's SipHash. A create resolves every
/// member through one (and dedups them through a `FastSet`), and SipHash cost ~250 instructions
/// a lookup there (issue 12). Still seeded per process; the keys come from the fixture.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// The demo directory, used when neither a fixture nor a stored one exists.
pub const DEMO_FIXTURE: &str = include_str!("../../fixtures/demo.toml");

// ---------------------------------------------------------------------------------------------
// Fixture file format
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    #[serde(default)]
    pub developers: Vec<DeveloperSpec>,
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub workflows: Vec<super::apaas::WorkflowSpec>,
    #[serde(default)]
    pub tasks: Vec<super::apaas::TaskSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub key: String,
    pub name: Option<String>,
    pub tenant_key: Option<String>,
    #[serde(default = "yes")]
    pub public_chats: bool,
    #[serde(default = "yes")]
    pub restricted_mode: bool,
    #[serde(default = "yes")]
    pub hide_member_count: bool,
    #[serde(default)]
    pub blocked_words: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeveloperSpec {
    pub key: String,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    pub key: String,
    pub name: Option<String>,
    pub developer: Option<String>,
    /// Home tenant of a self-built app.
    pub tenant: Option<String>,
    #[serde(default)]
    pub kind: AppKind,
    /// Tenants a store app is installed in (a self-built app is installed in its home tenant).
    #[serde(default)]
    pub installed: Vec<String>,
    /// Tenants where the app is installed but switched off by the admin.
    #[serde(default)]
    pub disabled_in: Vec<String>,
    /// Shorthand for a self-built app disabled in its home tenant.
    #[serde(default = "yes")]
    pub enabled: bool,
    pub app_id: Option<String>,
    pub app_secret: Option<String>,
    #[serde(default = "yes")]
    pub bot: bool,
    #[serde(default)]
    pub external_chats: bool,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub availability: AvailabilitySpec,
    pub rate_limit: Option<RateLimitSpec>,
    /// Event subscription (docs/fixture.md): the request URL.
    pub event_url: Option<String>,
    /// Derived when absent; empty: plain delivery.
    pub encrypt_key: Option<String>,
    /// Derived when absent.
    pub verification_token: Option<String>,
    /// Default: every type the app's scopes allow.
    pub event_types: Option<Vec<String>>,
    pub event_mode: Option<super::subscriptions::EventMode>,
    /// Where card callbacks go; default: the app's long connection.
    pub callback_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AvailabilitySpec {
    /// `"all"`: every user of the tenant.
    All(String),
    /// User keys the app may see.
    Users(Vec<String>),
}

impl Default for AvailabilitySpec {
    fn default() -> Self {
        AvailabilitySpec::All("all".into())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    pub per_second: u32,
    pub per_minute: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    pub key: String,
    pub tenant: String,
    pub name: Option<String>,
    #[serde(default)]
    pub status: UserStatus,
    pub user_id: Option<String>,
    pub kunlun_id: Option<String>,
    /// Work email, for `receive_id_type=email` and contact lookups.
    pub email: Option<String>,
    /// Mobile number; without a leading `+` it is a mainland number (`+86` is prepended).
    pub mobile: Option<String>,
    /// English name (`en_name` of the contact API).
    pub en_name: Option<String>,
    /// Pinned open_ids, by app key.
    #[serde(default)]
    pub open_ids: HashMap<String, String>,
    /// Pinned union_ids, by developer key.
    #[serde(default)]
    pub union_ids: HashMap<String, String>,
    /// Users (any tenant) this user is Feishu friends with; external members must be the owner's friends.
    #[serde(default)]
    pub friends: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A mobile number as the directory keys it: `+` and digits only; a number without a country
/// code is a mainland one (Feishu's rule for `batch_get_id`: "+86" may be left out).
pub fn normalize_mobile(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if raw.trim_start().starts_with('+') {
        format!("+{digits}")
    } else {
        format!("+86{digits}")
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    #[default]
    SelfBuilt,
    Store,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    #[default]
    Active,
    Resigned,
}

// ---------------------------------------------------------------------------------------------
// The built directory
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Tenant {
    pub key: String,
    pub name: String,
    pub tenant_key: TenantKey,
    pub public_chats: bool,
    pub restricted_mode: bool,
    pub hide_member_count: bool,
    pub blocked_words: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub key: String,
    pub name: String,
    pub app_id: AppId,
    pub app_secret: String,
    pub developer: String,
    pub kind: AppKind,
    /// Installed tenants and whether the app is enabled there.
    pub installs: HashMap<TenantKey, bool>,
    pub home_tenant: Option<TenantKey>,
    pub bot: bool,
    pub external_chats: bool,
    pub scopes: HashSet<String>,
    /// `None`: sees every user of the tenants it is installed in.
    pub visible_users: Option<HashSet<Uid>>,
    pub rate_limit: Option<RateLimitSpec>,
    /// Event settings as the fixture says (run-time changes live in the store).
    pub events: super::subscriptions::EventSettings,
}

impl App {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    pub fn has_any_scope(&self, scopes: &[&str]) -> bool {
        scopes.iter().any(|s| self.has_scope(s))
    }

    /// Installed and switched on in `tenant`.
    pub fn enabled_in(&self, tenant: &TenantKey) -> bool {
        self.installs.get(tenant).copied().unwrap_or(false)
    }

    pub fn can_see(&self, user: &User) -> bool {
        match &self.visible_users {
            None => true,
            Some(set) => set.contains(&user.uid),
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub key: String,
    pub uid: Uid,
    pub tenant_key: TenantKey,
    pub name: String,
    pub status: UserStatus,
    pub user_id: UserId,
    pub kunlun_id: KunlunId,
    pub email: Option<String>,
    /// In `+<country><number>` form (see `normalize_mobile`).
    pub mobile: Option<String>,
    pub en_name: Option<String>,
    pub friends: HashSet<Uid>,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.status == UserStatus::Active
    }
}

/// How a request names a user: the `user_id_type` / `member_id_type` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserIdType {
    OpenId,
    UnionId,
    UserId,
}

impl UserIdType {
    pub fn parse(s: &str) -> Option<Self> {
        super::wire_name(s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenId => "open_id",
            Self::UnionId => "union_id",
            Self::UserId => "user_id",
        }
    }
}

#[derive(Debug, Default)]
pub struct Directory {
    tenants: Vec<Tenant>,
    apps: Vec<App>,
    users: Vec<User>,
    tenant_by_key: FastMap<TenantKey, usize>,
    app_by_id: FastMap<AppId, usize>,
    user_by_uid: FastMap<Uid, usize>,
    /// open_id → (app, user): an open_id only means something to the app it was issued for.
    by_open_id: FastMap<OpenId, (AppId, usize)>,
    open_id_of: FastMap<(AppId, Uid), OpenId>,
    by_union_id: FastMap<UnionId, (String, usize)>,
    union_id_of: FastMap<(String, Uid), UnionId>,
    by_user_id: FastMap<(TenantKey, UserId), usize>,
    by_kunlun_id: FastMap<(TenantKey, KunlunId), usize>,
    by_email: FastMap<(TenantKey, String), usize>,
    by_mobile: FastMap<(TenantKey, String), usize>,
    apaas: super::apaas::Apaas,
}

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("fixture is not valid TOML for larkstack: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("fixture: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> FixtureError {
    FixtureError::Invalid(msg.into())
}

impl Directory {
    pub fn from_toml(text: &str) -> Result<Self, FixtureError> {
        let fixture: Fixture = toml::from_str(text)?;
        Self::build(fixture)
    }

    pub fn demo() -> Self {
        Self::from_toml(DEMO_FIXTURE).expect("the bundled demo fixture is valid")
    }

    pub fn build(f: Fixture) -> Result<Self, FixtureError> {
        let mut d = Directory::default();
        let mut tenant_of_key: HashMap<String, TenantKey> = HashMap::new();
        for t in f.tenants {
            let tenant_key = TenantKey(t.tenant_key.clone().unwrap_or_else(|| derive_tenant_key(&t.key).0));
            if tenant_of_key.insert(t.key.clone(), tenant_key.clone()).is_some() {
                return Err(invalid(format!("tenant key {:?} appears twice", t.key)));
            }
            if d.tenant_by_key.insert(tenant_key.clone(), d.tenants.len()).is_some() {
                return Err(invalid(format!("tenant_key {tenant_key} appears twice")));
            }
            d.tenants.push(Tenant {
                name: t.name.unwrap_or_else(|| t.key.clone()),
                key: t.key,
                tenant_key,
                public_chats: t.public_chats,
                restricted_mode: t.restricted_mode,
                hide_member_count: t.hide_member_count,
                blocked_words: t.blocked_words,
            });
        }
        let tenant = |key: &str, what: &str| {
            tenant_of_key.get(key).cloned().ok_or_else(|| invalid(format!("{what} names unknown tenant {key:?}")))
        };
        let developers: HashSet<String> = f.developers.iter().map(|d| d.key.clone()).collect();

        // Users first: apps refer to them in `availability`.
        let mut uid_of_key: HashMap<String, Uid> = HashMap::new();
        for u in &f.users {
            let tk = tenant(&u.tenant, &format!("user {:?}", u.key))?;
            let uid = derive_uid(&u.tenant, &u.key);
            if uid_of_key.insert(u.key.clone(), uid.clone()).is_some() {
                return Err(invalid(format!("user key {:?} appears twice", u.key)));
            }
            let user_id = UserId(u.user_id.clone().unwrap_or_else(|| derive_user_id(&u.tenant, &u.key).0));
            let kunlun_id = KunlunId(u.kunlun_id.clone().unwrap_or_else(|| derive_kunlun_id(&uid).0));
            if !kunlun_id.0.chars().all(|c| c.is_ascii_digit()) || kunlun_id.0.is_empty() {
                return Err(invalid(format!("user {:?}: kunlun_id must be a numeric string", u.key)));
            }
            let idx = d.users.len();
            if d.by_user_id.insert((tk.clone(), user_id.clone()), idx).is_some() {
                return Err(invalid(format!("user_id {user_id} appears twice in tenant {}", u.tenant)));
            }
            if d.by_kunlun_id.insert((tk.clone(), kunlun_id.clone()), idx).is_some() {
                return Err(invalid(format!("kunlun_id {kunlun_id} appears twice in tenant {}", u.tenant)));
            }
            if let Some(email) = &u.email {
                if d.by_email.insert((tk.clone(), email.to_lowercase()), idx).is_some() {
                    return Err(invalid(format!("email {email} appears twice in tenant {}", u.tenant)));
                }
            }
            let mobile = u.mobile.as_deref().map(normalize_mobile);
            if let Some(m) = &mobile {
                if d.by_mobile.insert((tk.clone(), m.clone()), idx).is_some() {
                    return Err(invalid(format!("mobile {m} appears twice in tenant {}", u.tenant)));
                }
            }
            d.user_by_uid.insert(uid.clone(), idx);
            d.users.push(User {
                key: u.key.clone(),
                uid,
                tenant_key: tk,
                name: u.name.clone().unwrap_or_else(|| u.key.clone()),
                status: u.status,
                user_id,
                kunlun_id,
                email: u.email.clone(),
                mobile,
                en_name: u.en_name.clone(),
                friends: HashSet::new(),
            });
        }
        for (idx, u) in f.users.iter().enumerate() {
            for friend in &u.friends {
                let fuid = uid_of_key
                    .get(friend)
                    .cloned()
                    .ok_or_else(|| invalid(format!("user {:?} befriends unknown user {friend:?}", u.key)))?;
                let me = d.users[idx].uid.clone();
                d.users[idx].friends.insert(fuid.clone());
                let fidx = d.user_by_uid[&fuid];
                d.users[fidx].friends.insert(me); // friendship is mutual
            }
        }

        let mut app_key_to_id: HashMap<String, AppId> = HashMap::new();
        for a in f.apps {
            let developer = a.developer.clone().unwrap_or_else(|| a.key.clone());
            if a.developer.is_some() && !developers.contains(&developer) {
                return Err(invalid(format!("app {:?} names unknown developer {developer:?}", a.key)));
            }
            let app_id = AppId(a.app_id.clone().unwrap_or_else(|| derive_app_id(&a.key).0));
            if !app_id.0.starts_with("cli_") {
                return Err(invalid(format!("app {:?}: app_id must start with cli_", a.key)));
            }
            let mut installs = HashMap::new();
            let home_tenant = match a.kind {
                AppKind::SelfBuilt => {
                    let home = a
                        .tenant
                        .as_deref()
                        .ok_or_else(|| invalid(format!("self-built app {:?} needs `tenant`", a.key)))?;
                    let tk = tenant(home, &format!("app {:?}", a.key))?;
                    installs.insert(tk.clone(), a.enabled);
                    Some(tk)
                }
                AppKind::Store => None,
            };
            for t in &a.installed {
                installs.insert(tenant(t, &format!("app {:?}", a.key))?, true);
            }
            for t in &a.disabled_in {
                installs.insert(tenant(t, &format!("app {:?}", a.key))?, false);
            }
            let visible_users = match a.availability {
                AvailabilitySpec::All(s) if s == "all" => None,
                AvailabilitySpec::All(s) => {
                    return Err(invalid(format!("app {:?}: availability is \"all\" or a list of user keys, not {s:?}", a.key)))
                }
                AvailabilitySpec::Users(keys) => Some(
                    keys.iter()
                        .map(|k| {
                            uid_of_key
                                .get(k)
                                .cloned()
                                .ok_or_else(|| invalid(format!("app {:?} availability names unknown user {k:?}", a.key)))
                        })
                        .collect::<Result<_, _>>()?,
                ),
            };
            if d.app_by_id.insert(app_id.clone(), d.apps.len()).is_some() {
                return Err(invalid(format!("app_id {app_id} appears twice")));
            }
            app_key_to_id.insert(a.key.clone(), app_id.clone());
            let scopes: HashSet<String> = a.scopes.into_iter().collect();
            let patch = super::subscriptions::SettingsPatch {
                event_url: a.event_url,
                encrypt_key: a.encrypt_key,
                verification_token: a.verification_token,
                event_types: a.event_types,
                event_mode: a.event_mode,
                callback_url: a.callback_url,
            };
            let events = super::subscriptions::EventSettings::defaults(&app_id, &scopes)
                .apply(&patch, &scopes)
                .map_err(|e| invalid(format!("app {:?}: {e}", a.key)))?;
            d.apps.push(App {
                name: a.name.unwrap_or_else(|| a.key.clone()),
                app_secret: a.app_secret.unwrap_or_else(|| derive_app_secret(&a.key)),
                key: a.key,
                app_id,
                developer,
                kind: a.kind,
                installs,
                home_tenant,
                bot: a.bot,
                external_chats: a.external_chats,
                scopes,
                visible_users,
                rate_limit: a.rate_limit,
                events,
            });
        }

        let apaas = super::apaas::Apaas::build(
            f.workflows,
            f.tasks,
            |key| tenant_of_key.get(key).cloned(),
            |key| uid_of_key.get(key).map(|uid| (uid.clone(), d.users[d.user_by_uid[uid]].tenant_key.clone())),
        )
        .map_err(invalid)?;
        d.apaas = apaas;

        // Per-app and per-developer identities of every user, pinned or derived.
        let developer_list: HashSet<String> = d.apps.iter().map(|a| a.developer.clone()).collect();
        for (idx, spec) in f.users.iter().enumerate() {
            for (app_key, _) in &spec.open_ids {
                if !app_key_to_id.contains_key(app_key) {
                    return Err(invalid(format!("user {:?} pins an open_id for unknown app {app_key:?}", spec.key)));
                }
            }
            let uid = d.users[idx].uid.clone();
            for app in &d.apps {
                let open_id = spec
                    .open_ids
                    .get(&app.key)
                    .map(|s| OpenId(s.clone()))
                    .unwrap_or_else(|| derive_open_id(&app.app_id, &uid));
                if d.by_open_id.insert(open_id.clone(), (app.app_id.clone(), idx)).is_some() {
                    return Err(invalid(format!("open_id {open_id} appears twice")));
                }
                d.open_id_of.insert((app.app_id.clone(), uid.clone()), open_id);
            }
            for dev in &developer_list {
                let union_id = spec
                    .union_ids
                    .get(dev)
                    .map(|s| UnionId(s.clone()))
                    .unwrap_or_else(|| derive_union_id(dev, &uid));
                if d.by_union_id.insert(union_id.clone(), (dev.clone(), idx)).is_some() {
                    return Err(invalid(format!("union_id {union_id} appears twice")));
                }
                d.union_id_of.insert((dev.clone(), uid.clone()), union_id);
            }
        }
        Ok(d)
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    pub fn apaas(&self) -> &super::apaas::Apaas {
        &self.apaas
    }

    pub fn tenant(&self, key: &TenantKey) -> Option<&Tenant> {
        self.tenant_by_key.get(key).map(|&i| &self.tenants[i])
    }

    pub fn app(&self, app_id: &AppId) -> Option<&App> {
        self.app_by_id.get(app_id).map(|&i| &self.apps[i])
    }

    pub fn user(&self, uid: &Uid) -> Option<&User> {
        self.user_by_uid.get(uid).map(|&i| &self.users[i])
    }

    pub fn user_by_kunlun_id(&self, tenant: &TenantKey, id: &str) -> Option<&User> {
        self.by_kunlun_id.get(&(tenant.clone(), KunlunId(id.to_string()))).map(|&i| &self.users[i])
    }

    /// Finds the user a request means by `raw`, as `app` calling in `tenant` would.
    /// open_ids only resolve for the app they were issued to, union_ids for its developer,
    /// and user_ids within the calling tenant.
    pub fn resolve_user(&self, app: &App, tenant: &TenantKey, id_type: UserIdType, raw: &str) -> Option<&User> {
        let idx = match id_type {
            UserIdType::OpenId => match self.by_open_id.get(raw) {
                Some((owner_app, idx)) if *owner_app == app.app_id => *idx,
                _ => return None,
            },
            UserIdType::UnionId => match self.by_union_id.get(raw) {
                Some((dev, idx)) if *dev == app.developer => *idx,
                _ => return None,
            },
            UserIdType::UserId => *self.by_user_id.get(&(tenant.clone(), UserId(raw.to_string())))?,
        };
        Some(&self.users[idx])
    }

    /// A user of `tenant` by work email (case-insensitive).
    pub fn user_by_email(&self, tenant: &TenantKey, email: &str) -> Option<&User> {
        self.by_email.get(&(tenant.clone(), email.to_lowercase())).map(|&i| &self.users[i])
    }

    /// A user of `tenant` by mobile number (as `normalize_mobile` writes it).
    pub fn user_by_mobile(&self, tenant: &TenantKey, mobile: &str) -> Option<&User> {
        self.by_mobile.get(&(tenant.clone(), normalize_mobile(mobile))).map(|&i| &self.users[i])
    }

    /// The user's ID of `id_type` as `app` sees it.
    pub fn user_external_id(&self, app: &App, user: &User, id_type: UserIdType) -> String {
        match id_type {
            UserIdType::OpenId => self.open_id(app, user).0,
            UserIdType::UnionId => self
                .union_id_of
                .get(&(app.developer.clone(), user.uid.clone()))
                .cloned()
                .unwrap_or_else(|| derive_union_id(&app.developer, &user.uid))
                .0,
            UserIdType::UserId => user.user_id.0.clone(),
        }
    }

    pub fn open_id(&self, app: &App, user: &User) -> OpenId {
        self.open_id_of
            .get(&(app.app_id.clone(), user.uid.clone()))
            .cloned()
            .unwrap_or_else(|| derive_open_id(&app.app_id, &user.uid))
    }

    /// A bot's open_id as `viewer` sees it (Feishu gives bots an open_id per app, like users).
    pub fn bot_open_id(&self, viewer: &App, bot: &AppId) -> OpenId {
        derive_open_id(&viewer.app_id, &Uid(format!("bot:{}", bot.0)))
    }

    /// A bot's union_id for `developer`'s apps.
    pub fn bot_union_id(&self, developer: &str, bot: &AppId) -> UnionId {
        derive_union_id(developer, &Uid(format!("bot:{}", bot.0)))
    }

    pub fn union_id(&self, developer: &str, user: &User) -> UnionId {
        self.union_id_of
            .get(&(developer.to_string(), user.uid.clone()))
            .cloned()
            .unwrap_or_else(|| derive_union_id(developer, &user.uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_directory_builds_with_the_promised_cast() {
        let d = Directory::demo();
        assert_eq!(d.tenants().len(), 2);
        assert!(d.apps().iter().any(|a| !a.bot), "an app without bot ability");
        assert!(d.users().iter().any(|u| u.status == UserStatus::Resigned), "a resigned user");
        assert!(d.apps().iter().any(|a| a.visible_users.is_some()), "users invisible to an app");
        assert!(d.apps().iter().any(|a| a.kind == AppKind::Store));
    }

    #[test]
    fn ids_resolve_only_in_their_scope() {
        let d = Directory::demo();
        let demo = d.apps().iter().find(|a| a.key == "demo-bot").unwrap();
        let helper = d.apps().iter().find(|a| a.key == "helper-bot").unwrap();
        let store = d.apps().iter().find(|a| a.key == "store-app").unwrap();
        let alice = d.users().iter().find(|u| u.key == "alice").unwrap();
        let acme = alice.tenant_key.clone();
        let open = d.open_id(demo, alice);
        assert_eq!(d.resolve_user(demo, &acme, UserIdType::OpenId, &open.0).unwrap().uid, alice.uid);
        assert!(d.resolve_user(helper, &acme, UserIdType::OpenId, &open.0).is_none(), "open_id is per app");
        let union = d.user_external_id(demo, alice, UserIdType::UnionId);
        assert_eq!(union, d.user_external_id(helper, alice, UserIdType::UnionId), "same developer");
        assert!(d.resolve_user(helper, &acme, UserIdType::UnionId, &union).is_some());
        assert!(d.resolve_user(store, &acme, UserIdType::UnionId, &union).is_none(), "other developer");
        let uid = alice.user_id.0.clone();
        assert!(d.resolve_user(store, &acme, UserIdType::UserId, &uid).is_some());
        let globex = d.tenants().iter().find(|t| t.key == "globex").unwrap().tenant_key.clone();
        assert!(d.resolve_user(store, &globex, UserIdType::UserId, &uid).is_none(), "user_id is per tenant");
    }

    #[test]
    fn fixture_errors_are_reported_not_panicked() {
        assert!(Directory::from_toml("[[users]]\nkey='a'\ntenant='nope'\n").is_err());
        assert!(Directory::from_toml("[[apps]]\nkey='a'\n").is_err(), "self-built app without tenant");
        assert!(Directory::from_toml("bogus = 1").is_err());
    }

    #[test]
    fn pinned_ids_win() {
        let d = Directory::from_toml(
            "[[tenants]]\nkey='t'\ntenant_key='abc'\n[[apps]]\nkey='a'\ntenant='t'\napp_id='cli_x'\n\
             [[users]]\nkey='u'\ntenant='t'\nuser_id='u1'\nopen_ids={a='ou_pinned'}\n",
        )
        .unwrap();
        let app = d.app(&AppId("cli_x".into())).unwrap();
        let u = &d.users()[0];
        assert_eq!(d.open_id(app, u).0, "ou_pinned");
        assert_eq!(u.user_id.0, "u1");
        assert_eq!(u.tenant_key.0, "abc");
    }
}
