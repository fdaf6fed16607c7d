//! The S3 client against moto's S3 server with signature checking on: moto recomputes every
//! request's SigV4 signature with botocore and refuses a wrong one, so a round trip here proves
//! the signer as well as the operations.

use std::path::Path;

use rancher_provision::s3::{S3Client, S3Config, S3Error, S3Op};
use rancher_test_support::moto::Moto;
use secrecy::SecretString;

fn config(moto: &Moto, bucket: &str, folder: &str, access_key: &str, secret: &str) -> S3Config {
    S3Config {
        endpoint: moto.endpoint(),
        bucket_name: bucket.into(),
        folder: folder.into(),
        access_key: access_key.into(),
        secret_key: SecretString::from(secret),
        ..Default::default()
    }
}

/// `len` bytes that differ at every offset a chunking bug could shift.
fn write_file(path: &Path, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(path, &data).unwrap();
    data
}

/// A moto with signatures enforced, a bucket, and a client with the right key.
async fn signed_moto(bucket: &str, folder: &str) -> (Moto, S3Client, String, String) {
    let moto = Moto::start().await;
    let (id, secret) = moto.enforce_signatures().await;
    let s3 = S3Client::new(&config(&moto, bucket, folder, &id, &secret)).unwrap();
    s3.create_bucket().await.unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    (moto, s3, id, secret)
}

#[tokio::test]
async fn a_snapshot_file_goes_up_is_listed_comes_back_identical_and_is_deleted() {
    let (moto, s3, ..) = signed_moto("etcd-snapshots", "/prod/c-1/").await;
    s3.head_bucket().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("snap.db");
    let data = write_file(&src, 5 * 1024 * 1024 + 12_345);

    let put = s3
        .put_object("c-1-2026-12-03T10:00:00Z.db", &src)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    assert_eq!(put.key, "prod/c-1/c-1-2026-12-03T10:00:00Z.db");
    assert_eq!(put.size, data.len() as u64);
    let other = dir.path().join("other.db");
    write_file(&other, 10);
    s3.put_object("c-1-older.db", &other).await.unwrap();
    s3.put_object("unrelated.txt", &other).await.unwrap();

    let listed = s3.list_objects_v2("c-1-").await.unwrap();
    let names: Vec<_> = listed.iter().map(|o| (o.name.as_str(), o.size)).collect();
    assert_eq!(names, [("c-1-2026-12-03T10:00:00Z.db", data.len() as u64), ("c-1-older.db", 10)]);
    assert_eq!(listed[0].key, put.key);
    assert_eq!(listed[0].etag, put.etag);

    let mut back = Vec::new();
    let n = s3.get_object("c-1-2026-12-03T10:00:00Z.db", &mut back).await.unwrap();
    assert_eq!(n, data.len() as u64);
    assert!(back == data, "the download differs from the upload");

    s3.delete_object("c-1-2026-12-03T10:00:00Z.db").await.unwrap();
    let left: Vec<_> = s3.list_objects_v2("").await.unwrap().into_iter().map(|o| o.name).collect();
    assert_eq!(left, ["c-1-older.db", "unrelated.txt"]);
    let gone = s3.get_object("c-1-2026-12-03T10:00:00Z.db", &mut Vec::new()).await.unwrap_err();
    assert_eq!(gone.code(), Some("NoSuchKey"), "{gone}");
}

#[tokio::test]
async fn keys_that_need_encoding_are_signed_as_sent() {
    let (_moto, s3, ..) = signed_moto("encoded-keys", "snap shots").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s");
    let data = write_file(&src, 1000);
    let name = "c 1+ü=@(x)&y.db";
    s3.put_object(name, &src).await.unwrap();
    let listed = s3.list_objects_v2("c 1+").await.unwrap();
    assert_eq!(listed.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), [name]);
    assert_eq!(listed[0].key, format!("snap shots/{name}"));
    let mut back = Vec::new();
    s3.get_object(name, &mut back).await.unwrap();
    assert_eq!(back, data);
}

