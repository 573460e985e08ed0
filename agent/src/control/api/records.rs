//! The API's stored records: one type per resource kind, in the shape of
//! its Get* response plus a few internal members (`_seq` creation order,
//! `_vip`, `_targets`) that the engine's projection leaves out of answers.
//!
//! Handlers read and build these types, never loose JSON: a field is
//! there or the record did not load. JSON exists only at the edges, where
//! the store reads and writes bytes and where an answer is projected onto
//! the operation's output shape. Actions, matches and health checks reuse
//! the configuration model's types, so the API and the config file share
//! one definition of each.

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::control::{
    model::{self as cfg, AuthType},
    plan::FieldError,
};

/// Resource kinds: id prefix, ARN path, resource type in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// sn-
    ServiceNetwork,
    /// svc-
    Service,
    /// listener-
    Listener,
    /// rule-
    Rule,
    /// tg-
    TargetGroup,
    /// snsa-
    SnService,
    /// snva-
    SnVpc,
    /// als-
    AccessLog,
    /// rgw-
    ResourceGateway,
    /// rcfg-
    ResourceConfiguration,
    /// snra-
    SnResource,
    /// dv-
    DomainVerification,
}

/// Every kind with an id of its own.
const KINDS: [Kind; 12] = [
    Kind::ServiceNetwork,
    Kind::Service,
    Kind::Listener,
    Kind::Rule,
    Kind::TargetGroup,
    Kind::SnService,
    Kind::SnVpc,
    Kind::AccessLog,
    Kind::ResourceGateway,
    Kind::ResourceConfiguration,
    Kind::SnResource,
    Kind::DomainVerification,
];

impl Kind {
    /// The prefix of its ids.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::ServiceNetwork => "sn-",
            Self::Service => "svc-",
            Self::Listener => "listener-",
            Self::Rule => "rule-",
            Self::TargetGroup => "tg-",
            Self::SnService => "snsa-",
            Self::SnVpc => "snva-",
            Self::AccessLog => "als-",
            Self::ResourceGateway => "rgw-",
            Self::ResourceConfiguration => "rcfg-",
            Self::SnResource => "snra-",
            Self::DomainVerification => "dv-",
        }
    }

    /// Its `resourceType` in errors.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::ServiceNetwork => "SERVICE_NETWORK",
            Self::Service => "SERVICE",
            Self::Listener => "LISTENER",
            Self::Rule => "RULE",
            Self::TargetGroup => "TARGET_GROUP",
            Self::SnService => "SERVICE_NETWORK_SERVICE_ASSOCIATION",
            Self::SnVpc => "SERVICE_NETWORK_VPC_ASSOCIATION",
            Self::AccessLog => "ACCESS_LOG_SUBSCRIPTION",
            Self::ResourceGateway => "RESOURCE_GATEWAY",
            Self::ResourceConfiguration => "RESOURCE_CONFIGURATION",
            Self::SnResource => "SERVICE_NETWORK_RESOURCE_ASSOCIATION",
            Self::DomainVerification => "DOMAIN_VERIFICATION",
        }
    }

    /// The kind whose ids `key` starts with.
    pub fn of_key(key: &str) -> Option<Self> {
        KINDS.iter().copied().find(|k| key.starts_with(k.prefix()))
    }
}

/// Tags, as the API takes and answers them.
pub type Tags = BTreeMap<String, String>;

/// What every resource with an id has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Id (the kind's prefix and 17 hex digits).
    pub id: String,
    /// ARN.
    pub arn: String,
    /// When it was created (ISO 8601).
    pub created_at: String,
    /// When it last changed.
    pub last_updated_at: String,
    /// Creation order, for lists.
    #[serde(rename = "_seq")]
    pub seq: u64,
    /// Tags, if any were given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
}

