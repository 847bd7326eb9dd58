//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on the client port, sans-io.
//!
//! Behind a TCP load balancer every connection comes from the balancer; the balancer tells the
//! real client's address in a header it writes before the client's first byte. A listener
//! configured with a [`ProxyPolicy`] other than [`ProxyMode::None`] gives every accepted
//! connection a [`ProxyPreface`]: from a trusted source (an address in `proxy_protocol_from`)
//! it **must** begin with a complete header of an allowed version; from anyone else a header
//! is refused, and a connection that does not begin with a PROXY signature is a direct client.
//! There is no guessing: a trusted source without a header, a malformed header, or a header of
//! a version the listener does not take all end the connection (without an HTTP answer — the
//! bytes were not HTTP).
//!
//! Parsing is the `ppp` crate's; this module only decides which version may be parsed, keeps
//! the bytes of a header split across reads in a bounded buffer ([`V1_MAX`], [`V2_MAX`]), and
//! says where the request starts. A v2 `LOCAL` command (a balancer's own health check), a v1
//! `UNKNOWN`, and v2 addresses that are not TCP over IPv4/IPv6 carry no client address: the
//! socket's own peer address is used, as the specification says.
//!
//! The handshake deadline (`handshake_timeout`) starts at accept and covers the header too:
//! the shard's state sees no byte until the header is complete.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use ppp::PartialResult;

/// Longest v1 header, CRLF included (the specification's 107 bytes).
pub const V1_MAX: usize = 107;

/// Longest v2 header this edge accepts, TLVs included: 16 fixed bytes + the longest address
/// block (216, AF_UNIX) leaves 280 bytes of TLVs. A longer header is malformed.
pub const V2_MAX: usize = 512;

/// The v1 signature.
const V1_SIG: &[u8] = ppp::v1::PROTOCOL_PREFIX.as_bytes();

/// The v2 signature (12 bytes).
const V2_SIG: &[u8] = ppp::v2::PROTOCOL_PREFIX;

/// Fixed part of a v2 header: signature, version/command, family/protocol, length.
const V2_FIXED: usize = 16;

/// Which PROXY protocol versions a listener takes from its trusted sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// No PROXY protocol: every connection is a direct client.
    #[default]
    None,
    /// Version 1 (text) only.
    V1,
    /// Version 2 (binary) only.
    V2,
    /// Either version.
    Any,
}

impl ProxyMode {
    /// Parses a setting value (`none`, `v1`, `v2`, `any`).
    pub fn parse(t: &str) -> Result<ProxyMode, String> {
        match t.to_ascii_lowercase().as_str() {
            "none" | "off" => Ok(ProxyMode::None),
            "v1" => Ok(ProxyMode::V1),
            "v2" => Ok(ProxyMode::V2),
            "any" => Ok(ProxyMode::Any),
            _ => Err(format!("`{t}` is not one of none, v1, v2, any")),
        }
    }

    /// The setting value.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::None => "none",
            ProxyMode::V1 => "v1",
            ProxyMode::V2 => "v2",
            ProxyMode::Any => "any",
        }
    }

    fn allows_v1(self) -> bool {
        matches!(self, ProxyMode::V1 | ProxyMode::Any)
    }

    fn allows_v2(self) -> bool {
        matches!(self, ProxyMode::V2 | ProxyMode::Any)
    }
}

/// A listener's PROXY protocol setting: the versions it takes and from whom (the default:
/// none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProxyPolicy {
    /// Versions taken from trusted sources.
    pub mode: ProxyMode,
    /// Sources that may (and then must) send a header.
    pub trusted: Vec<IpNet>,
}

