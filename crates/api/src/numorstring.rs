//! Values that upstream's API accepts either as a JSON number or as a string: ports (and port
//! ranges / named ports), protocols, AS numbers and DSCP values.
//!
//! The JSON behaviour mirrors upstream's `numorstring` package: a port is written as a number
//! when it is a single port, as `"min:max"` for a range and as its name for a named port; a
//! protocol or DSCP keeps the form (number or string) it was given, except that a numeric
//! string such as `"17"` becomes a number.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a number-or-string value could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NumOrStringError(pub String);

/// Names a named port may take: IANA-style service names (letters, digits, `-`, `_`, `.`,
/// not starting or ending with a separator).
static NAMED_PORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z0-9_]([a-zA-Z0-9_.-]*[a-zA-Z0-9_])?$").expect("valid regex")
});

/// A port, a port range (`min:max`) or a named port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    /// First port of the range (equal to `max_port` for a single port); 0 for a named port.
    pub min_port: u16,
    /// Last port of the range; 0 for a named port.
    pub max_port: u16,
    /// The port's name; empty for numeric ports.
    pub port_name: String,
}

impl Port {
    /// A single numeric port.
    pub fn single(port: u16) -> Self {
        Self::range(port, port).unwrap_or_default()
    }

    /// A numeric range; fails when `min > max`.
    pub fn range(min: u16, max: u16) -> Result<Self, NumOrStringError> {
        if min > max {
            return Err(NumOrStringError(format!(
                "invalid port range {min}:{max}: minimum is greater than maximum"
            )));
        }
        Ok(Self {
            min_port: min,
            max_port: max,
            port_name: String::new(),
        })
    }

    /// A named port; fails (returning the zero port in upstream's API) for an invalid name.
    pub fn named(name: &str) -> Result<Self, NumOrStringError> {
        if !NAMED_PORT.is_match(name) {
            return Err(NumOrStringError(format!("invalid port name {name:?}")));
        }
        Ok(Self {
            min_port: 0,
            max_port: 0,
            port_name: name.to_owned(),
        })
    }

    /// Parses the string form: a number, `min:max`, or a port name.
    pub fn from_string(s: &str) -> Result<Self, NumOrStringError> {
        if let Some((lo, hi)) = s.split_once(':') {
            let parse = |p: &str| {
                p.parse::<u16>()
                    .map_err(|_| NumOrStringError(format!("invalid port range {s:?}")))
            };
            return Self::range(parse(lo)?, parse(hi)?);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse::<u16>()
                .map(Self::single)
                .map_err(|_| NumOrStringError(format!("port {s:?} out of range")));
        }
        Self::named(s)
    }

