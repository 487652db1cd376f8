//! Who the client is when requests come through a reverse proxy: the TCP peer is the proxy, so
//! the forwarding header names the client — but only a proxy we trust may say so. The header is
//! read right to left and the first address that is not one of our proxies is the client (every
//! address left of it was written by someone we do not trust, possibly the client itself).

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;

/// One trusted address or network (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR network"))?;
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }
}

/// The proxies whose forwarding headers are believed (`SHOP_TRUSTED_PROXIES`). Empty: none, the
/// TCP peer is the client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// A comma-separated list of addresses and CIDR networks; empty for none.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// Which header our proxies append the client's address to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, Envoy, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            other => Err(format!(
                "`{other}` is not a forwarding header (expected x-forwarded-for or forwarded)"
            )),
        }
    }
}

/// The client's address: the TCP peer, or — when the peer is a trusted proxy — the right-most
/// address of the forwarding header that is not a trusted proxy. An unreadable hop ends the walk
/// at the last trusted address.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    header: ForwardedHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.is_trusted(peer) {
        return peer;
    }
    let hops = match header {
        ForwardedHeader::XForwardedFor => hops(headers, "x-forwarded-for", parse_xff_hop),
        ForwardedHeader::Forwarded => hops(headers, "forwarded", parse_forwarded_element),
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(ip) = hop else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.is_trusted(client) {
            break;
        }
    }
    client
}

/// Every hop of every instance of `name`, in order (several header lines are one list).
fn hops(headers: &HeaderMap, name: &str, parse: fn(&str) -> Option<IpAddr>) -> Vec<Option<IpAddr>> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(text) => text.split(',').map(parse).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect()
}

fn parse_xff_hop(hop: &str) -> Option<IpAddr> {
    parse_node(hop.trim())
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_node(value.trim().trim_matches('"'))
    })
}

/// An address, possibly with a port: `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`,
/// `[2001:db8::1]:443`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (address, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn lists_parse_and_refuse_what_is_not_an_address() {
        let trusted: TrustedProxies = " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,".parse().unwrap();
        assert!(trusted.is_trusted(ip("10.1.2.3")));
        assert!(trusted.is_trusted(ip("::ffff:10.1.2.3")), "mapped IPv4");
        assert!(trusted.is_trusted(ip("192.0.2.7")));
        assert!(!trusted.is_trusted(ip("192.0.2.8")));
        assert!(trusted.is_trusted(ip("2001:db8:1::5")));
        assert!(!trusted.is_trusted(ip("2001:db9::5")));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert!("0.0.0.0/0"
            .parse::<TrustedProxies>()
            .unwrap()
            .is_trusted(ip("8.8.8.8")));
        for bad in [
            "10.0.0.0/33",
            "proxy.local",
            "10.0.0/8",
            "::/129",
            "1.2.3.4/x",
        ] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let xff = ForwardedHeader::XForwardedFor;
        // the client wrote a fake first hop; our proxies appended the real one and themselves
        let chain = headers("x-forwarded-for", &["6.6.6.6, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &chain, &trusted, xff),
            ip("203.0.113.9")
        );
        // an untrusted peer's header is ignored
        assert_eq!(
            client_ip(ip("198.51.100.1"), &chain, &trusted, xff),
            ip("198.51.100.1")
        );
        // no header: the proxy itself
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted, xff),
            ip("10.0.0.1")
        );
        // only proxies: the left-most
        let internal = headers("x-forwarded-for", &["10.9.9.9, 10.0.0.2"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &internal, &trusted, xff),
            ip("10.9.9.9")
        );
        // garbage right of the client stops at the last trusted hop
        let garbled = headers("x-forwarded-for", &["203.0.113.9, nonsense"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &garbled, &trusted, xff),
            ip("10.0.0.1")
        );
        // nothing trusted: the peer, whatever the header says
        assert_eq!(
            client_ip(ip("10.0.0.1"), &chain, &TrustedProxies::none(), xff),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_forwarded_header_is_read_when_configured() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let forwarded = headers(
            "forwarded",
            &[r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, For=10.0.0.3:80"#],
        );
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &forwarded,
                &trusted,
                ForwardedHeader::Forwarded
            ),
            ip("2001:db8:cafe::17")
        );
        // the other header is not read
        assert_eq!(
            client_ip(
                ip("10.0.0.1"),
                &forwarded,
                &trusted,
                ForwardedHeader::XForwardedFor
            ),
            ip("10.0.0.1")
        );
        assert_eq!(
            "Forwarded".parse::<ForwardedHeader>(),
            Ok(ForwardedHeader::Forwarded)
        );
        assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    }
}