impl ProxyPolicy {
    /// Parses a CIDR list (`10.0.0.0/8, 2001:db8::/32`; a bare address is one host).
    pub fn parse_cidrs(t: &str) -> Result<Vec<IpNet>, String> {
        t.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<IpNet>()
                    .map(|n| n.trunc())
                    .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{c}` is not a CIDR like 10.0.0.0/8 or 2001:db8::/32"))
            })
            .collect()
    }

    /// Whether `ip` is a trusted source (an IPv4-mapped IPv6 address counts as its IPv4).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The preface a connection from `peer` must pass, or None when the listener has no
    /// PROXY protocol.
    pub fn preface(&self, peer: SocketAddr) -> Option<Box<ProxyPreface>> {
        let expect = match self.mode {
            ProxyMode::None => return None,
            mode if self.is_trusted(peer.ip()) => Expect::Header(mode),
            _ => Expect::NoSignature,
        };
        Some(Box::new(ProxyPreface {
            peer,
            expect,
            buf: Vec::new(),
        }))
    }
}

/// What a connection must begin with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A trusted source: a header of these versions.
    Header(ProxyMode),
    /// Anyone else: anything but a PROXY signature.
    NoSignature,
}

/// How a preface ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// A header with the client's TCP address.
    Proxied,
    /// A header without one (v2 LOCAL, v1 UNKNOWN, not TCP over IPv4/IPv6): the socket's
    /// peer address stands.
    Local,
    /// An untrusted source without a signature: a direct client.
    Direct,
}

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A trusted source whose first bytes are not a PROXY signature.
    Missing,
    /// A signature followed by something the parser refuses, or a header over the size cap.
    Malformed,
    /// A well-formed signature of a version the listener does not take.
    VersionNotAllowed(u8),
    /// A PROXY signature from a source not in `proxy_protocol_from`.
    Untrusted,
}

impl Refusal {
    /// The `result` label of `herald_edge_proxy_headers_total` (a version the listener does
    /// not take counts as malformed for it).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed | Refusal::VersionNotAllowed(_) => "malformed",
            Refusal::Untrusted => "untrusted",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing => f.write_str("no PROXY header from a trusted source"),
            Refusal::Malformed => f.write_str("malformed PROXY header"),
            Refusal::VersionNotAllowed(v) => {
                write!(f, "PROXY header v{v}, which this listener does not take")
            }
            Refusal::Untrusted => f.write_str("PROXY header from an untrusted source"),
        }
    }
}

/// The result of feeding bytes to a [`ProxyPreface`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet: read more.
    NeedMore,
    /// Decided: `client` is the connection's client; the request starts at `consumed` in the
    /// bytes just fed (see [`ProxyPreface::request_bytes`] for what to hand on).
    Done {
        /// The client's address (from the header, or the socket's peer).
        client: SocketAddr,
        /// Bytes of the input just fed that belonged to the header.
        consumed: usize,
        /// How it passed.
        passed: Passed,
    },
    /// Close the connection.
    Refused(Refusal),
}

/// The PROXY preface of one connection: takes its first bytes, in any fragments, until it
/// can say who the client is or that the connection must be closed.
#[derive(Debug)]
pub struct ProxyPreface {
    /// The socket's peer (the balancer, or a direct client).
    peer: SocketAddr,
    expect: Expect,
    /// Bytes held from earlier reads: an incomplete header (at most [`V2_MAX`]), or the first
    /// bytes of an untrusted connection that might still become a signature (fewer than 12).
    buf: Vec<u8>,
}

/// How far `data` matches a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sig {
    /// It begins with the signature.
    Yes,
    /// It is shorter than the signature and begins it.
    Maybe,
    /// It does not.
    No,
}

fn sig(data: &[u8], sig: &[u8]) -> Sig {
    if data.starts_with(sig) {
        Sig::Yes
    } else if sig.starts_with(data) {
        Sig::Maybe
    } else {
        Sig::No
    }
}

impl ProxyPreface {
    /// The socket's peer address (the load balancer's, on a trusted connection).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Takes the next bytes read from the socket.
    pub fn feed(&mut self, input: &[u8]) -> Verdict {
        if input.is_empty() {
            return Verdict::NeedMore;
        }
        match self.expect {
            Expect::Header(mode) => self.feed_header(mode, input),
            Expect::NoSignature => self.feed_untrusted(input),
        }
    }

    /// After [`Verdict::Done`] with `consumed`: the bytes the request parser gets. Usually
    /// the rest of `input`; on an untrusted connection whose first bytes were held back
    /// (too few to tell them from a signature) those bytes with `input` after them.
    pub fn request_bytes<'a>(&'a self, input: &'a [u8], consumed: usize) -> &'a [u8] {
        if self.expect == Expect::NoSignature && !self.buf.is_empty() {
            &self.buf
        } else {
            &input[consumed.min(input.len())..]
        }
    }

    fn feed_untrusted(&mut self, input: &[u8]) -> Verdict {
        let data: &[u8] = if self.buf.is_empty() {
            input
        } else {
            // Rare (a first read of a few bytes): the held bytes are replayed with this input.
            self.buf.extend_from_slice(input);
            &self.buf
        };
        match (sig(data, V1_SIG), sig(data, V2_SIG)) {
            (Sig::Yes, _) | (_, Sig::Yes) => Verdict::Refused(Refusal::Untrusted),
            (Sig::Maybe, _) | (_, Sig::Maybe) => {
                if self.buf.is_empty() {
                    self.buf.extend_from_slice(input);
                }
                Verdict::NeedMore
            }
            (Sig::No, Sig::No) => Verdict::Done {
                client: self.peer,
                consumed: 0,
                passed: Passed::Direct,
            },
        }
    }

    fn feed_header(&mut self, mode: ProxyMode, input: &[u8]) -> Verdict {
        let cap = if mode.allows_v2() { V2_MAX } else { V1_MAX };
        let held = self.buf.len();
        let data: &[u8] = if held == 0 {
            &input[..input.len().min(cap)]
        } else {
            let take = input.len().min(cap - held);
            self.buf.extend_from_slice(&input[..take]);
            &self.buf
        };
        let verdict = match (sig(data, V1_SIG), sig(data, V2_SIG)) {
            (Sig::Yes, _) if !mode.allows_v1() => Verdict::Refused(Refusal::VersionNotAllowed(1)),
            (_, Sig::Yes) if !mode.allows_v2() => Verdict::Refused(Refusal::VersionNotAllowed(2)),
            (Sig::Yes, _) => self.parse_v1(data, held),
            (_, Sig::Yes) => self.parse_v2(data, held),
            (Sig::Maybe, _) | (_, Sig::Maybe) => Verdict::NeedMore,
            (Sig::No, Sig::No) => Verdict::Refused(Refusal::Missing),
        };
        let len = data.len();
        if verdict != Verdict::NeedMore {
            return verdict;
        }
        if len >= cap {
            // Everything held is header and the header is longer than allowed.
            return Verdict::Refused(Refusal::Malformed);
        }
        if held == 0 {
            self.buf.extend_from_slice(&input[..len]);
        }
        Verdict::NeedMore
    }

    /// `data` begins with the v1 signature; `held` of its bytes came from earlier reads.
    ///
    /// The line is handed to the parser only once it is complete (its CR and the byte after
    /// it are in) or has reached [`V1_MAX`]: on some incomplete lines `ppp` reports a final
    /// error (`PROXY TCP4 a b 5555 ` — an empty destination port), so every split would not
    /// end like the whole header.
    fn parse_v1(&self, data: &[u8], held: usize) -> Verdict {
        let line_done = data
            .iter()
            .position(|&b| b == b'\r')
            .is_some_and(|cr| data.len() >= cr + 2);
        if !line_done && data.len() < V1_MAX {
            return Verdict::NeedMore;
        }
        match ppp::v1::Header::try_from(data) {
            Ok(h) => {
                let client = match h.addresses {
                    ppp::v1::Addresses::Tcp4(a) => {
                        Some(SocketAddr::new(a.source_address.into(), a.source_port))
                    }
                    ppp::v1::Addresses::Tcp6(a) => {
                        Some(SocketAddr::new(a.source_address.into(), a.source_port))
                    }
                    ppp::v1::Addresses::Unknown => None,
                };
                self.done(client, h.header.len(), held)
            }
            Err(e) if e.is_incomplete() => Verdict::NeedMore,
            Err(_) => Verdict::Refused(Refusal::Malformed),
        }
    }

    /// `data` begins with the v2 signature; `held` of its bytes came from earlier reads.
    fn parse_v2(&self, data: &[u8], held: usize) -> Verdict {
        use ppp::v2::{Addresses, Command, ParseError, Protocol};
        match ppp::v2::Header::try_from(data) {
            Ok(h) => {
                let client = match (h.command, h.protocol, h.addresses) {
                    (Command::Proxy, Protocol::Stream, Addresses::IPv4(a)) => {
                        Some(SocketAddr::new(a.source_address.into(), a.source_port))
                    }
                    (Command::Proxy, Protocol::Stream, Addresses::IPv6(a)) => {
                        Some(SocketAddr::new(a.source_address.into(), a.source_port))
                    }
                    // LOCAL (the balancer's own connection), AF_UNSPEC, AF_UNIX, UDP.
                    _ => None,
                };
                self.done(client, h.len(), held)
            }
            Err(ParseError::Partial(_, len)) if V2_FIXED + len > V2_MAX => {
                Verdict::Refused(Refusal::Malformed)
            }
            Err(e) if e.is_incomplete() => Verdict::NeedMore,
            Err(_) => Verdict::Refused(Refusal::Malformed),
        }
    }

    fn done(&self, client: Option<SocketAddr>, header_len: usize, held: usize) -> Verdict {
        Verdict::Done {
            client: client.unwrap_or(self.peer),
            consumed: header_len.saturating_sub(held),
            passed: if client.is_some() {
                Passed::Proxied
            } else {
                Passed::Local
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LB: &str = "10.0.0.5:40000";
    const REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";

    fn policy(mode: ProxyMode) -> ProxyPolicy {
        ProxyPolicy {
            mode,
            trusted: ProxyPolicy::parse_cidrs("10.0.0.0/24, 2001:db8::/32").unwrap(),
        }
    }

    fn trusted(mode: ProxyMode) -> ProxyPreface {
        *policy(mode)
            .preface(LB.parse().unwrap())
            .expect("a preface")
    }

    fn untrusted() -> ProxyPreface {
        *policy(ProxyMode::Any)
            .preface("192.0.2.9:5000".parse().unwrap())
            .expect("a preface")
    }

    fn v1(src: &str, sport: u16) -> Vec<u8> {
        let ip: IpAddr = src.parse().unwrap();
        let (fam, dst) = if ip.is_ipv4() {
            ("TCP4", "10.0.0.1")
        } else {
            ("TCP6", "2001:db8::1")
        };
        format!("PROXY {fam} {src} {dst} {sport} 443\r\n").into_bytes()
    }

    fn v2(src: SocketAddr, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
        let dst: SocketAddr = if src.is_ipv4() {
            "10.0.0.1:443".parse().unwrap()
        } else {
            "[2001:db8::1]:443".parse().unwrap()
        };
        let mut b = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, dst),
        );
        for (kind, value) in tlvs {
            b = b.write_tlv(*kind, value).unwrap();
        }
        b.build().unwrap()
    }

    fn v2_local() -> Vec<u8> {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap()
    }

    /// Feeds `bytes` in pieces cut at `cuts`; returns the verdict and the bytes handed on.
    fn feed_split(mut p: ProxyPreface, bytes: &[u8], cuts: &[usize]) -> (Verdict, Vec<u8>) {
        let mut from = 0;
        for &to in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let input = &bytes[from..to];
            from = to;
            match p.feed(input) {
                Verdict::NeedMore => continue,
                v @ Verdict::Done { consumed, .. } => {
                    let mut handed = p.request_bytes(input, consumed).to_vec();
                    handed.extend_from_slice(&bytes[to..]);
                    return (v, handed);
                }
                v => return (v, Vec::new()),
            }
        }
        (Verdict::NeedMore, Vec::new())
    }

    fn whole(p: ProxyPreface, bytes: &[u8]) -> (Verdict, Vec<u8>) {
        feed_split(p, bytes, &[])
    }

    fn with_request(header: &[u8]) -> Vec<u8> {
        [header, REQUEST].concat()
    }

    fn proxied(client: &str, consumed: usize) -> Verdict {
        Verdict::Done {
            client: client.parse().unwrap(),
            consumed,
            passed: Passed::Proxied,
        }
    }

    #[test]
    fn modes_and_cidrs_parse() {
        assert_eq!(ProxyMode::parse("V2"), Ok(ProxyMode::V2));
        assert_eq!(ProxyMode::parse("none"), Ok(ProxyMode::None));
        assert!(ProxyMode::parse("v3").is_err());
        let nets = ProxyPolicy::parse_cidrs("10.1.2.3/8,  ::1, 2001:db8::/32,").unwrap();
        assert_eq!(nets.len(), 3);
        assert_eq!(nets[0].to_string(), "10.0.0.0/8", "host bits are dropped");
        assert_eq!(nets[1].to_string(), "::1/128", "a bare address is one host");
        assert!(ProxyPolicy::parse_cidrs("10.0.0.0/33").is_err());
        assert!(ProxyPolicy::parse_cidrs("lb.example.com").is_err());
        assert!(ProxyPolicy::parse_cidrs("").unwrap().is_empty());
    }

    #[test]
    fn trust_is_by_cidr_and_mapped_addresses_count_as_ipv4() {
        let p = policy(ProxyMode::V1);
        assert!(p.is_trusted(Ipv4Addr::new(10, 0, 0, 200).into()));
        assert!(!p.is_trusted(Ipv4Addr::new(10, 0, 1, 1).into()));
        assert!(p.is_trusted("2001:db8:1::7".parse().unwrap()));
        assert!(p.is_trusted(Ipv4Addr::new(10, 0, 0, 9).to_ipv6_mapped().into()));
        assert!(!p.is_trusted(Ipv6Addr::LOCALHOST.into()));
        let none = ProxyPolicy {
            mode: ProxyMode::None,
            ..policy(ProxyMode::Any)
        };
        assert!(none.preface(LB.parse().unwrap()).is_none());
    }

    #[test]
    fn v1_ipv4_and_ipv6_headers_name_the_client_and_the_request_follows() {
        for (src, want) in [
            ("198.51.100.7", "198.51.100.7:5555"),
            ("2001:db8::42", "[2001:db8::42]:5555"),
        ] {
            let header = v1(src, 5555);
            let (v, rest) = whole(trusted(ProxyMode::V1), &with_request(&header));
            assert_eq!(v, proxied(want, header.len()));
            assert_eq!(rest, REQUEST);
        }
    }

    #[test]
    fn v2_ipv4_and_ipv6_headers_with_tlvs_name_the_client() {
        for src in ["198.51.100.7:5555", "[2001:db8::42]:5555"] {
            let header = v2(src.parse().unwrap(), &[(0x01, b"h2"), (0x04, b"")]);
            let (v, rest) = whole(trusted(ProxyMode::V2), &with_request(&header));
            assert_eq!(v, proxied(src, header.len()));
            assert_eq!(rest, REQUEST);
        }
    }

    #[test]
    fn local_unknown_and_non_tcp_use_the_socket_address() {
        let lb: SocketAddr = LB.parse().unwrap();
        let local = |consumed| Verdict::Done {
            client: lb,
            consumed,
            passed: Passed::Local,
        };
        let h = v2_local();
        assert_eq!(whole(trusted(ProxyMode::Any), &h).0, local(h.len()));
        let h = b"PROXY UNKNOWN\r\n".to_vec();
        assert_eq!(whole(trusted(ProxyMode::V1), &h).0, local(h.len()));
        let h = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec();
        assert_eq!(whole(trusted(ProxyMode::V1), &h).0, local(h.len()));
        let udp = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Datagram,
            ("198.51.100.7:53".parse::<SocketAddr>().unwrap(), lb),
        )
        .build()
        .unwrap();
        assert_eq!(whole(trusted(ProxyMode::V2), &udp).0, local(udp.len()));
        let unix = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            ppp::v2::Unix::new([1; 108], [2; 108]),
        )
        .build()
        .unwrap();
        assert_eq!(whole(trusted(ProxyMode::V2), &unix).0, local(unix.len()));
    }

    #[test]
    fn a_trusted_source_without_a_header_is_refused() {
        for mode in [ProxyMode::V1, ProxyMode::V2, ProxyMode::Any] {
            assert_eq!(
                whole(trusted(mode), REQUEST).0,
                Verdict::Refused(Refusal::Missing),
                "{mode:?}"
            );
            // Decided on the first byte: no waiting for a head that will never be a header.
            assert_eq!(trusted(mode).feed(b"G"), Verdict::Refused(Refusal::Missing));
        }
    }

    #[test]
    fn a_version_the_listener_does_not_take_is_refused() {
        let h1 = with_request(&v1("198.51.100.7", 1));
        let h2 = with_request(&v2("198.51.100.7:1".parse().unwrap(), &[]));
        assert_eq!(
            whole(trusted(ProxyMode::V2), &h1).0,
            Verdict::Refused(Refusal::VersionNotAllowed(1))
        );
        assert_eq!(
            whole(trusted(ProxyMode::V1), &h2).0,
            Verdict::Refused(Refusal::VersionNotAllowed(2))
        );
        assert_eq!(Refusal::VersionNotAllowed(2).label(), "malformed");
        assert!(matches!(
            whole(trusted(ProxyMode::Any), &h1).0,
            Verdict::Done { .. }
        ));
        assert!(matches!(
            whole(trusted(ProxyMode::Any), &h2).0,
            Verdict::Done { .. }
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let mut bad_version = v2("198.51.100.7:1".parse().unwrap(), &[]);
        bad_version[12] = 0x31;
        let mut bad_command = v2("198.51.100.7:1".parse().unwrap(), &[]);
        bad_command[12] = 0x2F;
        let mut short_len = v2("198.51.100.7:1".parse().unwrap(), &[]);
        short_len[15] = 4; // IPv4 needs 12 address bytes
        let cases: Vec<Vec<u8>> = vec![
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n".to_vec(),
            b"PROXY TCP4 256.2.3.4 5.6.7.8 80 443\r\n".to_vec(),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 080 443\r\n".to_vec(),
            b"PROXY TCP5 1.2.3.4 5.6.7.8 80 443\r\n".to_vec(),
            b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\rX".to_vec(),
            b"PROXY TCP4 ::1 ::1 80 443\r\n".to_vec(),
            b"PROXY \xff\xfe\r\n".to_vec(),
            bad_version,
            bad_command,
            short_len,
        ];
        for case in cases {
            let bytes = with_request(&case);
            assert_eq!(
                whole(trusted(ProxyMode::Any), &bytes).0,
                Verdict::Refused(Refusal::Malformed),
                "{:?}",
                String::from_utf8_lossy(&case)
            );
        }
    }

    #[test]
    fn headers_over_the_caps_are_refused_without_waiting_for_them() {
        // v1: 107 bytes without CRLF.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(
            whole(trusted(ProxyMode::V1), &long).0,
            Verdict::Refused(Refusal::Malformed)
        );
        let mut p = trusted(ProxyMode::V1);
        let mut refused = None;
        for (i, b) in long.iter().enumerate() {
            match p.feed(std::slice::from_ref(b)) {
                Verdict::NeedMore => assert!(i < V1_MAX, "held {i} bytes"),
                v => {
                    refused = Some((i, v));
                    break;
                }
            }
        }
        let (at, v) = refused.expect("refused");
        assert_eq!(v, Verdict::Refused(Refusal::Malformed));
        assert!(at < V1_MAX, "refused after {at} bytes");
        // v2: a length beyond V2_MAX is refused once the fixed 16 bytes are in.
        let big = v2("198.51.100.7:1".parse().unwrap(), &[(0xE0, &[0u8; 600])]);
        assert!(big.len() > V2_MAX);
        assert_eq!(
            whole(trusted(ProxyMode::V2), &big[..V2_FIXED]).0,
            Verdict::Refused(Refusal::Malformed)
        );
        // Just within the cap is fine.
        let fits = v2(
            "198.51.100.7:1".parse().unwrap(),
            &[(0xE0, &[0u8; V2_MAX - V2_FIXED - 12 - 3])],
        );
        assert_eq!(fits.len(), V2_MAX);
        assert_eq!(
            whole(trusted(ProxyMode::V2), &fits).0,
            proxied("198.51.100.7:1", V2_MAX)
        );
    }

    #[test]
    fn garbage_is_refused_at_once() {
        for garbage in [
            b"\x16\x03\x01\x02\x00".as_slice(), // a TLS ClientHello
            b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c",
            b"PROXZ TCP4",
            b"\x00",
        ] {
            let v = whole(trusted(ProxyMode::Any), garbage).0;
            assert!(
                matches!(v, Verdict::Refused(Refusal::Missing)),
                "{garbage:?}: {v:?}"
            );
        }
    }

    /// Every split of every header into two reads, and byte-by-byte, ends like the whole.
    #[test]
    fn any_fragmentation_gives_the_same_result() {
        let mut garbage_v2 = v2("198.51.100.7:1".parse().unwrap(), &[]);
        garbage_v2[13] = 0x41; // address family 4
        let cases: Vec<(ProxyMode, Vec<u8>)> = vec![
            (ProxyMode::V1, with_request(&v1("198.51.100.7", 5555))),
            (ProxyMode::Any, with_request(&v1("2001:db8::42", 5555))),
            (ProxyMode::V1, with_request(b"PROXY UNKNOWN\r\n")),
            (
                ProxyMode::V2,
                with_request(&v2("198.51.100.7:5555".parse().unwrap(), &[])),
            ),
            (
                ProxyMode::Any,
                with_request(&v2(
                    "[2001:db8::42]:5555".parse().unwrap(),
                    &[(0x02, b"example.com"), (0xEE, &[7; 40])],
                )),
            ),
            (ProxyMode::Any, with_request(&v2_local())),
            (ProxyMode::Any, with_request(&garbage_v2)),
            (
                ProxyMode::Any,
                with_request(b"PROXY TCP4 1.2.3.4 5.6.7.8 80 x\r\n"),
            ),
            (ProxyMode::Any, REQUEST.to_vec()),
        ];
        for (mode, bytes) in cases {
            let expected = whole(trusted(mode), &bytes);
            assert_ne!(expected.0, Verdict::NeedMore);
            for cut in 1..bytes.len() {
                let got = feed_split(trusted(mode), &bytes, &[cut]);
                let same = match (got.0, expected.0) {
                    (
                        Verdict::Done {
                            client: a,
                            passed: pa,
                            ..
                        },
                        Verdict::Done {
                            client: b,
                            passed: pb,
                            ..
                        },
                    ) => a == b && pa == pb && got.1 == expected.1,
                    (a, b) => a == b,
                };
                assert!(
                    same,
                    "cut at {cut} of {:?}: {got:?} vs {expected:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            let cuts: Vec<usize> = (1..bytes.len()).collect();
            let bytewise = feed_split(trusted(mode), &bytes, &cuts);
            assert_eq!(
                std::mem::discriminant(&bytewise.0),
                std::mem::discriminant(&expected.0),
                "byte by byte: {bytewise:?}"
            );
            assert_eq!(bytewise.1, expected.1, "byte by byte");
        }
    }

    #[test]
    fn untrusted_sources_are_direct_unless_they_send_a_signature() {
        let peer: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let direct = Verdict::Done {
            client: peer,
            consumed: 0,
            passed: Passed::Direct,
        };
        assert_eq!(whole(untrusted(), REQUEST), (direct, REQUEST.to_vec()));
        for header in [
            v1("198.51.100.7", 1),
            v2("198.51.100.7:1".parse().unwrap(), &[]),
            b"PROXY garbage".to_vec(),
        ] {
            let bytes = with_request(&header);
            for cut in 1..bytes.len() {
                assert_eq!(
                    feed_split(untrusted(), &bytes, &[cut]).0,
                    Verdict::Refused(Refusal::Untrusted),
                    "cut at {cut}"
                );
            }
        }
        // First bytes that might have become a signature are handed on with the rest.
        for first in [b"P".as_slice(), b"PROX", b"\r", b"\r\n\r\n"] {
            let bytes = [first, b"OST / HTTP/1.1\r\n\r\n"].concat();
            let (v, handed) = feed_split(untrusted(), &bytes, &[first.len()]);
            assert_eq!(v, direct);
            assert_eq!(handed, bytes, "{first:?}");
        }
        let cuts: Vec<usize> = (1..REQUEST.len()).collect();
        assert_eq!(
            feed_split(untrusted(), REQUEST, &cuts),
            (direct, REQUEST.to_vec())
        );
    }

    #[test]
    fn the_preface_is_small_and_bounded() {
        // Boxed in the driver: the task grows by one pointer.
        assert!(std::mem::size_of::<ProxyPreface>() <= 64);
        let mut p = trusted(ProxyMode::Any);
        let header = v2("198.51.100.7:1".parse().unwrap(), &[(0xE0, &[1; 400])]);
        for b in &header[..header.len() - 1] {
            assert_eq!(p.feed(std::slice::from_ref(b)), Verdict::NeedMore);
        }
        assert!(p.buf.len() <= V2_MAX);
    }
}
