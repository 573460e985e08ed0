//! TCP resources: resource gateways in provider VPCs, resource
//! configurations behind them (SINGLE, GROUP with CHILD members, ARN), their
//! associations with service networks, and the endpoint associations
//! latticed has none of.

use serde_json::{json, Value};

// The handlers' shared state, context and helpers.
use super::*;

/// This resource's operations.
pub(super) const OPS: &[(&str, Handler)] = &[
    ("CreateResourceGateway", create_gateway),
    ("GetResourceGateway", |c| {
        let g = c.resolve::<rec::ResourceGateway>(c.get("resourceGatewayIdentifier"))?;
        Ok(Outcome::Read(gateway_view(g)))
    }),
    ("ListResourceGateways", |c| {
        c.page_of(&sorted(c.mine::<rec::ResourceGateway>()), gateway_view)
    }),
    ("UpdateResourceGateway", |c| {
        let g = c.resolve::<rec::ResourceGateway>(c.get("resourceGatewayIdentifier"))?;
        let mut g = c.touched(g);
        if let Some(sgs) = c.opt("securityGroupIds")? {
            g.security_group_ids = sgs;
        }
        let out = gateway_view(&g);
        write(vec![Change::Put(g.id().to_owned(), g.into_record())], out)
    }),
    ("DeleteResourceGateway", |c| {
        let g = c.resolve::<rec::ResourceGateway>(c.get("resourceGatewayIdentifier"))?;
        if let Some(r) = c
            .state
            .children::<rec::ResourceConfiguration>(g.id())
            .next()
        {
            return Err(ApiError::conflict(
                "RESOURCE_GATEWAY",
                g.id(),
                format!(
                    "resource gateway {} still has resource configuration {}; delete it first",
                    g.id(),
                    r.id()
                ),
            ));
        }
        let mut out = gateway_view(g);
        out["status"] = "DELETE_IN_PROGRESS".into();
        write(deleted(c.state, g), out)
    }),
    ("CreateResourceConfiguration", create_configuration),
    ("GetResourceConfiguration", |c| {
        let r =
            c.resolve::<rec::ResourceConfiguration>(c.get("resourceConfigurationIdentifier"))?;
        let mut v = r.to_value();
        if let Some(status) = verification_status(c, r) {
            v["domainVerificationStatus"] = status.into();
        }
        Ok(Outcome::Read(v))
    }),
    ("ListResourceConfigurations", |c| {
        let gw = c.optional_id::<rec::ResourceGateway>("resourceGatewayIdentifier")?;
        let group =
            c.optional_id::<rec::ResourceConfiguration>("resourceConfigurationGroupIdentifier")?;
        let dv = c.optional_id::<rec::DomainVerification>("domainVerificationIdentifier")?;
        let items = sorted(c.mine::<rec::ResourceConfiguration>().filter(|r| {
            gw.is_none_or(|g| r.resource_gateway_id == g)
                && group.is_none_or(|g| r.resource_configuration_group_id.as_deref() == Some(g))
                && dv.is_none_or(|d| r.domain_verification_id.as_deref() == Some(d))
        }));
        c.page_of(&items, Resource::to_value)
    }),
    ("UpdateResourceConfiguration", update_configuration),
    ("DeleteResourceConfiguration", |c| {
        let r =
            c.resolve::<rec::ResourceConfiguration>(c.get("resourceConfigurationIdentifier"))?;
        if let Some(a) = c.state.children::<rec::SnResource>(r.id()).next() {
            return Err(ApiError::conflict(
                "RESOURCE_CONFIGURATION",
                r.id(),
                format!("resource configuration {} is still associated with service network {}; delete association {} first", r.id(), a.service_network_name, a.id()),
            ));
        }
        if let Some(child) = c
            .state
            .children::<rec::ResourceConfiguration>(r.id())
            .next()
        {
            return Err(ApiError::conflict(
                "RESOURCE_CONFIGURATION",
                r.id(),
                format!(
                    "group {} still has child {}; delete it first",
                    r.id(),
                    child.id()
                ),
            ));
        }
        write(deleted(c.state, r), json!({}))
    }),
    (
        "CreateServiceNetworkResourceAssociation",
        create_association,
    ),
    ("GetServiceNetworkResourceAssociation", |c| {
        let a =
            c.resolve::<rec::SnResource>(c.get("serviceNetworkResourceAssociationIdentifier"))?;
        let mut v = a.to_value();
        let status = c
            .state
            .get::<rec::ResourceConfiguration>(&a.resource_configuration_id)
            .and_then(|r| verification_status(c, r));
        if let Some(status) = status {
            v["domainVerificationStatus"] = status.into();
        }
        Ok(Outcome::Read(v))
    }),
    ("ListServiceNetworkResourceAssociations", |c| {
        let sn = c.optional_id::<rec::ServiceNetwork>("serviceNetworkIdentifier")?;
        let rc = c.optional_id::<rec::ResourceConfiguration>("resourceConfigurationIdentifier")?;
        let items = sorted(c.mine::<rec::SnResource>().filter(|a| {
            sn.is_none_or(|x| a.service_network_id == x)
                && rc.is_none_or(|x| a.resource_configuration_id == x)
        }));
        c.page_of(&items, Resource::to_value)
    }),
    ("DeleteServiceNetworkResourceAssociation", |c| {
        let a =
            c.resolve::<rec::SnResource>(c.get("serviceNetworkResourceAssociationIdentifier"))?;
        let mut out = a.to_value();
        out["status"] = "DELETE_IN_PROGRESS".into();
        write(deleted(c.state, a), out)
    }),
    // latticed has no VPC endpoints: these lists are truthfully empty, and
    // there is nothing to delete.
    ("ListResourceEndpointAssociations", |c| {
        c.resolve::<rec::ResourceConfiguration>(c.get("resourceConfigurationIdentifier"))?;
        Ok(Outcome::Read(json!({"items": []})))
    }),
    ("DeleteResourceEndpointAssociation", |c| {
        Err(ApiError::not_found(
            "RESOURCE_ENDPOINT_ASSOCIATION",
            c.get("resourceEndpointAssociationIdentifier"),
        ))
    }),
    ("ListServiceNetworkVpcEndpointAssociations", |c| {
        c.resolve::<rec::ServiceNetwork>(c.get("serviceNetworkIdentifier"))?;
        Ok(Outcome::Read(json!({"items": []})))
    }),
];

