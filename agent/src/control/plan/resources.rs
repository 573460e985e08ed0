//! Resource gateways, resource configurations and their service-network
//! associations, planned from the configuration: which resource VIPs each
//! client VPC steers, on which port ranges, to what, in which gateway VPC.
//! The API and the configuration file both come here; the API's handlers
//! check their input with the same functions (`port_ranges`,
//! `check_definition`, `is_domain_name`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
};

use super::super::model::{Config, Definition, ResourceConfiguration};
use super::{Errors, PlannedLog, PlannedNetwork, VIP_FIRST, VIP_LAST};

/// Port ranges a configuration takes at most: the steering map holds a
/// VIP's ranges in one fixed-size entry.
pub const MAX_PORT_RANGES: usize = latticed_common::MAX_PORT_RANGES;

/// A resource as the data path serves it: a SINGLE, CHILD or ARN
/// configuration (a GROUP is only its children).
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedResource {
    /// The configuration's name.
    pub name: String,
    /// Its ARN, when the API assigned one.
    pub arn: Option<String>,
    /// Its VIP (its own: no service or other resource has it).
    pub vip: Ipv4Addr,
    /// The ports steered to it, inclusive ranges.
    pub ports: Vec<(u16, u16)>,
    /// The gateway's VPC: connections to the resource start there.
    pub gateway_ns: String,
    /// What connections reach.
    pub target: ResourceTarget,
    /// Client namespaces and how each reaches it (the first association
    /// by network name when several do).
    pub reachable_from: BTreeMap<String, ResourceReach>,
    /// Per client namespace, the security groups that admit clients; a
    /// namespace an association without groups reaches is absent.
    pub security_groups: BTreeMap<String, BTreeSet<String>>,
    /// Access log destinations of the configuration's own subscriptions.
    pub logs: Vec<PlannedLog>,
}

/// What a resource's connections go to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResourceTarget {
    /// An address in the gateway's VPC.
    Ip(IpAddr),
    /// A name resolved in the gateway's VPC at connect time.
    Dns {
        /// The name.
        name: String,
        /// Which records: A (IPV4, the default), AAAA (IPV6), or A and,
        /// when there are none, AAAA (DUALSTACK).
        family: Family,
    },
    /// An ARN the inventory places.
    Arn(String),
}

/// The address records a DNS resource is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// A records.
    Ipv4,
    /// AAAA records.
    Ipv6,
    /// A records, else AAAA records.
    Dualstack,
}

/// How a client namespace reaches a resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceReach {
    /// The service network.
    pub network: Arc<PlannedNetwork>,
    /// The association's id, when the API gave one.
    pub association: Option<String>,
    /// The names that resolve to the VIP there, lowercase.
    pub names: Vec<String>,
}

/// Why port ranges are refused: the index of the bad one (none: the list
/// itself), and the reason.
pub type BadRange = (Option<usize>, String);

/// `ranges` (`5432`, `8000-8100`) as inclusive pairs, each checked (1-65535,
/// low to high, at most [`MAX_PORT_RANGES`]). An error names the index of
/// the bad entry, if one is bad, and why.
pub fn port_ranges(ranges: &[String]) -> Result<Vec<(u16, u16)>, BadRange> {
    if ranges.is_empty() {
        return Err((None, "needs at least one port or range".into()));
    }
    if ranges.len() > MAX_PORT_RANGES {
        return Err((None, format!("at most {MAX_PORT_RANGES} ports or ranges")));
    }
    let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let bad = || {
                (
                    Some(i),
                    format!("{r:?} is not a port (1-65535) or a range LOW-HIGH of them"),
                )
            };
            match r.split_once('-') {
                None => port(r).map(|p| (p, p)).ok_or_else(bad),
                Some((lo, hi)) => match (port(lo), port(hi)) {
                    (Some(lo), Some(hi)) if lo <= hi => Ok((lo, hi)),
                    _ => Err(bad()),
                },
            }
        })
        .collect()
}

