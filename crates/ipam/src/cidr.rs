//! Block arithmetic: addresses as ordinals within a block, blocks carved from a pool, datastore
//! names of CIDRs, and reservation ranges.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The IP family of an address or network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of a network.
    pub fn of_net(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => Self::V4,
            IpNet::V6(_) => Self::V6,
        }
    }

    /// The family of an address.
    pub fn of_ip(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }

    /// `4` or `6`, as CNI results and calicoctl print it.
    pub fn number(self) -> u8 {
        match self {
            Self::V4 => 4,
            Self::V6 => 6,
        }
    }
}

/// The address as a 128-bit integer (IPv4 in the low 32 bits).
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of `family` with integer value `v` (truncated to the family's width).
pub fn u128_to_ip(family: Family, v: u128) -> IpAddr {
    match family {
        Family::V4 => {
            #[expect(
                clippy::cast_possible_truncation,
                reason = "IPv4 values are masked to 32 bits first"
            )]
            let low = (v & u128::from(u32::MAX)) as u32;
            IpAddr::V4(Ipv4Addr::from(low))
        }
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// Number of host bits of a network.
pub fn host_bits(net: &IpNet) -> u8 {
    net.max_prefix_len() - net.prefix_len()
}

/// Number of addresses in a network (saturating at `u128::MAX` for `::/0`).
pub fn num_addresses(net: &IpNet) -> u128 {
    1u128
        .checked_shl(u32::from(host_bits(net)))
        .unwrap_or(u128::MAX)
}

/// The ordinal of `ip` within block `block`, when the block contains it.
pub fn ordinal_of(block: &IpNet, ip: IpAddr) -> Option<usize> {
    if !block.contains(&ip) {
        return None;
    }
    let off = ip_to_u128(ip) - ip_to_u128(block.network());
    usize::try_from(off).ok()
}

/// The address at `ordinal` within `block` (which must be below [`num_addresses`]).
pub fn ip_at(block: &IpNet, ordinal: usize) -> IpAddr {
    let base = ip_to_u128(block.network());
    u128_to_ip(Family::of_net(block), base + ordinal as u128)
}

/// The network of `prefix` bits containing `ip`.
pub fn net_containing(ip: IpAddr, prefix: u8) -> IpNet {
    match ip {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new(v4, prefix.min(32)).unwrap_or_default().trunc()),
        IpAddr::V6(v6) => IpNet::V6(
            Ipv6Net::new(v6, prefix.min(128))
                .unwrap_or_default()
                .trunc(),
        ),
    }
}

/// The effective block prefix of a pool: the configured block size, but never shorter than
/// the pool itself (a pool smaller than a block is a single block).
pub fn effective_block_prefix(pool: &IpNet, block_size: u8) -> u8 {
    block_size.clamp(pool.prefix_len(), pool.max_prefix_len())
}

/// The number of blocks of `block_prefix` in `pool` (saturating).
pub fn num_blocks(pool: &IpNet, block_prefix: u8) -> u128 {
    let bits = effective_block_prefix(pool, block_prefix) - pool.prefix_len();
    1u128.checked_shl(u32::from(bits)).unwrap_or(u128::MAX)
}

/// The `index`-th block of `block_prefix` in `pool` (`index` below [`num_blocks`]).
pub fn block_at(pool: &IpNet, block_prefix: u8, index: u128) -> IpNet {
    let prefix = effective_block_prefix(pool, block_prefix);
    let block_bits = pool.max_prefix_len() - prefix;
    let step = 1u128.checked_shl(u32::from(block_bits)).unwrap_or(0);
    let base = ip_to_u128(pool.network());
    let ip = u128_to_ip(
        Family::of_net(pool),
        base.wrapping_add(index.wrapping_mul(step)),
    );
    net_containing(ip, prefix)
}

/// Every block of `block_prefix` in `pool`, starting at block `start` (modulo the block count)
/// and wrapping around: each block exactly once.
pub fn blocks_in_pool(pool: &IpNet, block_prefix: u8, start: u128) -> impl Iterator<Item = IpNet> {
    let pool = *pool;
    let n = num_blocks(&pool, block_prefix);
    let start = if n == 0 { 0 } else { start % n };
    (0..n).map(move |i| {
        let idx = if n == u128::MAX {
            start.wrapping_add(i)
        } else {
            (start + i) % n
        };
        block_at(&pool, block_prefix, idx)
    })
}

/// The datastore name of a CIDR, as upstream's `names.CIDRToName`: `.`, `:` and `/` become
/// `-` (`10.1.0.0/26` is `10-1-0-0-26`).
pub fn cidr_to_name(net: &IpNet) -> String {
    net.to_string().replace(['.', ':', '/'], "-")
}

/// Parse an address or CIDR (`10.0.0.5` means `10.0.0.5/32`); host bits are cleared.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Ranges IPAM must not hand out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservations {
    nets: Vec<IpNet>,
}

impl Reservations {
    /// From a list of reserved networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether `ip` lies in a reserved range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether every address of `block` is reserved.
    pub fn covers(&self, block: &IpNet) -> bool {
        self.nets
            .iter()
            .any(|n| n.contains(&block.network()) && n.prefix_len() <= block.prefix_len())
    }

