//! `/v3` authorization by membership, as Rancher does it, against the real `rancher-server`: one table
//! of role × kind × verb, each row the answer a user gets. Every row runs in a fresh scope (a cluster
//! with two projects, P and Q, made by the admin) with a fresh user in the row's role (the cluster
//! owner made the cluster herself; the other roles are bound by the admin: cluster-member in the
//! cluster, project-owner / project-member / read-only in P) and a bystander who is a member of the
//! cluster, of P and of Q. Lists are compared id by id with what the test knows exists.

use std::collections::BTreeSet;

use crate::common::{ADMIN_PASSWORD, Api, ServerProc, assert_status};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Admin,
    /// A standard user with no membership anywhere.
    Nobody,
    ClusterOwner,
    ClusterMember,
    ProjectOwner,
    ProjectMember,
    ReadOnly,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Clusters,
    Projects,
    Crtbs,
    Prtbs,
    Users,
    Tokens,
    GlobalRoles,
    RoleTemplates,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Clusters => "/v3/clusters",
            Kind::Projects => "/v3/projects",
            Kind::Crtbs => "/v3/clusterroletemplatebindings",
            Kind::Prtbs => "/v3/projectroletemplatebindings",
            Kind::Users => "/v3/users",
            Kind::Tokens => "/v3/tokens",
            Kind::GlobalRoles => "/v3/globalroles",
            Kind::RoleTemplates => "/v3/roletemplates",
        }
    }
}

/// What a list answers.
#[derive(Clone, Copy, Debug)]
enum Sees {
    /// 403.
    Forbidden,
    /// Every object of the kind.
    All,
    /// The objects of the row's cluster (the cluster itself, its projects, its and their bindings).
    InCluster,
    /// The objects of project P (P itself, its bindings).
    InP,
    /// The caller's own objects.
    Own,
    /// An empty list.
    Nothing,
}

use Kind::*;
use Role::*;
use Sees::*;