/// Whether `name` is a DNS name: dot-separated labels of 1-63 letters,
/// digits and inner hyphens, at most 253 characters, two labels or more.
pub fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether a configuration of type `ty` may have definition `d`: a GROUP
/// has none, SINGLE and CHILD an address or a name, ARN an ARN. An error
/// names the member below the definition (`ipResource.ipAddress`, or
/// nothing for the definition itself) and why.
pub fn check_definition(ty: &str, d: Option<&Definition>) -> Result<(), (String, String)> {
    let Some(d) = d else {
        return match ty {
            "GROUP" => Ok(()),
            _ => Err((
                String::new(),
                format!("is required for a {ty} configuration"),
            )),
        };
    };
    if ty == "GROUP" {
        return Err((
            String::new(),
            "a GROUP has none: its CHILD configurations each have one".into(),
        ));
    }
    let members = [
        d.ip_resource.is_some(),
        d.dns_resource.is_some(),
        d.arn_resource.is_some(),
    ];
    if members.iter().filter(|m| **m).count() != 1 {
        return Err((
            String::new(),
            "give exactly one of ipResource, dnsResource and arnResource".into(),
        ));
    }
    if let Some(ip) = &d.ip_resource {
        if ty == "ARN" || ip.ip_address.parse::<IpAddr>().is_err() {
            return Err((
                "ipResource.ipAddress".into(),
                format!(
                    "{:?} is not an IPv4 or IPv6 address (or the type is ARN)",
                    ip.ip_address
                ),
            ));
        }
    }
    if let Some(dns) = &d.dns_resource {
        if ty == "ARN" || !is_domain_name(&dns.domain_name) {
            return Err((
                "dnsResource.domainName".into(),
                format!(
                    "{:?} is not a domain name (or the type is ARN)",
                    dns.domain_name
                ),
            ));
        }
    }
    match (&d.arn_resource, ty) {
        (Some(a), "ARN") if !a.arn.starts_with("arn:") => {
            Err(("arnResource.arn".into(), "is not an ARN".into()))
        }
        (Some(_), "ARN") | (None, "SINGLE" | "CHILD") => Ok(()),
        (Some(_), _) => Err((
            "arnResource".into(),
            "is for ARN configurations; SINGLE and CHILD name an ipResource or a dnsResource"
                .into(),
        )),
        (None, _) => Err((
            "arnResource".into(),
            "is required for an ARN configuration".into(),
        )),
    }
}

/// What planning resources needs from the rest of the planner.
pub(super) struct Inputs<'a, 'c> {
    /// The networks, as resources are reached through them.
    pub networks: &'a HashMap<&'c str, Arc<PlannedNetwork>>,
    /// Logs of each configuration's own subscriptions, by name.
    pub logs: &'a mut HashMap<&'c str, Vec<PlannedLog>>,
    /// VIPs services hold.
    pub service_vips: BTreeSet<Ipv4Addr>,
    /// Checks a namespace a field names.
    pub check_namespace: &'a dyn Fn(&mut Errors, &str, &str),
    /// Whether a namespace exists now.
    pub exists: &'a dyn Fn(&str) -> bool,
}

/// A configuration as checked: its type, and (not for a GROUP) what it
/// reaches, its gateway and its ports.
struct Checked<'c> {
    ty: &'c str,
    gateway: Option<&'c str>,
    ports: Option<Vec<(u16, u16)>>,
}

/// Plans every SINGLE, CHILD and ARN configuration of `config`; problems
/// go to `errs` with the configuration's paths.
pub(super) fn plan_resources<'c>(
    errs: &mut Errors,
    config: &'c Config,
    inputs: Inputs<'_, 'c>,
) -> Vec<PlannedResource> {
    let gateways = check_gateways(errs, config, inputs.check_namespace);
    let index: HashMap<&str, usize> = config
        .resource_configurations
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let checked: Vec<Checked<'_>> = config
        .resource_configurations
        .iter()
        .enumerate()
        .map(|(i, r)| check_configuration(errs, i, r, &gateways, &index, config))
        .collect();
    let vips = allocate_vips(errs, config, &checked, inputs.service_vips.clone());
    let mut planned: BTreeMap<usize, PlannedResource> = BTreeMap::new();
    for (i, r) in config.resource_configurations.iter().enumerate() {
        let c = &checked[i];
        let (Some(gw), Some(ports), Some(vip)) = (c.gateway, &c.ports, vips.get(&i)) else {
            continue;
        };
        let Some(target) = target_of(r.resource_configuration_definition.as_ref()) else {
            continue;
        };
        let Some(&gateway_ns) = gateways.get(gw) else {
            continue;
        };
        if !(inputs.exists)(gateway_ns) {
            continue;
        }
        planned.insert(
            i,
            PlannedResource {
                name: r.name.clone(),
                arn: r.arn.clone(),
                vip: *vip,
                ports: ports.clone(),
                gateway_ns: gateway_ns.to_owned(),
                target,
                reachable_from: BTreeMap::new(),
                security_groups: BTreeMap::new(),
                logs: inputs.logs.remove(r.name.as_str()).unwrap_or_default(),
            },
        );
    }
    mark_reached(errs, config, &index, &checked, &inputs, &mut planned);
    planned.into_values().collect()
}

