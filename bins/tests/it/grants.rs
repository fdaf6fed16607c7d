//! Whoever grants a right must hold it: attacks on `/v3` by users who may write roles, bindings or
//! users, against the real `rancher-server` binary. Each attack is refused with a Kubernetes `Status`
//! 403, leaves the store as it was, and the admin still logs in with the old password.

use crate::common::{ADMIN_PASSWORD, Api, ServerProc, assert_status};
use serde_json::{Value, json};

const MGMT: &str = "management.cattle.io";

struct World {
    _dir: tempfile::TempDir,
    _server: ServerProc,
    api: Api,
    admin: Api,
    admin_id: String,
}

async fn start() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    let api = Api::new(&server);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    let me = admin.get("/v3/users").await;
    let admin_id =
        me.body["data"].as_array().unwrap().iter().find(|u| u["spec"]["username"] == "admin").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    World { _dir: dir, _server: server, api, admin, admin_id }
}

impl World {
    /// A new standard user (id, logged-in client).
    async fn user(&self, name: &str) -> (String, Api) {
        let password = format!("{name}-password-1234");
        let u =
            self.admin.post("/v3/users", &json!({"spec": {"username": name, "password": password}})).await;
        assert_eq!(u.code, 201, "{}", u.body);
        (u.body["id"].as_str().unwrap().to_owned(), self.api.logged_in(name, &password).await)
    }

    /// A global role made by the admin, bound to `user` by the admin.
    async fn grant(&self, user: &str, role: &str, rules: Value) {
        let r = self
            .admin
            .post("/v3/globalroles", &json!({"metadata": {"name": role}, "spec": {"rules": rules}}))
            .await;
        assert_eq!(r.code, 201, "{}", r.body);
        let b = self
            .admin
            .post(
                "/v3/globalrolebindings",
                &json!({"metadata": {"name": format!("{user}-{role}")},
                        "spec": {"userName": user, "globalRoleName": role}}),
            )
            .await;
        assert_eq!(b.code, 201, "{}", b.body);
    }