/// The status of the domain verification configuration `r` names, now
/// (none if it names none, or it was deleted).
fn verification_status<'a>(c: &Ctx<'a>, r: &rec::ResourceConfiguration) -> Option<&'a str> {
    let dv = c
        .state
        .get::<rec::DomainVerification>(r.domain_verification_id.as_deref()?)?;
    Some(super::domain_verifications::status_now(&c.now, dv))
}

/// A gateway as Get answers it; Create and Update name its VPC
/// `vpcIdentifier`, Get `vpcId`.
fn gateway_view(g: &rec::ResourceGateway) -> Value {
    let mut v = g.to_value();
    v["vpcIdentifier"] = g.vpc_id.clone().into();
    v
}

fn create_gateway(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    c.check_new::<rec::ResourceGateway>(
        "resource gateway",
        "resource-gateways",
        c.settings.quotas.resource_gateways,
    )?;
    let vpc = c.get("vpcIdentifier");
    if vpc.is_empty() {
        return Err(ApiError::field(
            "vpcIdentifier",
            "is required: the provider VPC the gateway lets traffic into",
        ));
    }
    check_vpc(c, "vpcIdentifier", vpc)?;
    let ip_type = c
        .opt::<String>("ipAddressType")?
        .unwrap_or_else(|| "IPV4".into());
    let per_eni = c.opt::<u32>("ipv4AddressesPerEni")?;
    if ip_type == "IPV6" && per_eni.is_some() {
        return Err(ApiError::field(
            "ipv4AddressesPerEni",
            "applies to IPV4 and DUALSTACK gateways only",
        ));
    }
    let g = rec::ResourceGateway {
        meta: c.meta_at(Kind::ResourceGateway, "resourcegateway")?,
        name: c.get("name").to_owned(),
        vpc_id: vpc.to_owned(),
        subnet_ids: c.opt("subnetIds")?.unwrap_or_default(),
        security_group_ids: c.opt("securityGroupIds")?.unwrap_or_default(),
        ip_address_type: ip_type.clone(),
        ipv4_addresses_per_eni: per_eni.or((ip_type != "IPV6").then_some(16)),
        resource_config_dns_resolution: c.opt("resourceConfigDnsResolution")?,
        status: "ACTIVE".into(),
    };
    let out = gateway_view(&g);
    write(vec![Change::Put(g.id().to_owned(), g.into_record())], out)
}