#[tokio::test]
async fn listing_follows_continuation_tokens() {
    let (moto, s3, ..) = signed_moto("many-objects", "f").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s");
    write_file(&src, 1);
    // moto pages at 1000 keys, as S3 does.
    let count = 1003;
    for i in 0..count {
        s3.put_object(&format!("o-{i:05}"), &src).await.unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    }
    let listed = s3.list_objects_v2("o-").await.unwrap();
    assert_eq!(listed.len(), count);
    assert_eq!(listed.last().map(|o| o.name.as_str()), Some("o-01002"));
}

#[tokio::test]
async fn a_missing_bucket_is_named_in_the_error() {
    let (moto, _s3, id, secret) = signed_moto("exists", "").await;
    let s3 = S3Client::new(&config(&moto, "no-such-bucket", "etcd", &id, &secret)).unwrap();
    let e = s3.list_objects_v2("").await.unwrap_err();
    assert_eq!(e.code(), Some("NoSuchBucket"), "{e}");
    let shown = e.to_string();
    assert!(shown.contains("ListObjectsV2") && shown.contains("no-such-bucket"), "{shown}");
    let e = s3.head_bucket().await.unwrap_err();
    assert!(matches!(e, S3Error::Service { op: S3Op::HeadBucket, status: 404, .. }), "{e}");
    assert_eq!(e.code(), Some("NoSuchBucket"));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s");
    write_file(&src, 3);
    let e = s3.put_object("x.db", &src).await.unwrap_err();
    assert_eq!(e.code(), Some("NoSuchBucket"), "{e}");
    assert!(e.to_string().contains("no-such-bucket/etcd/x.db"), "{e}");
}

#[tokio::test]
async fn a_wrong_secret_or_unknown_key_is_refused_and_never_shown() {
    let (moto, s3, id, secret) = signed_moto("guarded", "").await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s");
    write_file(&src, 100);
    s3.put_object("a.db", &src).await.unwrap();

    // Change the last character to one it is not: a secret that already ends in the
    // replacement would otherwise be sent unchanged and accepted.
    let last = if secret.ends_with('X') { 'Y' } else { 'X' };
    let tampered = format!("{}{last}", &secret[..secret.len() - 1]);
    assert_ne!(tampered, secret);
    let bad = S3Client::new(&config(&moto, "guarded", "", &id, &tampered)).unwrap();
    for e in [
        bad.list_objects_v2("").await.unwrap_err(),
        bad.get_object("a.db", &mut Vec::new()).await.unwrap_err(),
        bad.put_object("b.db", &src).await.unwrap_err(),
        bad.delete_object("a.db").await.unwrap_err(),
    ] {
        assert_eq!(e.code(), Some("SignatureDoesNotMatch"), "{e}");
        let shown = format!("{e} {e:?} {bad:?}");
        assert!(!shown.contains(&tampered) && !shown.contains(&secret), "{shown}");
    }
    // Nothing was written or deleted by the refused requests.
    let names: Vec<_> = s3.list_objects_v2("").await.unwrap().into_iter().map(|o| o.name).collect();
    assert_eq!(names, ["a.db"]);

    let stranger = S3Client::new(&config(&moto, "guarded", "", "AKIDNOTKNOWN", &secret)).unwrap();
    let e = stranger.list_objects_v2("").await.unwrap_err();
    assert_eq!(e.code(), Some("InvalidAccessKeyId"), "{e}");
}

#[tokio::test]
async fn a_dead_endpoint_is_a_transport_error() {
    let port = rancher_test_support::free_port();
    let cfg = S3Config {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket_name: "any-bucket".into(),
        access_key: "AKID".into(),
        secret_key: SecretString::from("s"),
        ..Default::default()
    };
    let e = S3Client::new(&cfg).unwrap().head_bucket().await.unwrap_err();
    assert!(matches!(e, S3Error::Transport { op: S3Op::HeadBucket, .. }), "{e}");
}

/// A test CA and a serving certificate for 127.0.0.1 it signed: (CA PEM, certificate PEM, key PEM).
fn test_tls() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    (ca_pem, leaf.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
}

