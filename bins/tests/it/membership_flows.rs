//! Membership as a team lives it, against the real `rancher-server`: a standard user who creates a
//! cluster manages it end to end (projects, members, deletion) without ever holding more than she
//! grants; members see exactly what they belong to; lists filter before they page and take Rancher's
//! `clusterId=` / `projectId=` filters.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::{ADMIN_PASSWORD, Answer, Api, ServerProc, assert_status};
use serde_json::{Value, json};

struct World {
    _dir: tempfile::TempDir,
    _server: ServerProc,
    api: Api,
    admin: Api,
}

async fn start() -> World {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    let api = Api::new(&server);
    let admin = api.logged_in("admin", ADMIN_PASSWORD).await;
    World { _dir: dir, _server: server, api, admin }
}

impl World {
    async fn user(&self, name: &str) -> (String, Api) {
        let password = format!("{name}-password-1234");
        let u =
            self.admin.post("/v3/users", &json!({"spec": {"username": name, "password": password}})).await;
        assert_eq!(u.code, 201, "{}", u.body);
        (u.body["id"].as_str().unwrap().to_owned(), self.api.logged_in(name, &password).await)
    }
}

fn created(a: Answer) -> String {
    assert_eq!(a.code, 201, "{}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

fn project(cluster: &str, display: &str) -> Value {
    json!({"spec": {"clusterName": cluster, "displayName": display}})
}

fn crtb(cluster: &str, user: &str, role: &str) -> Value {
    json!({"spec": {"clusterName": cluster, "userName": user, "roleTemplateName": role}})
}

fn prtb(project: &str, user: &str, role: &str) -> Value {
    json!({"spec": {"projectName": project, "userName": user, "roleTemplateName": role}})
}

/// The ids of a collection, without the Default and System projects the server makes for every
/// cluster (shared contract 3).
fn ids(a: &Answer) -> BTreeSet<String> {
    assert_eq!(a.code, 200, "{}", a.body);
    a.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            let l = &o["metadata"]["labels"];
            l["authz.management.cattle.io/default-project"] != "true"
                && l["authz.management.cattle.io/system-project"] != "true"
        })
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn a_cluster_creator_manages_it_end_to_end() {
    let w = start().await;
    let (olive, o) = w.user("olive").await;
    let (bob, b) = w.user("bob").await;
    let (carol, c) = w.user("carol").await;
    assert_eq!(
        created(w.admin.post("/v3/clusters", &json!({"metadata": {"name": "admins"}})).await),
        "admins"
    );

    // Olive creates a cluster: she reads, changes and lists it, and only it.
    assert_eq!(created(o.post("/v3/clusters", &json!({"metadata": {"name": "olives"}})).await), "olives");
    assert_eq!(ids(&o.get("/v3/clusters").await), set(&["olives"]));
    let mut mine = o.get("/v3/clusters/olives").await.body;
    mine["spec"]["description"] = "olive's".into();
    mine["metadata"]["finalizers"] = json!([]);
    let put = o.put("/v3/clusters/olives", &mine).await;
    assert_eq!(put.code, 200, "{}", put.body);
    assert_eq!(put.body["spec"]["description"], "olive's");
    assert!(
        !put.body["metadata"]["finalizers"].as_array().unwrap().is_empty(),
        "an owner cannot drop the clean-up finalizer: {}",
        put.body
    );
    assert_status(&o.get("/v3/clusters/admins").await, 403, "Forbidden");
    assert_status(&o.delete("/v3/clusters/admins").await, 403, "Forbidden");
    // An object that does not exist answers as one she may not see: ids are not probed.
    assert_status(&o.get("/v3/clusters/nowhere").await, 403, "Forbidden");

    // She adds projects and members to it, not to another cluster.
    let shop = created(o.post("/v3/projects", &project("olives", "shop")).await);
    let ops = created(o.post("/v3/projects", &project("olives", "ops")).await);
    assert_status(&o.post("/v3/projects", &project("admins", "x")).await, 403, "Forbidden");
    created(o.post("/v3/clusterroletemplatebindings", &crtb("olives", &bob, "cluster-member")).await);
    created(o.post("/v3/projectroletemplatebindings", &prtb(&shop, &carol, "project-member")).await);
    assert_status(
        &o.post("/v3/clusterroletemplatebindings", &crtb("admins", &bob, "cluster-member")).await,
        403,
        "Forbidden",
    );
    assert_eq!(ids(&o.get("/v3/projects").await), set(&[&shop, &ops]));

    // Carol, a project member, sees the cluster and her project, nothing else, and changes neither.
    assert_eq!(ids(&c.get("/v3/clusters").await), set(&["olives"]));
    assert_eq!(ids(&c.get("/v3/projects").await), set(&[&shop]));
    assert_eq!(c.get("/v3/clusters/olives").await.code, 200);
    assert_status(&c.get(&format!("/v3/projects/{ops}")).await, 403, "Forbidden");
    assert_status(&c.delete(&format!("/v3/projects/{shop}")).await, 403, "Forbidden");
    assert_eq!(ids(&c.get("/v3/clusterroletemplatebindings").await), BTreeSet::new());

    // Bob, a cluster member, sees the cluster but no project until he makes one, which he then owns.
    assert_eq!(ids(&b.get("/v3/projects").await), BTreeSet::new());
    let bobs = created(b.post("/v3/projects", &project("olives", "bobs")).await);
    assert_eq!(ids(&b.get("/v3/projects").await), set(&[&bobs]));
    let bobs_name = bobs.split_once(':').unwrap().1;
    let creator = b.get(&format!("/v3/projectroletemplatebindings/{bobs_name}:creator-{bob}")).await;
    assert_eq!(creator.code, 200, "{}", creator.body);
    assert_eq!(creator.body["spec"]["roleTemplateName"], "project-owner");
    let mut p = b.get(&format!("/v3/projects/{bobs}")).await.body;
    p["spec"]["description"] = "bob's".into();
    assert_eq!(b.put(&format!("/v3/projects/{bobs}"), &p).await.code, 200);
    assert_status(&b.delete(&format!("/v3/projects/{shop}")).await, 403, "Forbidden");
    // As its owner he names members, but grants nothing he lacks.
    created(b.post("/v3/projectroletemplatebindings", &prtb(&bobs, &carol, "read-only")).await);
    let god = json!({"metadata": {"name": "pod-god"},
                     "spec": {"context": "project", "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}});
    assert_eq!(w.admin.post("/v3/roletemplates", &god).await.code, 201);
    let attack = b.post("/v3/projectroletemplatebindings", &prtb(&bobs, &carol, "pod-god")).await;
    assert_status(&attack, 403, "Forbidden");
    assert_eq!(ids(&c.get("/v3/projects").await), set(&[&shop, &bobs]));

    // Olive deletes her cluster: its projects and members go, and nobody sees it any more.
    assert_eq!(o.delete("/v3/clusters/olives").await.code, 200);
    // Membership ends with the deletion, not with the clean-up after it.
    assert_status(&c.get("/v3/clusters/olives").await, 403, "Forbidden");
    assert_status(&b.post("/v3/projects", &project("olives", "late")).await, 403, "Forbidden");
    for _ in 0..200 {
        if w.admin.get("/v3/clusters/olives").await.code == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_status(&w.admin.get("/v3/clusters/olives").await, 404, "NotFound");
    for who in [&o, &b, &c] {
        assert_eq!(ids(&who.get("/v3/clusters").await), BTreeSet::new());
        assert_eq!(ids(&who.get("/v3/projects").await), BTreeSet::new());
    }
    let _ = olive;
}

/// Pages through a list with `limit`, returning every id in order and checking each page's size.
async fn all_pages(api: &Api, path: &str, limit: usize) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..100 {
        let url = match &next {
            Some(t) => format!("{path}{sep}limit={limit}&continue={t}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let page = api.get(&url).await;
        assert_eq!(page.code, 200, "{}", page.body);
        let data = page.body["data"].as_array().unwrap();
        assert!(data.len() <= limit, "a page holds at most {limit}: {}", page.body);
        out.extend(data.iter().map(|o| o["id"].as_str().unwrap().to_owned()));
        match page.body["continue"].as_str() {
            Some(t) => {
                assert_eq!(data.len(), limit, "only the last page is short: {}", page.body);
                next = Some(t.to_owned());
            }
            None => return out,
        }
    }
    panic!("paging did not end");
}

#[tokio::test]
async fn lists_filter_before_paging_and_take_rancher_filters() {
    let w = start().await;
    let (dana, d) = w.user("dana").await;
    for c in ["east", "west", "north"] {
        assert_eq!(created(w.admin.post("/v3/clusters", &json!({"metadata": {"name": c}})).await), c);
    }
    // Dana is in three projects of east and two of west, among many she is not in.
    let mut hers = BTreeSet::new();
    let mut east = BTreeSet::new();
    for (cluster, count, member) in [("east", 6, 3), ("west", 4, 2), ("north", 3, 0)] {
        for i in 0..count {
            let id = created(w.admin.post("/v3/projects", &project(cluster, &format!("p{i}"))).await);
            if i < member {
                let b = created(
                    w.admin.post("/v3/projectroletemplatebindings", &prtb(&id, &dana, "read-only")).await,
                );
                hers.insert(id.clone());
                if cluster == "east" {
                    east.insert((id, b));
                }
            }
        }
    }

    // Pages of 2 hold only her projects, each once, none left out.
    let paged = all_pages(&d, "/v3/projects", 2).await;
    let unique: BTreeSet<String> = paged.iter().cloned().collect();
    assert_eq!(unique.len(), paged.len(), "no project twice: {paged:?}");
    assert_eq!(unique, hers);
    assert_eq!(ids(&d.get("/v3/projects").await), hers);
    // Rancher's filters: her projects of east; the clusters she is in.
    let east_ids: BTreeSet<String> = east.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(ids(&d.get("/v3/projects?clusterId=east").await), east_ids);
    assert_eq!(all_pages(&d, "/v3/projects?clusterId=east", 1).await.len(), 3);
    assert_eq!(ids(&d.get("/v3/clusters").await), set(&["east", "west"]));
    // The admin's lists take the filters too, and page them.
    let all_east = ids(&w.admin.get("/v3/projects?clusterId=east").await);
    assert_eq!(all_east.len(), 6, "{all_east:?}");
    assert!(all_east.iter().all(|p| p.starts_with("east:")));
    let paged: BTreeSet<String> =
        all_pages(&w.admin, "/v3/projects?clusterId=east", 4).await.into_iter().collect();
    let whole = w.admin.get("/v3/projects?clusterId=east").await;
    let whole: BTreeSet<String> =
        whole.body["data"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(paged, whole);
    let (one, binding) = east.iter().next().unwrap();
    assert_eq!(
        ids(&w.admin.get(&format!("/v3/projectroletemplatebindings?projectId={one}")).await),
        set(&[binding])
    );
    assert_eq!(
        ids(&d.get(&format!("/v3/projectroletemplatebindings?projectId={one}")).await),
        set(&[binding])
    );
    let crtbs = ids(&w.admin.get("/v3/clusterroletemplatebindings?clusterId=west").await);
    assert!(crtbs.iter().all(|b| b.starts_with("west:")) && crtbs.len() == 1, "{crtbs:?}");
    // Malformed filters and tokens are refused with the reason.
    let bad = d.get("/v3/projectroletemplatebindings?projectId=east").await;
    assert_status(&bad, 400, "BadRequest");
    assert!(bad.body["message"].as_str().unwrap().contains("<cluster>:<project>"), "{}", bad.body);
    assert_status(&d.get("/v3/projects?limit=1&continue=bm90LWEtdG9rZW4").await, 400, "BadRequest");
    // A user's own user and tokens, as before.
    assert_eq!(d.get(&format!("/v3/users/{dana}")).await.code, 200);
    assert_status(&d.get("/v3/users").await, 403, "Forbidden");
    let tokens = d.get("/v3/tokens").await;
    assert_eq!(tokens.code, 200);
    assert!(tokens.body["data"].as_array().unwrap().iter().all(|t| t["spec"]["userId"] == dana.as_str()));
}