/// `ranges` checked by the planner's one definition, its errors named by
/// the request's field.
fn port_ranges(field: &str, ranges: &[String]) -> Result<Vec<(u16, u16)>, ApiError> {
    crate::control::plan::port_ranges(ranges).map_err(|(at, reason)| match at {
        Some(i) => ApiError::field(&format!("{field}[{i}]"), reason),
        None => ApiError::field(field, reason),
    })
}

pub(crate) use crate::control::plan::is_domain_name;

/// A definition at `field` for a configuration of type `ty`, checked by
/// the planner's one definition.
fn definition(
    ty: &str,
    field: &str,
    d: Option<rec::Definition>,
) -> Result<Option<rec::Definition>, ApiError> {
    crate::control::plan::check_definition(ty, d.as_ref()).map_err(|(sub, reason)| {
        if sub.is_empty() {
            ApiError::field(field, reason)
        } else {
            ApiError::field(&format!("{field}.{sub}"), reason)
        }
    })?;
    Ok(d)
}

// Long: one place checks every member and how the type constrains it, as the API documents them.
fn create_configuration(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    c.check_new::<rec::ResourceConfiguration>(
        "resource configuration",
        "resource-configurations",
        c.settings.quotas.resource_configurations,
    )?;
    let ty: String = c.req("type")?;
    let given = |f: &str| c.input.get(f).is_some_and(|v| !v.is_null());
    let (gateway, group, ports, protocol) = if ty == "CHILD" {
        for f in ["resourceGatewayIdentifier", "portRanges", "protocol"] {
            if given(f) {
                return Err(ApiError::field(f, "a CHILD takes its group's"));
            }
        }
        let ident = c.get("resourceConfigurationGroupIdentifier");
        if ident.is_empty() {
            return Err(ApiError::field(
                "resourceConfigurationGroupIdentifier",
                "is required for a CHILD configuration",
            ));
        }
        let g = c.resolve::<rec::ResourceConfiguration>(ident)?;
        if g.type_ != "GROUP" {
            return Err(ApiError::field(
                "resourceConfigurationGroupIdentifier",
                format!("{} is a {} configuration, not a GROUP", g.id(), g.type_),
            ));
        }
        let limit = c.settings.quotas.children_per_group;
        if c.state
            .children::<rec::ResourceConfiguration>(g.id())
            .count()
            >= limit
        {
            return Err(ApiError::quota(
                "RESOURCE_CONFIGURATION",
                "child-resource-configurations-per-group",
                limit,
            ));
        }
        (
            g.resource_gateway_id.clone(),
            Some(g),
            g.port_ranges.clone(),
            g.protocol.clone(),
        )
    } else {
        if given("resourceConfigurationGroupIdentifier") {
            return Err(ApiError::field(
                "resourceConfigurationGroupIdentifier",
                "is for CHILD configurations",
            ));
        }
        let ident = c.get("resourceGatewayIdentifier");
        if ident.is_empty() {
            return Err(ApiError::field(
                "resourceGatewayIdentifier",
                format!("is required for a {ty} configuration"),
            ));
        }
        let g = c.resolve::<rec::ResourceGateway>(ident)?;
        let ports: Vec<String> = c.opt("portRanges")?.unwrap_or_default();
        port_ranges("portRanges", &ports)?;
        let protocol = c.opt::<String>("protocol")?.unwrap_or_else(|| "TCP".into());
        (g.id().to_owned(), None, ports, protocol)
    };
    let def = definition(
        &ty,
        "resourceConfigurationDefinition",
        c.opt("resourceConfigurationDefinition")?,
    )?;
    let vip = if ty == "GROUP" {
        None
    } else {
        Some(super::services::free_vip(c.state)?)
    };
    let custom: Option<String> = c.opt("customDomainName")?;
    let group_domain: Option<String> = c.opt("groupDomain")?;
    for (f, v) in [
        ("customDomainName", &custom),
        ("groupDomain", &group_domain),
    ] {
        if let Some(d) = v.as_deref().filter(|d| !is_domain_name(d)) {
            return Err(ApiError::field(f, format!("{d:?} is not a domain name")));
        }
    }
    if group_domain.is_some() && ty != "GROUP" {
        return Err(ApiError::field(
            "groupDomain",
            "is for GROUP configurations",
        ));
    }
    if let (Some(g), Some(name)) = (group, &custom) {
        if let Some(gd) = &g.group_domain {
            if !name.ends_with(&format!(".{gd}")) {
                return Err(ApiError::field(
                    "customDomainName",
                    format!("{name} is not under its group's domain {gd}"),
                ));
            }
        }
    }
    let dv = match c.input["domainVerificationIdentifier"].as_str() {
        Some(ident) => Some(c.resolve::<rec::DomainVerification>(ident)?),
        None => None,
    };
    if let (Some(dv), Some(name)) = (dv, &custom) {
        if name != &dv.domain_name && !name.ends_with(&format!(".{}", dv.domain_name)) {
            return Err(ApiError::field(
                "domainVerificationIdentifier",
                format!("verifies {}, not {name}", dv.domain_name),
            ));
        }
    }
    put(rec::ResourceConfiguration {
        meta: c.meta_at(Kind::ResourceConfiguration, "resourceconfiguration")?,
        name: c.get("name").to_owned(),
        type_: ty,
        resource_gateway_id: gateway,
        resource_configuration_group_id: group.map(|g| g.id().to_owned()),
        port_ranges: ports,
        protocol,
        resource_configuration_definition: def,
        custom_domain_name: custom,
        group_domain,
        allow_association_to_shareable_service_network: c
            .opt("allowAssociationToShareableServiceNetwork")?
            .unwrap_or(true),
        domain_verification_id: dv.map(|d| d.id().to_owned()),
        domain_verification_arn: dv.map(|d| d.arn().to_owned()),
        status: "ACTIVE".into(),
        amazon_managed: false,
        vip,
    })
}

