//! Security groups on VPC associations: who in a VPC may reach the service
//! network.
//!
//! Groups are facts about the outside world, so they are defined where
//! latticed takes such facts: the inventory file (`securityGroups`: id ->
//! ingress rules). A VPC association that names groups admits a client
//! connection only if one of them allows the client's address and the
//! destination port; one without groups admits everyone. The decision is
//! made in the namespace's sk_lookup program, before any user-space work:
//! this module turns the plan's admission per VIP:port and the inventory
//! into the program's map contents ([`Steered`]), and `kernel::steering`
//! writes them.
//!
//! A rule's source is a CIDR of either family, or another group: the
//! addresses of the inventory's instances in that VPC that are members of
//! it (as AWS admits the network interfaces that carry the group). A group
//! an association names but the inventory does not define admits nobody,
//! and is reported.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use ipnet::IpNet;
use serde::Deserialize;

/// One security group.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityGroup {
    /// What it lets in.
    #[serde(default)]
    pub ingress: Vec<IngressRule>,
}

/// One ingress rule: a protocol, a port range and a source.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressRule {
    /// `tcp`, `udp`, or `-1` (every protocol, every port), as AWS names
    /// them.
    pub protocol: String,
    /// First port (tcp and udp).
    #[serde(default)]
    pub from_port: Option<u16>,
    /// Last port (tcp and udp).
    #[serde(default)]
    pub to_port: Option<u16>,
    /// Sources by address (IPv4 or IPv6).
    #[serde(default)]
    pub cidr: Option<IpNet>,
    /// Sources by group: the instances that are its members.
    #[serde(default)]
    pub source_group: Option<String>,
}

/// Whether `id` is a security group id as AWS (and the API's model) spell
/// them: `sg-` and 8 or 17 lowercase letters and digits.
pub fn is_group_id(id: &str) -> bool {
    id.strip_prefix("sg-").is_some_and(|rest| {
        matches!(rest.len(), 8 | 17)
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    })
}

/// Why a group's definition is refused, naming the field.
pub fn check(id: &str, group: &SecurityGroup) -> Result<(), String> {
    if !is_group_id(id) {
        return Err(format!(
            "securityGroups.{id}: not a security group id (sg- and 8 or 17 lowercase letters and digits)"
        ));
    }
    for (i, r) in group.ingress.iter().enumerate() {
        let at = format!("securityGroups.{id}.ingress[{i}]");
        match r.protocol.as_str() {
            "tcp" | "udp" => match (r.from_port, r.to_port) {
                (Some(from), Some(to)) if from <= to => {}
                (Some(from), Some(to)) => {
                    return Err(format!("{at}.fromPort: {from} is past toPort {to}"))
                }
                _ => return Err(format!("{at}: tcp and udp rules need fromPort and toPort")),
            },
            "-1" => {
                if r.from_port.is_some() || r.to_port.is_some() {
                    return Err(format!(
                        "{at}: protocol -1 covers every port; give no fromPort or toPort"
                    ));
                }
            }
            other => return Err(format!("{at}.protocol: {other:?} is not tcp, udp or -1")),
        }
        match (&r.cidr, &r.source_group) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => return Err(format!("{at}: give exactly one of cidr and sourceGroup")),
        }
        if let Some(net) = r.cidr {
            if net != net.trunc() {
                return Err(format!(
                    "{at}.cidr: {net} has host bits set (the network is {})",
                    net.trunc()
                ));
            }
        }
    }
    Ok(())
}

impl IngressRule {
    /// Whether it lets in TCP to `port` (sk_lookup sees TCP only; UDP to
    /// the range is not steered).
    fn admits_tcp(&self, port: u16) -> bool {
        match self.protocol.as_str() {
            "-1" => true,
            "tcp" => self.from_port.unwrap_or(0) <= port && port <= self.to_port.unwrap_or(0),
            _ => false,
        }
    }
}

/// Who may connect to one VIP:port: everyone, or the members of these
/// groups' sources.
pub type Admit = Option<BTreeSet<String>>;

