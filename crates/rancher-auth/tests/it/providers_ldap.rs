//! The LDAP / Active Directory provider against a real `slapd` started by each test on loopback,
//! with the OpenLDAP layout (`ou=people`, `ou=groups`, `platform ⊃ devs`, a membership cycle) and an
//! AD-style layout (`ou=ad`, the `ad-lite` schema) from `tests/fixtures/ldap/`.
//!
//! Needs `slapd` and `ldap-utils`: run `scripts/install-auth-deps.sh`. Without them the tests fail.

use rancher_test_support::free_port;
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use rancher_auth::providers::{
    AuthProvider, Credentials, Error, Identity, PrincipalKind,
    ldap::{GroupLookup, LdapConfig, LdapProvider, LdapTls},
};
use tokio::process::{Child, Command};

const SUFFIX: &str = "dc=example,dc=org";
const SERVICE_DN: &str = "cn=rancher-svc,dc=example,dc=org";

// ---------------------------------------------------------------------------------------------
// slapd harness

struct Slapd {
    _child: Child,
    dir: tempfile::TempDir,
    ldap_port: u16,
    ldaps_port: u16,
    ca_pem: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ldap")
}

fn slapd_binary() -> PathBuf {
    for candidate in ["/usr/sbin/slapd", "/usr/local/sbin/slapd"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("slapd")).find(|p| p.exists()));
    found.unwrap_or_else(|| {
        panic!("slapd is not installed: run scripts/install-auth-deps.sh (Debian slapd + ldap-utils)")
    })
}

/// A throw-away CA and a server certificate for `localhost` / `127.0.0.1`.
fn write_certificates(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "rancher-auth test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();

    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).unwrap();

    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    ca.pem()
}

async fn ldap_tool(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}: run scripts/install-auth-deps.sh (ldap-utils)"))
}