fn update_configuration(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let r = c.resolve::<rec::ResourceConfiguration>(c.get("resourceConfigurationIdentifier"))?;
    let mut r = c.touched(r);
    if let Some(ports) = c.opt::<Vec<String>>("portRanges")? {
        if r.type_ == "CHILD" {
            return Err(ApiError::field("portRanges", "a CHILD takes its group's"));
        }
        port_ranges("portRanges", &ports)?;
        r.port_ranges = ports;
    }
    if let Some(d) = c.opt("resourceConfigurationDefinition")? {
        r.resource_configuration_definition =
            definition(&r.type_, "resourceConfigurationDefinition", Some(d))?;
    }
    if let Some(allow) = c.opt("allowAssociationToShareableServiceNetwork")? {
        r.allow_association_to_shareable_service_network = allow;
    }
    let mut changes = vec![Change::Put(r.id().to_owned(), r.clone().into_record())];
    // A group's ports are its children's.
    if r.type_ == "GROUP" {
        for child in c.state.children::<rec::ResourceConfiguration>(r.id()) {
            let mut child = c.touched(child);
            child.port_ranges.clone_from(&r.port_ranges);
            changes.push(Change::Put(child.id().to_owned(), child.into_record()));
        }
    }
    write(changes, r.to_value())
}

/// The generated name of configuration `r` in association `snra`, in the
/// form AWS gives resource endpoints: `SNRA.RCFG.LABEL.vpc-lattice-rsc.REGION.on.aws`.
fn resource_dns(c: &Ctx<'_>, snra: &str, r: &rec::ResourceConfiguration) -> String {
    use sha2::Digest as _;
    let label = hex::encode(sha2::Sha256::digest(format!(
        "{}/{}",
        c.caller, c.settings.naming.region
    )));
    format!(
        "{snra}.{}.{}.{}",
        r.id(),
        &label[..7],
        c.settings.naming.resource_suffix()
    )
}