    /// Whether this is a named port.
    pub fn is_named(&self) -> bool {
        !self.port_name.is_empty()
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_named() {
            f.write_str(&self.port_name)
        } else if self.min_port == self.max_port {
            write!(f, "{}", self.min_port)
        } else {
            write!(f, "{}:{}", self.min_port, self.max_port)
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !self.is_named() && self.min_port == self.max_port {
            serializer.serialize_u16(self.min_port)
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number, a \"min:max\" range or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::single)
                    .map_err(|_| E::custom(format!("port {v} out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::single)
                    .map_err(|_| E::custom(format!("port {v} out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Port, E> {
                Err(E::custom(format!("port {v} is not an integer")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Port::from_string(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// Protocol names upstream knows, in their canonical spelling.
pub const PROTOCOL_NAMES: [&str; 6] = ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"];

/// An IP protocol, by number (`6`) or name (`"TCP"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// A protocol number (0-255 when it came from JSON).
    Num(u8),
    /// A protocol name, as written (validation checks it against [`PROTOCOL_NAMES`]).
    Str(String),
}

impl Default for Protocol {
    /// Go's zero value: the number 0 (which validation rejects).
    fn default() -> Self {
        Protocol::Num(0)
    }
}

impl Protocol {
    /// Upstream's `ProtocolFromString`: known names (any case) get their canonical spelling,
    /// anything else is kept verbatim.
    pub fn from_string(s: &str) -> Self {
        match PROTOCOL_NAMES.iter().find(|n| n.eq_ignore_ascii_case(s)) {
            Some(name) => Protocol::Str((*name).to_owned()),
            None => Protocol::Str(s.to_owned()),
        }
    }

    /// Upstream's `ProtocolFromStringV1`: the v1 API used lower-case names.
    pub fn from_string_v1(s: &str) -> Self {
        Protocol::Str(s.to_ascii_lowercase())
    }

    /// The v1 (lower-case) form of this protocol.
    pub fn to_v1(&self) -> Self {
        match self {
            Protocol::Num(n) => Protocol::Num(*n),
            Protocol::Str(s) => Protocol::Str(s.to_ascii_lowercase()),
        }
    }

    /// The protocol number, for numeric protocols and known names.
    pub fn number(&self) -> Option<u8> {
        match self {
            Protocol::Num(n) => Some(*n),
            Protocol::Str(s) => match s.to_ascii_lowercase().as_str() {
                "tcp" => Some(6),
                "udp" => Some(17),
                "icmp" => Some(1),
                "icmpv6" => Some(58),
                "sctp" => Some(132),
                "udplite" => Some(136),
                _ => None,
            },
        }
    }

    /// Whether the protocol carries port numbers (TCP, UDP, UDPLite, SCTP).
    pub fn supports_ports(&self) -> bool {
        // Upstream's SupportsPorts: UDPLite carries ports on the wire, but Calico's rules
        // cannot match them.
        matches!(self.number(), Some(6 | 17 | 132))
    }

    /// Whether named ports can be resolved for this protocol (TCP, UDP, SCTP).
    pub fn supports_named_ports(&self) -> bool {
        matches!(self.number(), Some(6 | 17 | 132))
    }

    /// Whether this is a valid v3 protocol: a canonical name or a number 1-255.
    pub fn is_valid(&self) -> bool {
        match self {
            Protocol::Num(n) => *n >= 1,
            Protocol::Str(s) => PROTOCOL_NAMES.contains(&s.as_str()),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Num(n) => write!(f, "{n}"),
            Protocol::Str(s) => f.write_str(s),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Num(n) => serializer.serialize_u8(*n),
            Protocol::Str(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProtocolVisitor;
        impl Visitor<'_> for ProtocolVisitor {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a protocol number or name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                u8::try_from(v)
                    .map(Protocol::Num)
                    .map_err(|_| E::custom(format!("protocol number {v} out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                u8::try_from(v)
                    .map(Protocol::Num)
                    .map_err(|_| E::custom(format!("protocol number {v} out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Protocol, E> {
                Err(E::custom(format!("protocol {v} is not an integer")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                // A numeric string within range becomes a number (upstream does the same);
                // anything else, including "256", stays a string.
                Ok(match v.parse::<u8>() {
                    Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => Protocol::Num(n),
                    _ => Protocol::Str(v.to_owned()),
                })
            }
        }
        deserializer.deserialize_any(ProtocolVisitor)
    }
}

/// A BGP AS number; accepted as a number, a decimal string or dotted `"high.low"` notation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ASNumber(pub u32);

impl ASNumber {
    /// Parses decimal (`"64512"`) or dotted (`"1.10"` = 65546) notation.
    pub fn from_string(s: &str) -> Result<Self, NumOrStringError> {
        let bad = || NumOrStringError(format!("invalid AS number {s:?}"));
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if let Some((hi, lo)) = s.split_once('.') {
            if !digits(hi) || !digits(lo) {
                return Err(bad());
            }
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            return Ok(ASNumber((u32::from(hi) << 16) | u32::from(lo)));
        }
        if !digits(s) {
            return Err(bad());
        }
        s.parse().map(ASNumber).map_err(|_| bad())
    }
}

impl fmt::Display for ASNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ASNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for ASNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AsVisitor;
        impl Visitor<'_> for AsVisitor {
            type Value = ASNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AS number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ASNumber, E> {
                u32::try_from(v)
                    .map(ASNumber)
                    .map_err(|_| E::custom(format!("AS number {v} out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ASNumber, E> {
                u32::try_from(v)
                    .map(ASNumber)
                    .map_err(|_| E::custom(format!("AS number {v} out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ASNumber, E> {
                Err(E::custom(format!("AS number {v} is not an integer")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ASNumber, E> {
                ASNumber::from_string(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(AsVisitor)
    }
}

/// DSCP code point names and their values.
pub const DSCP_NAMES: [(&str, u8); 21] = [
    ("DF", 0),
    ("EF", 46),
    ("AF11", 10),
    ("AF12", 12),
    ("AF13", 14),
    ("AF21", 18),
    ("AF22", 20),
    ("AF23", 22),
    ("AF31", 26),
    ("AF32", 28),
    ("AF33", 30),
    ("AF41", 34),
    ("AF42", 36),
    ("AF43", 38),
    ("CS1", 8),
    ("CS2", 16),
    ("CS3", 24),
    ("CS4", 32),
    ("CS5", 40),
    ("CS6", 48),
    ("CS7", 56),
];

/// Largest DSCP value (6 bits).
pub const DSCP_MAX: u8 = 63;

/// A DSCP value, by number (0-63) or name (`"AF11"`, `"EF"`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dscp {
    /// A numeric code point.
    Num(u8),
    /// A named code point, as written.
    Str(String),
}

impl Dscp {
    /// Upstream's `DSCPFromString`: numeric strings become numbers, known names (any case) are
    /// upper-cased, anything else is kept verbatim.
    pub fn from_string(s: &str) -> Self {
        if let Ok(n) = s.parse::<u8>()
            && s.bytes().all(|b| b.is_ascii_digit())
        {
            return Dscp::Num(n);
        }
        match DSCP_NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            Some((name, _)) => Dscp::Str((*name).to_owned()),
            None => Dscp::Str(s.to_owned()),
        }
    }

    /// The numeric value; unknown names give 0 (as upstream does).
    pub fn to_u8(&self) -> u8 {
        match self {
            Dscp::Num(n) => *n,
            Dscp::Str(s) => DSCP_NAMES
                .iter()
                .find(|(n, _)| *n == s.as_str())
                .map_or(0, |(_, v)| *v),
        }
    }

    /// Whether the value is a known name or a number 0-63.
    pub fn is_valid(&self) -> bool {
        match self {
            Dscp::Num(n) => *n <= DSCP_MAX,
            Dscp::Str(s) => dscp_string_is_valid(s),
        }
    }
}

/// Whether `s` is a DSCP name or a decimal number 0-63.
pub fn dscp_string_is_valid(s: &str) -> bool {
    if DSCP_NAMES.iter().any(|(n, _)| *n == s) {
        return true;
    }
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u8>().is_ok_and(|n| n <= DSCP_MAX)
}

/// Whether `n` is a valid DSCP number.
pub fn dscp_number_is_valid(n: i64) -> bool {
    (0..=i64::from(DSCP_MAX)).contains(&n)
}

impl fmt::Display for Dscp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dscp::Num(n) => write!(f, "{n}"),
            Dscp::Str(s) => f.write_str(s),
        }
    }
}

impl Serialize for Dscp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Dscp::Num(n) => serializer.serialize_u8(*n),
            Dscp::Str(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Dscp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DscpVisitor;
        impl Visitor<'_> for DscpVisitor {
            type Value = Dscp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a DSCP number or name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dscp, E> {
                u8::try_from(v)
                    .map(Dscp::Num)
                    .map_err(|_| E::custom(format!("DSCP {v} out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dscp, E> {
                u8::try_from(v)
                    .map(Dscp::Num)
                    .map_err(|_| E::custom(format!("DSCP {v} out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dscp, E> {
                Err(E::custom(format!("DSCP {v} is not an integer")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dscp, E> {
                Ok(Dscp::from_string(v))
            }
        }
        deserializer.deserialize_any(DscpVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_json_forms() {
        let p: Port = serde_json::from_str("\"10:20\"").unwrap();
        assert_eq!(p, Port::range(10, 20).unwrap());
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"10:20\"");
        assert_eq!(serde_json::to_string(&Port::single(80)).unwrap(), "80");
        assert!(serde_json::from_str::<Port>("\"10:1\"").is_err());
        assert!(serde_json::from_str::<Port>("\"*\"").is_err());
    }

    #[test]
    fn protocol_numeric_strings() {
        let p: Protocol = serde_json::from_str("\"255\"").unwrap();
        assert_eq!(p, Protocol::Num(255));
        let p: Protocol = serde_json::from_str("\"256\"").unwrap();
        assert_eq!(p, Protocol::Str("256".into()));
        assert_eq!(
            Protocol::from_string("udplite"),
            Protocol::Str("UDPLite".into())
        );
    }

    #[test]
    fn as_number_dotted() {
        assert_eq!(ASNumber::from_string("1.10").unwrap(), ASNumber(65546));
        assert!(ASNumber::from_string("0.-1").is_err());
        assert!(ASNumber::from_string("65535.65536").is_err());
    }
}