/// What the sk_lookup program of one namespace gets: each VIP:port with
/// its admission policy (0 admits all), and per policy and port the
/// sources allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steered {
    /// VIP:port -> policy.
    pub vips: BTreeMap<SocketAddr, u32>,
    /// (policy, port, source prefix).
    pub rules: BTreeSet<(u32, u16, IpNet)>,
    /// Groups the associations name that the inventory lacks (they admit
    /// nobody).
    pub undefined: BTreeSet<String>,
}

/// Policy numbers of one namespace, kept per set of groups so a change
/// that leaves a set alone leaves its number (and its entries) alone: an
/// update never points a VIP at another set's entries.
#[derive(Debug, Default)]
pub struct PolicyIds {
    by_set: BTreeMap<BTreeSet<String>, u32>,
    last: u32,
}

impl PolicyIds {
    fn get(&mut self, set: &BTreeSet<String>) -> u32 {
        if let Some(id) = self.by_set.get(set) {
            return *id;
        }
        // Never 0 (ADMIT_ALL); a wrap after four billion sets would reuse
        // numbers long released.
        self.last = self.last.checked_add(1).unwrap_or(1);
        self.by_set.insert(set.clone(), self.last);
        self.last
    }
}

/// Where the instances of one VPC that carry each group are.
fn members<'a>(
    ns: &str,
    instances: impl Iterator<Item = (&'a str, &'a [String], IpAddr)>,
) -> BTreeMap<&'a str, Vec<IpAddr>> {
    let mut out: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
    for (vpc, groups, addr) in instances {
        if vpc != ns {
            continue;
        }
        for g in groups {
            out.entry(g.as_str()).or_default().push(addr);
        }
    }
    out
}