impl Slapd {
    /// Starts slapd from the fixtures and loads `data.ldif`. Retries with new ports if another
    /// process took one between choosing it and slapd binding it.
    async fn start() -> Self {
        rancher_test_support::install_crypto();
        let binary = slapd_binary();
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            std::fs::create_dir(d.join("data")).unwrap();
            std::fs::copy(fixtures().join("ad-lite.schema"), d.join("ad-lite.schema")).unwrap();
            let conf = std::fs::read_to_string(fixtures().join("slapd.conf.in")).unwrap();
            std::fs::write(d.join("slapd.conf"), conf.replace("@DIR@", d.to_str().unwrap())).unwrap();
            let ca_pem = write_certificates(d);
            let (ldap_port, ldaps_port) = (free_port(), free_port());
            let log = std::fs::File::create(d.join("slapd.log")).unwrap();
            let mut child = Command::new(&binary)
                .arg("-f")
                .arg(d.join("slapd.conf"))
                .arg("-h")
                .arg(format!("ldap://127.0.0.1:{ldap_port}/ ldaps://127.0.0.1:{ldaps_port}/"))
                .args(["-d", "0"])
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("start slapd");
            let url = format!("ldap://127.0.0.1:{ldap_port}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut up = false;
            while tokio::time::Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                let out = ldap_tool(
                    "ldapwhoami",
                    &["-x", "-H", &url, "-D", "cn=admin,dc=example,dc=org", "-w", "adminpass"],
                )
                .await;
                if out.status.success() {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if !up {
                last_log = std::fs::read_to_string(d.join("slapd.log")).unwrap_or_default();
                continue;
            }
            let data = fixtures().join("data.ldif");
            let out = ldap_tool(
                "ldapmodify",
                &[
                    "-a",
                    "-x",
                    "-H",
                    &url,
                    "-D",
                    "cn=admin,dc=example,dc=org",
                    "-w",
                    "adminpass",
                    "-f",
                    data.to_str().unwrap(),
                ],
            )
            .await;
            assert!(out.status.success(), "loading data.ldif: {}", String::from_utf8_lossy(&out.stderr));
            return Self { _child: child, dir, ldap_port, ldaps_port, ca_pem };
        }
        panic!("slapd did not start; its log:\n{last_log}");
    }

    fn openldap(&self) -> LdapConfig {
        let mut config = LdapConfig::openldap(
            vec!["127.0.0.1".into()],
            SERVICE_DN,
            "svcpass",
            format!("ou=people,{SUFFIX}"),
            format!("ou=groups,{SUFFIX}"),
        );
        config.port = self.ldap_port;
        config.timeout = Duration::from_secs(30);
        config
    }

    fn active_directory(&self) -> LdapConfig {
        let mut config = LdapConfig::active_directory(
            vec!["127.0.0.1".into()],
            SERVICE_DN,
            "svcpass",
            format!("ou=ad,{SUFFIX}"),
            format!("ou=ad,{SUFFIX}"),
        );
        config.port = self.ldap_port;
        config.timeout = Duration::from_secs(30);
        config
    }

    async fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        let url = format!("ldap://127.0.0.1:{}", self.ldap_port);
        let out = ldap_tool(
            "ldapmodify",
            &[
                "-x",
                "-H",
                &url,
                "-D",
                "cn=admin,dc=example,dc=org",
                "-w",
                "adminpass",
                "-f",
                path.to_str().unwrap(),
            ],
        )
        .await;
        assert!(out.status.success(), "ldapmodify: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn group_names(identity_groups: &[rancher_auth::providers::Principal]) -> Vec<String> {
    let mut names: Vec<String> = identity_groups.iter().map(|g| g.display_name.clone()).collect();
    names.sort();
    names
}

async fn login(provider: &LdapProvider, user: &str, password: &str) -> Result<Identity, Error> {
    provider.authenticate(&Credentials::password(user, password)).await
}

// ---------------------------------------------------------------------------------------------
// OpenLDAP layout

#[tokio::test]
async fn alice_logs_in_with_direct_and_nested_groups() {
    let slapd = Slapd::start().await;
    let ldap = LdapProvider::new(slapd.openldap()).unwrap();
    assert_eq!(ldap.name(), "openldap");

    let identity = login(&ldap, "alice", "alicepass").await.unwrap();
    assert_eq!(identity.user.id, "openldap_user://uid=alice,ou=people,dc=example,dc=org");
    assert_eq!(identity.user.display_name, "Alice Archer");
    assert_eq!(identity.user.login_name, "alice");
    assert_eq!(identity.user.kind, PrincipalKind::User);
    assert_eq!(group_names(&identity.groups), ["admins", "devs", "platform"]);
    let platform = identity.groups.iter().find(|g| g.display_name == "platform").unwrap();
    assert_eq!(platform.id, "openldap_group://cn=platform,ou=groups,dc=example,dc=org");
    assert_eq!(platform.kind, PrincipalKind::Group);

    // The same answer when groups come from memberOf instead of a member search.
    let mut config = slapd.openldap();
    config.group_lookup = GroupLookup::MemberOf;
    let by_member_of = LdapProvider::new(config).unwrap();
    let identity = login(&by_member_of, "alice", "alicepass").await.unwrap();
    assert_eq!(group_names(&identity.groups), ["admins", "devs", "platform"]);

    // Nesting off: direct groups only.
    let mut config = slapd.openldap();
    config.nested_groups = false;
    let flat = LdapProvider::new(config).unwrap();
    assert_eq!(group_names(&login(&flat, "alice", "alicepass").await.unwrap().groups), ["admins", "devs"]);
}

#[tokio::test]
async fn a_group_cycle_terminates_with_each_group_once() {
    let slapd = Slapd::start().await;
    for lookup in [GroupLookup::MemberSearch, GroupLookup::MemberOf] {
        let mut config = slapd.openldap();
        config.group_lookup = lookup;
        let ldap = LdapProvider::new(config).unwrap();
        let identity = login(&ldap, "carol", "carolpass").await.unwrap();
        let mut names = group_names(&identity.groups);
        // memberOf also lists carol's AD-side group, which lives outside ou=groups.
        names.retain(|n| n.starts_with("ring-"));
        assert_eq!(names, ["ring-a", "ring-b"], "{lookup:?}");
    }
}

#[tokio::test]
async fn wrong_empty_and_injected_credentials_are_refused() {
    let slapd = Slapd::start().await;
    let ldap = LdapProvider::new(slapd.openldap()).unwrap();

    assert!(matches!(login(&ldap, "alice", "wrong").await, Err(Error::InvalidCredentials)));
    assert!(matches!(login(&ldap, "nobody", "alicepass").await, Err(Error::InvalidCredentials)));
    // An empty simple bind is an anonymous bind and would "succeed" at the server.
    assert!(matches!(login(&ldap, "alice", "").await, Err(Error::InvalidCredentials)));
    // Filter injection: the input is escaped, so this is a search for a user literally named so.
    assert!(matches!(login(&ldap, "*)(uid=*", "alicepass").await, Err(Error::InvalidCredentials)));
    assert!(matches!(login(&ldap, "*", "alicepass").await, Err(Error::InvalidCredentials)));
    assert!(ldap.search_principals("*)(uid=*", None, None).await.unwrap().is_empty());

    // A wrong service-account password is a configuration error, not the user's fault.
    let mut config = slapd.openldap();
    config.service_account_password = "nope".into();
    let misconfigured = LdapProvider::new(config).unwrap();
    let err = login(&misconfigured, "alice", "alicepass").await.unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    assert!(!err.to_string().contains("nope"), "{err}");
}

#[tokio::test]
async fn refresh_groups_sees_changes_made_at_the_directory() {
    let slapd = Slapd::start().await;
    let ldap = LdapProvider::new(slapd.openldap()).unwrap();
    let bob = login(&ldap, "bob", "bobpass").await.unwrap();
    assert_eq!(group_names(&bob.groups), ["devs", "platform"]);

    slapd
        .modify("dn: cn=admins,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: member\nmember: uid=bob,ou=people,dc=example,dc=org\n")
        .await;
    assert_eq!(group_names(&ldap.refresh_groups(&bob.user).await.unwrap()), ["admins", "devs", "platform"]);

    slapd
        .modify("dn: cn=devs,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=bob,ou=people,dc=example,dc=org\n")
        .await;
    assert_eq!(group_names(&ldap.refresh_groups(&bob.user).await.unwrap()), ["admins"]);

    slapd.modify("dn: uid=bob,ou=people,dc=example,dc=org\nchangetype: delete\n").await;
    let err = ldap.refresh_groups(&bob.user).await.unwrap_err();
    assert!(matches!(err, Error::PrincipalNotFound { .. }), "{err}");

    // Another provider's principal is refused, not looked up.
    let mut foreign = bob.user.clone();
    foreign.id = "github_user://1".into();
    assert!(matches!(ldap.refresh_groups(&foreign).await, Err(Error::ForeignPrincipal { .. })));
}

#[tokio::test]
async fn search_principals_finds_users_and_groups() {
    let slapd = Slapd::start().await;
    let ldap = LdapProvider::new(slapd.openldap()).unwrap();

    let users = ldap.search_principals("al", Some(PrincipalKind::User), None).await.unwrap();
    assert_eq!(
        users.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["openldap_user://uid=alice,ou=people,dc=example,dc=org"]
    );
    // Display names match too.
    let users = ldap.search_principals("Bob B", Some(PrincipalKind::User), None).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].login_name, "bob");

