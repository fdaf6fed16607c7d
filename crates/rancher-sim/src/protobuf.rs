//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into JSON.
//! kubectl 1.33's `create <kind>` and `auth can-i` send protobuf unconditionally, so the kinds those
//! commands build are decoded here from a field-number table, as are the `DeleteOptions` Go clients
//! send with a DELETE; other kinds get a clear 415.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// How a field is encoded.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    Msg(&'static str),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`, values base64.
    MapBytes,
    /// `map<string, ExtraValue>` (a list of strings).
    MapList,
    /// `meta.v1.Time` (seconds = 1, nanos = 2) as RFC 3339.
    Time,
}

/// (field number, JSON name, type, repeated)
type Field = (u64, &'static str, Ty, bool);

use Ty::*;

const OBJECT_META: &[Field] = &[
    (1, "name", Str, false),
    (2, "generateName", Str, false),
    (3, "namespace", Str, false),
    (5, "uid", Str, false),
    (6, "resourceVersion", Str, false),
    (7, "generation", Int, false),
    (8, "creationTimestamp", Time, false),
    (9, "deletionTimestamp", Time, false),
    (10, "deletionGracePeriodSeconds", Int, false),
    (11, "labels", MapStr, false),
    (12, "annotations", MapStr, false),
    (13, "ownerReferences", Msg("OwnerReference"), true),
    (14, "finalizers", Str, true),
];

fn schema(message: &str) -> Option<&'static [Field]> {
    Some(match message {
        "ObjectMeta" => OBJECT_META,
        "OwnerReference" => &[
            (1, "kind", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
            (6, "controller", Bool, false),
            (7, "blockOwnerDeletion", Bool, false),
        ],
        "LabelSelector" => &[
            (1, "matchLabels", MapStr, false),
            (2, "matchExpressions", Msg("LabelSelectorRequirement"), true),
        ],
        "LabelSelectorRequirement" => {
            &[(1, "key", Str, false), (2, "operator", Str, false), (3, "values", Str, true)]
        }
        "Namespace" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("NamespaceSpec"), false),
            (3, "status", Msg("NamespaceStatus"), false),
        ],
        "NamespaceSpec" => &[(1, "finalizers", Str, true)],
        "NamespaceStatus" => &[(1, "phase", Str, false)],
        "Role" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "rules", Msg("PolicyRule"), true)],
        "ClusterRole" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "rules", Msg("PolicyRule"), true),
            (3, "aggregationRule", Msg("AggregationRule"), false),
        ],
        "AggregationRule" => &[(1, "clusterRoleSelectors", Msg("LabelSelector"), true)],
        "PolicyRule" => &[
            (1, "verbs", Str, true),
            (2, "apiGroups", Str, true),
            (3, "resources", Str, true),
            (4, "resourceNames", Str, true),
            (5, "nonResourceURLs", Str, true),
        ],
        "RoleBinding" | "ClusterRoleBinding" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "subjects", Msg("Subject"), true),
            (3, "roleRef", Msg("RoleRef"), false),
        ],
        "Subject" => &[
            (1, "kind", Str, false),
            (2, "apiGroup", Str, false),
            (3, "name", Str, false),
            (4, "namespace", Str, false),
        ],
        "RoleRef" => &[(1, "apiGroup", Str, false), (2, "kind", Str, false), (3, "name", Str, false)],
        "SelfSubjectAccessReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SelfSubjectAccessReviewSpec"), false),
        ],
        "SelfSubjectAccessReviewSpec" => &[
            (1, "resourceAttributes", Msg("ResourceAttributes"), false),
            (2, "nonResourceAttributes", Msg("NonResourceAttributes"), false),
        ],
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("SubjectAccessReviewSpec"), false)]
        }
        "SubjectAccessReviewSpec" => &[
            (1, "resourceAttributes", Msg("ResourceAttributes"), false),
            (2, "nonResourceAttributes", Msg("NonResourceAttributes"), false),
            (3, "user", Str, false),
            (4, "groups", Str, true),
            (5, "extra", MapList, false),
            (6, "uid", Str, false),
        ],
        "ResourceAttributes" => &[
            (1, "namespace", Str, false),
            (2, "verb", Str, false),
            (3, "group", Str, false),
            (4, "version", Str, false),
            (5, "resource", Str, false),
            (6, "subresource", Str, false),
            (7, "name", Str, false),
        ],
        "NonResourceAttributes" => &[(1, "path", Str, false), (2, "verb", Str, false)],
        "SelfSubjectRulesReview" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "spec", Msg("SelfSubjectRulesReviewSpec"), false),
        ],
        "SelfSubjectRulesReviewSpec" => &[(1, "namespace", Str, false)],
        "SelfSubjectReview" => &[(1, "metadata", Msg("ObjectMeta"), false)],
        "TokenReview" => {
            &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("TokenReviewSpec"), false)]
        }
        "TokenReviewSpec" => &[(1, "token", Str, false), (2, "audiences", Str, true)],
        "TokenRequest" => {
            &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("TokenRequestSpec"), false)]
        }
        "TokenRequestSpec" => &[
            (1, "audiences", Str, true),
            (3, "boundObjectRef", Msg("BoundObjectReference"), false),
            (4, "expirationSeconds", Int, false),
        ],
        "BoundObjectReference" => &[
            (1, "kind", Str, false),
            (2, "apiVersion", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
        ],
        "ConfigMap" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapStr, false),
            (3, "binaryData", MapBytes, false),
            (4, "immutable", Bool, false),
        ],
        "Secret" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "data", MapBytes, false),
            (3, "type", Str, false),
            (4, "stringData", MapStr, false),
            (5, "immutable", Bool, false),
        ],
        "ServiceAccount" => &[
            (1, "metadata", Msg("ObjectMeta"), false),
            (2, "secrets", Msg("ObjectReference"), true),
            (3, "imagePullSecrets", Msg("LocalObjectReference"), true),
            (4, "automountServiceAccountToken", Bool, false),
        ],
        "ObjectReference" => &[
            (1, "kind", Str, false),
            (2, "namespace", Str, false),
            (3, "name", Str, false),
            (4, "uid", Str, false),
            (5, "apiVersion", Str, false),
            (6, "resourceVersion", Str, false),
            (7, "fieldPath", Str, false),
        ],
        "LocalObjectReference" => &[(1, "name", Str, false)],
        "Deployment" => {
            &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("DeploymentSpec"), false)]
        }
        "Job" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("JobSpec"), false)],
        "Pod" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("PodSpec"), false)],
        "DeploymentSpec" => &[
            (1, "replicas", Int, false),
            (2, "selector", Msg("LabelSelector"), false),
            (3, "template", Msg("PodTemplateSpec"), false),
            (5, "minReadySeconds", Int, false),
            (6, "revisionHistoryLimit", Int, false),
            (7, "paused", Bool, false),
            (9, "progressDeadlineSeconds", Int, false),
        ],
        "JobSpec" => &[
            (1, "parallelism", Int, false),
            (2, "completions", Int, false),
            (3, "activeDeadlineSeconds", Int, false),
            (4, "selector", Msg("LabelSelector"), false),
            (5, "manualSelector", Bool, false),
            (6, "template", Msg("PodTemplateSpec"), false),
            (7, "backoffLimit", Int, false),
        ],
        "PodTemplateSpec" => &[(1, "metadata", Msg("ObjectMeta"), false), (2, "spec", Msg("PodSpec"), false)],
        "PodSpec" => &[
            (2, "containers", Msg("Container"), true),
            (3, "restartPolicy", Str, false),
            (4, "terminationGracePeriodSeconds", Int, false),
            (6, "dnsPolicy", Str, false),
            (7, "nodeSelector", MapStr, false),
            (8, "serviceAccountName", Str, false),
            (10, "nodeName", Str, false),
            (11, "hostNetwork", Bool, false),
            (20, "initContainers", Msg("Container"), true),
        ],
        "Container" => &[
            (1, "name", Str, false),
            (2, "image", Str, false),
            (3, "command", Str, true),
            (4, "args", Str, true),
            (5, "workingDir", Str, false),
            (6, "ports", Msg("ContainerPort"), true),
            (7, "env", Msg("EnvVar"), true),
            (14, "imagePullPolicy", Str, false),
        ],
        "ContainerPort" => &[
            (1, "name", Str, false),
            (2, "hostPort", Int, false),
            (3, "containerPort", Int, false),
            (4, "protocol", Str, false),
        ],
        "EnvVar" => &[(1, "name", Str, false), (2, "value", Str, false)],
        "ExtraValue" => &[(1, "items", Str, true)],
        // What client-go sends with a DELETE when it speaks protobuf.
        "DeleteOptions" => &[
            (1, "gracePeriodSeconds", Int, false),
            (2, "preconditions", Msg("Preconditions"), false),
            (3, "orphanDependents", Bool, false),
            (4, "propagationPolicy", Str, false),
            (5, "dryRun", Str, true),
        ],
        "Preconditions" => &[(1, "uid", Str, false), (2, "resourceVersion", Str, false)],
        "Time" => &[(1, "seconds", Int, false), (2, "nanos", Int, false)],
        _ => return None,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

