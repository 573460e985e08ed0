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
    /// The TCP ports it lets in: none, some (an inclusive range), or every
    /// one (sk_lookup sees TCP only; UDP to the range is not steered).
    fn tcp_ports(&self) -> TcpPorts {
        match self.protocol.as_str() {
            "-1" => TcpPorts::All,
            "tcp" => match (self.from_port.unwrap_or(0), self.to_port.unwrap_or(0)) {
                (0 | 1, 65535) => TcpPorts::All,
                (from, to) => TcpPorts::Range(from, to),
            },
            _ => TcpPorts::None,
        }
    }
}

/// See [`IngressRule::tcp_ports`].
enum TcpPorts {
    None,
    Range(u16, u16),
    All,
}

/// Who may connect to one VIP:port: everyone, or the members of these
/// groups' sources.
pub type Admit = Option<BTreeSet<String>>;

/// What one namespace steers and who may connect, before the groups are
/// read: each service VIP:port, and each resource VIP with its port
/// ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Service VIP:ports.
    pub ports: BTreeMap<SocketAddr, Admit>,
    /// Resource VIPs: inclusive port ranges and who may connect.
    pub ranges: BTreeMap<IpAddr, (Vec<(u16, u16)>, Admit)>,
}

/// What the sk_lookup program of one namespace gets: each VIP:port with
/// its admission policy (0 admits all), each resource VIP with its policy
/// and ranges, and per policy and port the sources allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steered {
    /// VIP:port -> policy.
    pub vips: BTreeMap<SocketAddr, u32>,
    /// Resource VIP -> policy and port ranges.
    pub ranges: BTreeMap<IpAddr, (u32, Vec<(u16, u16)>)>,
    /// (policy, port, source prefix); port `ANY_PORT` (0) for a rule that
    /// admits every port.
    pub rules: BTreeSet<(u32, u16, IpNet)>,
    /// Groups the associations name that the inventory lacks (they admit
    /// nobody).
    pub undefined: BTreeSet<String>,
    /// The rules would need more than `MAX_SG_ENTRIES` entries (a rule for
    /// some ports over a wide resource range); `rules` is cut short, and
    /// the steering must not be applied.
    pub too_many: bool,
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

/// `ranges` sorted, with overlapping and adjacent ones merged.
fn disjoint(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Ports steered per policy, as inclusive ranges, with the policy's set.
type PolicyPorts<'s> = BTreeMap<u32, (&'s BTreeSet<String>, Vec<(u16, u16)>)>;