    let groups = ldap.search_principals("d", Some(PrincipalKind::Group), None).await.unwrap();
    assert_eq!(groups.iter().map(|p| p.display_name.as_str()).collect::<Vec<_>>(), ["devs"]);
    assert_eq!(groups[0].kind, PrincipalKind::Group);

    // No kind: both. "a" matches alice and admins.
    let mut both: Vec<_> =
        ldap.search_principals("a", None, None).await.unwrap().into_iter().map(|p| p.login_name).collect();
    both.sort();
    assert_eq!(both, ["admins", "alice"]);
}

// ---------------------------------------------------------------------------------------------
// Active-Directory layout

#[tokio::test]
async fn active_directory_login_by_sam_account_name() {
    let slapd = Slapd::start().await;
    let ad = LdapProvider::new(slapd.active_directory()).unwrap();
    assert_eq!(ad.name(), "activedirectory");

    let identity = login(&ad, "dave", "davepass").await.unwrap();
    assert_eq!(identity.user.id, "activedirectory_user://cn=Dave Ops,ou=ad,dc=example,dc=org");
    assert_eq!(identity.user.login_name, "dave");
    assert_eq!(identity.user.display_name, "Dave Ops");
    // Domain Admins directly, IT through nesting (read from the groups' memberOf).
    assert_eq!(group_names(&identity.groups), ["Domain Admins", "IT"]);
    assert_eq!(identity.groups[0].id, "activedirectory_group://cn=Domain Admins,ou=ad,dc=example,dc=org");

    // DOMAIN\user and the user principal name log in the same user.
    assert_eq!(login(&ad, r"EXAMPLE\dave", "davepass").await.unwrap().user, identity.user);
    assert_eq!(login(&ad, "dave@example.org", "davepass").await.unwrap().user, identity.user);
    assert!(matches!(login(&ad, "dave", "alicepass").await, Err(Error::InvalidCredentials)));
    // alice is not an AD `user` under ou=ad.
    assert!(matches!(login(&ad, "alice", "alicepass").await, Err(Error::InvalidCredentials)));

    let groups = ad.search_principals("Domain", Some(PrincipalKind::Group), None).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].display_name, "Domain Admins");
}

