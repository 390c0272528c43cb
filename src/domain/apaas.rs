//! aPaaS workflow instances and user tasks (spec §6): the fixture's part of the directory, the
//! task query, and the rules of "start a group chat from a task" (seed: apaas-user-task-chat-group.md).
//!
//! People are named by Kunlun user IDs, which only mean something inside their own tenant.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::chat::{Chat, Owner};
use super::chat_ops::{tenant_relation, TenantRelation, MAX_USERS_PER_CHAT};
use super::directory::{App, Directory, Tenant, User};
use super::ids::{derive_numeric_id, TenantKey, Uid};
use crate::error::{ApaasErr, FeishuError};

pub const WRITE_SCOPE: &str = "app_engine:approval:write";
pub const READ_SCOPE: &str = "app_engine:approval:read";
pub const MAX_INVITEES: usize = 20;
pub const MAX_QUERY_LIMIT: usize = 50;
pub const DEFAULT_QUERY_LIMIT: usize = 10;
pub const MAX_API_IDS: usize = 100;
/// Windows LCIDs, as aPaaS writes `language_code`.
pub const ZH_CN: &str = "2052";
pub const EN_US: &str = "1033";

/// The only error the aPaaS pages document: HTTP 400, `2320001 param is invalid`.
pub fn param_invalid() -> FeishuError {
    ApaasErr::ParamInvalid.err()
}

// ---------------------------------------------------------------------------------------------
// Fixture format
// ---------------------------------------------------------------------------------------------

/// `[[workflows]]`: one workflow (flow) instance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub key: String,
    pub tenant: String,
    /// Numeric string; derived from `key` when absent.
    pub id: Option<String>,
    /// The flow's API name, matched by the query's `api_ids`.
    pub api_id: Option<String>,
    /// Label by language code (`"2052"` zh-CN, `"1033"` en-US).
    #[serde(default)]
    pub label: BTreeMap<String, String>,
    #[serde(default = "in_process")]
    pub status: String,
    /// User key of whoever started the flow.
    pub initiator: String,
}

fn in_process() -> String {
    "in_process".into()
}

/// `[[tasks]]`: one user task of a workflow instance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub key: String,
    pub workflow: String,
    /// Numeric string; derived from `key` when absent.
    pub task_id: Option<String>,
    #[serde(default)]
    pub status: TaskStatus,
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// Unix milliseconds.
    pub start_time_ms: i64,
    #[serde(default)]
    pub summaries: Vec<SummarySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummarySpec {
    pub key: BTreeMap<String, String>,
    pub value: BTreeMap<String, String>,
}

/// `pending`: waiting for its assignees; `archived`: done (the query's `type` values).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    Pending,
    Archived,
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct I18nText {
    pub language_code: String,
    pub text: String,
}

/// Chinese first (the page's examples are 2052-only), then by language code.
fn i18n(map: BTreeMap<String, String>) -> Vec<I18nText> {
    let mut texts: Vec<I18nText> = map.into_iter().map(|(language_code, text)| I18nText { language_code, text }).collect();
    texts.sort_by_key(|t| t.language_code != ZH_CN);
    texts
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub key: String,
    pub id: String,
    pub tenant_key: TenantKey,
    pub api_id: String,
    pub label: Vec<I18nText>,
    pub status: String,
    pub initiator: Uid,
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub key: I18nText,
    pub value: Vec<I18nText>,
}

#[derive(Debug, Clone)]
pub struct UserTask {
    pub key: String,
    pub task_id: String,
    /// Index into `Apaas::workflows`.
    pub workflow: usize,
    pub status: TaskStatus,
    pub assignees: Vec<Uid>,
    pub cc: Vec<Uid>,
    pub start_time_ms: i64,
    pub summaries: Vec<Summary>,
}

impl UserTask {
    /// Whether `uid` has any part in the task: started its flow, is asked to act, or is cc'd.
    pub fn involves(&self, workflow: &Workflow, uid: &Uid) -> bool {
        workflow.initiator == *uid || self.assignees.contains(uid) || self.cc.contains(uid)
    }
}

/// The aPaaS half of the directory.
#[derive(Debug, Default)]
pub struct Apaas {
    pub workflows: Vec<Workflow>,
    pub tasks: Vec<UserTask>,
    by_task_id: HashMap<String, usize>,
}

