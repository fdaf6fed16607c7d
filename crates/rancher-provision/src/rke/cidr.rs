//! IP ranges in CIDR notation (`10.43.0.0/16`, `fd00::/108`): just what validating and laying out a
//! cluster's networks needs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network: an address with its host bits zero, and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network address (host bits zero).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn bits(&self) -> u8 {
        if self.network.is_ipv4() { 32 } else { 128 }
    }

    /// Whether `ip` is in this network (an address of the other family never is).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask(u128::from(u32::from(a)), 32, self.prefix) == u128::from(u32::from(n))
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => mask(u128::from(a), 128, self.prefix) == u128::from(n),
            _ => false,
        }
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The address `n` after the network address (`nth(1)` of `10.43.0.0/16` is `10.43.0.1`), if it is
    /// in the network.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let host_bits = u32::from(self.bits() - self.prefix);
        if host_bits < 128 && n >> host_bits != 0 {
            return None;
        }
        Some(match self.network {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) | u32::try_from(n).ok()?)),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) | n)),
        })
    }
}

/// `value` with only its top `prefix` of `bits` bits kept.
fn mask(value: u128, bits: u8, prefix: u8) -> u128 {
    let host = u32::from(bits - prefix);
    if host >= 128 { 0 } else { value >> host << host }
}

/// Why a string is not a CIDR.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network in CIDR notation like 10.43.0.0/16: {1}")]
pub struct CidrError(String, &'static str);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| CidrError(s.to_owned(), why);
        let (addr, prefix) = s.split_once('/').ok_or_else(|| err("the /prefix is missing"))?;
        let addr: IpAddr = addr.parse().map_err(|_| err("the address is not an IP address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| err("the prefix is not a number"))?;
        let cidr = Cidr { network: addr, prefix };
        if prefix > cidr.bits() {
            return Err(err("the prefix is longer than the address"));
        }
        if !cidr.contains(addr) || cidr.nth(0) != Some(addr) {
            return Err(err("the address has host bits set (use the network's first address)"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_contains_and_overlaps() {
        let svc = c("10.43.0.0/16");
        assert_eq!(svc.to_string(), "10.43.0.0/16");
        assert_eq!(svc.nth(1), Some("10.43.0.1".parse().unwrap()));
        assert_eq!(svc.nth(65_536), None);
        assert!(svc.contains("10.43.255.255".parse().unwrap()));
        assert!(!svc.contains("10.44.0.0".parse().unwrap()));
        assert!(!svc.contains("::1".parse().unwrap()));
        assert!(!svc.overlaps(&c("10.42.0.0/16")));
        assert!(svc.overlaps(&c("10.0.0.0/8")) && c("10.0.0.0/8").overlaps(&svc));
        assert!(c("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert_eq!(c("fd00::/108").nth(10), Some("fd00::a".parse().unwrap()));
        for bad in ["10.43.0.0", "10.43.0.1/16", "10.43.0.0/33", "x/8", "10.43.0.0/x", "::/129"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
