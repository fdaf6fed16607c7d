//! Between the SDK's types and the crate's: SDK errors as [`EksError`]s naming the operation, and
//! the answers' clusters, node groups and updates.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_eks::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_eks::types as aws;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::EksError;
use super::types::{Cluster, ClusterStatus, Nodegroup, NodegroupStatus, Scaling, Update, UpdateStatus};

/// An SDK error as an [`EksError`] naming `operation`.
pub(super) fn sdk_err<E>(operation: &'static str, e: SdkError<E, HttpResponse>) -> EksError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &e {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            match ctx.err().code() {
                Some(code) => {
                    EksError::from_code(operation, status, code, ctx.err().message().unwrap_or_default())
                }
                // Not EKS's JSON error (a proxy's or an older signature checker's XML `<Error>`): its
                // `<Code>` and `<Message>`, else the status alone.
                None => {
                    let body = ctx.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                    let code = xml_text(&body, "Code").unwrap_or_default();
                    let message = xml_text(&body, "Message").unwrap_or_else(|| format!("HTTP {status}"));
                    EksError::from_code(operation, status, &code, &message)
                }
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            EksError::Transport { operation, message: DisplayErrorContext(&e).to_string() }
        }
        SdkError::ConstructionFailure(_) => {
            EksError::Config(format!("{operation}: the request cannot be made: {}", DisplayErrorContext(&e)))
        }
        _ => EksError::InvalidResponse { operation, reason: DisplayErrorContext(&e).to_string() },
    }
}

/// The text of the first `<tag>…</tag>` in `body`.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    let text = body[start..start + len].trim();
    (!text.is_empty()).then(|| text.chars().take(512).collect())
}

pub(super) fn missing(operation: &'static str, what: &str) -> EksError {
    EksError::InvalidResponse { operation, reason: format!("no {what} in the answer") }
}

pub(super) fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

pub(super) fn tags(t: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!t.is_empty()).then(|| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// `types` switched on, every other log type switched off (so a later change can turn some off).
pub(super) fn logging(types: Option<&Vec<String>>) -> Option<aws::Logging> {
    let on: Vec<aws::LogType> = types?.iter().map(|t| aws::LogType::from(t.as_str())).collect();
    let off: Vec<aws::LogType> =
        super::LOG_TYPES.iter().map(|t| aws::LogType::from(*t)).filter(|t| !on.contains(t)).collect();
    let mut setups = Vec::new();
    if !on.is_empty() {
        setups.push(aws::LogSetup::builder().set_types(Some(on)).enabled(true).build());
    }
    if !off.is_empty() {
        setups.push(aws::LogSetup::builder().set_types(Some(off)).enabled(false).build());
    }
    Some(aws::Logging::builder().set_cluster_logging(Some(setups)).build())
}

pub(super) fn scaling_config(s: Scaling) -> aws::NodegroupScalingConfig {
    aws::NodegroupScalingConfig::builder()
        .set_min_size(s.min_size)
        .set_max_size(s.max_size)
        .set_desired_size(s.desired_size)
        .build()
}

pub(super) fn map(m: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
}

pub(super) fn cluster(c: &aws::Cluster) -> Cluster {
    let vpc = c.resources_vpc_config();
    let logging_types = c
        .logging()
        .map(|l| {
            l.cluster_logging()
                .iter()
                .filter(|s| s.enabled() == Some(true))
                .flat_map(|s| s.types().iter().map(|t| t.as_str().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Cluster {
        name: c.name().unwrap_or_default().to_owned(),
        arn: c.arn().unwrap_or_default().to_owned(),
        status: ClusterStatus::parse(c.status().map(|s| s.as_str()).unwrap_or_default()),
        version: c.version().map(str::to_owned),
        platform_version: c.platform_version().map(str::to_owned),
        endpoint: c.endpoint().filter(|e| !e.is_empty()).map(str::to_owned),
        certificate_authority_data: c.certificate_authority().and_then(|a| a.data()).map(str::to_owned),
        role_arn: c.role_arn().map(str::to_owned),
        subnets: vpc.map(|v| v.subnet_ids().to_vec()).unwrap_or_default(),
        security_groups: vpc.map(|v| v.security_group_ids().to_vec()).unwrap_or_default(),
        public_access: vpc.map(|v| v.endpoint_public_access()),
        private_access: vpc.map(|v| v.endpoint_private_access()),
        public_access_sources: vpc.map(|v| v.public_access_cidrs().to_vec()).unwrap_or_default(),
        logging_types,
        tags: map(c.tags()),
    }
}

pub(super) fn nodegroup(n: &aws::Nodegroup) -> Nodegroup {
    let s = n.scaling_config();
    Nodegroup {
        name: n.nodegroup_name().unwrap_or_default().to_owned(),
        cluster_name: n.cluster_name().unwrap_or_default().to_owned(),
        status: NodegroupStatus::parse(n.status().map(|s| s.as_str()).unwrap_or_default()),
        version: n.version().map(str::to_owned),
        release_version: n.release_version().map(str::to_owned),
        instance_types: n.instance_types().to_vec(),
        disk_size: n.disk_size(),
        scaling: Scaling {
            min_size: s.and_then(|s| s.min_size()),
            max_size: s.and_then(|s| s.max_size()),
            desired_size: s.and_then(|s| s.desired_size()),
        },
        labels: map(n.labels()),
        tags: map(n.tags()),
        node_role: n.node_role().map(str::to_owned),
        subnets: n.subnets().to_vec(),
        health_issues: n
            .health()
            .map(|h| {
                h.issues()
                    .iter()
                    .map(|i| {
                        format!(
                            "{}: {}",
                            i.code().map(|c| c.as_str()).unwrap_or_default(),
                            i.message().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub(super) fn update(u: &aws::Update) -> Update {
    Update {
        id: u.id().unwrap_or_default().to_owned(),
        status: UpdateStatus::parse(u.status().map(|s| s.as_str()).unwrap_or_default()),
        kind: u.r#type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        errors: u
            .errors()
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.error_code().map(|c| c.as_str()).unwrap_or_default(),
                    e.error_message().unwrap_or_default()
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xml_error_gives_its_code_and_message() {
        let body = "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code>\
                    <Message>The request signature we calculated does not match</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_text(body, "Code").as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(
            xml_text(body, "Message").as_deref(),
            Some("The request signature we calculated does not match")
        );
        assert_eq!(xml_text("<Code></Code>", "Code"), None);
        assert_eq!(xml_text("not xml", "Code"), None);
    }
}