/// The map contents for namespace `ns`, from the admission of each VIP:port
/// steered there, the groups, and the instances (VPC, groups, address).
pub fn steered<'a>(
    ns: &str,
    admission: &BTreeMap<SocketAddr, Admit>,
    groups: &BTreeMap<String, SecurityGroup>,
    instances: impl Iterator<Item = (&'a str, &'a [String], IpAddr)>,
    ids: &mut PolicyIds,
) -> Steered {
    let mut out = Steered::default();
    let mut ports: BTreeMap<u32, (&BTreeSet<String>, BTreeSet<u16>)> = BTreeMap::new();
    for (at, admit) in admission {
        let policy = match admit {
            None => latticed_common::ADMIT_ALL,
            Some(set) => {
                let id = ids.get(set);
                ports
                    .entry(id)
                    .or_insert((set, BTreeSet::new()))
                    .1
                    .insert(at.port());
                id
            }
        };
        out.vips.insert(*at, policy);
    }
    let in_use: BTreeSet<&BTreeSet<String>> = ports.values().map(|(set, _)| *set).collect();
    ids.by_set.retain(|set, _| in_use.contains(set));
    let members = members(ns, instances);
    for (policy, (set, ports)) in &ports {
        for g in *set {
            let Some(group) = groups.get(g) else {
                out.undefined.insert(g.clone());
                continue;
            };
            for rule in &group.ingress {
                let sources: Vec<IpNet> = match (&rule.cidr, &rule.source_group) {
                    (Some(net), _) => vec![*net],
                    (None, Some(src)) => members
                        .get(src.as_str())
                        .into_iter()
                        .flatten()
                        .map(|a| IpNet::from(*a))
                        .collect(),
                    (None, None) => vec![],
                };
                for port in ports.iter().filter(|p| rule.admits_tcp(**p)) {
                    out.rules
                        .extend(sources.iter().map(|net| (*policy, *port, *net)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(rules: serde_json::Value) -> SecurityGroup {
        serde_json::from_value(serde_json::json!({ "ingress": rules })).unwrap()
    }

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn set(ids: &[&str]) -> Admit {
        Some(ids.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn rules_become_entries_per_listener_port_and_source() {
        let groups = BTreeMap::from([
            (
                "sg-0000web1".to_owned(),
                group(serde_json::json!([
                    {"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidr": "10.0.1.0/24"},
                    {"protocol": "tcp", "fromPort": 8000, "toPort": 9000, "cidr": "fd00:1::/64"},
                    {"protocol": "udp", "fromPort": 0, "toPort": 65535, "cidr": "0.0.0.0/0"},
                    {"protocol": "tcp", "fromPort": 0, "toPort": 65535, "sourceGroup": "sg-0000app1"},
                ])),
            ),
            (
                "sg-0000all1".to_owned(),
                group(serde_json::json!([{"protocol": "-1", "cidr": "192.168.0.0/16"}])),
            ),
        ]);
        for (id, g) in &groups {
            check(id, g).unwrap();
        }
        let admission = BTreeMap::from([
            (at("169.254.171.1:443"), set(&["sg-0000web1"])),
            (at("169.254.171.1:8080"), set(&["sg-0000web1"])),
            (at("169.254.171.2:80"), None),
            (at("169.254.171.3:80"), set(&["sg-0000all1", "sg-000gone1"])),
        ]);
        let app = vec!["sg-0000app1".to_owned()];
        let instances = [
            ("vpc-a", app.as_slice(), "10.0.2.7".parse().unwrap()),
            ("vpc-b", app.as_slice(), "10.0.2.8".parse().unwrap()),
        ];
        let mut ids = PolicyIds::default();
        let out = steered(
            "vpc-a",
            &admission,
            &groups,
            instances.iter().map(|(v, g, a)| (*v, *g, *a)),
            &mut ids,
        );
        assert_eq!(out.vips[&at("169.254.171.2:80")], 0);
        let web = out.vips[&at("169.254.171.1:443")];
        let all = out.vips[&at("169.254.171.3:80")];
        assert!(web != 0 && all != 0 && web != all);
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let want = BTreeSet::from([
            (web, 443, net("10.0.1.0/24")),
            (web, 8080, net("fd00:1::/64")),
            // The instance of vpc-a in sg-0000app1, not the one of vpc-b.
            (web, 443, net("10.0.2.7/32")),
            (web, 8080, net("10.0.2.7/32")),
            (all, 80, net("192.168.0.0/16")),
        ]);
        assert_eq!(out.rules, want);
        assert_eq!(out.undefined, BTreeSet::from(["sg-000gone1".to_owned()]));

        // The same sets keep their numbers; a dropped set's number goes.
        let mut fewer = admission.clone();
        fewer.remove(&at("169.254.171.3:80"));
        let again = steered("vpc-a", &fewer, &groups, std::iter::empty(), &mut ids);
        assert_eq!(again.vips[&at("169.254.171.1:443")], web);
        assert_eq!(ids.by_set.len(), 1);
    }

    #[test]
    fn bad_rules_are_named() {
        for (rules, expect) in [
            (
                serde_json::json!([{"protocol": "tcp", "fromPort": 90, "toPort": 80, "cidr": "10.0.0.0/8"}]),
                "ingress[0].fromPort",
            ),
            (
                serde_json::json!([{"protocol": "tcp", "cidr": "10.0.0.0/8"}]),
                "need fromPort and toPort",
            ),
            (
                serde_json::json!([{"protocol": "icmp", "cidr": "10.0.0.0/8"}]),
                "ingress[0].protocol",
            ),
            (
                serde_json::json!([{"protocol": "-1"}]),
                "exactly one of cidr and sourceGroup",
            ),
            (
                serde_json::json!([{"protocol": "-1", "cidr": "10.0.0.1/8"}]),
                "host bits",
            ),
        ] {
            let e = check("sg-00000001", &group(rules)).unwrap_err();
            assert!(e.contains(expect), "{e}");
        }
        for bad in ["web", "sg-web", "sg-0000WEB1", "sg-0123456789"] {
            assert!(check(bad, &SecurityGroup::default()).is_err(), "{bad}");
        }
        assert!(check("sg-0123456789abcdef0", &SecurityGroup::default()).is_ok());
    }
}