/// Gateways by name: their VPCs.
fn check_gateways<'c>(
    errs: &mut Errors,
    config: &'c Config,
    check_namespace: &dyn Fn(&mut Errors, &str, &str),
) -> HashMap<&'c str, &'c str> {
    let mut out = HashMap::new();
    for (i, g) in config.resource_gateways.iter().enumerate() {
        let base = format!("resourceGateways[{i}]");
        errs.name(&format!("{base}.name"), &g.name, 40, Some("rgw-"));
        check_namespace(errs, &format!("{base}.vpcIdentifier"), &g.vpc_identifier);
        if out
            .insert(g.name.as_str(), g.vpc_identifier.as_str())
            .is_some()
        {
            errs.add(
                format!("{base}.name"),
                format!("resource gateway {:?} is defined twice", g.name),
            );
        }
    }
    out
}

// Long: one place checks every member and how the type constrains it, as the API documents them.
fn check_configuration<'c>(
    errs: &mut Errors,
    i: usize,
    r: &'c ResourceConfiguration,
    gateways: &HashMap<&str, &str>,
    index: &HashMap<&str, usize>,
    config: &'c Config,
) -> Checked<'c> {
    let base = format!("resourceConfigurations[{i}]");
    errs.name(&format!("{base}.name"), &r.name, 40, Some("rcfg-"));
    if index.get(r.name.as_str()) != Some(&i) {
        errs.add(
            format!("{base}.name"),
            format!("resource configuration {:?} is defined twice", r.name),
        );
    }
    let ty = r.type_.as_deref().unwrap_or("SINGLE");
    if !matches!(ty, "SINGLE" | "GROUP" | "CHILD" | "ARN") {
        errs.add(
            format!("{base}.type"),
            format!("{ty:?} is not SINGLE, GROUP, CHILD or ARN"),
        );
    }
    if let Err((sub, reason)) = check_definition(ty, r.resource_configuration_definition.as_ref()) {
        let field = format!("{base}.resourceConfigurationDefinition");
        errs.add(
            if sub.is_empty() {
                field
            } else {
                format!("{field}.{sub}")
            },
            reason,
        );
    }
    if let Some(d) = r.custom_domain_name.as_deref() {
        if !is_domain_name(d) {
            errs.add(
                format!("{base}.customDomainName"),
                format!("{d:?} is not a domain name"),
            );
        }
    }
    let ranges = |errs: &mut Errors, ranges: &[String], field: &str| match port_ranges(ranges) {
        Ok(r) => Some(r),
        Err((at, reason)) => {
            let field = match at {
                Some(k) => format!("{field}[{k}]"),
                None => field.to_owned(),
            };
            errs.add(field, reason);
            None
        }
    };
    if ty == "CHILD" {
        if r.resource_gateway_identifier.is_some() || !r.port_ranges.is_empty() {
            errs.add(
                base.clone(),
                "a CHILD takes its gateway and ports from its GROUP",
            );
        }
        let group = r
            .resource_configuration_group_identifier
            .as_deref()
            .and_then(|g| index.get(g))
            .and_then(|&g| config.resource_configurations.get(g))
            .filter(|g| g.type_.as_deref() == Some("GROUP"));
        let Some(group) = group else {
            errs.add(
                format!("{base}.resourceConfigurationGroupIdentifier"),
                "a CHILD names an existing GROUP configuration",
            );
            return Checked {
                ty,
                gateway: None,
                ports: None,
            };
        };
        // The group's own problems are reported at the group.
        return Checked {
            ty,
            gateway: group.resource_gateway_identifier.as_deref(),
            ports: port_ranges(&group.port_ranges).ok(),
        };
    }
    if r.resource_configuration_group_identifier.is_some() {
        errs.add(
            format!("{base}.resourceConfigurationGroupIdentifier"),
            "only a CHILD names a group",
        );
    }
    let gateway = match r.resource_gateway_identifier.as_deref() {
        Some(g) if gateways.contains_key(g) => Some(g),
        Some(g) => {
            errs.add(
                format!("{base}.resourceGatewayIdentifier"),
                format!("no resource gateway {g:?}"),
            );
            None
        }
        None => {
            errs.add(format!("{base}.resourceGatewayIdentifier"), "is required");
            None
        }
    };
    let ports = ranges(errs, &r.port_ranges, &format!("{base}.portRanges"));
    Checked { ty, gateway, ports }
}