fn malformed() -> ApiError {
    ApiError::bad_request("malformed protobuf body")
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i).ok_or_else(malformed)?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed())
    }
    fn bytes(&mut self) -> Result<&'a [u8], ApiError> {
        let n = self.varint()? as usize;
        let s = self.b.get(self.i..self.i.checked_add(n).ok_or_else(malformed)?).ok_or_else(malformed)?;
        self.i += n;
        Ok(s)
    }
    /// Next (field, wire type), or None at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, ApiError> {
        if self.i >= self.b.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }
    fn skip(&mut self, wire: u8) -> Result<(), ApiError> {
        match wire {
            0 => {
                self.varint()?;
            }
            1 => self.i += 8,
            2 => {
                self.bytes()?;
            }
            5 => self.i += 4,
            _ => return Err(malformed()),
        }
        if self.i > self.b.len() { Err(malformed()) } else { Ok(()) }
    }
}

fn text(b: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed())
}

fn map_entry(b: &[u8], value_ty: Ty) -> Result<(String, Value), ApiError> {
    let mut r = Reader { b, i: 0 };
    let (mut k, mut v) = (String::new(), Value::Null);
    while let Some((n, w)) = r.key()? {
        match (n, w) {
            (1, 2) => k = text(r.bytes()?)?,
            (2, 2) => {
                let raw = r.bytes()?;
                v = match value_ty {
                    MapStr => json!(text(raw)?),
                    MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                    _ => decode_message(raw, "ExtraValue")?["items"].clone(),
                };
            }
            (_, w) => r.skip(w)?,
        }
    }
    if v.is_null() {
        v = match value_ty {
            MapList => json!([]),
            _ => json!(""),
        };
    }
    Ok((k, v))
}