impl Apaas {
    /// Builds from the fixture; `tenant` and `user` resolve fixture keys or say what is wrong.
    pub fn build(
        workflows: Vec<WorkflowSpec>,
        tasks: Vec<TaskSpec>,
        tenant: impl Fn(&str) -> Option<TenantKey>,
        user: impl Fn(&str) -> Option<(Uid, TenantKey)>,
    ) -> Result<Apaas, String> {
        let mut a = Apaas::default();
        let mut workflow_of_key: HashMap<String, usize> = HashMap::new();
        let mut ids = HashSet::new();
        let member_of = |what: &str, key: &str, tk: &TenantKey| -> Result<Uid, String> {
            match user(key) {
                Some((uid, t)) if t == *tk => Ok(uid),
                Some(_) => Err(format!("{what} names user {key:?} of another tenant")),
                None => Err(format!("{what} names unknown user {key:?}")),
            }
        };
        for w in workflows {
            let what = format!("workflow {:?}", w.key);
            let tk = tenant(&w.tenant).ok_or_else(|| format!("{what} names unknown tenant {:?}", w.tenant))?;
            let id = w.id.clone().unwrap_or_else(|| derive_numeric_id("workflow", &w.key));
            if !is_numeric(&id) || !ids.insert(id.clone()) {
                return Err(format!("{what}: id {id:?} must be a unique numeric string"));
            }
            let initiator = member_of(&what, &w.initiator, &tk)?;
            if workflow_of_key.insert(w.key.clone(), a.workflows.len()).is_some() {
                return Err(format!("{what} appears twice"));
            }
            a.workflows.push(Workflow {
                api_id: w.api_id.unwrap_or_else(|| format!("flow_{}", w.key.replace('-', "_"))),
                key: w.key,
                id,
                tenant_key: tk,
                label: i18n(w.label),
                status: w.status,
                initiator,
            });
        }
        let mut keys = HashSet::new();
        for t in tasks {
            let what = format!("task {:?}", t.key);
            if !keys.insert(t.key.clone()) {
                return Err(format!("{what} appears twice"));
            }
            let workflow = *workflow_of_key
                .get(&t.workflow)
                .ok_or_else(|| format!("{what} names unknown workflow {:?}", t.workflow))?;
            let tk = a.workflows[workflow].tenant_key.clone();
            let task_id = t.task_id.clone().unwrap_or_else(|| derive_numeric_id("task", &t.key));
            if !is_numeric(&task_id) || !ids.insert(task_id.clone()) {
                return Err(format!("{what}: task_id {task_id:?} must be a unique numeric string"));
            }
            let people = |keys: &[String]| keys.iter().map(|k| member_of(&what, k, &tk)).collect::<Result<Vec<_>, _>>();
            a.by_task_id.insert(task_id.clone(), a.tasks.len());
            a.tasks.push(UserTask {
                key: t.key,
                task_id,
                workflow,
                status: t.status,
                assignees: people(&t.assignees)?,
                cc: people(&t.cc)?,
                start_time_ms: t.start_time_ms,
                summaries: t
                    .summaries
                    .into_iter()
                    .map(|s| {
                        let mut key = i18n(s.key);
                        Summary { key: pick_language(&mut key), value: i18n(s.value) }
                    })
                    .collect(),
            });
        }
        Ok(a)
    }

    pub fn task(&self, task_id: &str) -> Option<&UserTask> {
        self.by_task_id.get(task_id).map(|&i| &self.tasks[i])
    }

    pub fn workflow_of(&self, task: &UserTask) -> &Workflow {
        &self.workflows[task.workflow]
    }
}

fn is_numeric(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// The text to show when one is needed: Chinese, then English, then whatever there is.
fn pick_language(texts: &mut Vec<I18nText>) -> I18nText {
    let at = texts
        .iter()
        .position(|t| t.language_code == ZH_CN)
        .or_else(|| texts.iter().position(|t| t.language_code == EN_US))
        .unwrap_or(0);
    if texts.is_empty() {
        I18nText { language_code: ZH_CN.into(), text: String::new() }
    } else {
        texts.swap_remove(at)
    }
}

/// The name of a chat started from `task` without `chat_name`: the workflow's label.
pub fn default_chat_name(workflow: &Workflow, task: &UserTask) -> String {
    let name = pick_language(&mut workflow.label.clone()).text;
    if name.trim().is_empty() {
        format!("任务 {}", task.task_id)
    } else {
        name
    }
}

// ---------------------------------------------------------------------------------------------
// Start a group chat from a task
// ---------------------------------------------------------------------------------------------

/// `POST /open-apis/apaas/v1/user_tasks/:task_id/chat_group` body; absent and `null` are the same.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct ChatGroupBody {
    pub operator_user_id: Option<String>,
    pub invite_user_ids: Option<Vec<String>>,
    pub chat_id: Option<String>,
    pub chat_name: Option<String>,
}