    /// The names of the global role bindings of `user`, as the admin sees them.
    async fn bindings_of(&self, user: &str) -> Vec<String> {
        let all = self.admin.get("/v3/globalrolebindings").await;
        assert_eq!(all.code, 200, "{}", all.body);
        let mut names: Vec<String> = all.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["spec"]["userName"] == user)
            .map(|b| b["spec"]["globalRoleName"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    async fn admin_still_logs_in(&self) {
        assert_eq!(
            self.api.login("admin", ADMIN_PASSWORD).await.code,
            201,
            "the admin's password is unchanged"
        );
    }
}

fn rule(verbs: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": [MGMT], "resources": resources})
}

/// A 403 `Status` whose message says what was missing.
fn assert_forbidden(a: &crate::common::Answer, says: &str) {
    assert_status(a, 403, "Forbidden");
    let msg = a.body["message"].as_str().unwrap_or_default();
    assert!(msg.contains(says), "the message should mention {says:?}: {msg}");
}

#[tokio::test]
async fn a_binding_creator_binds_only_roles_they_hold() {
    let w = start().await;
    let (mallory, m) = w.user("mallory").await;
    let (carol, _) = w.user("carol").await;
    w.grant(&mallory, "binding-creator", json!([rule(&["create", "get", "list"], &["globalrolebindings"])]))
        .await;
    // Roles an attacker would aim for: the admin, and an admin of every cluster without user rights.
    let restricted = json!({"metadata": {"name": "restricted-admin"},
                            "spec": {"rules": [rule(&["*"], &["clusters", "clusterroletemplatebindings"])]}});
    assert_eq!(w.admin.post("/v3/globalroles", &restricted).await.code, 201);
    let before = w.bindings_of(&mallory).await;

    for role in ["admin", "restricted-admin"] {
        let attack = m
            .post("/v3/globalrolebindings", &json!({"spec": {"userName": mallory, "globalRoleName": role}}))
            .await;
        assert_forbidden(&attack, role);
        // Nor to someone else she controls.
        let attack = m
            .post("/v3/globalrolebindings", &json!({"spec": {"userName": carol, "globalRoleName": role}}))
            .await;
        assert_forbidden(&attack, role);
    }
    assert_eq!(w.bindings_of(&mallory).await, before, "no binding was stored");
    assert_eq!(w.bindings_of(&carol).await, ["user"]);
    assert_status(&m.get("/v3/users").await, 403, "Forbidden");

    // A role whose every rule she holds, she may bind: to carol, not to the admin.
    let lister = json!({"metadata": {"name": "binding-lister"},
                        "spec": {"rules": [rule(&["get", "list"], &["globalrolebindings"])]}});
    assert_eq!(w.admin.post("/v3/globalroles", &lister).await.code, 201);
    let ok = m
        .post(
            "/v3/globalrolebindings",
            &json!({"spec": {"userName": carol, "globalRoleName": "binding-lister"}}),
        )
        .await;
    assert_eq!(ok.code, 201, "{}", ok.body);
    let to_admin = m
        .post(
            "/v3/globalrolebindings",
            &json!({"spec": {"userName": w.admin_id, "globalRoleName": "binding-lister"}}),
        )
        .await;
    assert_status(&to_admin, 403, "Forbidden");

    // `bind` on a named global role lets its holder bind that role, and only that one.
    let (bella, b) = w.user("bella").await;
    w.grant(
        &bella,
        "auditor-binder",
        json!([rule(&["create"], &["globalrolebindings"]),
               {"verbs": ["bind"], "apiGroups": [MGMT], "resources": ["globalroles"], "resourceNames": ["auditor"]}]),
    )
    .await;
    let auditor =
        json!({"metadata": {"name": "auditor"}, "spec": {"rules": [rule(&["get", "list"], &["clusters"])]}});
    assert_eq!(w.admin.post("/v3/globalroles", &auditor).await.code, 201);
    // Not to carol: mallory gave her a role bella does not hold, so carol is beyond bella's reach.
    let to_carol = b
        .post("/v3/globalrolebindings", &json!({"spec": {"userName": carol, "globalRoleName": "auditor"}}))
        .await;
    assert_forbidden(&to_carol, "globalrolebindings");
    let (dave, _) = w.user("dave").await;
    let ok = b
        .post("/v3/globalrolebindings", &json!({"spec": {"userName": dave, "globalRoleName": "auditor"}}))
        .await;
    assert_eq!(ok.code, 201, "{}", ok.body);
    let attack = b
        .post("/v3/globalrolebindings", &json!({"spec": {"userName": bella, "globalRoleName": "admin"}}))
        .await;
    assert_forbidden(&attack, "admin");

    // Deleting an admin's binding is for admins: a user allowed to delete bindings cannot demote one.
    w.grant(&mallory, "binding-deleter", json!([rule(&["delete"], &["globalrolebindings"])])).await;
    let admin_binding = format!("{}-admin", w.admin_id);
    assert_status(&m.delete(&format!("/v3/globalrolebindings/{admin_binding}")).await, 403, "Forbidden");
    assert_eq!(w.bindings_of(&w.admin_id).await, ["admin"]);
    // Nor demote a group of admins.
    let group = json!({"metadata": {"name": "admins-group"},
                       "spec": {"groupPrincipalName": "openldap_group://cn=admins", "globalRoleName": "admin"}});
    assert_eq!(w.admin.post("/v3/globalrolebindings", &group).await.code, 201);
    assert_forbidden(&m.delete("/v3/globalrolebindings/admins-group").await, "admin");
    assert_eq!(w.admin.get("/v3/globalrolebindings/admins-group").await.code, 200);
    // Her own binding to a role she holds, she may remove.
    assert_eq!(m.delete(&format!("/v3/globalrolebindings/{mallory}-binding-deleter")).await.code, 200);
    w.admin_still_logs_in().await;
}

#[tokio::test]
async fn a_user_manager_cannot_take_over_the_admin() {
    let w = start().await;
    let (mallory, m) = w.user("mallory").await;
    let (carol, _) = w.user("carol").await;
    w.grant(
        &mallory,
        "user-manager",
        json!([rule(&["get", "list", "create", "update", "delete"], &["users"])]),
    )
    .await;
    let admin_path = format!("/v3/users/{}", w.admin_id);
    let original = w.admin.get(&admin_path).await.body;

    // Reset the admin's password, disable, rename, delete: each refused, naming what she lacks.
    let mut reset = original.clone();
    reset["spec"]["password"] = "mallory-owns-admin-1".into();
    assert_forbidden(&m.put(&admin_path, &reset).await, &w.admin_id);
    let mut disable = original.clone();
    disable["spec"]["enabled"] = false.into();
    assert_status(&m.put(&admin_path, &disable).await, 403, "Forbidden");
    let mut rename = original.clone();
    rename["spec"]["username"] = "old-admin".into();
    assert_status(&m.put(&admin_path, &rename).await, 403, "Forbidden");
    assert_status(&m.delete(&admin_path).await, 403, "Forbidden");
    let now = w.admin.get(&admin_path).await.body;
    assert_eq!(now["spec"], original["spec"], "the admin user is unchanged");
    assert_eq!(w.api.login("admin", "mallory-owns-admin-1").await.code, 401);
    w.admin_still_logs_in().await;

    // A user who holds nothing she lacks, she may manage: carol's password is reset.
    let carol_path = format!("/v3/users/{carol}");
    let mut c = w.admin.get(&carol_path).await.body;
    c["spec"]["password"] = "reset-by-mallory-1".into();
    let ok = m.put(&carol_path, &c).await;
    assert_eq!(ok.code, 200, "{}", ok.body);
    assert_eq!(w.api.login("carol", "reset-by-mallory-1").await.code, 201);

    // Principal ids are the server's: a created user cannot claim the admin's principal.
    let sneaky = m
        .post(
            "/v3/users",
            &json!({"spec": {"username": "sneaky", "password": "sneaky-password-1",
                             "principalIds": [format!("local://{}", w.admin_id)]}}),
        )
        .await;
    assert_eq!(sneaky.code, 201, "{}", sneaky.body);
    let id = sneaky.body["id"].as_str().unwrap();
    assert_eq!(sneaky.body["spec"]["principalIds"], json!([format!("local://{id}")]));
    // Nor pick its id (a provider user's id is `u-<hash>` of their principal).
    let chosen = m
        .post(
            "/v3/users",
            &json!({"metadata": {"name": "u-0123456789ab"},
                    "spec": {"username": "chosen", "password": "chosen-password-1"}}),
        )
        .await;
    assert_status(&chosen, 422, "Invalid");
    let mut claim = sneaky.body.clone();
    claim["spec"]["principalIds"] = json!([format!("local://{}", w.admin_id)]);
    let put = m.put(&format!("/v3/users/{id}"), &claim).await;
    assert_eq!(put.code, 200, "{}", put.body);
    assert_eq!(put.body["spec"]["principalIds"], json!([format!("local://{id}")]));
}

#[tokio::test]
async fn passwords_change_with_the_current_one() {
    let w = start().await;
    let (mallory, m) = w.user("mallory").await;
    w.grant(&mallory, "user-editor", json!([rule(&["get", "update"], &["users"])])).await;
    let me = format!("/v3/users/{mallory}");

    // A stolen session cannot set a new password by PUT, even with the right to update users.
    let mut body = m.get(&me).await.body;
    body["spec"]["password"] = "stolen-session-pw-1".into();
    assert_forbidden(&m.put(&me, &body).await, "changepassword");
    assert_eq!(w.api.login("mallory", "stolen-session-pw-1").await.code, 401);

    // The action needs the current password.
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    let wrong =
        m.post("/v3/users?action=changepassword", &change("not-my-password", "new-password-123")).await;
    assert_status(&wrong, 403, "Forbidden");
    let weak = m.post("/v3/users?action=changepassword", &change("mallory-password-1234", "short")).await;
    assert_status(&weak, 422, "Invalid");
    assert_eq!(w.api.login("mallory", "mallory-password-1234").await.code, 201);
    let ok =
        m.post("/v3/users?action=changepassword", &change("mallory-password-1234", "new-password-123")).await;
    assert_eq!(ok.code, 200, "{}", ok.body);
    assert_eq!(w.api.login("mallory", "mallory-password-1234").await.code, 401);
    assert_eq!(w.api.login("mallory", "new-password-123").await.code, 201);
    // Unknown actions are named.
    assert_status(&m.post("/v3/users?action=promote", &json!({})).await, 400, "BadRequest");
}

#[tokio::test]
async fn roles_with_rules_the_caller_lacks_cannot_be_made() {
    let w = start().await;
    let (mallory, m) = w.user("mallory").await;
    w.grant(
        &mallory,
        "role-maker",
        json!([rule(&["get", "list", "create", "update"], &["globalroles", "roletemplates"])]),
    )
    .await;
    let everything = json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]);
    let attack =
        m.post("/v3/globalroles", &json!({"metadata": {"name": "god"}, "spec": {"rules": everything}})).await;
    assert_forbidden(&attack, "globalroles");
    assert_status(&w.admin.get("/v3/globalroles/god").await, 404, "NotFound");
    // Every cluster's owner, through the role's inherited cluster roles.
    let inherit = json!({"metadata": {"name": "owner-everywhere"},
                         "spec": {"inheritedClusterRoles": ["cluster-owner"]}});
    assert_status(&m.post("/v3/globalroles", &inherit).await, 403, "Forbidden");

