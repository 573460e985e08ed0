//! The VPC Lattice resource model, in the shapes and field names of the
//! Lattice API (version 2022-11-30): service networks, services, listeners,
//! rules, target groups, targets and the two kinds of association.
//!
//! A configuration file is a [`Config`]: the same shapes the Create* and
//! RegisterTargets operations take, with listeners nested in services, rules
//! in listeners and targets in target groups, and resources referring to each
//! other by name. The control API builds the same model.
//!
//! One latticed extension: `Service.vip` pins a service's VIP (otherwise the
//! lowest free one is allocated).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// A whole desired state.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Service networks.
    #[serde(default)]
    pub service_networks: Vec<ServiceNetwork>,
    /// Services, with their listeners.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Target groups, with their targets.
    #[serde(default)]
    pub target_groups: Vec<TargetGroup>,
    /// Which services are in which service networks.
    #[serde(default)]
    pub service_network_service_associations: Vec<ServiceNetworkServiceAssociation>,
    /// Which VPCs (network namespaces) are associated with which service networks.
    #[serde(default)]
    pub service_network_vpc_associations: Vec<ServiceNetworkVpcAssociation>,
    /// Access log subscriptions of services and service networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_log_subscriptions: Vec<AccessLogSubscription>,
    /// Auth policies of services and service networks (applied where the
    /// resource's auth type is AWS_IAM).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_policies: Vec<AuthPolicy>,
    /// Resource gateways: where resource traffic enters provider VPCs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_gateways: Vec<ResourceGateway>,
    /// Resource configurations: TCP resources behind the gateways.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_configurations: Vec<ResourceConfiguration>,
    /// Which resource configurations are in which service networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_network_resource_associations: Vec<ServiceNetworkResourceAssociation>,
}

/// `CreateResourceGateway` input (what the data path uses of it).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceGateway {
    /// Unique among resource gateways.
    pub name: String,
    /// The provider VPC: a network namespace name.
    pub vpc_identifier: String,
    /// The API's ARN (generated from the name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

/// `CreateResourceConfiguration` input (what the data path uses of it).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceConfiguration {
    /// Unique among resource configurations.
    pub name: String,
    /// SINGLE (the default), GROUP, CHILD or ARN.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Its gateway's name (none for a CHILD: its group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_gateway_identifier: Option<String>,
    /// A CHILD's group, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_configuration_group_identifier: Option<String>,
    /// Ports and ranges (`5432`, `8000-8100`); none for a CHILD.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_ranges: Vec<String>,
    /// What it reaches (none for a GROUP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_configuration_definition: Option<Definition>,
    /// A name clients use besides the generated one (with private DNS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_domain_name: Option<String>,
    /// The API's ARN (generated from the name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// Pins the VIP (otherwise the lowest one no service or resource
    /// holds). A resource's VIP is its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<Ipv4Addr>,
}

/// `CreateServiceNetworkResourceAssociation` input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceNetworkResourceAssociation {
    /// Service network name.
    pub service_network_identifier: String,
    /// Resource configuration name (SINGLE, GROUP or ARN).
    pub resource_configuration_identifier: String,
    /// Whether the configuration's `customDomainName` resolves too.
    #[serde(default)]
    pub private_dns_enabled: bool,
    /// The generated name of the resource in this association (the API
    /// gives it; a GROUP's children take it with their own id in place of
    /// the group's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// The association's id, for access logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// What a resource configuration reaches: one of its members.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definition {
    /// An address in the gateway's VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_resource: Option<IpResource>,
    /// A name resolved in the gateway's VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_resource: Option<DnsResource>,
    /// An ARN the inventory places.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn_resource: Option<ArnResource>,
}

/// `ipResource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpResource {
    /// IPv4 or IPv6 address.
    pub ip_address: String,
}

/// `dnsResource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsResource {
    /// The name.
    pub domain_name: String,
    /// IPV4, IPV6 or DUALSTACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_type: Option<String>,
}

/// `arnResource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArnResource {
    /// The ARN.
    pub arn: String,
}

/// `PutAuthPolicy` input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthPolicy {
    /// Name of the service or service network.
    pub resource_identifier: String,
    /// The policy: a JSON string, as the API takes it, or the document
    /// itself in a configuration file.
    pub policy: serde_json::Value,
}

impl AuthPolicy {
    /// The policy text.
    pub fn text(&self) -> String {
        match &self.policy {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// `CreateAccessLogSubscription` input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogSubscription {
    /// Name of the service or service network.
    pub resource_identifier: String,
    /// CloudWatch Logs log group, S3 bucket or Firehose stream ARN (see the
    /// README for the local files each maps to).
    pub destination_arn: String,
    /// A service network's: SERVICE (the default) or RESOURCE traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_network_log_type: Option<String>,
}

impl AccessLogSubscription {
    /// What may hold one subscription per resource, as AWS allows: the
    /// destination's type (`logs`, `s3`, `firehose`, the ARN's service)
    /// and the log type. The API and the file check it alike.
    pub fn slot<'a>(destination_arn: &'a str, log_type: Option<&'a str>) -> (&'a str, &'a str) {
        (
            destination_arn.split(':').nth(2).unwrap_or_default(),
            log_type.unwrap_or("SERVICE"),
        )
    }
}

/// `AuthType`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthType {
    /// No authentication.
    #[default]
    None,
    /// SigV4 and auth policies.
    AwsIam,
}

/// `CreateServiceNetwork` input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceNetwork {
    /// Name, 3-63 characters.
    pub name: String,
    /// Auth type.
    #[serde(default)]
    pub auth_type: AuthType,
    /// latticed extension: the ARN (the API sets it; config files get
    /// `arn:aws:vpc-lattice:REGION:ACCOUNT:servicenetwork/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