/// Where the invitees go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTarget {
    /// A new chat (or the task's earlier one, when it still exists) with this name.
    New { name: String },
    Existing(String),
}

/// A validated chat_group call: who acts, who joins, where.
#[derive(Debug)]
pub struct ChatGroupPlan<'d> {
    pub task: &'d UserTask,
    pub operator: &'d User,
    /// In request order, without repeats or the operator.
    pub invitees: Vec<&'d User>,
    pub target: ChatTarget,
}

/// Checks everything the request itself says, reporting every bad field in one 2320001.
/// `app` decides which users are visible (its availability); the chat itself is checked later,
/// against its latest state.
pub fn plan_chat_group<'d>(
    dir: &'d Directory,
    app: &App,
    tenant: &Tenant,
    task_id: &str,
    body: ChatGroupBody,
) -> Result<ChatGroupPlan<'d>, FeishuError> {
    let mut err = param_invalid();
    let task = dir.apaas().task(task_id).filter(|t| dir.apaas().workflow_of(t).tenant_key == tenant.tenant_key);
    if task.is_none() {
        err = err.with_field("task_id", Some(task_id), "no such user task in this tenant");
    }

    let person = |raw: &str| -> Result<&'d User, &'static str> {
        let user = dir.user_by_kunlun_id(&tenant.tenant_key, raw).ok_or("no user with this Kunlun ID in this tenant")?;
        if !user.is_active() {
            return Err("the user has resigned");
        }
        if !app.can_see(user) {
            return Err("the user is outside the app's availability");
        }
        Ok(user)
    };

    let operator = match body.operator_user_id.as_deref().filter(|s| !s.is_empty()) {
        None => {
            err = err.with_field("operator_user_id", None, "required");
            None
        }
        Some(raw) => match person(raw) {
            Ok(user) => match task {
                Some(t) if !t.involves(dir.apaas().workflow_of(t), &user.uid) => {
                    err = err.with_field("operator_user_id", Some(raw), "not the initiator, an assignee or cc'd on this task");
                    None
                }
                _ => Some(user),
            },
            Err(why) => {
                err = err.with_field("operator_user_id", Some(raw), why);
                None
            }
        },
    };

    let mut invitees: Vec<&User> = Vec::new();
    if let Some(ids) = &body.invite_user_ids {
        if ids.is_empty() || ids.len() > MAX_INVITEES {
            err = err.with_field("invite_user_ids", None, format!("must hold 1 to {MAX_INVITEES} Kunlun IDs"));
        } else {
            let mut seen: HashSet<&Uid> = operator.iter().map(|o| &o.uid).collect();
            for raw in ids {
                match person(raw) {
                    Ok(user) if seen.insert(&user.uid) => invitees.push(user),
                    Ok(_) => {}
                    Err(why) => err = err.with_field("invite_user_ids", Some(raw), why),
                }
            }
        }
    }

    let target = match body.chat_id.as_deref().filter(|s| !s.is_empty()) {
        Some(chat_id) => ChatTarget::Existing(chat_id.to_string()),
        None => {
            let name = body.chat_name.filter(|n| !n.trim().is_empty());
            let name = match (name, task) {
                (Some(n), _) => n,
                (None, Some(t)) => default_chat_name(dir.apaas().workflow_of(t), t),
                (None, None) => String::new(),
            };
            ChatTarget::New { name }
        }
    };

    match (task, operator) {
        (Some(task), Some(operator)) if err.field_violations.is_empty() => {
            Ok(ChatGroupPlan { task, operator, invitees, target })
        }
        _ => Err(err),
    }
}

