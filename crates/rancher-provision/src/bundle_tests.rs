use super::*;

/// Six small "binaries" in `dir` and the (name, path) pairs naming them.
fn binaries(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    COMPONENTS
        .iter()
        .map(|name| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\necho {name}\n")).unwrap();
            (*name, path)
        })
        .collect()
}

fn pairs<'a>(files: &'a [(&'static str, PathBuf)]) -> Vec<(&'static str, &'a Path)> {
    files.iter().map(|(n, p)| (*n, p.as_path())).collect()
}

#[test]
fn a_bundle_of_local_files_verifies_until_a_file_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let files = binaries(tmp.path());
    let bundle = Bundle::from_local_files("v1.20.2", &pairs(&files)).unwrap();
    assert_eq!(bundle.components.len(), 6);
    let etcd = &bundle.components["etcd"];
    // sha256("#!/bin/sh\necho etcd\n"), computed independently with sha256sum.
    assert_eq!(etcd.sha256, hex::encode(Sha256::digest(b"#!/bin/sh\necho etcd\n")));
    bundle.verify_local().unwrap();

    std::fs::write(&files[1].1, b"tampered").unwrap();
    match bundle.verify_local().unwrap_err() {
        BundleError::Checksum { component, expected, actual } => {
            assert_eq!(component, "kube-apiserver");
            assert_eq!(expected, bundle.components["kube-apiserver"].sha256);
            assert_eq!(actual, hex::encode(Sha256::digest(b"tampered")));
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(&files[1].1).unwrap();
    assert!(matches!(bundle.verify_local().unwrap_err(), BundleError::Read { .. }));
}

#[test]
fn manifests_round_trip_and_bad_ones_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let files = binaries(tmp.path());
    let bundle = Bundle::from_local_files("v1.20.2", &pairs(&files)).unwrap();
    assert_eq!(Bundle::from_manifest(&bundle.to_manifest()).unwrap(), bundle);
    let sum = "0".repeat(64);
    let json = serde_json::json!({
        "version": "v1.21.0",
        "components": COMPONENTS.iter().map(|c| (c.to_string(), serde_json::json!({
            "url": format!("https://example.com/{c}"), "sha256": sum,
        }))).collect::<serde_json::Map<_, _>>(),
    });
    let from_json = Bundle::from_manifest(&json.to_string()).unwrap();
    assert_eq!(
        from_json.components["kubelet"].source,
        ComponentSource::Url("https://example.com/kubelet".into())
    );

    let base = bundle.to_manifest();
    let cases: Vec<(String, &str, &str)> = vec![
        (base.replace("version: v1.20.2", "version: 1.20"), "version", "not a version"),
        (
            base.replacen(&bundle.components["etcd"].sha256, "abc", 1),
            "components.etcd.sha256",
            "64 lower-case hex",
        ),
        (base.replace("  node-agent:", "  kube-proxy:"), "components.kube-proxy", "unknown component"),
        (
            json.to_string().replace("https://example.com/kubelet", "ftp://x/kubelet"),
            "components.kubelet.url",
            "https://",
        ),
    ];
    for (text, field, message) in cases {
        match Bundle::from_manifest(&text) {
            Err(BundleError::Invalid { field: f, message: m }) => {
                assert_eq!(f, field, "{m}");
                assert!(m.contains(message), "{m}");
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut missing = bundle.clone();
    missing.components.remove("kubelet");
    assert_eq!(
        missing.check().unwrap_err().to_string(),
        "components.kubelet: missing: every bundle has all the components"
    );
    let mut relative = bundle.clone();
    relative.components.get_mut("etcd").unwrap().source = ComponentSource::Path("bin/etcd".into());
    assert_eq!(
        relative.check().unwrap_err().to_string(),
        "components.etcd.path: bin/etcd is not an absolute path"
    );
}

#[test]
fn the_registry_loads_a_directory_of_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let files = binaries(tmp.path());
    let manifests = tmp.path().join("bundles");
    std::fs::create_dir(&manifests).unwrap();
    for v in ["v1.20.2", "v1.9.11", "v1.20.10"] {
        let b = Bundle::from_local_files(v, &pairs(&files)).unwrap();
        std::fs::write(manifests.join(format!("{v}.yaml")), b.to_manifest()).unwrap();
    }
    std::fs::write(manifests.join("README.md"), "not a manifest").unwrap();
    let mut reg = BundleRegistry::new();
    reg.load_dir(&manifests).unwrap();
    assert_eq!(reg.versions(), ["v1.20.10", "v1.20.2", "v1.9.11"]);
    assert_eq!(reg.newest().unwrap().version, "v1.20.10", "versions compare as numbers");
    assert!(reg.get("v1.20.2").is_some() && reg.get("v1.21.0").is_none());
    let again = Bundle::from_local_files("v1.20.2", &pairs(&files)).unwrap();
    assert_eq!(reg.insert(again).unwrap_err().to_string(), "two bundles are registered for v1.20.2");

    std::fs::write(manifests.join("broken.yaml"), "version: v1.22.0\ncomponents: {}\n").unwrap();
    let err = BundleRegistry::new().load_dir(&manifests).unwrap_err().to_string();
    assert!(err.contains("broken.yaml") && err.contains("components.etcd: missing"), "{err}");
}

#[test]
fn a_components_default_flags_round_trip_and_bad_ones_name_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let files = binaries(tmp.path());
    let mut bundle = Bundle::from_local_files("v1.20.2", &pairs(&files)).unwrap();
    let api = bundle.components.get_mut("kube-apiserver").unwrap();
    api.args.insert("profiling".into(), "true".into());
    api.args.insert("v".into(), String::new());
    let back = Bundle::from_manifest(&bundle.to_manifest()).unwrap();
    assert_eq!(back, bundle);
    let text = bundle.to_manifest().replace("profiling:", "'--profiling':");
    let e = Bundle::from_manifest(&text).unwrap_err();
    assert!(e.to_string().starts_with("components.kube-apiserver.args.--profiling:"), "{e}");
}

#[test]
fn etcdctl_is_optional_and_checked_when_present() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = binaries(tmp.path());
    let without = Bundle::from_local_files("v1.20.2", &pairs(&files)).unwrap();
    assert!(!without.components.contains_key("etcdctl"));
    let etcdctl = tmp.path().join("etcdctl");
    std::fs::write(&etcdctl, b"#!/bin/sh\necho etcdctl\n").unwrap();
    files.push(("etcdctl", etcdctl));
    let with = Bundle::from_local_files("v1.20.2", &pairs(&files)).unwrap();
    assert_eq!(Bundle::from_manifest(&with.to_manifest()).unwrap(), with);
    let bad = with.to_manifest().replacen(&with.components["etcdctl"].sha256, "abc", 1);
    match Bundle::from_manifest(&bad) {
        Err(BundleError::Invalid { field, .. }) => assert_eq!(field, "components.etcdctl.sha256"),
        other => panic!("{other:?}"),
    }
}