fn create_association(c: &Ctx<'_>) -> Result<Outcome, ApiError> {
    let sn = c.resolve::<rec::ServiceNetwork>(c.get("serviceNetworkIdentifier"))?;
    let r = c.resolve::<rec::ResourceConfiguration>(c.get("resourceConfigurationIdentifier"))?;
    if r.type_ == "CHILD" {
        return Err(ApiError::field(
            "resourceConfigurationIdentifier",
            format!(
                "{} is a CHILD; associate its GROUP, which brings every child",
                r.id()
            ),
        ));
    }
    if let Some(a) = c
        .state
        .children::<rec::SnResource>(r.id())
        .find(|a| a.service_network_id == sn.id())
    {
        return Err(ApiError::conflict(
            "SERVICE_NETWORK_RESOURCE_ASSOCIATION",
            a.id(),
            "the resource configuration is already associated with this service network",
        ));
    }
    let meta = c.meta_at(Kind::SnResource, "servicenetworkresourceassociation")?;
    let private_dns: bool = c.opt("privateDnsEnabled")?.unwrap_or(false);
    let dns_entry = rec::DnsEntry {
        domain_name: resource_dns(c, &meta.id, r),
        hosted_zone_id: None,
    };
    let private_dns_entry = r
        .custom_domain_name
        .as_ref()
        .filter(|_| private_dns)
        .map(|d| rec::DnsEntry {
            domain_name: d.clone(),
            hosted_zone_id: None,
        });
    put(rec::SnResource {
        meta,
        status: "ACTIVE".into(),
        created_by: c.caller.to_owned(),
        private_dns_enabled: private_dns,
        dns_entry,
        private_dns_entry,
        service_network_id: sn.id().to_owned(),
        service_network_arn: sn.arn().to_owned(),
        service_network_name: sn.name.clone(),
        resource_configuration_id: r.id().to_owned(),
        resource_configuration_arn: r.arn().to_owned(),
        resource_configuration_name: r.name.clone(),
        is_managed_association: false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::Api;

    fn gateway(api: &mut Api, name: &str) -> Value {
        api.ok(
            "CreateResourceGateway",
            json!({"name": name, "vpcIdentifier": "vpc-aa", "subnetIds": ["subnet-1"]}),
        )
    }

    /// A gateway is in a VPC of its owner's, keeps what it is given, and
    /// stays while configurations use it.
    #[test]
    fn a_gateway_keeps_its_settings_and_its_configurations() {
        let mut api = Api::new();
        let e = api.err("CreateResourceGateway", json!({"name": "gw-a"}));
        assert!(e.message.contains("vpcIdentifier"), "{e}");
        let e = api.err(
            "CreateResourceGateway",
            json!({"name": "gw-a", "vpcIdentifier": "vpc-bb"}),
        );
        assert_eq!(e.code, "AccessDeniedException", "{e}");
        let e = api.err(
            "CreateResourceGateway",
            json!({"name": "gw-a", "vpcIdentifier": "vpc-aa", "ipAddressType": "IPV6", "ipv4AddressesPerEni": 4}),
        );
        assert!(e.message.contains("ipv4AddressesPerEni"), "{e}");
        let g = gateway(&mut api, "gw-a");
        assert_eq!(g["vpcIdentifier"], "vpc-aa", "{g}");
        assert_eq!(g["ipv4AddressesPerEni"], 16, "{g}");
        assert_eq!(g["subnetIds"], json!(["subnet-1"]), "{g}");
        let got = api.ok(
            "GetResourceGateway",
            json!({"resourceGatewayIdentifier": g["arn"]}),
        );
        assert_eq!(got["vpcId"], "vpc-aa", "{got}");
        let up = api.ok(
            "UpdateResourceGateway",
            json!({"resourceGatewayIdentifier": g["id"], "securityGroupIds": ["sg-0123456789abcdef0"]}),
        );
        assert_eq!(up["securityGroupIds"][0], "sg-0123456789abcdef0", "{up}");
        let r = api.ok(
            "CreateResourceConfiguration",
            json!({"name": "db-main", "type": "SINGLE", "resourceGatewayIdentifier": g["id"], "portRanges": ["5432"],
                "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.20"}}}),
        );
        let e = api.err(
            "DeleteResourceGateway",
            json!({"resourceGatewayIdentifier": g["id"]}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        api.ok(
            "DeleteResourceConfiguration",
            json!({"resourceConfigurationIdentifier": r["id"]}),
        );
        let out = api.ok(
            "DeleteResourceGateway",
            json!({"resourceGatewayIdentifier": g["id"]}),
        );
        assert_eq!(out["status"], "DELETE_IN_PROGRESS");
        assert_eq!(
            api.ok("ListResourceGateways", json!({}))["items"],
            json!([])
        );
    }

    #[test]
    fn a_group_holds_at_most_its_quota_of_children() {
        let mut api = Api::with_quotas(super::super::Quotas {
            children_per_group: 2,
            ..super::super::Quotas::default()
        });
        let g = gateway(&mut api, "gw-one")["id"].clone();
        let group = api.ok(
            "CreateResourceConfiguration",
            json!({"name": "caches", "type": "GROUP", "resourceGatewayIdentifier": g, "portRanges": ["6379"]}),
        )["id"]
            .clone();
        let child = |api: &mut Api, name: &str| {
            api.call(
                "CreateResourceConfiguration",
                json!({"name": name, "type": "CHILD", "resourceConfigurationGroupIdentifier": group,
                    "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.30"}}}),
            )
        };
        child(&mut api, "cache-a").unwrap();
        child(&mut api, "cache-b").unwrap();
        let e = child(&mut api, "cache-c").unwrap_err();
        assert_eq!(e.code, "ServiceQuotaExceededException", "{e}");
    }

    /// Each type takes what it documents: SINGLE a gateway, ports and an
    /// address or name; GROUP a gateway and ports, no definition; CHILD
    /// its group's gateway and ports, its own definition under the group's
    /// domain; ARN an ARN. Every mistake names its field.
    #[test]
    fn each_configuration_type_takes_what_it_documents() {
        let mut api = Api::new();
        let g = gateway(&mut api, "gw-a")["id"].clone();
        let ip = json!({"ipResource": {"ipAddress": "10.0.16.20"}});
        for (input, field) in [
            (
                json!({"name": "a-1", "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["5432"]}),
                "resourceConfigurationDefinition",
            ),
            (
                json!({"name": "a-1", "type": "SINGLE", "resourceGatewayIdentifier": g, "resourceConfigurationDefinition": ip}),
                "portRanges",
            ),
            (
                json!({"name": "a-1", "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["0"], "resourceConfigurationDefinition": ip}),
                "portRanges[0]",
            ),
            (
                json!({"name": "a-1", "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["5432", "9000-8000"], "resourceConfigurationDefinition": ip}),
                "portRanges[1]",
            ),
            (
                json!({"name": "a-1", "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["1-65536"], "resourceConfigurationDefinition": ip}),
                "portRanges[0]",
            ),
            (
                json!({"name": "a-1", "type": "SINGLE", "portRanges": ["5432"], "resourceConfigurationDefinition": ip}),
                "resourceGatewayIdentifier",
            ),
            (
                json!({"name": "a-1", "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["5432"], "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16"}}}),
                "ipResource.ipAddress",
            ),
            (
                json!({"name": "a-1", "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["5432"], "resourceConfigurationDefinition": {"dnsResource": {"domainName": "-bad-.example"}}}),
                "dnsResource.domainName",
            ),
            (
                json!({"name": "a-1", "type": "GROUP", "resourceGatewayIdentifier": g, "portRanges": ["5432"], "resourceConfigurationDefinition": ip}),
                "resourceConfigurationDefinition",
            ),
            (
                json!({"name": "a-1", "type": "ARN", "resourceGatewayIdentifier": g, "portRanges": ["5432"], "resourceConfigurationDefinition": ip}),
                "ipResource",
            ),
        ] {
            let e = api.err("CreateResourceConfiguration", input.clone());
            assert_eq!(e.code, "ValidationException", "{input}: {e}");
            assert!(e.message.contains(field), "{input}: {e}");
        }
        let single = api.ok(
            "CreateResourceConfiguration",
            json!({"name": "db-main", "type": "SINGLE", "resourceGatewayIdentifier": g,
                "portRanges": ["5432", "8000-8100", "1-65535"],
                "resourceConfigurationDefinition": {"dnsResource": {"domainName": "db.internal.example", "ipAddressType": "IPV4"}}}),
        );
        assert_eq!(single["protocol"], "TCP", "{single}");
        let group = api.ok(
            "CreateResourceConfiguration",
            json!({"name": "cache", "type": "GROUP", "resourceGatewayIdentifier": g, "portRanges": ["6379"],
                "groupDomain": "cache.example.com"}),
        );
        let child = |name: &str, extra: Value| {
            let mut v = json!({"name": name, "type": "CHILD", "resourceConfigurationGroupIdentifier": group["id"],
                "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.30"}}});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let e = api.err(
            "CreateResourceConfiguration",
            child("node-1", json!({"portRanges": ["1"]})),
        );
        assert!(e.message.contains("portRanges"), "{e}");
        let e = api.err(
            "CreateResourceConfiguration",
            child("node-1", json!({"customDomainName": "node-1.other.com"})),
        );
        assert!(e.message.contains("customDomainName"), "{e}");
        let c1 = api.ok(
            "CreateResourceConfiguration",
            child(
                "node-1",
                json!({"customDomainName": "node-1.cache.example.com"}),
            ),
        );
        assert_eq!(c1["resourceGatewayId"], g, "{c1}");
        assert_eq!(c1["portRanges"], json!(["6379"]), "{c1}");
        let e = api.err(
            "CreateResourceConfiguration",
            json!({"name": "node-2", "type": "CHILD", "resourceConfigurationGroupIdentifier": single["id"],
                "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.31"}}}),
        );
        assert!(e.message.contains("not a GROUP"), "{e}");
        // A group's ports are its children's.
        api.ok(
            "UpdateResourceConfiguration",
            json!({"resourceConfigurationIdentifier": group["id"], "portRanges": ["6379-6380"]}),
        );
        let got = api.ok(
            "GetResourceConfiguration",
            json!({"resourceConfigurationIdentifier": c1["id"]}),
        );
        assert_eq!(got["portRanges"], json!(["6379-6380"]), "{got}");
        let e = api.err(
            "DeleteResourceConfiguration",
            json!({"resourceConfigurationIdentifier": group["id"]}),
        );
        assert_eq!(e.code, "ConflictException", "{e}");
        let children = api.ok(
            "ListResourceConfigurations",
            json!({"resourceConfigurationGroupIdentifier": group["id"]}),
        );
        assert_eq!(children["items"].as_array().unwrap().len(), 1, "{children}");
        api.ok(
            "CreateResourceConfiguration",
            json!({"name": "rds", "type": "ARN", "resourceGatewayIdentifier": g, "portRanges": ["5432"],
                "resourceConfigurationDefinition": {"arnResource": {"arn": "arn:aws:rds:us-east-1:111122223333:db:main"}}}),
        );
    }

    /// A configuration joins a network once, with a generated name in
    /// AWS's form and its custom name when private DNS is on; the network
    /// and the configuration stay while it does. Endpoint associations are
    /// truthfully none.
    #[test]
    fn a_configuration_joins_a_network_with_its_names() {
        let mut api = Api::new();
        let g = gateway(&mut api, "gw-a")["id"].clone();
        let r = api.ok(
            "CreateResourceConfiguration",
            json!({"name": "db-main", "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["5432"],
                "customDomainName": "db.example.com",
                "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.20"}}}),
        );
        let sn = api.ok("CreateServiceNetwork", json!({"name": "net-a"}))["id"].clone();
        let input = json!({"serviceNetworkIdentifier": sn, "resourceConfigurationIdentifier": r["id"], "privateDnsEnabled": true});
        let a = api.ok("CreateServiceNetworkResourceAssociation", input.clone());
        let got = api.ok(
            "GetServiceNetworkResourceAssociation",
            json!({"serviceNetworkResourceAssociationIdentifier": a["id"]}),
        );
        let name = got["dnsEntry"]["domainName"].as_str().unwrap();
        let labels: Vec<&str> = name.split('.').collect();
        assert_eq!(labels[0], a["id"].as_str().unwrap(), "{name}");
        assert_eq!(labels[1], r["id"].as_str().unwrap(), "{name}");
        assert!(
            name.ends_with(".vpc-lattice-rsc.us-east-1.on.aws"),
            "{name}"
        );
        assert_eq!(
            got["privateDnsEntry"]["domainName"], "db.example.com",
            "{got}"
        );
        let e = api.err("CreateServiceNetworkResourceAssociation", input);
        assert_eq!(e.code, "ConflictException", "{e}");
        let listed = api.ok("GetServiceNetwork", json!({"serviceNetworkIdentifier": sn}));
        assert!(
            listed
                .get("numberOfAssociatedResourceConfigurations")
                .is_none(),
            "Get has no such member"
        );
        let listed = api.ok("ListServiceNetworks", json!({}));
        assert_eq!(
            listed["items"][0]["numberOfAssociatedResourceConfigurations"], 1,
            "{listed}"
        );
        for (op, input) in [
            (
                "DeleteResourceConfiguration",
                json!({"resourceConfigurationIdentifier": r["id"]}),
            ),
            (
                "DeleteServiceNetwork",
                json!({"serviceNetworkIdentifier": sn}),
            ),
        ] {
            let e = api.err(op, input);
            assert_eq!(e.code, "ConflictException", "{op}: {e}");
        }
        let none = api.ok(
            "ListResourceEndpointAssociations",
            json!({"resourceConfigurationIdentifier": r["id"]}),
        );
        assert_eq!(none["items"], json!([]));
        let none = api.ok(
            "ListServiceNetworkVpcEndpointAssociations",
            json!({"serviceNetworkIdentifier": sn}),
        );
        assert_eq!(none["items"], json!([]));
        let e = api.err(
            "DeleteResourceEndpointAssociation",
            json!({"resourceEndpointAssociationIdentifier": "rea-0123456789abcdef0"}),
        );
        assert_eq!(e.code, "ResourceNotFoundException", "{e}");
        api.ok(
            "DeleteServiceNetworkResourceAssociation",
            json!({"serviceNetworkResourceAssociationIdentifier": a["id"]}),
        );
        api.ok(
            "DeleteResourceConfiguration",
            json!({"resourceConfigurationIdentifier": r["id"]}),
        );
        api.ok(
            "DeleteServiceNetwork",
            json!({"serviceNetworkIdentifier": sn}),
        );
    }

    /// A resource configuration (but a GROUP) gets a VIP of its own: no
    /// service has it, and services never share it; when none is left the
    /// refusal says why, and services still share theirs.
    #[test]
    fn a_resource_has_a_vip_of_its_own() {
        let mut api = Api::new();
        let vip_of = |api: &Api, id: &Value| {
            let id = id.as_str().unwrap();
            match api.state.records.get(id) {
                Some(super::Record::Service(s)) => Some(s.vip),
                Some(super::Record::ResourceConfiguration(r)) => r.vip,
                _ => None,
            }
        };
        let a = api.ok("CreateService", json!({"name": "shop-a"}))["id"].clone();
        let g = gateway(&mut api, "gw-a")["id"].clone();
        let single = |api: &mut Api, name: &str| {
            api.call(
                "CreateResourceConfiguration",
                json!({"name": name, "type": "SINGLE", "resourceGatewayIdentifier": g, "portRanges": ["5432"],
                    "resourceConfigurationDefinition": {"ipResource": {"ipAddress": "10.0.16.20"}}}),
            )
        };
        let r = single(&mut api, "db-main").unwrap()["id"].clone();
        let b = api.ok("CreateService", json!({"name": "shop-b"}))["id"].clone();
        let vips = [vip_of(&api, &a), vip_of(&api, &r), vip_of(&api, &b)];
        assert_eq!(
            vips.map(|v| v.unwrap().to_string()),
            ["169.254.171.1", "169.254.171.2", "169.254.171.3"]
        );
        let group = api.ok(
            "CreateResourceConfiguration",
            json!({"name": "cache", "type": "GROUP", "resourceGatewayIdentifier": g, "portRanges": ["6379"]}),
        )["id"]
            .clone();
        assert_eq!(vip_of(&api, &group), None);
        for i in 4..=191 {
            single(&mut api, &format!("db-{i}")).unwrap();
        }
        let e = single(&mut api, "db-over").unwrap_err();
        assert_eq!(e.code, "ServiceQuotaExceededException", "{e}");
        assert!(e.message.contains("of its own"), "{e}");
        // Services share among themselves, never a resource's VIP.
        let c = api.ok("CreateService", json!({"name": "shop-c"}))["id"].clone();
        let shared = vip_of(&api, &c).unwrap().to_string();
        assert!(
            shared == "169.254.171.1" || shared == "169.254.171.3",
            "{shared}"
        );
    }
}