/// Pulls `invitees` into an existing chat on the operator's behalf, inside the store's atomic
/// change. `field` names the request field that chose the chat in any refusal. The operator must
/// be a member, and an owner or manager when the chat lets only them add people or asks for
/// approval; people already in the chat are left alone.
pub fn apply_pull(
    dir: &Directory,
    chat: &mut Chat,
    tenant: &TenantKey,
    operator: &Uid,
    invitees: &[Uid],
    field: &str,
    now_ms: i64,
) -> Result<(), FeishuError> {
    let refuse = |why: &str| param_invalid().with_field(field, Some(chat.chat_id.as_str()), why);
    if chat.is_dissolved() {
        return Err(refuse("the chat has been disbanded"));
    }
    if !chat.is_group() || tenant_relation(dir, tenant, chat) != TenantRelation::Own {
        return Err(refuse("not a group chat of this tenant"));
    }
    if !chat.has_user(operator) {
        return Err(refuse("the operator is not in this chat"));
    }
    let rights = chat.owner == Owner::User(operator.clone()) || chat.user_managers.contains(operator);
    if chat.settings.add_member_permission == "only_owner" && !rights {
        return Err(refuse("only the owner and managers may add members to this chat"));
    }
    if chat.settings.membership_approval == "approval_required" && !rights {
        return Err(refuse("joining this chat needs the owner's approval"));
    }
    let new: Vec<Uid> = invitees.iter().filter(|u| !chat.has_user(u)).cloned().collect();
    if chat.users.len() + new.len() > MAX_USERS_PER_CHAT {
        return Err(param_invalid().with_field(
            "invite_user_ids",
            None,
            format!("the chat would pass {MAX_USERS_PER_CHAT} members"),
        ));
    }
    chat.add_users(new, now_ms);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Task query
// ---------------------------------------------------------------------------------------------

/// `POST /open-apis/apaas/v1/user_task/query` body: numbers travel as strings.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct TaskQueryBody {
    pub kunlun_user_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub api_ids: Option<Vec<String>>,
}

/// One task as the query shows it (shape: spec §6).
#[derive(Debug, Serialize)]
pub struct TaskView<'d> {
    pub task_id: &'d str,
    pub task_start_time: String,
    pub workflow_instance: WorkflowView<'d>,
    pub initiator: PersonView<'d>,
    pub summarys: Vec<SummaryView<'d>>,
}

#[derive(Debug, Serialize)]
pub struct WorkflowView<'d> {
    pub id: &'d str,
    pub label: &'d [I18nText],
    pub status: &'d str,
}

#[derive(Debug, Serialize)]
pub struct PersonView<'d> {
    pub user_id: &'d str,
    pub name: &'d str,
}

#[derive(Debug, Serialize)]
pub struct SummaryView<'d> {
    pub file_key: &'d I18nText,
    pub file_value: &'d [I18nText],
}

#[derive(Debug, Serialize)]
pub struct TaskPage<'d> {
    pub count: String,
    pub tasks: Vec<TaskView<'d>>,
}

fn number_field<T: std::str::FromStr>(err: &mut FeishuError, field: &str, value: &Option<String>, ok: impl Fn(&T) -> bool, why: &str) -> Option<T> {
    let raw = value.as_deref().filter(|s| !s.is_empty())?;
    match raw.parse::<T>() {
        Ok(v) if ok(&v) => Some(v),
        _ => {
            *err = std::mem::replace(err, param_invalid()).with_field(field, Some(raw), why);
            None
        }
    }
}