#[tokio::test]
async fn https_is_the_default_and_the_custom_ca_is_what_makes_a_private_endpoint_trusted() {
    let (ca, cert, key) = test_tls();
    let moto = Moto::start_tls(&cert, &key).await;
    // No scheme: HTTPS.
    let cfg = S3Config {
        endpoint: format!("127.0.0.1:{}", moto.port()),
        bucket_name: "tls-bucket".into(),
        access_key: "AKID".into(),
        secret_key: SecretString::from("any"),
        custom_ca: Some(ca),
        ..Default::default()
    };
    let s3 = S3Client::new(&cfg).unwrap();
    s3.create_bucket().await.unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s");
    let data = write_file(&src, 300_000);
    s3.put_object("a.db", &src).await.unwrap();
    let mut back = Vec::new();
    s3.get_object("a.db", &mut back).await.unwrap();
    assert_eq!(back, data);

    let untrusted = S3Client::new(&S3Config { custom_ca: None, ..cfg.clone() }).unwrap();
    let e = untrusted.head_bucket().await.unwrap_err();
    assert!(matches!(e, S3Error::Transport { .. }), "{e}");
    let plain =
        S3Client::new(&S3Config { endpoint: format!("http://127.0.0.1:{}", moto.port()), ..cfg }).unwrap();
    assert!(plain.head_bucket().await.is_err(), "plain HTTP to a TLS port");
}

/// What a put sends on the wire: the length up front (S3 refuses chunked uploads without a
/// length), the body's hash signed, the key encoded once.
#[tokio::test]
async fn a_put_sends_its_length_and_signed_body_hash() {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let head_end = loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            raw.extend_from_slice(&buf[..n]);
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
            })
            .expect("a content-length header");
        while raw.len() < head_end + len {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the body ended early");
            raw.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        (head, raw[head_end..].to_vec())
    });
    let cfg = S3Config {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket_name: "wire".into(),
        folder: "f".into(),
        access_key: "AKID".into(),
        secret_key: SecretString::from("s"),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("s");
    let data = write_file(&src, 1_000_000);
    let put = S3Client::new(&cfg).unwrap().put_object("snap 1.db", &src).await.unwrap();
    let (head, body) = server.await.unwrap();
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("PUT /wire/f/snap%201.db HTTP/1.1\r\n"), "{head}");
    assert!(lower.contains("content-length: 1000000\r\n") && !lower.contains("transfer-encoding"), "{head}");
    let sha = hex::encode(Sha256::digest(&data));
    assert!(lower.contains(&format!("x-amz-content-sha256: {sha}\r\n")), "{head}");
    assert!(lower.contains("signedheaders=host;x-amz-content-sha256;x-amz-date,"), "{head}");
    assert!(lower.contains("authorization: aws4-hmac-sha256 credential=akid/"), "{head}");
    assert_eq!(body, data);
    assert_eq!((put.size, put.sha256.as_str(), put.etag.as_str()), (1_000_000, sha.as_str(), "abc"));
}

/// A bucket in another region: S3 answers a HEAD with a bare 301 and the bucket's region in a
/// header, which the error passes on.
#[tokio::test]
async fn a_bucket_in_another_region_is_named_in_the_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            raw.extend_from_slice(&buf[..n]);
        }
        conn.write_all(
            b"HTTP/1.1 301 Moved Permanently\r\nx-amz-bucket-region: eu-west-1\r\nContent-Length: 0\r\n\
              Connection: close\r\n\r\n",
        )
        .await
        .unwrap();
        String::from_utf8(raw).unwrap()
    });
    let cfg = S3Config {
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket_name: "elsewhere".into(),
        access_key: "AKID".into(),
        secret_key: SecretString::from("s"),
        ..Default::default()
    };
    let e = S3Client::new(&cfg).unwrap().head_bucket().await.unwrap_err();
    let head = server.await.unwrap();
    assert!(head.starts_with("HEAD /elsewhere HTTP/1.1\r\n"), "{head}");
    assert_eq!(e.code(), Some("PermanentRedirect"), "{e}");
    assert!(e.to_string().contains("the bucket is in region \"eu-west-1\", not \"us-east-1\""), "{e}");
}