    // Rules she holds: allowed; widening them later: refused, and the stored rules stay.
    let mine = json!({"metadata": {"name": "role-reader"},
                      "spec": {"rules": [rule(&["get", "list"], &["globalroles"])]}});
    let made = m.post("/v3/globalroles", &mine).await;
    assert_eq!(made.code, 201, "{}", made.body);
    let mut wider = made.body.clone();
    wider["spec"]["rules"] = everything.clone();
    assert_status(&m.put("/v3/globalroles/role-reader", &wider).await, 403, "Forbidden");
    let stored = w.admin.get("/v3/globalroles/role-reader").await.body;
    assert_eq!(stored["spec"]["rules"], json!([rule(&["get", "list"], &["globalroles"])]));

    // Making the admin role every new user's default is changing the admin role: refused.
    let mut admin_role = w.admin.get("/v3/globalroles/admin").await.body;
    admin_role["spec"]["newUserDefault"] = true.into();
    assert_status(&m.put("/v3/globalroles/admin", &admin_role).await, 403, "Forbidden");
    assert!(w.admin.get("/v3/globalroles/admin").await.body["spec"].get("newUserDefault").is_none());

    // Role templates grant downstream; only those who hold everything (or `escalate`) write them.
    let rt = json!({"metadata": {"name": "pod-god"},
                    "spec": {"context": "cluster", "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}]}});
    assert_forbidden(&m.post("/v3/roletemplates", &rt).await, "roletemplates");
    assert_status(&w.admin.get("/v3/roletemplates/pod-god").await, 404, "NotFound");
    assert_eq!(w.admin.post("/v3/roletemplates", &rt).await.code, 201, "the admin may");
    let (esc, e) = w.user("esc").await;
    w.grant(&esc, "template-escalator", json!([rule(&["create", "update", "escalate"], &["roletemplates"])]))
        .await;
    let rt2 = json!({"metadata": {"name": "pod-god-2"},
                     "spec": {"context": "cluster", "rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}]}});
    assert_eq!(e.post("/v3/roletemplates", &rt2).await.code, 201);
    w.admin_still_logs_in().await;
}

#[tokio::test]
async fn cluster_roles_are_granted_only_by_those_who_hold_them() {
    let w = start().await;
    let (olive, o) = w.user("olive").await;
    let (bob, b) = w.user("bob").await;
    let (carol, _) = w.user("carol").await;
    // Olive makes a cluster and so owns it; the admin makes one olive is not in.
    assert_eq!(o.post("/v3/clusters", &json!({"metadata": {"name": "olives"}})).await.code, 201);
    assert_eq!(w.admin.post("/v3/clusters", &json!({"metadata": {"name": "admins"}})).await.code, 201);
    let project = json!({"metadata": {"name": "shop"}, "spec": {"clusterName": "olives"}});
    let made = w.admin.post("/v3/projects", &project).await;
    assert_eq!(made.code, 201, "{}", made.body);
    let shop = made.body["id"].as_str().unwrap().to_owned();

    // A cluster owner grants member roles in her cluster, not in another.
    let crtb = |cluster: &str, user: &str, role: &str| json!({"spec": {"clusterName": cluster, "userName": user, "roleTemplateName": role}});
    let ok = o.post("/v3/clusterroletemplatebindings", &crtb("olives", &bob, "cluster-member")).await;
    assert_eq!(ok.code, 201, "{}", ok.body);
    let prtb = |user: &str, role: &str| json!({"spec": {"projectName": shop, "userName": user, "roleTemplateName": role}});
    let ok = o.post("/v3/projectroletemplatebindings", &prtb(&carol, "project-member")).await;
    assert_eq!(ok.code, 201, "{}", ok.body);
    assert_status(
        &o.post("/v3/clusterroletemplatebindings", &crtb("admins", &olive, "cluster-owner")).await,
        403,
        "Forbidden",
    );

    // A member allowed to create bindings (by a global role) cannot make anyone an owner.
    w.grant(
        &bob,
        "binding-maker",
        json!([rule(&["create"], &["clusterroletemplatebindings", "projectroletemplatebindings"])]),
    )
    .await;
    let crtbs_before =
        w.admin.get("/v3/clusterroletemplatebindings").await.body["data"].as_array().unwrap().len();
    for cluster in ["olives", "admins"] {
        let attack = b.post("/v3/clusterroletemplatebindings", &crtb(cluster, &bob, "cluster-owner")).await;
        assert_forbidden(&attack, "cluster-owner");
    }
    assert_forbidden(
        &b.post("/v3/projectroletemplatebindings", &prtb(&bob, "project-owner")).await,
        "project-owner",
    );
    let crtbs_after =
        w.admin.get("/v3/clusterroletemplatebindings").await.body["data"].as_array().unwrap().len();
    assert_eq!(crtbs_before, crtbs_after, "no binding was stored");
    // What a member holds, a member with the right to bind may pass on.
    let ok = b.post("/v3/clusterroletemplatebindings", &crtb("olives", &carol, "cluster-member")).await;
    assert_eq!(ok.code, 201, "{}", ok.body);
    w.admin_still_logs_in().await;
}

#[tokio::test]
async fn usernames_are_plain_ascii_and_unique_regardless_of_case() {
    let w = start().await;
    let create = |name: &str| json!({"spec": {"username": name, "password": "look-alike-password-1"}});
    // A Cyrillic "а" that looks like the admin's name, spaces, a leading dash, other scripts.
    for bad in ["\u{430}dmin", "ad min", "-admin", "admin\u{200b}", "ådmin", ""] {
        let a = w.admin.post("/v3/users", &create(bad)).await;
        assert_status(&a, 422, "Invalid");
        assert_eq!(a.body["details"]["causes"][0]["field"], "spec.username", "{bad:?}");
    }
    for taken in ["Admin", "ADMIN"] {
        assert_status(&w.admin.post("/v3/users", &create(taken)).await, 409, "AlreadyExists");
    }
    let (carol, _) = w.user("carol.o-neil_2@example.com").await;
    let path = format!("/v3/users/{carol}");
    let mut c = w.admin.get(&path).await.body;
    c["spec"]["username"] = "aDmin".into();
    assert_status(&w.admin.put(&path, &c).await, 409, "AlreadyExists");
    c["spec"]["username"] = "C\u{430}rol".into();
    assert_status(&w.admin.put(&path, &c).await, 422, "Invalid");
    let users = w.admin.get("/v3/users").await.body["data"].as_array().unwrap().len();
    assert_eq!(users, 2, "only the admin and carol exist");
    w.admin_still_logs_in().await;
}