fn time(raw: &[u8]) -> Result<Value, ApiError> {
    let t = decode_message(raw, "Time")?;
    let secs = t["seconds"].as_i64().unwrap_or(0);
    if secs == 0 {
        return Ok(Value::Null);
    }
    Ok(jiff::Timestamp::from_second(secs).map(|t| json!(t.to_string())).unwrap_or(Value::Null))
}

fn decode_message(b: &[u8], message: &str) -> Result<Value, ApiError> {
    let fields = schema(message)
        .ok_or_else(|| ApiError::not_implemented(&format!("protobuf decoding of {message}")))?;
    let mut out = Map::new();
    let mut r = Reader { b, i: 0 };
    while let Some((n, wire)) = r.key()? {
        let Some(&(_, name, ty, repeated)) = fields.iter().find(|(num, ..)| *num == n) else {
            r.skip(wire)?;
            continue;
        };
        let v = match (ty, wire) {
            (Str, 2) => json!(text(r.bytes()?)?),
            (Int, 0) => json!(r.varint()? as i64),
            (Bool, 0) => json!(r.varint()? != 0),
            (Msg(m), 2) => decode_message(r.bytes()?, m)?,
            (Time, 2) => time(r.bytes()?)?,
            (MapStr | MapBytes | MapList, 2) => {
                let (k, v) = map_entry(r.bytes()?, ty)?;
                let m = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = m.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            (_, w) => {
                r.skip(w)?;
                continue;
            }
        };
        if repeated {
            if let Some(a) = out.entry(name).or_insert_with(|| json!([])).as_array_mut() {
                a.push(v);
            }
        } else {
            out.insert(name.to_string(), v);
        }
    }
    // Protobuf carries every scalar, JSON omits empty ones: drop empty strings and nulls.
    out.retain(|_, v| !(v.is_null() || v.as_str() == Some("")));
    Ok(Value::Object(out))
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` envelope into a JSON object with apiVersion/kind.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or_else(|| ApiError::bad_request("protobuf body without the k8s envelope"))?;
    let mut r = Reader { b: rest, i: 0 };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    while let Some((n, w)) = r.key()? {
        match (n, w) {
            (1, 2) => {
                let mut t = Reader { b: r.bytes()?, i: 0 };
                while let Some((tn, tw)) = t.key()? {
                    match (tn, tw) {
                        (1, 2) => api_version = text(t.bytes()?)?,
                        (2, 2) => kind = text(t.bytes()?)?,
                        (_, w) => t.skip(w)?,
                    }
                }
            }
            (2, 2) => raw = r.bytes()?,
            (_, w) => r.skip(w)?,
        }
    }
    if schema(&kind).is_none() || kind.is_empty() {
        return Err(ApiError::unsupported_media_type(
            &format!("application/vnd.kubernetes.protobuf (kind {kind:?} is not decoded by rancher-sim)"),
            &["application/json", "application/yaml"],
        ));
    }
    let mut v = decode_message(raw, &kind)?;
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_kubectl_namespace() {
        // `kubectl.1.33 create ns foo` sends exactly these bytes.
        let body: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x1b\x0a\x13\x0a\x03foo\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
        let v = decode(body).unwrap();
        assert_eq!(v["kind"], "Namespace");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["metadata"]["name"], "foo");
        assert!(v["metadata"].get("namespace").is_none());
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let body: &[u8] = b"k8s\x00\x0a\x14\x0a\x07apps/v1\x12\x09Deploymnt\x12\x00";
        assert_eq!(decode(body).unwrap_err().code, 415);
    }
}