/// The tasks of `tenant` that the Kunlun user is part of, newest first, filtered and paged.
pub fn query_tasks<'d>(dir: &'d Directory, tenant: &TenantKey, body: &TaskQueryBody) -> Result<TaskPage<'d>, FeishuError> {
    let mut err = param_invalid();
    let user = match body.kunlun_user_id.as_deref().filter(|s| !s.is_empty()) {
        None => {
            err = err.with_field("kunlun_user_id", None, "required");
            None
        }
        Some(raw) => {
            let user = dir.user_by_kunlun_id(tenant, raw);
            if user.is_none() {
                err = err.with_field("kunlun_user_id", Some(raw), "no user with this Kunlun ID in this tenant");
            }
            user
        }
    };
    let status = match body.kind.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("pending") => Some(TaskStatus::Pending),
        Some("archived") => Some(TaskStatus::Archived),
        Some(other) => {
            err = err.with_field("type", Some(other), "must be pending or archived");
            None
        }
    };
    let source = body.source.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = source.filter(|s| !["fromMe", "assignMe", "CCMe"].contains(s)) {
        err = err.with_field("source", Some(s), "must be fromMe, assignMe or CCMe");
    }
    let limit = number_field(&mut err, "limit", &body.limit, |n: &usize| (1..=MAX_QUERY_LIMIT).contains(n), "an integer from 1 to 50")
        .unwrap_or(DEFAULT_QUERY_LIMIT);
    let offset = number_field(&mut err, "offset", &body.offset, |_: &usize| true, "a non-negative integer").unwrap_or(0);
    let start = number_field(&mut err, "start_time", &body.start_time, |_: &i64| true, "Unix milliseconds");
    let end = number_field(&mut err, "end_time", &body.end_time, |_: &i64| true, "Unix milliseconds");
    if let Some(ids) = &body.api_ids {
        if ids.is_empty() || ids.len() > MAX_API_IDS {
            err = err.with_field("api_ids", None, format!("must hold 1 to {MAX_API_IDS} flow API IDs"));
        }
    }
    let Some(user) = user.filter(|_| err.field_violations.is_empty()) else {
        return Err(err);
    };

    let apaas = dir.apaas();
    let mut matching: Vec<&UserTask> = apaas
        .tasks
        .iter()
        .filter(|t| {
            let w = apaas.workflow_of(t);
            let mine = match source {
                Some("fromMe") => w.initiator == user.uid,
                Some("assignMe") => t.assignees.contains(&user.uid),
                Some("CCMe") => t.cc.contains(&user.uid),
                _ => t.involves(w, &user.uid),
            };
            w.tenant_key == *tenant
                && mine
                && status.is_none_or(|s| t.status == s)
                && start.is_none_or(|s| t.start_time_ms >= s)
                && end.is_none_or(|e| t.start_time_ms <= e)
                && body.api_ids.as_ref().is_none_or(|ids| ids.contains(&w.api_id))
        })
        .collect();
    matching.sort_by(|a, b| b.start_time_ms.cmp(&a.start_time_ms).then_with(|| a.task_id.cmp(&b.task_id)));
    let count = matching.len().to_string();
    let tasks = matching.into_iter().skip(offset).take(limit).map(|t| task_view(dir, t)).collect();
    Ok(TaskPage { count, tasks })
}

