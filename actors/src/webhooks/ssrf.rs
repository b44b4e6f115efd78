//! Which addresses a webhook may reach. A URL's host is resolved at delivery, and the request
//! connects only to the addresses that passed (the resolver below hands reqwest nothing else,
//! so no second lookup can answer differently between the check and the connect). Refused:
//! loopback, private (RFC 1918), shared (CGNAT, which holds some clouds' metadata services),
//! link-local (which holds 169.254.169.254), unique-local IPv6 (which holds AWS's
//! `fd00:ec2::254`), site-local, multicast, unspecified, broadcast, reserved and documentation
//! ranges, and IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) whose
//! IPv4 address is refused; Teredo altogether. An operator's allow-list (`webhooks.allow_hosts`:
//! host names or IP literals, as written in URLs) lifts the rule for the hosts it names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an IPv4 address may not be reached (`None`: it may).
fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, _) => "link-local (169.254.0.0/16, cloud metadata)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved (240.0.0.0/4, broadcast)",
        _ => return None,
    })
}

/// Why an IPv6 address may not be reached (`None`: it may).
fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // IPv4-mapped (::ffff:a.b.c.d) and the deprecated IPv4-compatible (::a.b.c.d).
    if let Some(v4) = ip.to_ipv4() {
        return refused_v4(v4).map(|_| "an IPv4 address it embeds is refused");
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    match s[0] {
        // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
        0x64 if s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] => {
            refused_v4(embedded(s[6], s[7])).map(|_| "an IPv4 address it embeds is refused")
        }
        // 6to4 (2002::/16): the IPv4 address follows the prefix.
        0x2002 => refused_v4(embedded(s[1], s[2])).map(|_| "an IPv4 address it embeds is refused"),
        0x2001 if s[1] == 0 => Some("Teredo (2001::/32)"),
        0x2001 if s[1] == 0x0db8 => Some("documentation (2001:db8::/32)"),
        0x0100 if s[1..4] == [0, 0, 0] => Some("discard (100::/64)"),
        x if x & 0xfe00 == 0xfc00 => Some("unique-local (fc00::/7, cloud metadata)"),
        x if x & 0xffc0 == 0xfe80 => Some("link-local (fe80::/10)"),
        x if x & 0xffc0 == 0xfec0 => Some("site-local (fec0::/10)"),
        x if x & 0xff00 == 0xff00 => Some("multicast (ff00::/8)"),
        _ => None,
    }
}

/// Why `ip` may not be reached by a webhook (`None`: it may).
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// The operator's allow-list: hosts (names or IP literals) a webhook may reach whatever they
/// resolve to. Compared lowercased, IPv6 literals without brackets.
#[derive(Debug, Clone, Default)]
pub struct AllowList(Arc<Vec<String>>);

fn normalize(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl AllowList {
    pub fn new(hosts: &[String]) -> Self {
        Self(Arc::new(hosts.iter().map(|h| normalize(h)).collect()))
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = normalize(host);
        self.0.contains(&host)
    }
}

/// The resolver webhook deliveries use: the system's lookup, then only the addresses the rule
/// lets through (all of them for an allow-listed host). Nothing left: refused, and no
/// connection is made.
#[derive(Debug, Clone)]
pub struct CheckedResolver {
    pub allow: AllowList,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed_host = allow.allows(&host);
            let mut refusal = None;
            let ok: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| {
                    if allowed_host {
                        return true;
                    }
                    match refused(a.ip()) {
                        Some(why) => {
                            refusal = Some(format!("{host} resolves to {} ({why})", a.ip()));
                            false
                        }
                        None => true,
                    }
                })
                .collect();
            if ok.is_empty() {
                let why = refusal.unwrap_or_else(|| format!("{host} resolves to no address"));
                return Err(Box::new(Refused(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A delivery refused by the address rule.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "forbidden address: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// The URL's host as an IP literal, refused by the rule and not allow-listed: reqwest
/// connects to a literal without asking the resolver, so it is checked here.
pub fn refused_literal(url: &reqwest::Url, allow: &AllowList) -> Option<Refused> {
    let host = url.host_str()?;
    if allow.allows(host) {
        return None;
    }
    let ip: IpAddr = normalize(host).parse().ok()?;
    refused(ip).map(|why| Refused(format!("{ip} ({why})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(s: &str) -> bool {
        refused(s.parse().unwrap()).is_some()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254", // AWS, GCP, Azure metadata
            "169.254.0.1",
            "100.100.100.200", // Alibaba metadata (shared space)
            "100.64.0.1",
            "192.0.0.192", // Oracle metadata
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254", // AWS metadata over IPv6
            "fc00::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1", // IPv4-mapped
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",        // IPv4-compatible
            "64:ff9b::7f00:1",    // NAT64 of 127.0.0.1
            "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
            "2002:7f00:1::",      // 6to4 of 127.0.0.1
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "2001:db8::1",
        ] {
            assert!(no(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "192.169.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80e::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!no(ip), "{ip} must pass");
        }
    }

    #[test]
    fn the_allow_list_names_hosts_as_urls_write_them() {
        let allow = AllowList::new(&["127.0.0.1".into(), "[::1]".into(), "LocalHost".into()]);
        assert!(allow.allows("127.0.0.1"));
        assert!(allow.allows("[::1]"));
        assert!(allow.allows("::1"));
        assert!(allow.allows("localhost"));
        assert!(allow.allows("localhost."));
        assert!(!allow.allows("127.0.0.2"));
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(refused_literal(&url("http://127.0.0.1:9/x"), &allow).is_none());
        assert!(refused_literal(&url("http://127.0.0.2:9/x"), &allow).is_some());
        assert!(refused_literal(&url("http://[::ffff:7f00:2]/"), &allow).is_some());
        assert!(refused_literal(&url("http://[fd00:ec2::254]/"), &AllowList::default()).is_some());
        assert!(refused_literal(&url("http://169.254.169.254/"), &AllowList::default()).is_some());
        assert!(refused_literal(&url("https://example.com/"), &AllowList::default()).is_none());
    }

    #[tokio::test]
    async fn the_resolver_hands_over_no_refused_address() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let resolver = CheckedResolver {
            allow: AllowList::default(),
        };
        // `localhost` resolves to loopback only: refused, nothing to connect to.
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("forbidden address"), "{err}");
        let allowed = CheckedResolver {
            allow: AllowList::new(&["localhost".into()]),
        };
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let addrs: Vec<SocketAddr> = allowed.resolve(name).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