/// role, kind, list, get, create, update, delete. The object of get, update and delete: clusters —
/// the row's cluster; projects — P; bindings — the bystander's in the cluster / in P; users — the
/// bystander; tokens — one the caller made; global roles and role templates — custom ones the admin
/// made. Creates make a new one of the same sort.
#[rustfmt::skip]
const TABLE: &[(Role, Kind, Sees, u16, u16, u16, u16)] = &[
    (Admin,         Clusters,      All,       200, 201, 200, 200),
    (Admin,         Projects,      All,       200, 201, 200, 200),
    (Admin,         Crtbs,         All,       200, 201, 200, 200),
    (Admin,         Prtbs,         All,       200, 201, 200, 200),
    (Admin,         Users,         All,       200, 201, 200, 200),
    (Admin,         Tokens,        All,       200, 201, 200, 200),
    (Admin,         GlobalRoles,   All,       200, 201, 200, 200),
    (Admin,         RoleTemplates, All,       200, 201, 200, 200),

    (Nobody,        Clusters,      Nothing,   403, 201, 403, 403),
    (Nobody,        Projects,      Nothing,   403, 403, 403, 403),
    (Nobody,        Crtbs,         Nothing,   403, 403, 403, 403),
    (Nobody,        Prtbs,         Nothing,   403, 403, 403, 403),
    (Nobody,        Users,         Forbidden, 403, 403, 403, 403),
    (Nobody,        Tokens,        Own,       200, 201, 403, 200),
    (Nobody,        GlobalRoles,   All,       200, 403, 403, 403),
    (Nobody,        RoleTemplates, All,       200, 403, 403, 403),

    (ClusterOwner,  Clusters,      InCluster, 200, 201, 200, 200),
    (ClusterOwner,  Projects,      InCluster, 200, 201, 200, 200),
    (ClusterOwner,  Crtbs,         InCluster, 200, 201, 200, 200),
    (ClusterOwner,  Prtbs,         InCluster, 200, 201, 200, 200),
    (ClusterOwner,  Users,         Forbidden, 403, 403, 403, 403),
    (ClusterOwner,  Tokens,        Own,       200, 201, 403, 200),
    (ClusterOwner,  GlobalRoles,   All,       200, 403, 403, 403),
    (ClusterOwner,  RoleTemplates, All,       200, 403, 403, 403),

    (ClusterMember, Clusters,      InCluster, 200, 201, 403, 403),
    (ClusterMember, Projects,      Nothing,   403, 201, 403, 403),
    (ClusterMember, Crtbs,         InCluster, 200, 403, 403, 403),
    (ClusterMember, Prtbs,         Nothing,   403, 403, 403, 403),
    (ClusterMember, Users,         Forbidden, 403, 403, 403, 403),
    (ClusterMember, Tokens,        Own,       200, 201, 403, 200),
    (ClusterMember, GlobalRoles,   All,       200, 403, 403, 403),
    (ClusterMember, RoleTemplates, All,       200, 403, 403, 403),

    (ProjectOwner,  Clusters,      InCluster, 200, 201, 403, 403),
    (ProjectOwner,  Projects,      InP,       200, 403, 200, 200),
    (ProjectOwner,  Crtbs,         Nothing,   403, 403, 403, 403),
    (ProjectOwner,  Prtbs,         InP,       200, 201, 200, 200),
    (ProjectOwner,  Users,         Forbidden, 403, 403, 403, 403),
    (ProjectOwner,  Tokens,        Own,       200, 201, 403, 200),
    (ProjectOwner,  GlobalRoles,   All,       200, 403, 403, 403),
    (ProjectOwner,  RoleTemplates, All,       200, 403, 403, 403),

    (ProjectMember, Clusters,      InCluster, 200, 201, 403, 403),
    (ProjectMember, Projects,      InP,       200, 403, 403, 403),
    (ProjectMember, Crtbs,         Nothing,   403, 403, 403, 403),
    (ProjectMember, Prtbs,         InP,       200, 403, 403, 403),
    (ProjectMember, Users,         Forbidden, 403, 403, 403, 403),
    (ProjectMember, Tokens,        Own,       200, 201, 403, 200),
    (ProjectMember, GlobalRoles,   All,       200, 403, 403, 403),
    (ProjectMember, RoleTemplates, All,       200, 403, 403, 403),

    (ReadOnly,      Clusters,      InCluster, 200, 201, 403, 403),
    (ReadOnly,      Projects,      InP,       200, 403, 403, 403),
    (ReadOnly,      Crtbs,         Nothing,   403, 403, 403, 403),
    (ReadOnly,      Prtbs,         InP,       200, 403, 403, 403),
    (ReadOnly,      Users,         Forbidden, 403, 403, 403, 403),
    (ReadOnly,      Tokens,        Own,       200, 201, 403, 200),
    (ReadOnly,      GlobalRoles,   All,       200, 403, 403, 403),
    (ReadOnly,      RoleTemplates, All,       200, 403, 403, 403),
];

/// An object the test made (or the server made for it), with where it belongs.
#[derive(Clone, Debug)]
struct Known {
    kind: Kind,
    id: String,
    cluster: Option<String>,
    /// The project id (`<cluster>:<name>`) for projects and their bindings.
    project: Option<String>,
    /// The user it is of: a token's owner, a binding's subject, the user itself.
    user: Option<String>,
}

struct World {
    _dir: tempfile::TempDir,
    _server: ServerProc,
    api: Api,
    admin: Api,
    admin_id: String,
    known: Vec<Known>,
    n: usize,
}

/// The row's scope: its cluster, P and Q, the caller and the bystander.
struct Scope {
    cluster: String,
    p: String,
    caller: Api,
    caller_id: String,
    bystander: String,
    bystander_crtb: String,
    bystander_prtb: String,
    token: String,
    global_role: String,
    role_template: String,
}