/// The map contents for namespace `ns`, from what is steered there and who
/// may connect, the groups, and the instances (VPC, groups, address).
pub fn steered<'a, 's>(
    ns: &str,
    admission: &'s Admission,
    groups: &BTreeMap<String, SecurityGroup>,
    instances: impl Iterator<Item = (&'a str, &'a [String], IpAddr)>,
    ids: &mut PolicyIds,
) -> Steered {
    let mut out = Steered::default();
    let mut ports: PolicyPorts<'s> = BTreeMap::new();
    let mut policy_of = |admit: &'s Admit, ranges: &[(u16, u16)]| match admit {
        None => latticed_common::ADMIT_ALL,
        Some(set) => {
            let id = ids.get(set);
            let entry = ports.entry(id).or_insert((set, Vec::new()));
            entry.1.extend_from_slice(ranges);
            id
        }
    };
    for (at, admit) in &admission.ports {
        let policy = policy_of(admit, &[(at.port(), at.port())]);
        out.vips.insert(*at, policy);
    }
    for (vip, (ranges, admit)) in &admission.ranges {
        let policy = policy_of(admit, ranges);
        out.ranges.insert(*vip, (policy, ranges.clone()));
    }
    // Many VIPs share a policy and a port (every service on 80): each port
    // is expanded once.
    for (_, ranges) in ports.values_mut() {
        *ranges = disjoint(std::mem::take(ranges));
    }
    let in_use: BTreeSet<&BTreeSet<String>> = ports.values().map(|(set, _)| *set).collect();
    ids.by_set.retain(|set, _| in_use.contains(set));
    let members = members(ns, instances);
    let limit = latticed_common::MAX_SG_ENTRIES as usize;
    for (policy, (set, ranges)) in &ports {
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
                let (from, to) = match rule.tcp_ports() {
                    TcpPorts::None => continue,
                    TcpPorts::All => {
                        let any = latticed_common::ANY_PORT as u16;
                        out.rules
                            .extend(sources.iter().map(|net| (*policy, any, *net)));
                        continue;
                    }
                    TcpPorts::Range(from, to) => (from, to),
                };
                // Expanded over the ports steered with this policy only.
                for &(lo, hi) in ranges {
                    for port in lo.max(from)..=hi.min(to) {
                        if out.rules.len() + sources.len() > limit {
                            out.too_many = true;
                            return out;
                        }
                        out.rules
                            .extend(sources.iter().map(|net| (*policy, port, *net)));
                    }
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
        let admission = Admission {
            ports: BTreeMap::from([
                (at("169.254.171.1:443"), set(&["sg-0000web1"])),
                (at("169.254.171.1:8080"), set(&["sg-0000web1"])),
                (at("169.254.171.2:80"), None),
                (at("169.254.171.3:80"), set(&["sg-0000all1", "sg-000gone1"])),
            ]),
            ranges: BTreeMap::new(),
        };
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
            // The instance of vpc-a in sg-0000app1, not the one of vpc-b,
            // on every port (0) as its rule says.
            (web, 0, net("10.0.2.7/32")),
            (all, 0, net("192.168.0.0/16")),
        ]);
        assert_eq!(out.rules, want);
        assert_eq!(out.undefined, BTreeSet::from(["sg-000gone1".to_owned()]));

        // The same sets keep their numbers; a dropped set's number goes.
        let mut fewer = admission.clone();
        fewer.ports.remove(&at("169.254.171.3:80"));
        let again = steered("vpc-a", &fewer, &groups, std::iter::empty(), &mut ids);
        assert_eq!(again.vips[&at("169.254.171.1:443")], web);
        assert_eq!(ids.by_set.len(), 1);
    }

    #[test]
    fn a_resource_range_costs_entries_only_for_the_ports_a_rule_opens() {
        let groups = BTreeMap::from([
            (
                "sg-00000db1".to_owned(),
                group(serde_json::json!([
                    {"protocol": "tcp", "fromPort": 5432, "toPort": 5433, "cidr": "10.0.1.0/24"},
                    {"protocol": "tcp", "fromPort": 1, "toPort": 65535, "cidr": "10.0.9.0/24"},
                ])),
            ),
            (
                "sg-00000wd1".to_owned(),
                group(serde_json::json!([
                    {"protocol": "tcp", "fromPort": 1, "toPort": 40000, "cidr": "10.0.0.0/8"},
                ])),
            ),
        ]);
        let vip: IpAddr = "169.254.171.9".parse().unwrap();
        let wide: IpAddr = "169.254.171.10".parse().unwrap();
        let open: IpAddr = "169.254.171.11".parse().unwrap();
        let admission = Admission {
            ports: BTreeMap::new(),
            ranges: BTreeMap::from([
                (vip, (vec![(1, 65535)], set(&["sg-00000db1"]))),
                (open, (vec![(8000, 8100)], None)),
            ]),
        };
        let mut ids = PolicyIds::default();
        let out = steered("vpc-a", &admission, &groups, std::iter::empty(), &mut ids);
        let db = out.ranges[&vip].0;
        assert_eq!(out.ranges[&vip].1, vec![(1, 65535)]);
        assert_eq!(out.ranges[&open], (0, vec![(8000, 8100)]));
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(
            out.rules,
            BTreeSet::from([
                (db, 5432, net("10.0.1.0/24")),
                (db, 5433, net("10.0.1.0/24")),
                (db, 0, net("10.0.9.0/24")),
            ])
        );
        assert!(!out.too_many);

        // A rule for 40,000 ports over a range of every port, from seven
        // sources, would need 280,000 entries: refused, not written.
        let mut many = admission.clone();
        many.ranges
            .insert(wide, (vec![(1, 65535)], set(&["sg-00000wd1"])));
        let cidrs: Vec<serde_json::Value> = (1..=7)
            .map(|i| serde_json::json!({"protocol": "tcp", "fromPort": 1, "toPort": 40000, "cidr": format!("10.{i}.0.0/16")}))
            .collect();
        let mut groups = groups;
        groups.insert(
            "sg-00000wd1".to_owned(),
            group(serde_json::Value::Array(cidrs)),
        );
        let out = steered("vpc-a", &many, &groups, std::iter::empty(), &mut ids);
        assert!(out.too_many);
        assert!(out.rules.len() <= latticed_common::MAX_SG_ENTRIES as usize);
    }

    #[test]
    fn ports_of_a_policy_are_merged_before_rules_are_expanded() {
        assert_eq!(
            disjoint(vec![
                (80, 80),
                (8000, 8100),
                (80, 80),
                (81, 90),
                (8050, 9000),
                (1, 1)
            ]),
            vec![(1, 1), (80, 90), (8000, 9000)]
        );
        assert_eq!(disjoint(vec![(65535, 65535), (1, 65535)]), vec![(1, 65535)]);
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