/// A resource with an id: one of the kinds.
pub trait Resource: Serialize + Clone + Sized + 'static {
    /// Its kind.
    const KIND: Kind;
    /// Id, ARN, times, order, tags.
    fn meta(&self) -> &Meta;
    /// See [`Resource::meta`].
    fn meta_mut(&mut self) -> &mut Meta;
    /// This kind's record in `r`, if it is one.
    fn of(r: &Record) -> Option<&Self>;
    /// As a record.
    fn into_record(self) -> Record;

    /// Its id.
    fn id(&self) -> &str {
        &self.meta().id
    }
    /// Its ARN.
    fn arn(&self) -> &str {
        &self.meta().arn
    }
    /// A copy marked changed at `now`.
    fn touched(&self, now: &str) -> Self {
        let mut r = self.clone();
        now.clone_into(&mut r.meta_mut().last_updated_at);
        r
    }
    /// As JSON, for an answer (internal members are projected away).
    fn to_value(&self) -> Value {
        json(self)
    }
}

/// A record as JSON. A record is strings, numbers and string-keyed maps:
/// it always has a JSON form.
pub fn json<T: Serialize>(record: &T) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

/// The [`Resource`] impl of kind `$kind`'s record type.
macro_rules! resource {
    ($kind:ident) => {
        impl Resource for $kind {
            const KIND: Kind = Kind::$kind;
            fn meta(&self) -> &Meta {
                &self.meta
            }
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
            fn of(r: &Record) -> Option<&Self> {
                match r {
                    Record::$kind(x) => Some(x),
                    _ => None,
                }
            }
            fn into_record(self) -> Record {
                Record::$kind(self)
            }
        }
    };
}

/// `sharingConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SharingConfig {
    /// Whether the network may be shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `DnsEntry`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsEntry {
    /// The service's name under latticed's DNS suffix.
    pub domain_name: String,
    /// Not used by latticed; kept if a record has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted_zone_id: Option<String>,
}

/// A service network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceNetwork {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// Unique among service networks.
    pub name: String,
    /// NONE or AWS_IAM.
    pub auth_type: AuthType,
    /// As given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing_config: Option<SharingConfig>,
}

resource!(ServiceNetwork);

/// A service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// Unique among services.
    pub name: String,
    /// NONE or AWS_IAM.
    pub auth_type: AuthType,
    /// ACTIVE.
    pub status: String,
    /// Its VIP (shared once each service has had one of its own).
    #[serde(rename = "_vip")]
    pub vip: Ipv4Addr,
    /// Its DNS name.
    pub dns_entry: DnsEntry,
    /// A second name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_domain_name: Option<String>,
    /// The certificate for HTTPS listeners, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
}

resource!(Service);

/// A listener of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// Unique within its service.
    pub name: String,
    /// HTTP, HTTPS or TLS_PASSTHROUGH.
    pub protocol: cfg::ListenerProtocol,
    /// Unique within its service.
    pub port: u32,
    /// Target group ids, not names or ARNs.
    pub default_action: cfg::RuleAction,
    /// Its service.
    pub service_id: String,
    /// Its service's ARN.
    pub service_arn: String,
}

resource!(Listener);

/// A rule of a listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// Unique within its listener.
    pub name: String,
    /// Unique within its listener.
    pub priority: u32,
    /// What requests it takes.
    #[serde(rename = "match")]
    pub match_: cfg::RuleMatch,
    /// Target group ids, not names or ARNs.
    pub action: cfg::RuleAction,
    /// Always false: a listener's default is its `defaultAction`.
    pub is_default: bool,
    /// Its listener.
    pub listener_id: String,
    /// Its listener's service.
    pub service_id: String,
}

resource!(Rule);

/// A target group and its registered targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroup {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// Unique among target groups.
    pub name: String,
    /// IP, INSTANCE, LAMBDA or ALB.
    #[serde(rename = "type")]
    pub type_: cfg::TargetGroupType,
    /// LAMBDA groups hold only the event structure version.
    pub config: cfg::TargetGroupConfig,
    /// ACTIVE.
    pub status: String,
    /// Registered targets, in order of registration.
    #[serde(rename = "_targets")]
    pub targets: Vec<cfg::Target>,
}

resource!(TargetGroup);