pub fn task_view<'d>(dir: &'d Directory, task: &'d UserTask) -> TaskView<'d> {
    let w = dir.apaas().workflow_of(task);
    let initiator = dir.user(&w.initiator);
    TaskView {
        task_id: &task.task_id,
        task_start_time: task.start_time_ms.to_string(),
        workflow_instance: WorkflowView { id: &w.id, label: &w.label, status: &w.status },
        initiator: PersonView {
            user_id: initiator.map_or("", |u| u.kunlun_id.0.as_str()),
            name: initiator.map_or("", |u| u.name.as_str()),
        },
        summarys: task.summaries.iter().map(|s| SummaryView { file_key: &s.key, file_value: &s.value }).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::directory::Directory;

    fn demo() -> Directory {
        Directory::demo()
    }

    fn kunlun(d: &Directory, key: &str) -> String {
        d.users().iter().find(|u| u.key == key).unwrap().kunlun_id.0.clone()
    }

    fn caller(d: &Directory) -> (&App, &Tenant) {
        let app = d.apps().iter().find(|a| a.key == "demo-bot").unwrap();
        (app, d.tenant(app.home_tenant.as_ref().unwrap()).unwrap())
    }

    fn task_id(d: &Directory, key: &str) -> String {
        d.apaas().tasks.iter().find(|t| t.key == key).unwrap().task_id.clone()
    }

    #[test]
    fn demo_has_tasks_in_both_tenants() {
        let d = demo();
        let tenants: HashSet<_> = d.apaas().workflows.iter().map(|w| w.tenant_key.clone()).collect();
        assert_eq!(tenants.len(), 2);
        assert!(d.apaas().tasks.iter().any(|t| t.status == TaskStatus::Archived));
    }

    #[test]
    fn every_bad_field_is_named_in_one_answer() {
        let d = demo();
        let (app, tenant) = caller(&d);
        let body = ChatGroupBody {
            operator_user_id: None,
            invite_user_ids: Some(vec!["999".into(), kunlun(&d, "dave"), kunlun(&d, "gina")]),
            ..Default::default()
        };
        let err = plan_chat_group(&d, app, tenant, "42", body).unwrap_err();
        assert_eq!(err.code, 2320001);
        let fields: Vec<_> = err.field_violations.iter().map(|v| (v.field.as_str(), v.value.clone())).collect();
        assert_eq!(
            fields,
            vec![
                ("task_id", Some("42".to_string())),
                ("operator_user_id", None),
                ("invite_user_ids", Some("999".into())),
                ("invite_user_ids", Some(kunlun(&d, "dave"))),
                ("invite_user_ids", Some(kunlun(&d, "gina"))),
            ]
        );
    }

    #[test]
    fn invitee_count_is_one_to_twenty() {
        let d = demo();
        let (app, tenant) = caller(&d);
        let task = task_id(&d, "leave-approve");
        for ids in [vec![], vec![kunlun(&d, "bob"); 21]] {
            let body = ChatGroupBody {
                operator_user_id: Some(kunlun(&d, "alice")),
                invite_user_ids: Some(ids),
                ..Default::default()
            };
            let err = plan_chat_group(&d, app, tenant, &task, body).unwrap_err();
            assert_eq!(err.field_violations[0].field, "invite_user_ids");
        }
    }

    #[test]
    fn plan_dedups_invitees_and_defaults_the_name_to_the_label() {
        let d = demo();
        let (app, tenant) = caller(&d);
        let task = task_id(&d, "leave-approve");
        let body = ChatGroupBody {
            operator_user_id: Some(kunlun(&d, "alice")),
            invite_user_ids: Some(vec![kunlun(&d, "bob"), kunlun(&d, "alice"), kunlun(&d, "bob"), kunlun(&d, "carol")]),
            ..Default::default()
        };
        let plan = plan_chat_group(&d, app, tenant, &task, body).unwrap();
        let keys: Vec<_> = plan.invitees.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["bob", "carol"]);
        let label = &d.apaas().workflow_of(plan.task).label;
        let zh = label.iter().find(|l| l.language_code == ZH_CN).unwrap();
        assert_eq!(plan.target, ChatTarget::New { name: zh.text.clone() });
    }

    #[test]
    fn operator_must_take_part_in_the_task() {
        let d = demo();
        let (app, tenant) = caller(&d);
        let body = ChatGroupBody { operator_user_id: Some(kunlun(&d, "erin")), ..Default::default() };
        let err = plan_chat_group(&d, app, tenant, &task_id(&d, "leave-approve"), body).unwrap_err();
        assert_eq!(err.field_violations[0].field, "operator_user_id");
    }

    #[test]
    fn query_filters_by_source_type_and_pages() {
        let d = demo();
        let (_, tenant) = caller(&d);
        let q = |source: Option<&str>, kind: Option<&str>, limit: Option<&str>| TaskQueryBody {
            kunlun_user_id: Some(kunlun(&d, "alice")),
            source: source.map(Into::into),
            kind: kind.map(Into::into),
            limit: limit.map(Into::into),
            ..Default::default()
        };
        let all = query_tasks(&d, &tenant.tenant_key, &q(None, None, None)).unwrap();
        let n: usize = all.count.parse().unwrap();
        assert!(n >= 3);
        let starts: Vec<i64> = all.tasks.iter().map(|t| t.task_start_time.parse().unwrap()).collect();
        assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");
        let from_me = query_tasks(&d, &tenant.tenant_key, &q(Some("fromMe"), None, None)).unwrap();
        assert!(from_me.tasks.iter().all(|t| t.initiator.user_id == kunlun(&d, "alice")));
        let archived = query_tasks(&d, &tenant.tenant_key, &q(None, Some("archived"), None)).unwrap();
        assert!(archived.tasks.len() < n);
        let page = query_tasks(&d, &tenant.tenant_key, &q(None, None, Some("1"))).unwrap();
        assert_eq!((page.count.as_str(), page.tasks.len()), (all.count.as_str(), 1));
        let bad = query_tasks(&d, &tenant.tenant_key, &q(Some("everyone"), Some("done"), Some("51"))).unwrap_err();
        let fields: Vec<_> = bad.field_violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["type", "source", "limit"]);
    }
}