// ---------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn ldaps_and_starttls_work_with_the_ca_and_fail_clearly_without_it() {
    let slapd = Slapd::start().await;

    let mut config = slapd.openldap();
    config.tls = LdapTls::Ldaps;
    config.port = slapd.ldaps_port;
    config.ca_pem = Some(slapd.ca_pem.clone());
    let ldaps = LdapProvider::new(config.clone()).unwrap();
    let identity = login(&ldaps, "alice", "alicepass").await.unwrap();
    assert_eq!(group_names(&identity.groups), ["admins", "devs", "platform"]);

    let mut starttls_config = slapd.openldap();
    starttls_config.tls = LdapTls::StartTls;
    starttls_config.ca_pem = Some(slapd.ca_pem.clone());
    let starttls = LdapProvider::new(starttls_config.clone()).unwrap();
    assert_eq!(login(&starttls, "bob", "bobpass").await.unwrap().user.login_name, "bob");

    // Without the test CA the server's certificate is not trusted.
    config.ca_pem = None;
    let untrusted = LdapProvider::new(config).unwrap();
    let err = login(&untrusted, "alice", "alicepass").await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");

    starttls_config.ca_pem = None;
    let untrusted = LdapProvider::new(starttls_config).unwrap();
    let err = login(&untrusted, "alice", "alicepass").await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_reported_and_the_next_one_is_tried() {
    let slapd = Slapd::start().await;
    let dead_port = free_port();

    let mut config = slapd.openldap();
    config.port = dead_port;
    config.timeout = Duration::from_secs(5);
    let err = login(&LdapProvider::new(config).unwrap(), "alice", "alicepass").await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");

    // Fail-over: the first server does not answer, the second (same port, other address) does.
    // 127.0.0.2 is loopback too, but slapd listens on 127.0.0.1 only.
    let mut config = slapd.openldap();
    config.servers = vec!["127.0.0.2".into(), "127.0.0.1".into()];
    let identity = login(&LdapProvider::new(config).unwrap(), "alice", "alicepass").await.unwrap();
    assert_eq!(identity.user.login_name, "alice");
}
