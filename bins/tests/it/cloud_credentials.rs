//! Cloud credentials through `/v3/cloudcredentials` and `rancherctl credential`: secrets sealed before
//! they are stored and never returned, kept by `"[sealed]"` and rotated by a new value (the resolver
//! hosted provisioners use opens the new one), visible and usable by their owner and admins only,
//! bad input refused naming the field, and no deletion while a cluster names the credential.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rancher::server::Server;
use rancher_core::model::{CloudCredential, Cluster, ClusterSpec};
use rancher_core::store::{Api as StoreApi, MemoryStore, Store, StoreError};
use rancher_provision::hosted::credentials::{CloudSecret, CredentialSource};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::common::{ADMIN_PASSWORD, Api, ServerProc, assert_status, client, err, install_crypto, ok};
use crate::rke_config::{ctl, files_under};

const AWS_SECRET: &str = "wJalrXUtnFEMI-CLOUD-CRED-AWS-SECRET";
const AWS_ROTATED: &str = "wJalrXUtnFEMI-CLOUD-CRED-AWS-ROTATED";
const AZURE_SECRET: &str = "azure~CLOUD-CRED-AZURE-SECRET";
/// Text inside the GCP key's private key: what must never show.
const GCP_MARKER: &str = "CLOUDCREDGCPKEYMATERIAL";
const UUID: &str = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";

/// A service-account key file; its private key is framing around text the test looks for.
fn gcp_key() -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(format!("{GCP_MARKER}{}", "k".repeat(80)));
    json!({
        "type": "service_account",
        "project_id": "demo",
        "private_key_id": "1234",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"),
        "client_email": "robot@demo.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

fn aws_body(name: &str, secret: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"amazonec2credentialConfig": {
        "accessKey": "AKIAIOSFODNN7EXAMPLE", "secretKey": secret, "defaultRegion": "us-west-2"}}})
}

/// Every secret the test stores, and the base64 of the GCP key's marker.
fn secrets() -> Vec<String> {
    let marker64 = base64::engine::general_purpose::STANDARD.encode(GCP_MARKER);
    vec![AWS_SECRET.into(), AWS_ROTATED.into(), AZURE_SECRET.into(), marker64[..20].to_owned()]
}

fn assert_no_secret(what: &str, text: &str) {
    for s in secrets() {
        assert!(!text.contains(&s), "{what} shows a secret: {text}");
    }
}

async fn aws_secret(source: &dyn CredentialSource, name: &str, owner: &str) -> String {
    match source.open(name, owner).await.unwrap() {
        CloudSecret::Aws { secret_access_key, .. } => secret_access_key.expose_secret().to_owned(),
        other => panic!("{other:?}"),
    }
}