/// A service in a service network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnService {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// ACTIVE.
    pub status: String,
    /// The account that made it.
    pub created_by: String,
    /// The network.
    pub service_network_id: String,
    /// Its ARN.
    pub service_network_arn: String,
    /// Its name.
    pub service_network_name: String,
    /// The service.
    pub service_id: String,
    /// Its ARN.
    pub service_arn: String,
    /// Its name.
    pub service_name: String,
    /// The service's custom name, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_domain_name: Option<String>,
    /// The service's DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_entry: Option<DnsEntry>,
}

resource!(SnService);

/// A VPC (network namespace) in a service network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnVpc {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// ACTIVE.
    pub status: String,
    /// The account that made it.
    pub created_by: String,
    /// The namespace.
    pub vpc_id: String,
    /// Security groups, as given.
    pub security_group_ids: Vec<String>,
    /// The network.
    pub service_network_id: String,
    /// Its ARN.
    pub service_network_arn: String,
    /// Its name.
    pub service_network_name: String,
}

resource!(SnVpc);

/// Where a service network or a service logs its requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// The network or service.
    pub resource_id: String,
    /// Its ARN.
    pub resource_arn: String,
    /// A destination latticed writes (checked when it was given).
    pub destination_arn: String,
    /// SERVICE or RESOURCE, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_network_log_type: Option<String>,
}

resource!(AccessLog);

/// A resource gateway: where a provider VPC lets resource traffic in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGateway {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// Unique among resource gateways.
    pub name: String,
    /// The provider VPC (a namespace).
    pub vpc_id: String,
    /// As given (kept and returned).
    pub subnet_ids: Vec<String>,
    /// As given (kept and returned).
    pub security_group_ids: Vec<String>,
    /// IPV4, IPV6 or DUALSTACK.
    pub ip_address_type: String,
    /// As given, or Lattice's default (16) for IPV4 and DUALSTACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_addresses_per_eni: Option<u32>,
    /// IN_VPC or PUBLIC, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_config_dns_resolution: Option<String>,
    /// ACTIVE.
    pub status: String,
}

resource!(ResourceGateway);

pub use crate::control::model::Definition;

/// A resource configuration: a TCP resource (or a group of them) behind a
/// resource gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceConfiguration {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// Unique among resource configurations.
    pub name: String,
    /// SINGLE, GROUP, CHILD or ARN.
    #[serde(rename = "type")]
    pub type_: String,
    /// Its gateway (a CHILD's is its group's).
    pub resource_gateway_id: String,
    /// A CHILD's group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_configuration_group_id: Option<String>,
    /// Ports or ranges (`5432`, `8000-8100`); a CHILD's are its group's.
    #[serde(default)]
    pub port_ranges: Vec<String>,
    /// TCP.
    pub protocol: String,
    /// What it reaches (none for a GROUP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_configuration_definition: Option<Definition>,
    /// A name clients use besides the generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_domain_name: Option<String>,
    /// A GROUP's domain, under which its children's names fall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_domain: Option<String>,
    /// May be associated with a network that is shared.
    pub allow_association_to_shareable_service_network: bool,
    /// The domain verification of its custom domain name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_verification_id: Option<String>,
    /// Its ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_verification_arn: Option<String>,
    /// ACTIVE.
    pub status: String,
    /// Always false: latticed manages none.
    pub amazon_managed: bool,
    /// Its VIP, its own (no service or other resource has it): a resource's
    /// ports cannot share an address with a service's listeners. None for a
    /// GROUP, whose children have one each.
    #[serde(rename = "_vip", default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<Ipv4Addr>,
}

resource!(ResourceConfiguration);

/// A resource configuration in a service network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnResource {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// ACTIVE.
    pub status: String,
    /// The account that made it.
    pub created_by: String,
    /// Whether the configuration's custom domain name resolves in the
    /// network's VPCs.
    pub private_dns_enabled: bool,
    /// The generated name.
    pub dns_entry: DnsEntry,
    /// The custom domain name, when private DNS is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns_entry: Option<DnsEntry>,
    /// The network.
    pub service_network_id: String,
    /// Its ARN.
    pub service_network_arn: String,
    /// Its name.
    pub service_network_name: String,
    /// The configuration.
    pub resource_configuration_id: String,
    /// Its ARN.
    pub resource_configuration_arn: String,
    /// Its name.
    pub resource_configuration_name: String,
    /// Always false.
    pub is_managed_association: bool,
}