fn token_id(token: &str) -> String {
    token.split_once(':').map_or(token, |(id, _)| id).to_owned()
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
        let api = Api::new(&server);
        let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
        let users = admin.get("/v3/users").await;
        let admin_id = users.body["data"][0]["id"].as_str().unwrap().to_owned();
        let mut w = World { _dir: dir, _server: server, api, admin, admin_id, known: vec![], n: 0 };
        let admin_token = token_id(w.admin.token.as_deref().unwrap());
        w.add(Users, &w.admin_id.clone(), None, None, Some(&w.admin_id.clone()));
        w.add(Tokens, &admin_token, None, None, Some(&w.admin_id.clone()));
        for r in ["admin", "user", "user-base"] {
            w.add(GlobalRoles, r, None, None, None);
        }
        for t in [
            "cluster-owner",
            "cluster-member",
            "admin",
            "edit",
            "view",
            "project-owner",
            "project-member",
            "read-only",
        ] {
            w.add(RoleTemplates, t, None, None, None);
        }
        w
    }

    fn add(
        &mut self,
        kind: Kind,
        id: &str,
        cluster: Option<&str>,
        project: Option<&str>,
        user: Option<&str>,
    ) {
        self.known.push(Known {
            kind,
            id: id.to_owned(),
            cluster: cluster.map(str::to_owned),
            project: project.map(str::to_owned),
            user: user.map(str::to_owned),
        });
    }

    /// Forgets an object and what goes with it: a cluster's projects and bindings, a project's
    /// bindings, a user's tokens and bindings.
    fn forget(&mut self, kind: Kind, id: &str) {
        self.known.retain(|k| {
            let gone = (k.kind == kind && k.id == id)
                || (kind == Clusters && k.cluster.as_deref() == Some(id))
                || (kind == Projects && k.project.as_deref() == Some(id))
                || (kind == Users && k.user.as_deref() == Some(id) && k.kind != Users);
            !gone
        });
    }

    fn next(&mut self) -> usize {
        self.n += 1;
        self.n
    }

    async fn new_user(&mut self, name: &str) -> (String, Api) {
        let password = format!("{name}-password-1234");
        let u =
            self.admin.post("/v3/users", &json!({"spec": {"username": name, "password": password}})).await;
        assert_eq!(u.code, 201, "{}", u.body);
        let id = u.body["id"].as_str().unwrap().to_owned();
        self.add(Users, &id, None, None, Some(&id));
        let api = self.api.logged_in(name, &password).await;
        self.add(Tokens, &token_id(api.token.as_deref().unwrap()), None, None, Some(&id));
        (id, api)
    }

    /// A cluster made by `by` (its creator gets `creator-<id>` as cluster-owner).
    async fn new_cluster(&mut self, by: &Api, by_id: &str, name: &str) -> crate::common::Answer {
        let c = by.post("/v3/clusters", &json!({"metadata": {"name": name}})).await;
        if c.code == 201 {
            self.add(Clusters, name, Some(name), None, None);
            self.add(Crtbs, &format!("{name}:creator-{by_id}"), Some(name), None, Some(by_id));
        }
        c
    }

    /// A project made by `by`; a creator who is not an administrator gets `creator-<id>` as owner.
    async fn new_project(&mut self, by: &Api, by_id: &str, cluster: &str) -> crate::common::Answer {
        // Display names are unique within a cluster.
        let shown = format!("team-{}", self.next());
        let p =
            by.post("/v3/projects", &json!({"spec": {"clusterName": cluster, "displayName": shown}})).await;
        if p.code == 201 {
            let id = p.body["id"].as_str().unwrap().to_owned();
            self.add(Projects, &id, Some(cluster), Some(&id), None);
            if by_id != self.admin_id {
                let name = id.split_once(':').unwrap().1;
                self.add(Prtbs, &format!("{name}:creator-{by_id}"), Some(cluster), Some(&id), Some(by_id));
            }
        }
        p
    }

    async fn new_crtb(&mut self, by: &Api, cluster: &str, user: &str, role: &str) -> crate::common::Answer {
        let body = json!({"spec": {"clusterName": cluster, "userName": user, "roleTemplateName": role}});
        let b = by.post("/v3/clusterroletemplatebindings", &body).await;
        if b.code == 201 {
            self.add(Crtbs, b.body["id"].as_str().unwrap(), Some(cluster), None, Some(user));
        }
        b
    }

    async fn new_prtb(&mut self, by: &Api, project: &str, user: &str, role: &str) -> crate::common::Answer {
        let body = json!({"spec": {"projectName": project, "userName": user, "roleTemplateName": role}});
        let b = by.post("/v3/projectroletemplatebindings", &body).await;
        if b.code == 201 {
            let cluster = project.split_once(':').unwrap().0;
            self.add(Prtbs, b.body["id"].as_str().unwrap(), Some(cluster), Some(project), Some(user));
        }
        b
    }

    async fn new_token(&mut self, by: &Api, by_id: &str) -> crate::common::Answer {
        let t = by.post("/v3/tokens", &json!({"description": "table"})).await;
        if t.code == 201 {
            self.add(Tokens, t.body["id"].as_str().unwrap(), None, None, Some(by_id));
        }
        t
    }

    async fn new_global_role(&mut self, by: &Api, name: &str) -> crate::common::Answer {
        let r = by.post("/v3/globalroles", &json!({"metadata": {"name": name}, "spec": {"rules": []}})).await;
        if r.code == 201 {
            self.add(GlobalRoles, name, None, None, None);
        }
        r
    }

    async fn new_role_template(&mut self, by: &Api, name: &str) -> crate::common::Answer {
        let body = json!({"metadata": {"name": name}, "spec": {"context": "project", "rules": []}});
        let r = by.post("/v3/roletemplates", &body).await;
        if r.code == 201 {
            self.add(RoleTemplates, name, None, None, None);
        }
        r
    }

    /// A fresh scope for one row.
    async fn scope(&mut self, role: Role) -> Scope {
        let n = self.next();
        let admin = self.admin.with_token(self.admin.token.as_deref().unwrap());
        let admin_id = self.admin_id.clone();
        let (caller_id, caller) = match role {
            Admin => (admin_id.clone(), admin.with_token(admin.token.as_deref().unwrap())),
            _ => self.new_user(&format!("caller{n}")).await,
        };
        let cluster = format!("c{n}");
        let c = if role == ClusterOwner {
            self.new_cluster(&caller, &caller_id, &cluster).await
        } else {
            self.new_cluster(&admin, &admin_id, &cluster).await
        };
        assert_eq!(c.code, 201, "{}", c.body);
        let p = self.new_project(&admin, &admin_id, &cluster).await;
        assert_eq!(p.code, 201, "{}", p.body);
        let p = p.body["id"].as_str().unwrap().to_owned();
        let q = self.new_project(&admin, &admin_id, &cluster).await;
        assert_eq!(q.code, 201, "{}", q.body);
        let q = q.body["id"].as_str().unwrap().to_owned();
        let bound = match role {
            ClusterMember => self.new_crtb(&admin, &cluster, &caller_id, "cluster-member").await,
            ProjectOwner => self.new_prtb(&admin, &p, &caller_id, "project-owner").await,
            ProjectMember => self.new_prtb(&admin, &p, &caller_id, "project-member").await,
            ReadOnly => self.new_prtb(&admin, &p, &caller_id, "read-only").await,
            Admin | Nobody | ClusterOwner => crate::common::Answer { code: 201, body: Value::Null },
        };
        assert_eq!(bound.code, 201, "{}", bound.body);
        // The bystander never logs in: they have no token.
        let u = admin
            .post(
                "/v3/users",
                &json!({"spec": {"username": format!("bystander{n}"), "password": "bystander-password-1"}}),
            )
            .await;
        assert_eq!(u.code, 201, "{}", u.body);
        let bystander = u.body["id"].as_str().unwrap().to_owned();
        self.add(Users, &bystander, None, None, Some(&bystander));
        let crtb = self.new_crtb(&admin, &cluster, &bystander, "cluster-member").await;
        assert_eq!(crtb.code, 201, "{}", crtb.body);
        let prtb = self.new_prtb(&admin, &p, &bystander, "project-member").await;
        assert_eq!(prtb.code, 201, "{}", prtb.body);
        let in_q = self.new_prtb(&admin, &q, &bystander, "project-member").await;
        assert_eq!(in_q.code, 201, "{}", in_q.body);
        let token = self.new_token(&caller, &caller_id).await;
        assert_eq!(token.code, 201, "{}", token.body);
        let global_role = format!("gr{n}");
        assert_eq!(self.new_global_role(&admin, &global_role).await.code, 201);
        let role_template = format!("rt{n}");
        assert_eq!(self.new_role_template(&admin, &role_template).await.code, 201);
        Scope {
            cluster,
            p,
            caller,
            caller_id,
            bystander,
            bystander_crtb: crtb.body["id"].as_str().unwrap().to_owned(),
            bystander_prtb: prtb.body["id"].as_str().unwrap().to_owned(),
            token: token.body["id"].as_str().unwrap().to_owned(),
            global_role,
            role_template,
        }
    }

    /// The ids a list should answer with.
    fn expected(&self, kind: Kind, sees: Sees, s: &Scope) -> BTreeSet<String> {
        self.known
            .iter()
            .filter(|k| k.kind == kind)
            .filter(|k| match sees {
                Forbidden | Nothing => false,
                All => true,
                InCluster => k.cluster.as_deref() == Some(s.cluster.as_str()),
                InP => k.project.as_deref() == Some(s.p.as_str()),
                Own => k.user.as_deref() == Some(s.caller_id.as_str()),
            })
            .map(|k| k.id.clone())
            .collect()
    }

    /// Waits until a deleted cluster is gone (its clean-up has run), so lists no longer show it.
    async fn wait_cluster_gone(&self, cluster: &str) {
        for _ in 0..200 {
            if self.admin.get(&format!("/v3/clusters/{cluster}")).await.code == 404 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("cluster {cluster} was not removed");
    }
}