/// A VIP for each configuration that has a target (not a GROUP): its
/// pinned one, or the lowest that no service and no other resource holds.
fn allocate_vips(
    errs: &mut Errors,
    config: &Config,
    checked: &[Checked<'_>],
    mut taken: BTreeSet<Ipv4Addr>,
) -> HashMap<usize, Ipv4Addr> {
    let mut out = HashMap::new();
    let services = taken.clone();
    for (i, r) in config.resource_configurations.iter().enumerate() {
        let Some(vip) = r.vip else { continue };
        let field = format!("resourceConfigurations[{i}].vip");
        if !(VIP_FIRST..=VIP_LAST).contains(&vip) {
            errs.add(
                field,
                format!("{vip} is outside the VIP range {VIP_FIRST}-{VIP_LAST}"),
            );
        } else if services.contains(&vip) {
            errs.add(
                field,
                format!("{vip} is a service's; a resource's VIP is its own"),
            );
        } else if !taken.insert(vip) {
            errs.add(field, format!("{vip} is another resource's"));
        } else {
            out.insert(i, vip);
        }
    }
    for (i, r) in config.resource_configurations.iter().enumerate() {
        if r.vip.is_some() || checked.get(i).is_none_or(|c| c.ty == "GROUP") {
            continue;
        }
        let free = (VIP_FIRST.to_bits()..=VIP_LAST.to_bits())
            .map(Ipv4Addr::from_bits)
            .find(|a| !taken.contains(a));
        match free {
            Some(vip) => {
                taken.insert(vip);
                out.insert(i, vip);
            }
            None => errs.add(
                format!("resourceConfigurations[{i}]"),
                format!("no VIP is left in {VIP_FIRST}-{VIP_LAST}"),
            ),
        }
    }
    out
}

fn target_of(d: Option<&Definition>) -> Option<ResourceTarget> {
    let d = d?;
    if let Some(ip) = &d.ip_resource {
        return ip.ip_address.parse().ok().map(ResourceTarget::Ip);
    }
    if let Some(dns) = &d.dns_resource {
        return Some(ResourceTarget::Dns {
            name: dns.domain_name.trim_end_matches('.').to_ascii_lowercase(),
            family: match dns.ip_address_type.as_deref() {
                Some("IPV6") => Family::Ipv6,
                Some("DUALSTACK") => Family::Dualstack,
                _ => Family::Ipv4,
            },
        });
    }
    d.arn_resource
        .as_ref()
        .map(|a| ResourceTarget::Arn(a.arn.clone()))
}

/// The id at the end of an ARN (`.../rcfg-0123`).
fn arn_id(arn: Option<&str>) -> Option<&str> {
    arn?.rsplit('/').next().filter(|id| !id.is_empty())
}

/// Checks each resource association and marks each planned resource
/// reachable from the VPCs associated with its networks, with its names
/// there and the security groups that admit clients.
// Long: the association's checks, its members (a GROUP's children) and the per-VPC marks belong together.
fn mark_reached(
    errs: &mut Errors,
    config: &Config,
    index: &HashMap<&str, usize>,
    checked: &[Checked<'_>],
    inputs: &Inputs<'_, '_>,
    planned: &mut BTreeMap<usize, PlannedResource>,
) {
    let mut seen = BTreeSet::new();
    let mut open = super::Opened::new();
    for (i, a) in config
        .service_network_resource_associations
        .iter()
        .enumerate()
    {
        let base = format!("serviceNetworkResourceAssociations[{i}]");
        let sn = a.service_network_identifier.as_str();
        let Some(net) = inputs.networks.get(sn) else {
            errs.add(
                format!("{base}.serviceNetworkIdentifier"),
                format!("no service network {sn:?}"),
            );
            continue;
        };
        let rc = a.resource_configuration_identifier.as_str();
        let Some(&ri) = index.get(rc) else {
            errs.add(
                format!("{base}.resourceConfigurationIdentifier"),
                format!("no resource configuration {rc:?}"),
            );
            continue;
        };
        if checked.get(ri).is_some_and(|c| c.ty == "CHILD") {
            errs.add(
                format!("{base}.resourceConfigurationIdentifier"),
                format!("{rc:?} is a CHILD; associate its GROUP"),
            );
            continue;
        }
        if !seen.insert((sn, rc)) {
            errs.add(base, "this association is defined twice");
            continue;
        }
        let this = &config.resource_configurations[ri];
        // The configuration itself, or a GROUP's children.
        let members: Vec<usize> = if checked.get(ri).is_some_and(|c| c.ty == "GROUP") {
            config
                .resource_configurations
                .iter()
                .enumerate()
                .filter(|(_, c)| c.resource_configuration_group_identifier.as_deref() == Some(rc))
                .map(|(k, _)| k)
                .collect()
        } else {
            vec![ri]
        };
        for vpc in config
            .service_network_vpc_associations
            .iter()
            .filter(|v| v.service_network_identifier == sn && (inputs.exists)(&v.vpc_identifier))
        {
            let ns = vpc.vpc_identifier.as_str();
            for &m in &members {
                let member = &config.resource_configurations[m];
                let Some(p) = planned.get_mut(&m) else {
                    continue;
                };
                let mut names = Vec::new();
                if let Some(dns) = &a.dns_name {
                    match (arn_id(this.arn.as_deref()), arn_id(member.arn.as_deref())) {
                        (_, _) if m == ri => names.push(dns.to_ascii_lowercase()),
                        (Some(group), Some(child)) => {
                            names.push(dns.replacen(group, child, 1).to_ascii_lowercase());
                        }
                        _ => {}
                    }
                }
                if a.private_dns_enabled {
                    names.extend(
                        member
                            .custom_domain_name
                            .iter()
                            .map(|d| d.to_ascii_lowercase()),
                    );
                }
                p.reachable_from
                    .entry(ns.to_owned())
                    .or_insert_with(|| ResourceReach {
                        network: Arc::clone(net),
                        association: a.id.clone(),
                        names,
                    });
                super::fold_admission(
                    &mut p.security_groups,
                    &mut open,
                    m,
                    ns,
                    &vpc.security_group_ids,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{plan, Plan, ValidationError};
    use crate::control::model::Config;

    fn file(extra: serde_json::Value) -> Config {
        let mut c = serde_json::json!({
            "serviceNetworks": [{"name": "data"}],
            "services": [{"name": "web", "vip": "169.254.171.1", "listeners": [{"name": "http", "protocol": "HTTP",
                "defaultAction": {"fixedResponse": {"statusCode": 404}}}]}],
            "serviceNetworkVpcAssociations": [
                {"serviceNetworkIdentifier": "data", "vpcIdentifier": "vpc-cons", "securityGroupIds": ["sg-0000000a"]}
            ],
            "resourceGateways": [{"name": "gw-one", "vpcIdentifier": "vpc-prov"}],
            "resourceConfigurations": [
                {"name": "db-one", "resourceGatewayIdentifier": "gw-one", "portRanges": ["5432", "8000-8100"],
                 "resourceConfigurationDefinition": {"dnsResource": {"domainName": "db.internal"}},
                 "customDomainName": "db.tenant.example"},
                {"name": "caches", "type": "GROUP", "resourceGatewayIdentifier": "gw-one", "portRanges": ["6379"]},
                {"name": "cache-a", "type": "CHILD", "resourceConfigurationGroupIdentifier": "caches",
                 "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.30"}}}
            ],
            "serviceNetworkResourceAssociations": [
                {"serviceNetworkIdentifier": "data", "resourceConfigurationIdentifier": "db-one",
                 "privateDnsEnabled": true, "dnsName": "db-one.data.example"},
                {"serviceNetworkIdentifier": "data", "resourceConfigurationIdentifier": "caches"}
            ]
        });
        if let (Some(c), serde_json::Value::Object(extra)) = (c.as_object_mut(), extra) {
            c.extend(extra);
        }
        serde_json::from_value(c).unwrap()
    }

    fn planned(c: &Config) -> Result<Plan, ValidationError> {
        let dir = super::super::tests::netns_dir(&["vpc-cons", "vpc-prov"]);
        plan(c, &dir.0)
    }

    #[test]
    fn a_file_plans_resources_as_the_api_does() {
        let p = planned(&file(serde_json::json!({}))).unwrap();
        assert_eq!(
            p.resources.len(),
            2,
            "db-one and the CHILD; a GROUP is its children"
        );
        let db = &p.resources["db-one"];
        assert_eq!(db.ports, vec![(5432, 5432), (8000, 8100)]);
        assert_eq!(db.gateway_ns, "vpc-prov");
        assert_ne!(
            db.vip.to_string(),
            "169.254.171.1",
            "the service's VIP is its own"
        );
        let reach = &db.reachable_from["vpc-cons"];
        assert_eq!(reach.names, ["db-one.data.example", "db.tenant.example"]);
        assert_eq!(db.security_groups["vpc-cons"].len(), 1);
        let child = &p.resources["cache-a"];
        assert_eq!(child.ports, vec![(6379, 6379)], "the group's");
        assert_ne!(child.vip, db.vip);
        // Both steer in the consumer, each with its ranges and groups.
        let admission = p.admission("vpc-cons");
        assert_eq!(admission.ranges.len(), 4, "two VIPs and their IPv6 twins");
        assert!(
            p.namespaces().contains("vpc-prov"),
            "the gateway's VPC is managed"
        );
    }

    #[test]
    fn a_files_resource_problems_are_named_by_their_fields() {
        let bad = file(serde_json::json!({
            "resourceConfigurations": [
                {"name": "db-one", "resourceGatewayIdentifier": "gw-two", "portRanges": ["0", "90-80"],
                 "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "ten"}}},
                {"name": "caches", "type": "GROUP", "resourceGatewayIdentifier": "gw-one", "portRanges": ["6379"],
                 "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.30"}}},
                {"name": "cache-a", "type": "CHILD", "resourceConfigurationGroupIdentifier": "db-one",
                 "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.30"}}},
                {"name": "pinned", "vip": "169.254.171.1", "resourceGatewayIdentifier": "gw-one", "portRanges": ["1-65535"],
                 "resourceConfigurationDefinition": {"arnResource": {"arn": "arn:aws:rds:us-east-1:111122223333:db:x"}}}
            ],
            "serviceNetworkResourceAssociations": [
                {"serviceNetworkIdentifier": "data", "resourceConfigurationIdentifier": "cache-a"},
                {"serviceNetworkIdentifier": "nowhere", "resourceConfigurationIdentifier": "db-one"}
            ]
        }));
        let errs = planned(&bad).unwrap_err().0;
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "resourceConfigurations[0].resourceGatewayIdentifier",
            "resourceConfigurations[0].portRanges[0]",
            "resourceConfigurations[0].resourceConfigurationDefinition.ipResource.ipAddress",
            "resourceConfigurations[1].resourceConfigurationDefinition",
            "resourceConfigurations[2].resourceConfigurationGroupIdentifier",
            "resourceConfigurations[3].resourceConfigurationDefinition.arnResource",
            "resourceConfigurations[3].vip",
            "serviceNetworkResourceAssociations[0].resourceConfigurationIdentifier",
            "serviceNetworkResourceAssociations[1].serviceNetworkIdentifier",
        ] {
            assert!(fields.contains(&want), "{want} in {errs:?}");
        }
    }

    #[test]
    fn port_ranges_are_checked_and_bounded() {
        let ok = |r: &[&str]| port_ranges(&r.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(
            ok(&["5432", "8000-8100", "1-65535"]).unwrap(),
            vec![(5432, 5432), (8000, 8100), (1, 65535)]
        );
        for (bad, at) in [
            (vec!["0"], Some(0)),
            (vec!["80", "9-8"], Some(1)),
            (vec!["65536"], Some(0)),
            (vec!["a-b"], Some(0)),
            (vec![], None),
        ] {
            assert_eq!(ok(&bad).unwrap_err().0, at, "{bad:?}");
        }
        let many: Vec<String> = (1..=101).map(|p| p.to_string()).collect();
        assert_eq!(port_ranges(&many).unwrap_err().0, None);
    }

    use super::port_ranges;
}