resource!(SnResource);

/// A domain verification: proof, by a TXT record, that its owner controls
/// a domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainVerification {
    /// Id, ARN, times, order, tags.
    #[serde(flatten)]
    pub meta: Meta,
    /// The domain.
    pub domain_name: String,
    /// PENDING, VERIFIED or VERIFICATION_TIMED_OUT.
    pub status: String,
    /// The TXT record to publish.
    pub txt_method_config: TxtMethod,
    /// When the record was last found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_time: Option<String>,
}

resource!(DomainVerification);

/// `txtMethodConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TxtMethod {
    /// The record's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// The auth policy of a service network or service (key
/// `authpolicy/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthPolicy {
    /// The policy document, as given (it parsed when it was put).
    pub policy: String,
    /// When it was first put.
    pub created_at: String,
    /// When it last changed.
    pub last_updated_at: String,
    /// The network or service.
    pub resource_id: String,
}

/// The resource policy of a resource (key `resourcepolicy/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourcePolicy {
    /// The policy document, as given.
    pub policy: String,
}

/// A tag as RAM takes and answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RamTag {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// A RAM resource share (key `ram/share/{uuid}`), in the shape of RAM's
/// `ResourceShare` plus its associations, which RAM answers by other
/// operations. Times are seconds since the epoch, as RAM's are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// ARN (`arn:aws:ram:REGION:OWNER:resource-share/UUID`).
    pub resource_share_arn: String,
    /// Name.
    pub name: String,
    /// The account that owns it and the resources in it.
    pub owning_account_id: String,
    /// Whether accounts outside the owner's organisation may be principals.
    pub allow_external_principals: bool,
    /// `ACTIVE`.
    pub status: String,
    /// `STANDARD`.
    pub feature_set: String,
    /// Created.
    pub creation_time: f64,
    /// Last changed.
    pub last_updated_time: f64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<RamTag>,
    /// Creation order.
    #[serde(rename = "_seq")]
    pub seq: u64,
    /// Shared resources, by ARN.
    #[serde(rename = "_resources", default)]
    pub resources: BTreeMap<String, ShareMember>,
    /// Principals (account ids, organisation ARNs).
    #[serde(rename = "_principals", default)]
    pub principals: BTreeMap<String, ShareMember>,
    /// The permission for each resource type
    /// (`vpc-lattice:ServiceNetwork`), when not the AWS-managed default.
    #[serde(rename = "_permissions", default)]
    pub permissions: BTreeMap<String, PermissionRef>,
}

/// A resource or principal of a share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareMember {
    /// `ASSOCIATED`, or `ASSOCIATING` while a principal's invitation is
    /// pending.
    pub status: String,
    /// Associated.
    pub creation_time: f64,
    /// Last changed.
    pub last_updated_time: f64,
    /// A principal outside the owner's organisation.
    #[serde(default)]
    pub external: bool,
    /// The invitation an external account principal was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<Invitation>,
}

/// An invitation to a share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    /// ARN (`arn:aws:ram:REGION:SENDER:resource-share-invitation/UUID`).
    pub arn: String,
    /// `PENDING`, `ACCEPTED` or `REJECTED`.
    pub status: String,
    /// Sent.
    pub timestamp: f64,
}

/// A share's use of a permission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRef {
    /// The permission's ARN.
    pub arn: String,
    /// The version in use.
    pub version: u32,
}

/// A customer-managed RAM permission (key
/// `ram/permission/{account}/{name}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// ARN (`arn:aws:ram:REGION:OWNER:permission/NAME`).
    pub arn: String,
    /// Name.
    pub name: String,
    /// `vpc-lattice:ServiceNetwork` or `vpc-lattice:Service`.
    pub resource_type: String,
    /// The version new shares use.
    pub default_version: u32,
    /// Versions by number.
    pub versions: BTreeMap<u32, PermissionVersion>,
    /// Created.
    pub creation_time: f64,
    /// Last changed.
    pub last_updated_time: f64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<RamTag>,
    /// Creation order.
    #[serde(rename = "_seq")]
    pub seq: u64,
}

