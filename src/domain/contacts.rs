//! Contacts (`/open-apis/contact/v3/users*`): which users an app may read, and which of their
//! fields its scopes show. Pure.
//!
//! Rules (Feishu's pages for users/get, users/batch and users/batch_get_id; GUESSES in
//! docs/parity.md, "Contacts"):
//! - the call needs one of `CALL_SCOPES` (batch_get_id: `BATCH_GET_ID_SCOPES`);
//! - a user is readable by an app calling in a tenant when the user belongs to that tenant and
//!   is in the app's availability (larkstack's stand-in for the app's contact range);
//! - `open_id` and `union_id` are always shown; every other field needs its field scope, or one
//!   of the whole-contacts scopes (`WHOLE_CONTACT_SCOPES`).

use serde_json::{json, Map, Value};

use super::directory::{App, Directory, User, UserIdType};
use super::ids::TenantKey;

/// Any one of these lets an app call users/get and users/batch.
pub const CALL_SCOPES: &[&str] = &[
    "contact:contact.base:readonly",
    "contact:contact:access_as_app",
    "contact:contact:readonly",
    "contact:contact:readonly_as_app",
];
/// "Obtain user ID via email or mobile number", or the whole-contacts scopes.
pub const BATCH_GET_ID_SCOPES: &[&str] =
    &["contact:user.id:readonly", "contact:contact:access_as_app", "contact:contact:readonly", "contact:contact:readonly_as_app"];
/// Scopes that show every field.
const WHOLE_CONTACT_SCOPES: &[&str] = &["contact:contact:access_as_app", "contact:contact:readonly", "contact:contact:readonly_as_app"];
const BASE_SCOPE: &str = "contact:user.base:readonly";
const EMAIL_SCOPE: &str = "contact:user.email:readonly";
const PHONE_SCOPE: &str = "contact:user.phone:readonly";
const EMPLOYEE_ID_SCOPE: &str = "contact:user.employee_id:readonly";

/// Most ids in one users/batch call, and most emails (and mobiles) in one batch_get_id call.
pub const MAX_BATCH_USERS: usize = 50;

/// Whether `app` calling in `tenant` may read `user`.
pub fn readable(app: &App, tenant: &TenantKey, user: &User) -> bool {
    user.tenant_key == *tenant && app.can_see(user)
}

fn shows(app: &App, field_scope: &str) -> bool {
    app.has_scope(field_scope) || app.has_any_scope(WHOLE_CONTACT_SCOPES)
}

/// `status` of a user: larkstack's users are active or resigned, never frozen or unjoined.
pub fn status(user: &User) -> Value {
    let resigned = !user.is_active();
    json!({
        "is_frozen": false,
        "is_resigned": resigned,
        "is_activated": !resigned,
        "is_exited": resigned,
        "is_unjoin": false,
    })
}

/// The avatar URLs larkstack shows for a user (no image is served: docs/parity.md).
fn avatar(user: &User) -> Value {
    let base = format!("https://larkstack.invalid/avatar/{}", user.uid.0);
    json!({
        "avatar_72": format!("{base}~72x72.png"),
        "avatar_240": format!("{base}~240x240.png"),
        "avatar_640": format!("{base}~640x640.png"),
        "avatar_origin": format!("{base}~noop.png"),
    })
}

/// The user object of users/get and users/batch as `app` may see it: the ids always, the rest
/// field scope by field scope. `user_id` needs the employee-id scope whatever `id_type` is.
pub fn user_view(dir: &Directory, app: &App, user: &User) -> Value {
    let mut v = Map::new();
    v.insert("open_id".into(), json!(dir.user_external_id(app, user, UserIdType::OpenId)));
    v.insert("union_id".into(), json!(dir.user_external_id(app, user, UserIdType::UnionId)));
    if shows(app, EMPLOYEE_ID_SCOPE) {
        v.insert("user_id".into(), json!(user.user_id.0));
    }
    if shows(app, BASE_SCOPE) {
        v.insert("name".into(), json!(user.name));
        v.insert("en_name".into(), json!(user.en_name.clone().unwrap_or_default()));
        v.insert("nickname".into(), json!(""));
        v.insert("avatar".into(), avatar(user));
        v.insert("status".into(), status(user));
        v.insert("description".into(), json!(""));
    }
    if shows(app, EMAIL_SCOPE) {
        v.insert("email".into(), json!(user.email.clone().unwrap_or_default()));
    }
    if shows(app, PHONE_SCOPE) {
        v.insert("mobile".into(), json!(user.mobile.clone().unwrap_or_default()));
        v.insert("mobile_visible".into(), json!(true));
    }
    Value::Object(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app<'d>(d: &'d Directory, key: &str) -> &'d App {
        d.apps().iter().find(|a| a.key == key).unwrap()
    }

    fn user<'d>(d: &'d Directory, key: &str) -> &'d User {
        d.users().iter().find(|u| u.key == key).unwrap()
    }

    #[test]
    fn fields_follow_the_field_scopes() {
        let d = Directory::demo();
        let alice = user(&d, "alice");
        let full = user_view(&d, app(&d, "demo-bot"), alice);
        assert_eq!(full["name"], "Alice 王");
        assert_eq!(full["email"], "alice@acme.example");
        assert_eq!(full["mobile"], "+8613800000001");
        assert_eq!(full["user_id"], alice.user_id.0);
        let ids_only = user_view(&d, app(&d, "helper-bot"), alice);
        let mut keys: Vec<&String> = ids_only.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["open_id", "union_id"]);
    }

    #[test]
    fn readable_means_same_tenant_and_available() {
        let d = Directory::demo();
        let narrow = app(&d, "narrow-app");
        let acme = user(&d, "alice").tenant_key.clone();
        assert!(readable(narrow, &acme, user(&d, "alice")));
        assert!(!readable(narrow, &acme, user(&d, "carol")), "outside the availability");
        assert!(!readable(app(&d, "demo-bot"), &acme, user(&d, "gina")), "another tenant");
    }
}