/// The ids of a list answer, without the Default and System projects a server controller makes for
/// every cluster (shared contract 3): they are the server's, not the test's.
fn ids(a: &crate::common::Answer) -> BTreeSet<String> {
    let made_by_server = |o: &Value| {
        let labels = &o["metadata"]["labels"];
        labels["authz.management.cattle.io/default-project"] == "true"
            || labels["authz.management.cattle.io/system-project"] == "true"
    };
    a.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a collection: {}", a.body))
        .iter()
        .filter(|o| !made_by_server(o))
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

fn check(what: &str, a: &crate::common::Answer, code: u16) {
    assert_eq!(a.code, code, "{what}: {}", a.body);
    if code >= 400 {
        let reason = if code == 403 { "Forbidden" } else { "NotFound" };
        assert_status(a, code, reason);
    }
}

/// A change to `body` that every kind accepts: a description, a display name, a label. Without a
/// resourceVersion: controllers may write the object's status meanwhile.
fn touched(kind: Kind, mut body: Value) -> Value {
    if let Some(meta) = body["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    match kind {
        Clusters | Projects | GlobalRoles | RoleTemplates => body["spec"]["description"] = "changed".into(),
        Users => body["spec"]["displayName"] = "Changed".into(),
        Tokens => body["spec"]["description"] = "changed".into(),
        Crtbs | Prtbs => {
            body["metadata"]["labels"] = json!({"changed": "yes"});
        }
    }
    body
}

#[tokio::test]
async fn role_kind_verb_table() {
    let mut w = World::start().await;
    for &(role, kind, sees, get, create, update, delete) in TABLE {
        let s = w.scope(role).await;
        let row = format!("{role:?} {kind:?}");
        let c = &s.caller;

        // list
        let list = c.get(kind.path()).await;
        match sees {
            Forbidden => check(&format!("{row} list"), &list, 403),
            _ => {
                check(&format!("{row} list"), &list, 200);
                assert_eq!(ids(&list), w.expected(kind, sees, &s), "{row} list");
            }
        }

        // get and update of the row's object
        let target = match kind {
            Clusters => s.cluster.clone(),
            Projects => s.p.clone(),
            Crtbs => s.bystander_crtb.clone(),
            Prtbs => s.bystander_prtb.clone(),
            Users => s.bystander.clone(),
            Tokens => s.token.clone(),
            GlobalRoles => s.global_role.clone(),
            RoleTemplates => s.role_template.clone(),
        };
        let path = format!("{}/{target}", kind.path());
        let got = c.get(&path).await;
        check(&format!("{row} get"), &got, get);
        if get == 200 {
            assert_eq!(got.body["id"], target.as_str(), "{row} get");
        }
        let stored = w.admin.get(&path).await;
        assert_eq!(stored.code, 200, "{}", stored.body);
        let put = c.put(&path, &touched(kind, stored.body.clone())).await;
        check(&format!("{row} update"), &put, update);
        let after = w.admin.get(&path).await.body;
        let changed = touched(kind, after.clone());
        let same = |a: &Value, b: &Value| {
            a["spec"] == b["spec"] && a["metadata"]["labels"] == b["metadata"]["labels"]
        };
        if update == 200 {
            assert!(same(&after, &changed), "{row}: the change was stored: {after}");
        } else {
            assert!(same(&after, &stored.body), "{row}: a refused update changes nothing: {after}");
        }

        // create
        let n = w.next();
        let made = match kind {
            Clusters => w.new_cluster(c, &s.caller_id, &format!("new{n}")).await,
            Projects => w.new_project(c, &s.caller_id, &s.cluster).await,
            Crtbs => w.new_crtb(c, &s.cluster, &s.bystander, "cluster-member").await,
            Prtbs => w.new_prtb(c, &s.p, &s.bystander, "read-only").await,
            Users => {
                let body = json!({"spec": {"username": format!("made{n}"), "password": "made-password-123"}});
                let u = c.post("/v3/users", &body).await;
                if u.code == 201 {
                    let id = u.body["id"].as_str().unwrap().to_owned();
                    w.add(Users, &id, None, None, Some(&id));
                }
                u
            }
            Tokens => w.new_token(c, &s.caller_id).await,
            GlobalRoles => w.new_global_role(c, &format!("grnew{n}")).await,
            RoleTemplates => w.new_role_template(c, &format!("rtnew{n}")).await,
        };
        check(&format!("{row} create"), &made, create);

        // delete (last: the row's object goes)
        let deleted = c.delete(&path).await;
        check(&format!("{row} delete"), &deleted, delete);
        if delete == 200 {
            w.forget(kind, &target);
            if kind == Clusters {
                w.wait_cluster_gone(&target).await;
            }
        } else {
            assert_eq!(w.admin.get(&path).await.code, 200, "{row}: a refused delete removes nothing");
        }
    }
    // Whatever the rows did, the admin's lists still hold exactly what is known.
    for kind in [Clusters, Projects, Crtbs, Prtbs, Users, Tokens, GlobalRoles, RoleTemplates] {
        let all = w.admin.get(kind.path()).await;
        let want: BTreeSet<String> =
            w.known.iter().filter(|k| k.kind == kind).map(|k| k.id.clone()).collect();
        assert_eq!(ids(&all), want, "{kind:?} at the end");
    }
}