/// One version of a permission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionVersion {
    /// The `vpc-lattice` actions it allows (as written: may hold `*`).
    pub actions: Vec<String>,
    /// The policy template as given.
    pub policy_template: String,
    /// Created.
    pub creation_time: f64,
}

/// Any stored record. It is written as the record it holds (the store key
/// tells the kind); it is read by [`Record::from_stored`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    /// sn-
    ServiceNetwork(ServiceNetwork),
    /// svc-
    Service(Service),
    /// listener-
    Listener(Listener),
    /// rule-
    Rule(Rule),
    /// tg-
    TargetGroup(TargetGroup),
    /// snsa-
    SnService(SnService),
    /// snva-
    SnVpc(SnVpc),
    /// als-
    AccessLog(AccessLog),
    /// rgw-
    ResourceGateway(ResourceGateway),
    /// rcfg-
    ResourceConfiguration(ResourceConfiguration),
    /// snra-
    SnResource(SnResource),
    /// dv-
    DomainVerification(DomainVerification),
    /// authpolicy/
    AuthPolicy(AuthPolicy),
    /// resourcepolicy/
    ResourcePolicy(ResourcePolicy),
    /// ram/share/
    Share(Share),
    /// ram/permission/
    Permission(Permission),
}

/// Key prefixes of the records that have no id of their own.
pub const AUTH_POLICY: &str = "authpolicy/";
/// See [`AUTH_POLICY`].
pub const RESOURCE_POLICY: &str = "resourcepolicy/";
/// RAM's resource shares, by the UUID of their ARN.
pub const SHARE: &str = "ram/share/";
/// RAM's customer-managed permissions, by account and name.
pub const PERMISSION: &str = "ram/permission/";

/// `v` as a `T`, or an error naming the record and the path of the field
/// that is missing or of the wrong shape.
fn typed<T: serde::de::DeserializeOwned>(key: &str, v: Value) -> Result<T, FieldError> {
    crate::control::deserialize_at(v).map_err(|e| FieldError {
        field: if e.path.is_empty() {
            format!("stored record {key}")
        } else {
            format!("stored record {key}: {}", e.path)
        },
        reason: e.reason,
    })
}

/// `$e` of the resource with an id in `$r` (bound to `$x`), or `$none`
/// for a policy.
macro_rules! each {
    ($r:expr, $x:ident => $e:expr, $none:expr) => {
        match $r {
            Record::ServiceNetwork($x) => $e,
            Record::Service($x) => $e,
            Record::Listener($x) => $e,
            Record::Rule($x) => $e,
            Record::TargetGroup($x) => $e,
            Record::SnService($x) => $e,
            Record::SnVpc($x) => $e,
            Record::AccessLog($x) => $e,
            Record::ResourceGateway($x) => $e,
            Record::ResourceConfiguration($x) => $e,
            Record::SnResource($x) => $e,
            Record::DomainVerification($x) => $e,
            Record::AuthPolicy(_)
            | Record::ResourcePolicy(_)
            | Record::Share(_)
            | Record::Permission(_) => $none,
        }
    };
}