    /// The reserved networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn names_follow_upstream() {
        assert_eq!(cidr_to_name(&net("10.1.0.0/26")), "10-1-0-0-26");
        assert_eq!(cidr_to_name(&net("fd00::/122")), "fd00---122");
        assert_eq!(cidr_to_name(&net("fd00:1::40/122")), "fd00-1--40-122");
    }

    #[test]
    fn ordinals_round_trip_at_edges() {
        let b = net("10.1.0.64/26");
        assert_eq!(ordinal_of(&b, "10.1.0.64".parse().unwrap()), Some(0));
        assert_eq!(ordinal_of(&b, "10.1.0.127".parse().unwrap()), Some(63));
        assert_eq!(ordinal_of(&b, "10.1.0.128".parse().unwrap()), None);
        assert_eq!(ordinal_of(&b, "fd00::1".parse().unwrap()), None);
        assert_eq!(ip_at(&b, 63).to_string(), "10.1.0.127");
    }

    #[test]
    fn pool_smaller_than_block_is_one_block() {
        let p = net("10.9.0.0/30");
        assert_eq!(num_blocks(&p, 26), 1);
        assert_eq!(
            blocks_in_pool(&p, 26, 5).collect::<Vec<_>>(),
            vec![net("10.9.0.0/30")]
        );
    }

    #[test]
    fn huge_v6_pool_iterates_lazily() {
        let p = net("fd00::/48");
        let first: Vec<_> = blocks_in_pool(&p, 122, 3).take(2).collect();
        assert_eq!(first, vec![net("fd00::c0/122"), net("fd00::100/122")]);
    }

    #[test]
    fn reservations() {
        let r = Reservations::new(vec![net("10.0.0.0/30"), net("10.0.1.7/32")]);
        assert!(r.contains("10.0.0.3".parse().unwrap()));
        assert!(!r.contains("10.0.0.4".parse().unwrap()));
        assert!(r.covers(&net("10.0.0.0/31")));
        assert!(!r.covers(&net("10.0.0.0/29")));
        assert_eq!(parse_net("10.0.1.7"), Some(net("10.0.1.7/32")));
        assert_eq!(parse_net("10.0.1.7/24"), Some(net("10.0.1.0/24")));
        assert_eq!(parse_net("nope"), None);
    }

    fn v4_pool() -> impl Strategy<Value = (IpNet, u8)> {
        (any::<u32>(), 8u8..=30, 0u8..=8).prop_map(|(a, plen, extra)| {
            let pool = IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), plen).unwrap().trunc());
            (pool, (plen + extra).min(32))
        })
    }

    fn v6_pool() -> impl Strategy<Value = (IpNet, u8)> {
        (any::<u128>(), 100u8..=126, 0u8..=10).prop_map(|(a, plen, extra)| {
            let pool = IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), plen).unwrap().trunc());
            (pool, (plen + extra).min(128))
        })
    }

    proptest! {
        #[test]
        fn ordinal_ip_round_trip(a in any::<u32>(), prefix in 16u8..=32, off in any::<u32>()) {
            let block = IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), prefix).unwrap().trunc());
            let n = usize::try_from(num_addresses(&block)).unwrap();
            let ord = off as usize % n;
            let ip = ip_at(&block, ord);
            prop_assert!(block.contains(&ip));
            prop_assert_eq!(ordinal_of(&block, ip), Some(ord));
            prop_assert_eq!(net_containing(ip, prefix), block);
        }

        #[test]
        fn v6_ordinal_round_trip(a in any::<u128>(), prefix in 116u8..=128, off in any::<u16>()) {
            let block = IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), prefix).unwrap().trunc());
            let n = usize::try_from(num_addresses(&block)).unwrap();
            let ord = off as usize % n;
            let ip = ip_at(&block, ord);
            prop_assert_eq!(ordinal_of(&block, ip), Some(ord));
        }

        #[test]
        fn blocks_tile_the_pool((pool, bs) in v4_pool(), start in any::<u64>()) {
            let n = num_blocks(&pool, bs);
            prop_assume!(n <= 4096);
            let blocks: Vec<IpNet> = blocks_in_pool(&pool, bs, u128::from(start)).collect();
            prop_assert_eq!(blocks.len() as u128, n);
            let mut seen = std::collections::HashSet::new();
            let mut total = 0u128;
            for b in &blocks {
                prop_assert!(pool.contains(b));
                prop_assert_eq!(b.prefix_len(), effective_block_prefix(&pool, bs));
                prop_assert!(seen.insert(*b));
                total += num_addresses(b);
            }
            prop_assert_eq!(total, num_addresses(&pool));
        }

        #[test]
        fn v6_blocks_inside_pool((pool, bs) in v6_pool(), start in any::<u128>()) {
            for b in blocks_in_pool(&pool, bs, start).take(64) {
                prop_assert!(pool.contains(&b));
                prop_assert_eq!(net_containing(b.network(), b.prefix_len()), b);
            }
        }

        #[test]
        fn reservation_exclusion(a in any::<u32>(), rp in 24u8..=32, probe in any::<u32>()) {
            let res = IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), rp).unwrap().trunc());
            let r = Reservations::new(vec![res]);
            let ip = IpAddr::V4(Ipv4Addr::from(probe));
            prop_assert_eq!(r.contains(ip), res.contains(&ip));
            let ip_in = ip_at(&res, probe as usize % usize::try_from(num_addresses(&res)).unwrap());
            prop_assert!(r.contains(ip_in));
        }
    }
}
