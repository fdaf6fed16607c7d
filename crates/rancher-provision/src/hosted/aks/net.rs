//! Address ranges and Kubernetes versions as AKS writes them.

use std::fmt;
use std::net::IpAddr;

/// An address range (`10.0.0.0/16`, `fd00::/64`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::/n`; `None` when it is not one.
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.trim().split_once('/')?;
        let addr: IpAddr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max && !p.starts_with('+')).then_some(Cidr { addr, prefix })
    }

    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        }
    }

    fn mask(&self) -> u128 {
        let (_, width) = Self::bits(self.addr);
        let host_bits = u32::from(width - self.prefix);
        let all = if width == 32 { u128::from(u32::MAX) } else { u128::MAX };
        if host_bits >= 128 { 0 } else { all & !((1u128 << host_bits) - 1) & all }
    }

    fn network(&self) -> u128 {
        Self::bits(self.addr).0 & self.mask()
    }

    /// Whether `ip` is in the range.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && Self::bits(ip).0 & self.mask() == self.network()
    }

    /// Whether the two ranges share an address.
    pub(crate) fn overlaps(&self, other: &Cidr) -> bool {
        if self.addr.is_ipv4() != other.addr.is_ipv4() {
            return false;
        }
        let shorter = if self.prefix <= other.prefix { self } else { other };
        let longer = if shorter == self { other } else { self };
        shorter.contains(longer.addr)
    }

    /// The first address after the network address (Kubernetes gives it to the `kubernetes` service).
    pub(crate) fn first_host(&self) -> Option<IpAddr> {
        let n = self.network().checked_add(1)?;
        match self.addr {
            IpAddr::V4(_) => u32::try_from(n).ok().map(|v| IpAddr::V4(v.into())),
            IpAddr::V6(_) => Some(IpAddr::V6(n.into())),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `major.minor[.patch]` as AKS names versions (no leading `v`); `None` when it is not one.
pub(crate) fn parse_version(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let mut parts = v.trim().split('.');
    let num = |p: Option<&str>| -> Option<u64> {
        let p = p?;
        (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit())).then(|| p.parse().ok()).flatten()
    };
    let major = num(parts.next())?;
    let minor = num(parts.next())?;
    let patch = match parts.next() {
        None => None,
        p => Some(num(p)?),
    };
    parts.next().is_none().then_some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let s = Cidr::parse("10.0.0.0/16").unwrap();
        assert!(s.contains("10.0.255.1".parse().unwrap()));
        assert!(!s.contains("10.1.0.1".parse().unwrap()));
        assert_eq!(s.first_host(), Some("10.0.0.1".parse().unwrap()));
        assert!(s.overlaps(&Cidr::parse("10.0.128.0/17").unwrap()));
        assert!(!s.overlaps(&Cidr::parse("10.244.0.0/16").unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/64").unwrap().contains("fd00::5".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "x/8", "10.0.0.0/+8"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.30"), Some((1, 30, None)));
        assert_eq!(parse_version("1.30.4"), Some((1, 30, Some(4))));
        for bad in ["v1.30.4", "1", "1.30.4.1", "1.x", "1..2", ""] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }
}