impl Record {
    /// The record stored under `key`. The store holds only what the model
    /// validated, so a record that does not fit its type is a broken store:
    /// an error naming the record and the field, never a default.
    pub fn from_stored(key: &str, v: Value) -> Result<Self, FieldError> {
        if key.starts_with(AUTH_POLICY) {
            return typed(key, v).map(Self::AuthPolicy);
        }
        if key.starts_with(RESOURCE_POLICY) {
            return typed(key, v).map(Self::ResourcePolicy);
        }
        if key.starts_with(SHARE) {
            return typed(key, v).map(Self::Share);
        }
        if key.starts_with(PERMISSION) {
            return typed(key, v).map(Self::Permission);
        }
        Ok(match Kind::of_key(key) {
            Some(Kind::ServiceNetwork) => Self::ServiceNetwork(typed(key, v)?),
            Some(Kind::Service) => Self::Service(typed(key, v)?),
            Some(Kind::Listener) => Self::Listener(typed(key, v)?),
            Some(Kind::Rule) => Self::Rule(typed(key, v)?),
            Some(Kind::TargetGroup) => Self::TargetGroup(typed(key, v)?),
            Some(Kind::SnService) => Self::SnService(typed(key, v)?),
            Some(Kind::SnVpc) => Self::SnVpc(typed(key, v)?),
            Some(Kind::AccessLog) => Self::AccessLog(typed(key, v)?),
            Some(Kind::ResourceGateway) => Self::ResourceGateway(typed(key, v)?),
            Some(Kind::ResourceConfiguration) => Self::ResourceConfiguration(typed(key, v)?),
            Some(Kind::SnResource) => Self::SnResource(typed(key, v)?),
            Some(Kind::DomainVerification) => Self::DomainVerification(typed(key, v)?),
            None => {
                return Err(FieldError {
                    field: format!("stored record {key}"),
                    reason: "is of no kind latticed knows".into(),
                })
            }
        })
    }

    /// Creation order (policies, which have none, first).
    pub fn seq(&self) -> u64 {
        match self {
            Self::Share(x) => x.seq,
            Self::Permission(x) => x.seq,
            _ => each!(self, x => x.meta.seq, 0),
        }
    }

    /// The ARN (policies have none).
    pub fn arn(&self) -> &str {
        each!(self, x => x.meta.arn.as_str(), "")
    }

    /// The tags of a resource with an id.
    pub fn tags_mut(&mut self) -> Option<&mut Option<Tags>> {
        each!(self, x => Some(&mut x.meta.tags), None)
    }

    /// The name that is unique among its kind, for the kinds that have one.
    pub fn unique_name(&self) -> Option<&str> {
        match self {
            Self::ServiceNetwork(x) => Some(&x.name),
            Self::Service(x) => Some(&x.name),
            Self::TargetGroup(x) => Some(&x.name),
            Self::ResourceGateway(x) => Some(&x.name),
            Self::ResourceConfiguration(x) => Some(&x.name),
            _ => None,
        }
    }

    /// The ids of the records it hangs under (VPCs as `vpc:NAME`): what
    /// deleting or listing by parent finds it by.
    pub fn parents(&self) -> Vec<String> {
        let vpc = |v: &str| format!("vpc:{v}");
        match self {
            Self::Listener(x) => vec![x.service_id.clone()],
            Self::Rule(x) => vec![x.listener_id.clone(), x.service_id.clone()],
            Self::SnService(x) => vec![x.service_network_id.clone(), x.service_id.clone()],
            Self::SnVpc(x) => vec![x.service_network_id.clone(), vpc(&x.vpc_id)],
            Self::AccessLog(x) => vec![x.resource_id.clone()],
            Self::ResourceGateway(x) => vec![vpc(&x.vpc_id)],
            Self::ResourceConfiguration(x) => std::iter::once(x.resource_gateway_id.clone())
                .chain(x.resource_configuration_group_id.clone())
                .collect(),
            Self::SnResource(x) => vec![
                x.service_network_id.clone(),
                x.resource_configuration_id.clone(),
            ],
            Self::TargetGroup(x) => x
                .config
                .vpc_identifier
                .as_deref()
                .map(vpc)
                .into_iter()
                .collect(),
            Self::ServiceNetwork(_)
            | Self::Service(_)
            | Self::DomainVerification(_)
            | Self::AuthPolicy(_)
            | Self::ResourcePolicy(_)
            | Self::Share(_)
            | Self::Permission(_) => vec![],
        }
    }

    /// The actions of a listener or rule.
    pub fn action(&self) -> Option<&cfg::RuleAction> {
        match self {
            Self::Listener(x) => Some(&x.default_action),
            Self::Rule(x) => Some(&x.action),
            _ => None,
        }
    }