/// Points the cluster `name` (stored directly) at `credential`, or at none.
async fn name_credential(store: &Arc<dyn Store>, name: &str, credential: Option<&str>) {
    let clusters = StoreApi::<Cluster>::all(store.clone());
    let config = credential.map(|c| json!({"amazonCredentialSecret": c, "region": "us-west-2"}));
    loop {
        let result = match clusters.get_opt(name).await.unwrap() {
            None => {
                let spec = ClusterSpec { driver_config: config.clone(), ..Default::default() };
                clusters.create(&Cluster::new(name, spec)).await.map(drop)
            }
            Some(mut c) => {
                c.spec.driver_config = config.clone();
                clusters.update(&c).await.map(drop)
            }
        };
        match result {
            Ok(()) => return,
            // A controller wrote the cluster meanwhile: read it again.
            Err(StoreError::Conflict { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn secrets_are_sealed_owned_rotated_and_refused_when_bad() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let memory = Arc::new(MemoryStore::new());
    let server = Server::builder()
        .data_dir(dir.path().join("data"))
        .store(memory.clone())
        .https_listen("127.0.0.1:0".parse().unwrap())
        .bootstrap_password(ADMIN_PASSWORD)
        .build()
        .await
        .unwrap();
    let source = server.cloud_credentials();
    let store: Arc<dyn Store> = memory.clone();
    let http = client(server.ca_pem());
    let url = server.url();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { server.run(s.cancelled_owned()).await.unwrap() });
    let anonymous = Api { http, url, token: None };
    let admin = anonymous.logged_in("admin", ADMIN_PASSWORD).await;
    let users = admin.get("/v3/users").await.body;
    let admin_id =
        users["data"].as_array().unwrap().iter().find(|u| u["spec"]["username"] == "admin").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let bob =
        admin.post("/v3/users", &json!({"spec": {"username": "bob", "password": "bob-password-1234"}})).await;
    assert_eq!(bob.code, 201, "{}", bob.body);
    let bob_id = bob.body["id"].as_str().unwrap().to_owned();
    let bob = anonymous.logged_in("bob", "bob-password-1234").await;
    let creds = StoreApi::<CloudCredential>::all(store.clone());

    // Each cloud; the GCP one in Rancher's body shape, named by the server.
    let a = admin.post("/v3/cloudcredentials", &aws_body("cc-aws", AWS_SECRET)).await;
    assert_eq!(a.code, 201, "{}", a.body);
    assert_eq!(a.body["type"], "cloudCredential");
    assert_eq!(a.body["spec"]["amazonec2credentialConfig"]["secretKey"], "[sealed]");
    assert_eq!(a.body["metadata"]["labels"]["field.cattle.io/creatorId"], admin_id.as_str());
    let g = admin
        .post(
            "/v3/cloudcredentials",
            &json!({"type": "cloudCredential", "name": "gcp keys", "googlecredentialConfig": {"authEncodedJson": gcp_key()}}),
        )
        .await;
    assert_eq!(g.code, 201, "{}", g.body);
    let gcp = g.body["id"].as_str().unwrap().to_owned();
    assert!(gcp.starts_with("cc-") && g.body["spec"]["displayName"] == "gcp keys", "{}", g.body);
    let z = admin
        .post(
            "/v3/cloudcredentials",
            &json!({"metadata": {"name": "cc-azure"}, "spec": {"azurecredentialConfig": {
                "clientId": UUID, "clientSecret": AZURE_SECRET, "subscriptionId": UUID, "tenantId": UUID}}}),
        )
        .await;
    assert_eq!(z.code, 201, "{}", z.body);
    assert_eq!(z.body["spec"]["azurecredentialConfig"]["environment"], "AzurePublicCloud");
    for answer in [&a, &g, &z] {
        assert_no_secret("a create's answer", &answer.body.to_string());
    }

    // The store holds sealed text only; reads show the placeholder.
    for name in ["cc-aws", gcp.as_str(), "cc-azure"] {
        let mut stored = creds.get(name).await.unwrap();
        assert_no_secret("the store", &serde_json::to_string(&stored).unwrap());
        for s in stored.spec.secrets_mut() {
            assert!(s.value.starts_with("sealed:v1:"), "{}: {}", s.field, s.value);
        }
        let one = admin.get(&format!("/v3/cloudcredentials/{name}")).await;
        assert_eq!(one.code, 200, "{}", one.body);
        assert_no_secret("a read", &one.body.to_string());
        assert!(one.body.to_string().contains("[sealed]"));
    }
    let all = admin.get("/v3/cloudcredentials").await;
    assert_eq!(all.body["data"].as_array().unwrap().len(), 3, "{}", all.body);
    assert_no_secret("a list", &all.body.to_string());
    match source.open(&gcp, &admin_id).await.unwrap() {
        CloudSecret::Gcp { service_account_json } => {
            assert_eq!(service_account_json.expose_secret(), gcp_key())
        }
        other => panic!("{other:?}"),
    }
    match source.open("cattle-global-data:cc-azure", &admin_id).await.unwrap() {
        CloudSecret::Azure { client_secret, tenant_id, .. } => {
            assert_eq!((client_secret.expose_secret(), tenant_id.as_str()), (AZURE_SECRET, UUID));
        }
        other => panic!("{other:?}"),
    }

    // "[sealed]" keeps the secret; a new value rotates it and the resolver opens the new one.
    let sealed = creds.get("cc-aws").await.unwrap().spec.amazonec2credential_config.unwrap().secret_key;
    let mut edit = admin.get("/v3/cloudcredentials/cc-aws").await.body;
    edit["spec"]["description"] = json!("prod account");
    let u = admin.put("/v3/cloudcredentials/cc-aws", &edit).await;
    assert_eq!(u.code, 200, "{}", u.body);
    let kept = creds.get("cc-aws").await.unwrap();
    assert_eq!(kept.spec.amazonec2credential_config.unwrap().secret_key, sealed);
    assert_eq!(kept.spec.description, "prod account");
    assert_eq!(aws_secret(source.as_ref(), "cc-aws", &admin_id).await, AWS_SECRET);
    let mut edit = admin.get("/v3/cloudcredentials/cc-aws").await.body;
    edit["spec"]["amazonec2credentialConfig"]["secretKey"] = json!(AWS_ROTATED);
    let u = admin.put("/v3/cloudcredentials/cc-aws", &edit).await;
    assert_eq!(u.code, 200, "{}", u.body);
    assert_no_secret("an update's answer", &u.body.to_string());
    let rotated = creds.get("cc-aws").await.unwrap().spec.amazonec2credential_config.unwrap().secret_key;
    assert!(rotated.starts_with("sealed:v1:") && rotated != sealed);
    assert_eq!(aws_secret(source.as_ref(), "cc-aws", &admin_id).await, AWS_ROTATED);

    // Another user: not listed, not found (as a missing one), not usable, not deletable.
    let missing = bob.get("/v3/cloudcredentials/cc-missing").await;
    assert_status(&missing, 404, "NotFound");
    for answer in [
        bob.get("/v3/cloudcredentials/cc-aws").await,
        bob.put("/v3/cloudcredentials/cc-aws", &aws_body("cc-aws", "stolen")).await,
        bob.delete("/v3/cloudcredentials/cc-aws").await,
    ] {
        assert_status(&answer, 404, "NotFound");
        assert_eq!(
            answer.body["message"],
            missing.body["message"].as_str().unwrap().replace("cc-missing", "cc-aws")
        );
    }
    let e = source.open("cc-aws", &bob_id).await.unwrap_err();
    assert!(!e.is_transient() && e.to_string().contains("\"cc-aws\" not found"), "{e}");
    // Bob's own: his, whatever label he sends; he lists it alone; an admin sees and may use it.
    let mut mine = aws_body("cc-bob", AWS_SECRET);
    mine["metadata"]["labels"] = json!({"field.cattle.io/creatorId": admin_id});
    let b = bob.post("/v3/cloudcredentials", &mine).await;
    assert_eq!(b.code, 201, "{}", b.body);
    assert_eq!(b.body["metadata"]["labels"]["field.cattle.io/creatorId"], bob_id.as_str());
    let listed = bob.get("/v3/cloudcredentials").await;
    let ids: Vec<&str> =
        listed.body["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["cc-bob"], "{}", listed.body);
    assert_eq!(admin.get("/v3/cloudcredentials").await.body["data"].as_array().unwrap().len(), 4);
    assert_eq!(aws_secret(source.as_ref(), "cc-bob", &bob_id).await, AWS_SECRET);
    assert_eq!(aws_secret(source.as_ref(), "cc-bob", &admin_id).await, AWS_SECRET);
    let mut takeover = bob.get("/v3/cloudcredentials/cc-bob").await.body;
    takeover["metadata"]["labels"]["field.cattle.io/creatorId"] = json!(admin_id);
    assert_eq!(bob.put("/v3/cloudcredentials/cc-bob", &takeover).await.code, 200);
    assert_eq!(creds.get("cc-bob").await.unwrap().owner(), bob_id, "the owner stays");

    // Bad input: refused naming the field, nothing stored, no secret echoed.
    let key_with = |k: &str, v: Value| {
        let mut key: Value = serde_json::from_str(&gcp_key()).unwrap();
        key[k] = v;
        key.to_string()
    };
    let azure = |edit: &dyn Fn(&mut Value)| {
        let mut c =
            json!({"clientId": UUID, "clientSecret": AZURE_SECRET, "subscriptionId": UUID, "tenantId": UUID});
        edit(&mut c);
        json!({"azurecredentialConfig": c})
    };
    let cases = [
        (json!({}), "spec"),
        (
            json!({"amazonec2credentialConfig": aws_body("x", AWS_SECRET)["spec"]["amazonec2credentialConfig"],
                   "googlecredentialConfig": {"authEncodedJson": gcp_key()}}),
            "spec",
        ),
        (
            json!({"amazonec2credentialConfig": {"accessKey": "not-a-key", "secretKey": AWS_SECRET}}),
            "spec.amazonec2credentialConfig.accessKey",
        ),
        (
            json!({"amazonec2credentialConfig": {"accessKey": "AKIAIOSFODNN7EXAMPLE"}}),
            "spec.amazonec2credentialConfig.secretKey",
        ),
        (
            json!({"amazonec2credentialConfig": {"accessKey": "AKIAIOSFODNN7EXAMPLE", "secretKey": "[sealed]"}}),
            "spec.amazonec2credentialConfig.secretKey",
        ),
        (
            json!({"googlecredentialConfig": {"authEncodedJson": key_with("type", json!("authorized_user"))}}),
            "spec.googlecredentialConfig.authEncodedJson",
        ),
        (
            json!({"googlecredentialConfig": {"authEncodedJson": key_with("private_key", json!("not pem"))}}),
            "spec.googlecredentialConfig.authEncodedJson",
        ),
        (
            json!({"googlecredentialConfig": {"authEncodedJson": key_with("token_uri", json!("http://example.com/t"))}}),
            "spec.googlecredentialConfig.authEncodedJson",
        ),
        (
            json!({"googlecredentialConfig": {"authEncodedJson": format!("{{{GCP_MARKER}")}}),
            "spec.googlecredentialConfig.authEncodedJson",
        ),
        (azure(&|c| c["tenantId"] = json!("contoso.onmicrosoft.com")), "spec.azurecredentialConfig.tenantId"),
        (azure(&|c| c["environment"] = json!("AzureMoonCloud")), "spec.azurecredentialConfig.environment"),
    ];
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let name = format!("cc-bad-{i}");
        let answer =
            bob.post("/v3/cloudcredentials", &json!({"metadata": {"name": name}, "spec": spec})).await;
        assert_status(&answer, 422, "Invalid");
        assert_eq!(answer.body["details"]["causes"][0]["field"], field, "case {i}: {}", answer.body);
        assert_no_secret("an error", &answer.body.to_string());
        assert!(!answer.body.to_string().contains(GCP_MARKER), "{}", answer.body);
        assert!(creds.get_opt(&name).await.unwrap().is_none(), "case {i} stored");
    }
    // Changing the cloud of a credential is refused too, and the stored one is untouched.
    let mut other_cloud = admin.get("/v3/cloudcredentials/cc-aws").await.body;
    other_cloud["spec"] = json!({"googlecredentialConfig": {"authEncodedJson": gcp_key()}});
    let answer = admin.put("/v3/cloudcredentials/cc-aws", &other_cloud).await;
    assert_status(&answer, 422, "Invalid");
    assert_eq!(answer.body["details"]["causes"][0]["field"], "spec");
    assert!(creds.get("cc-aws").await.unwrap().spec.googlecredential_config.is_none());

    // In use: the delete is refused, naming the cluster; once no cluster names it, it goes.
    name_credential(&store, "c-eks", Some("cattle-global-data:cc-aws")).await;
    let refused = admin.delete("/v3/cloudcredentials/cc-aws").await;
    assert_status(&refused, 409, "Conflict");
    assert!(refused.body["message"].as_str().unwrap().contains("c-eks"), "{}", refused.body);
    assert!(creds.get_opt("cc-aws").await.unwrap().is_some());
    name_credential(&store, "c-eks", None).await;
    assert_eq!(admin.delete("/v3/cloudcredentials/cc-aws").await.code, 200);
    assert!(creds.get_opt("cc-aws").await.unwrap().is_none());
    let e = source.open("cc-aws", &admin_id).await.unwrap_err();
    assert!(!e.is_transient() && e.to_string().contains("not found"), "{e}");
    assert_eq!(bob.delete("/v3/cloudcredentials/cc-bob").await.code, 200, "an owner deletes their own");

    stop.cancel();
    task.await.unwrap();
}

#[test]
fn rancherctl_creates_lists_rotates_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let data = dir.path().join("data");
    let server = ServerProc::start(&data, 0, Some(ADMIN_PASSWORD), &[]);
    let ca = data.join("tls/ca.crt");
    let login = ["login", &server.url, "-u", "admin", "-p", ADMIN_PASSWORD, "--cacert", ca.to_str().unwrap()];
    ok(&ctl(&home, &login));

    let secret = dir.path().join("aws-secret");
    std::fs::write(&secret, format!("{AWS_SECRET}\n")).unwrap();
    let key = dir.path().join("key.json");
    std::fs::write(&key, gcp_key()).unwrap();
    let azure_secret = dir.path().join("azure-secret");
    std::fs::write(&azure_secret, AZURE_SECRET).unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    let out = ok(&ctl(
        &home,
        &[
            "credential",
            "create",
            "aws",
            "cc-aws",
            "--access-key",
            "AKIAIOSFODNN7EXAMPLE",
            "--secret-key-file",
            &path(&secret),
            "--region",
            "us-west-2",
        ],
    ));
    assert_eq!(out, "cloud credential cc-aws created\n");
    ok(&ctl(&home, &["credential", "create", "gcp", "cc-gcp", "--key-file", &path(&key)]));
    let out = ok(&ctl(
        &home,
        &[
            "credential",
            "create",
            "azure",
            "cc-azure",
            "--client-id",
            UUID,
            "--subscription-id",
            UUID,
            "--tenant-id",
            UUID,
            "--client-secret-file",
            &path(&azure_secret),
            "-o",
            "json",
        ],
    ));
    assert_no_secret("create -o json", &out);
    assert!(out.contains("\"clientSecret\": \"[sealed]\""), "{out}");
    // Refused by the server, naming the field; a missing file never reaches it.
    let e = err(&ctl(
        &home,
        &[
            "credential",
            "create",
            "aws",
            "cc-bad",
            "--access-key",
            "short",
            "--secret-key-file",
            &path(&secret),
        ],
    ));
    assert!(e.contains("spec.amazonec2credentialConfig.accessKey"), "{e}");
    let e = err(&ctl(
        &home,
        &["credential", "create", "gcp", "cc-bad", "--key-file", &path(&dir.path().join("none"))],
    ));
    assert!(e.contains("--key-file: reading"), "{e}");
    // Secrets on the command line are not an option.
    let e = err(&ctl(
        &home,
        &[
            "credential",
            "create",
            "aws",
            "cc-bad",
            "--access-key",
            "AKIAIOSFODNN7EXAMPLE",
            "--secret-key",
            AWS_SECRET,
        ],
    ));
    assert!(e.contains("--secret-key"), "{e}");

    let table = ok(&ctl(&home, &["credential", "ls"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("CLOUD") && lines[0].contains("OWNER"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cc-aws") && l.contains(" aws ") && l.contains("AKIAIOSFODNN7EXAMPLE")),
        "{table}"
    );
    assert!(lines.iter().any(|l| l.starts_with("cc-gcp") && l.contains(" gcp ")), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("cc-azure") && l.contains(UUID)), "{table}");
    assert_no_secret("credential ls", &ok(&ctl(&home, &["credential", "ls", "-o", "yaml"])));

    // Rotation from stdin.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rancherctl"))
        .args(["credential", "rotate", "cc-aws", "--secret-key-file", "-"])
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), AWS_ROTATED.as_bytes()).unwrap();
    let out = ok(&child.wait_with_output().unwrap());
    assert_eq!(out, "cloud credential cc-aws: secretKey rotated\n");
    // The server's files: the access key id shows (so a secret would), no secret does.
    let mut visible = false;
    for file in files_under(&data) {
        let bytes = std::fs::read(&file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        visible |= text.contains("AKIAIOSFODNN7EXAMPLE");
        assert_no_secret(&file.display().to_string(), &text);
    }
    assert!(visible, "the store's files hold the credential's access key id in plain text");

    ok(&ctl(&home, &["credential", "rm", "cc-gcp"]));
    let e = err(&ctl(&home, &["credential", "rm", "cc-gcp"]));
    assert!(e.contains("not found"), "{e}");
    let table = ok(&ctl(&home, &["credential", "ls"]));
    assert!(!table.contains("cc-gcp") && table.contains("cc-aws"), "{table}");
    server.stop();
}

/// An EKS cluster naming the credential `cc`; the server's EKS endpoint is a closed port, so nothing
/// leaves the machine.
fn eks_cluster(name: &str, cc: &str) -> Value {
    json!({"metadata": {"name": name, "annotations": {"field.cattle.io/creatorId": "u-someone-else"}},
        "spec": {"eksConfig": {
        "amazonCredentialSecret": cc, "displayName": name, "region": "us-west-2", "kubernetesVersion": "1.29",
        "subnets": ["subnet-0a1b2c3d", "subnet-0a1b2c3e"], "serviceRole": "arn:aws:iam::123456789012:role/eks",
        "nodeGroups": [{"nodegroupName": "ng-a", "instanceType": "t3.medium", "desiredSize": 1, "minSize": 1, "maxSize": 2,
            "nodeRole": "arn:aws:iam::123456789012:role/nodes"}]}}})
}

#[tokio::test]
async fn naming_a_credential_in_a_cluster_takes_the_right_to_use_it() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let endpoints = rancher::server::CloudEndpoints {
        eks: Some(format!("http://127.0.0.1:{}", rancher_test_support::free_port())),
        ..Default::default()
    };
    let server = Server::builder()
        .data_dir(dir.path().join("data"))
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse().unwrap())
        .bootstrap_password(ADMIN_PASSWORD)
        .cloud_endpoints(endpoints)
        .build()
        .await
        .unwrap();
    let anonymous = Api { http: client(server.ca_pem()), url: server.url(), token: None };
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { server.run(s.cancelled_owned()).await.unwrap() });
    let admin = anonymous.logged_in("admin", ADMIN_PASSWORD).await;
    let bob =
        admin.post("/v3/users", &json!({"spec": {"username": "bob", "password": "bob-password-1234"}})).await;
    assert_eq!(bob.code, 201, "{}", bob.body);
    let bob_id = bob.body["id"].as_str().unwrap().to_owned();
    let bob = anonymous.logged_in("bob", "bob-password-1234").await;
    for (who, name) in [(&admin, "cc-admin"), (&admin, "cc-admin-2"), (&bob, "cc-bob")] {
        let r = who.post("/v3/cloudcredentials", &aws_body(name, AWS_SECRET)).await;
        assert_eq!(r.code, 201, "{}", r.body);
    }

    // Bob may not point a cluster at the admin's credential: refused naming the field, nothing stored.
    let r = bob.post("/v3/clusters", &eks_cluster("bobs", "cc-admin")).await;
    assert_status(&r, 422, "Invalid");
    assert!(
        r.body["message"].as_str().unwrap().contains("spec.eksConfig.amazonCredentialSecret"),
        "{}",
        r.body
    );
    assert_eq!(admin.get("/v3/clusters/bobs").await.code, 404);
    // His own is fine, and the creator is who asked, whatever the request said.
    let r = bob.post("/v3/clusters", &eks_cluster("bobs", "cattle-global-data:cc-bob")).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["metadata"]["annotations"]["field.cattle.io/creatorId"], bob_id.as_str());

    // An owner of the admin's cluster keeps its credential but cannot switch it to another of the
    // admin's, nor spoof the creator.
    let r = admin.post("/v3/clusters", &eks_cluster("adm", "cc-admin")).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = admin
        .post(
            "/v3/clusterroletemplatebindings",
            &json!({"spec": {"clusterName": "adm", "roleTemplateName": "cluster-owner", "userName": bob_id}}),
        )
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    let mut adm = bob.get("/v3/clusters/adm").await.body;
    adm["spec"]["description"] = json!("bob was here");
    adm["metadata"]["annotations"]["field.cattle.io/creatorId"] = json!(bob_id);
    let r = bob.put("/v3/clusters/adm", &adm).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_ne!(r.body["metadata"]["annotations"]["field.cattle.io/creatorId"], bob_id.as_str());
    let mut adm = r.body;
    adm["spec"]["eksConfig"]["amazonCredentialSecret"] = json!("cc-admin-2");
    let r = bob.put("/v3/clusters/adm", &adm).await;
    assert_status(&r, 422, "Invalid");
    assert!(
        r.body["message"].as_str().unwrap().contains("cloud credential \"cc-admin-2\" not found"),
        "{}",
        r.body
    );
    let r = admin.put("/v3/clusters/adm", &adm).await;
    assert_eq!(r.code, 200, "the admin may: {}", r.body);
    stop.cancel();
    task.await.unwrap();
}