/// `CreateService` input plus its listeners.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// Name, 3-40 characters.
    pub name: String,
    /// Auth type.
    #[serde(default)]
    pub auth_type: AuthType,
    /// Custom domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_domain_name: Option<String>,
    /// A user-supplied certificate for HTTPS listeners:
    /// `arn:aws:acm:REGION:ACCOUNT:certificate/ID` names
    /// `STATE_DIR/certificates/ID/{chain.pem,key.pem}`. Without it, the
    /// local CA issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// latticed extension: the ARN (see `ServiceNetwork::arn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// latticed extension: the VIP to use, in 169.254.171.1-191. Services
    /// may share one when each has a `dnsName` or `customDomainName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<Ipv4Addr>,
    /// latticed extension: the service's DNS name (the API generates it as
    /// `{name}-{id}.{suffix}`); requests on a shared VIP are routed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// Listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// `ListenerProtocol`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListenerProtocol {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
    /// TLS passed through to TCP targets.
    TlsPassthrough,
}

/// `CreateListener` input plus its rules.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listener {
    /// Name, 3-63 characters.
    pub name: String,
    /// Protocol.
    pub protocol: ListenerProtocol,
    /// Port; defaults to 80 for HTTP and 443 otherwise, as in Lattice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Action when no rule matches.
    pub default_action: RuleAction,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// `RuleAction`: a union, exactly one member set.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleAction {
    /// Forward to target groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardAction>,
    /// Answer with a fixed status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_response: Option<FixedResponseAction>,
}

/// `ForwardAction`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForwardAction {
    /// 1 to 10 weighted target groups.
    pub target_groups: Vec<WeightedTargetGroup>,
}

/// `WeightedTargetGroup`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedTargetGroup {
    /// Target group name (or id).
    pub target_group_identifier: String,
    /// 0-999; default 1. Weight 0 receives nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// `FixedResponseAction`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedResponseAction {
    /// HTTP status, 100-599.
    pub status_code: u32,
}

/// `CreateRule` input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Name, 3-63 characters.
    pub name: String,
    /// 1-100, unique in the listener, lowest evaluated first.
    pub priority: u32,
    /// Conditions.
    #[serde(rename = "match")]
    pub match_: RuleMatch,
    /// Action.
    pub action: RuleAction,
}

/// `RuleMatch` (a union with one member, `httpMatch`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMatch {
    /// HTTP conditions.
    pub http_match: HttpMatch,
}

/// `HttpMatch`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// Method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_match: Option<PathMatch>,
    /// Header conditions, at most 5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub header_matches: Vec<HeaderMatch>,
}

/// `PathMatch`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    /// Exact or prefix.
    #[serde(rename = "match")]
    pub match_: PathMatchType,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
}

/// `PathMatchType` (a union).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatchType {
    /// Exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Path prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// `HeaderMatch`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name.
    pub name: String,
    /// How to compare.
    #[serde(rename = "match")]
    pub match_: HeaderMatchType,
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
}

/// `HeaderMatchType` (a union).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatchType {
    /// Whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Value prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Substring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

/// `TargetGroupType`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetGroupType {
    /// IP addresses in a VPC.
    Ip,
    /// Instances.
    Instance,
    /// A function.
    Lambda,
    /// An application load balancer.
    Alb,
}

/// `TargetGroupProtocol`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetGroupProtocol {
    /// HTTP.
    Http,
    /// HTTPS.
    Https,
    /// TCP.
    Tcp,
}

/// `CreateTargetGroup` input plus its registered targets.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetGroup {
    /// Name, 3-128 characters.
    pub name: String,
    /// Kind of targets.
    #[serde(rename = "type")]
    pub type_: TargetGroupType,
    /// Required for every type but LAMBDA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TargetGroupConfig>,
    /// Registered targets.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// latticed extension: the ARN (see `ServiceNetwork::arn`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

/// `TargetGroupConfig`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetGroupConfig {
    /// Default target port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Target protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TargetGroupProtocol>,
    /// HTTP1, HTTP2 or GRPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The VPC: a network namespace name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_identifier: Option<String>,
    /// IPV4 or IPV6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address_type: Option<String>,
    /// Health check configuration (Lattice's `HealthCheckConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// LAMBDA groups: event structure `V1` (default) or `V2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_event_structure_version: Option<String>,
}

/// `HealthCheckConfig`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Whether checks run (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// HTTP or HTTPS (default: the group's protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<TargetGroupProtocol>,
    /// HTTP1 or HTTP2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Port (default: the target's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Seconds between checks, 5-300 (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_interval_seconds: Option<u32>,
    /// Seconds a check may take, 1-120 (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_timeout_seconds: Option<u32>,
    /// Successes to become healthy, 2-10 (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold_count: Option<u32>,
    /// Failures to become unhealthy, 2-10 (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold_count: Option<u32>,
    /// Status codes that count as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<Matcher>,
}

/// `Matcher`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Matcher {
    /// `200`, `200,204` or `200-299`.
    pub http_code: String,
}

/// `Target`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// IP address (IP groups), instance id, function ARN or ALB ARN.
    pub id: String,
    /// Port; defaults to the group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// `CreateServiceNetworkServiceAssociation` input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceNetworkServiceAssociation {
    /// Service network name.
    pub service_network_identifier: String,
    /// Service name.
    pub service_identifier: String,
}

/// `CreateServiceNetworkVpcAssociation` input.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceNetworkVpcAssociation {
    /// Service network name.
    pub service_network_identifier: String,
    /// The VPC: a network namespace name (5-50 characters).
    pub vpc_identifier: String,
    /// Accepted and stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_ids: Vec<String>,
}