    /// The record as the store keeps it and as answers start from.
    pub fn to_value(&self) -> Value {
        json(self)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(id: &str) -> Value {
        json!({"id": id, "arn": format!("arn:aws:vpc-lattice:us-east-1:111122223333:x/{id}"),
            "createdAt": "2026-11-01T00:00:00.000Z", "lastUpdatedAt": "2026-11-01T00:00:00.000Z",
            "_seq": 7})
    }

    fn with(id: &str, own: Value) -> Value {
        let mut v = meta(id);
        for (k, x) in own.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    /// Stores written before records were typed hold JSON as the handlers
    /// then built it (a target without a port as `"port": null`, tags as
    /// given); every kind of it loads, and writing it back and loading
    /// again gives the same record.
    #[test]
    fn records_written_as_json_load_and_round_trip() {
        let rows = [
            (
                "sn-1",
                with(
                    "sn-1",
                    json!({"name": "net", "authType": "NONE", "tags": {"a": "b"}}),
                ),
            ),
            (
                "svc-1",
                with(
                    "svc-1",
                    json!({"name": "shop", "authType": "AWS_IAM", "status": "ACTIVE",
                "_vip": "169.254.171.1", "dnsEntry": {"domainName": "shop-1.example"}}),
                ),
            ),
            (
                "listener-1",
                with(
                    "listener-1",
                    json!({"name": "l", "protocol": "HTTP", "port": 80,
                "defaultAction": {"forward": {"targetGroups": [{"targetGroupIdentifier": "tg-1", "weight": 1}]}},
                "serviceId": "svc-1", "serviceArn": "arn"}),
                ),
            ),
            (
                "rule-1",
                with(
                    "rule-1",
                    json!({"name": "r", "priority": 1,
                "match": {"httpMatch": {"method": "GET"}},
                "action": {"fixedResponse": {"statusCode": 404}}, "isDefault": false,
                "listenerId": "listener-1", "serviceId": "svc-1"}),
                ),
            ),
            (
                "tg-1",
                with(
                    "tg-1",
                    json!({"name": "g", "type": "IP", "status": "ACTIVE",
                "config": {"port": 8080, "protocol": "HTTP", "vpcIdentifier": "vpc-aa",
                    "ipAddressType": "IPV4", "protocolVersion": "HTTP1"},
                "_targets": [{"id": "10.0.0.1", "port": 8080}, {"id": "10.0.0.2", "port": null}]}),
                ),
            ),
            (
                "snsa-1",
                with(
                    "snsa-1",
                    json!({"status": "ACTIVE", "createdBy": "111122223333",
                "serviceNetworkId": "sn-1", "serviceNetworkArn": "a", "serviceNetworkName": "net",
                "serviceId": "svc-1", "serviceArn": "b", "serviceName": "shop",
                "dnsEntry": {"domainName": "shop-1.example"}}),
                ),
            ),
            (
                "snva-1",
                with(
                    "snva-1",
                    json!({"status": "ACTIVE", "createdBy": "111122223333",
                "vpcId": "vpc-aa", "securityGroupIds": [], "serviceNetworkId": "sn-1",
                "serviceNetworkArn": "a", "serviceNetworkName": "net"}),
                ),
            ),
            (
                "als-1",
                with(
                    "als-1",
                    json!({"resourceId": "sn-1", "resourceArn": "a",
                "destinationArn": "arn:aws:logs:us-east-1:111122223333:log-group:x"}),
                ),
            ),
            (
                "authpolicy/sn-1",
                json!({"policy": "{}", "createdAt": "t", "lastUpdatedAt": "t",
                "resourceId": "sn-1"}),
            ),
            ("resourcepolicy/sn-1", json!({"policy": "{}"})),
        ];
        for (key, v) in rows {
            let r = Record::from_stored(key, v.clone()).unwrap_or_else(|e| panic!("{key}: {e:?}"));
            let again = Record::from_stored(key, r.to_value()).unwrap();
            assert_eq!(again, r, "{key}");
            if let Record::TargetGroup(tg) = &r {
                assert_eq!(tg.targets[1].port, None);
            }
            if key != "tg-1" {
                assert_eq!(r.to_value(), v, "{key} is written back as it was read");
            }
        }
    }

    #[test]
    fn a_key_of_no_kind_is_refused_by_name() {
        let e = Record::from_stored("widget-1", json!({})).unwrap_err();
        assert_eq!(e.field, "stored record widget-1");
    }
}
