//! nginx (Debian's `/usr/sbin/nginx`) in front of one or more servers, as a plain process with its
//! own configuration: TLS at nginx with a certificate the servers are given too (so the CA they
//! publish is the one clients and agents meet at nginx), round robin over the servers, WebSocket
//! upgrade headers and long read timeouts. A server that refuses connections is passed over for
//! the next (nginx's default `proxy_next_upstream error timeout`). Or nginx as a TCP balancer
//! ([`write_nginx_stream_conf`]), TLS passed through to the servers.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::Command;

use rancher_test_support::Proc;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

pub const NGINX: &str = "/usr/sbin/nginx";

/// A CA and a serving certificate for 127.0.0.1/localhost, written as ca.crt, tls.crt, tls.key.
pub fn write_pki(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name.push(DnType::CommonName, "nginx-test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), &ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

/// The main context of a test nginx: in the foreground, one worker, logs and pid under `prefix`.
fn main_context(prefix: &Path) -> String {
    let p = prefix.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nuser root;\nerror_log {p}/logs/error.log info;\n\
         pid {p}/logs/nginx.pid;\nevents {{ worker_connections 256; }}"
    )
}

pub fn write_nginx_conf(prefix: &Path, listen: u16, upstreams: &[u16]) -> std::path::PathBuf {
    for d in ["logs", "tmp"] {
        std::fs::create_dir_all(prefix.join(d)).unwrap();
    }
    let (p, main) = (prefix.display(), main_context(prefix));
    let servers: String = upstreams.iter().map(|port| format!("    server 127.0.0.1:{port};\n")).collect();
    let conf = format!(
        r#"{main}
http {{
  access_log {p}/logs/access.log;
  client_body_temp_path {p}/tmp/body;
  proxy_temp_path {p}/tmp/proxy;
  fastcgi_temp_path {p}/tmp/fastcgi;
  uwsgi_temp_path {p}/tmp/uwsgi;
  scgi_temp_path {p}/tmp/scgi;
  map $http_upgrade $connection_upgrade {{
    default upgrade;
    ''      close;
  }}
  upstream servers {{
{servers}  }}
  server {{
    listen 127.0.0.1:{listen} ssl;
    ssl_certificate {p}/tls.crt;
    ssl_certificate_key {p}/tls.key;
    location / {{
      proxy_pass https://servers;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
      proxy_ssl_verify off;
    }}
  }}
}}
"#
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// The stream module of Debian's `libnginx-mod-stream`: nginx as a TCP balancer.
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// nginx as a TCP balancer: TLS passes through to the servers, which must all serve the certificate
/// clients expect (`--tls-cert`); round robin over them, a refused connection passed on to the next.
pub fn write_nginx_stream_conf(prefix: &Path, listen: u16, upstreams: &[u16]) -> std::path::PathBuf {
    assert!(
        Path::new(STREAM_MODULE).exists(),
        "{STREAM_MODULE} is missing: apt-get install libnginx-mod-stream"
    );
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let main = main_context(prefix);
    let servers: String = upstreams.iter().map(|port| format!("    server 127.0.0.1:{port};\n")).collect();
    let conf = format!(
        r#"load_module {STREAM_MODULE};
{main}
stream {{
  upstream servers {{
{servers}  }}
  server {{
    listen 127.0.0.1:{listen};
    proxy_pass servers;
    proxy_connect_timeout 2s;
    proxy_timeout 3600s;
  }}
}}
"#
    );
    let path = prefix.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

pub fn start_nginx(prefix: &Path, conf: &Path, log_name: &str) -> Proc {
    let mut cmd = Command::new(NGINX);
    cmd.arg("-c").arg(conf).arg("-p").arg(prefix).arg("-e").arg(prefix.join("logs/stderr.log"));
    Proc::spawn(cmd, &prefix.join(log_name))
}
