//! The client's address behind reverse proxies: `X-Forwarded-For` and `Forwarded`
//! (RFC 7239), read from the right, and IP addresses turned into rate-limit keys.
//!
//! Each proxy *appends* the address it received the request from; everything to the left
//! of what the trusted proxies appended was written by the client and proves nothing. So
//! with `n` trusted proxies in front of the service the client's address is the `n`-th
//! entry from the right (the first trusted proxy's), counted over every header line.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderValue};

/// Why no address could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Fewer entries than trusted proxies: the header is missing or the request did not
    /// come through all of them.
    TooFew { entries: usize, trusted: usize },
    /// The entry the trusted proxy wrote is not an address (or `unknown`).
    Unparsable(String),
}

/// A node of a forwarding header: an address, or an obfuscated identifier (RFC 7239
/// section 6.3, `_` followed by letters, digits, `.`, `_` or `-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Ip(IpAddr),
    Obfuscated(String),
}

/// The `n`-th (1-based) `X-Forwarded-For` entry from the right, over every header line.
/// Read as bytes from the right: what the client wrote further left (any bytes a header
/// may hold) is never looked at, so it cannot make the header unusable.
pub(crate) fn x_forwarded_for(headers: &HeaderMap, n: usize) -> Result<Node, Unusable> {
    let too_few = |entries| Unusable::TooFew {
        entries,
        trusted: n,
    };
    if n == 0 {
        return Err(too_few(0));
    }
    let lines: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let mut seen = 0;
    for line in lines.iter().rev() {
        for entry in line.rsplit(|&b| b == b',') {
            seen += 1;
            if seen == n {
                let entry = String::from_utf8_lossy(entry.trim_ascii());
                return parse_ip(&entry).map(Node::Ip).ok_or_else(|| {
                    Unusable::Unparsable(format!("X-Forwarded-For entry {entry:?}"))
                });
            }
        }
    }
    Err(too_few(seen))
}

/// The `for=` node of the `n`-th (1-based) `Forwarded` element from the right, over every
/// header line. Elements are split from the right, so only what the trusted proxies wrote
/// is read: quotes that do not balance or bytes that are not ASCII further left (written
/// by the client) cannot swallow or spoil the proxies' elements.
pub(crate) fn forwarded(headers: &HeaderMap, n: usize) -> Result<Node, Unusable> {
    let too_few = |entries| Unusable::TooFew {
        entries,
        trusted: n,
    };
    if n == 0 {
        return Err(too_few(0));
    }
    let lines: Vec<&[u8]> = headers
        .get_all("forwarded")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let mut seen = 0;
    for line in lines.iter().rev() {
        let mut end = line.len();
        loop {
            let start = element_start(&line[..end]);
            seen += 1;
            if seen == n {
                let element = &line[start.ok_or_else(|| {
                    Unusable::Unparsable("a Forwarded element whose quotes do not balance".into())
                })?..end];
                let text = std::str::from_utf8(element).map_err(|_| {
                    Unusable::Unparsable("a Forwarded element that is not UTF-8".into())
                })?;
                let value = elements_for(text)
                    .and_then(|mut e| e.pop().flatten())
                    .ok_or_else(|| {
                        Unusable::Unparsable(format!("a Forwarded element without for=: {text:?}"))
                    })?;
                return parse_node(&value)
                    .ok_or_else(|| Unusable::Unparsable(format!("Forwarded for={value:?}")));
            }
            match start {
                Some(0) => break, // the line's first element
                Some(start) => end = start - 1,
                // a trusted element whose quotes do not balance: nothing further left
                // can be placed
                None => {
                    return Err(Unusable::Unparsable(
                        "a Forwarded element whose quotes do not balance".into(),
                    ));
                }
            }
        }
    }
    Err(too_few(seen))
}

/// Where the last element of `s` starts: after the last comma outside a quoted string,
/// found from the right (a quote preceded by an odd number of backslashes is escaped).
/// `None` when a quoted string has no opening quote.
fn element_start(s: &[u8]) -> Option<usize> {
    let escaped = |i: usize| s[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1;
    let mut i = s.len();
    while i > 0 {
        i -= 1;
        match s[i] {
            b',' => return Some(i + 1),
            b'"' => loop {
                if i == 0 {
                    return None;
                }
                i -= 1;
                if s[i] == b'"' && !escaped(i) {
                    break;
                }
            },
            _ => {}
        }
    }
    Some(0)
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or in brackets (`[2001:db8::1]`).
fn parse_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The value of `for=` (already unquoted): an address with an optional port, an
/// obfuscated identifier with an optional port; `unknown` and anything else is `None`.
fn parse_node(value: &str) -> Option<Node> {
    if let Some(ip) = parse_ip(value) {
        return Some(Node::Ip(ip));
    }
    // "[" IPv6 "]" ":" obfuscated port (RFC 7239 section 6)
    if let Some(rest) = value.strip_prefix('[') {
        let (addr, port) = rest.split_once(']')?;
        let ip: Ipv6Addr = addr.parse().ok()?;
        return port
            .strip_prefix(':')
            .is_some_and(obfuscated)
            .then_some(Node::Ip(ip.into()));
    }
    // nodename [":" port]: what is left is an IPv4 address or an obfuscated name
    let name = value.split_once(':').map_or(value, |(name, _port)| name);
    if name.starts_with('_') {
        return obfuscated(name).then(|| Node::Obfuscated(name.to_string()));
    }
    name.parse::<std::net::Ipv4Addr>()
        .ok()
        .map(|ip| Node::Ip(ip.into()))
}

/// An obfuscated identifier: `_` followed by letters, digits, `.`, `_` or `-`.
fn obfuscated(s: &str) -> bool {
    s.strip_prefix('_').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    })
}

/// The `for=` value (unquoted) of each element of one `Forwarded` line (`None` for an
/// element without one); `None` when a quoted string does not end.
fn elements_for(line: &str) -> Option<Vec<Option<String>>> {
    let mut elements = Vec::new();
    let mut current: Option<String> = None;
    let mut pair = String::new();
    let mut chars = line.chars();
    fn finish_pair(pair: &mut String, current: &mut Option<String>) {
        if let Some((name, value)) = pair.split_once('=')
            && name.trim().eq_ignore_ascii_case("for")
        {
            *current = Some(value.trim().to_string());
        }
        pair.clear();
    }
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // a quoted string: copy it unquoted, `\x` standing for `x`
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => pair.push(chars.next()?),
                        other => pair.push(other),
                    }
                }
            }
            ';' => finish_pair(&mut pair, &mut current),
            ',' => {
                finish_pair(&mut pair, &mut current);
                elements.push(current.take());
            }
            other => pair.push(other),
        }
    }
    finish_pair(&mut pair, &mut current);
    elements.push(current);
    Some(elements)
}

/// The rate-limit key of an address: IPv4 as is, IPv6 by its network of `prefix` bits
/// (one client usually holds a whole /64, so per-address keys would give it 2^64
/// buckets); IPv4-mapped IPv6 addresses as IPv4.
pub(crate) fn ip_key(ip: IpAddr, prefix: u8) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.to_string();
            }
            if prefix >= 128 {
                return v6.to_string();
            }
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            format!("{}/{prefix}", Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(name, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn ip(s: &str) -> Node {
        Node::Ip(s.parse().unwrap())
    }

    #[test]
    fn x_forwarded_for_is_read_from_the_right_over_every_line() {
        // one proxy appended 203.0.113.9; the rest is the client's
        for spoof in ["", "1.2.3.4, ", "1.2.3.4, 5.6.7.8, ", "garbage, ", ", , "] {
            let h = headers("x-forwarded-for", &[&format!("{spoof}203.0.113.9")]);
            assert_eq!(x_forwarded_for(&h, 1), Ok(ip("203.0.113.9")), "{spoof:?}");
        }
        // the proxy's entry on a line of its own
        let h = headers("x-forwarded-for", &["6.6.6.6, 7.7.7.7", "203.0.113.9"]);
        assert_eq!(x_forwarded_for(&h, 1), Ok(ip("203.0.113.9")));
        // two proxies: a CDN appended the client, then the load balancer the CDN
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7", "192.0.2.1"]);
        assert_eq!(x_forwarded_for(&h, 2), Ok(ip("198.51.100.7")));
        // ports and brackets some proxies add
        let h = headers("x-forwarded-for", &["[2001:db8::1]:4711, 192.0.2.1:80"]);
        assert_eq!(x_forwarded_for(&h, 1), Ok(ip("192.0.2.1")));
        assert_eq!(x_forwarded_for(&h, 2), Ok(ip("2001:db8::1")));
    }

    #[test]
    fn x_forwarded_for_spoofing_attempts_are_refused_not_keyed_by_the_proxy() {
        // fewer entries than trusted proxies: not through the proxies, or stripped
        assert_eq!(
            x_forwarded_for(&HeaderMap::new(), 1),
            Err(Unusable::TooFew {
                entries: 0,
                trusted: 1
            })
        );
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        assert!(matches!(
            x_forwarded_for(&h, 2),
            Err(Unusable::TooFew { entries: 1, .. })
        ));
        // what sits where the trusted entry belongs must be an address
        for bad in [
            "1.2.3.4, not-an-ip",
            "1.2.3.4,",
            "1.2.3.4, 999.1.1.1",
            "unknown",
        ] {
            let h = headers("x-forwarded-for", &[bad]);
            assert!(
                matches!(x_forwarded_for(&h, 1), Err(Unusable::Unparsable(_))),
                "{bad:?}"
            );
        }
        assert!(x_forwarded_for(&HeaderMap::new(), 0).is_err());
    }

    #[test]
    fn forwarded_reads_for_with_quotes_brackets_ports_and_obfuscated_names() {
        let cases: [(&[&str], usize, Node); 9] = [
            (
                &["for=192.0.2.60;proto=http;by=203.0.113.43"],
                1,
                ip("192.0.2.60"),
            ),
            (
                &["For=\"[2001:db8:cafe::17]:4711\""],
                1,
                ip("2001:db8:cafe::17"),
            ),
            (&["for=\"[2001:db8:cafe::17]\""], 1, ip("2001:db8:cafe::17")),
            (&["for=\"192.0.2.43:47011\""], 1, ip("192.0.2.43")),
            (
                &["for=_hidden, for=198.51.100.17"],
                2,
                Node::Obfuscated("_hidden".into()),
            ),
            (
                &["for=\"_SEVKISEK:_port\""],
                1,
                Node::Obfuscated("_SEVKISEK".into()),
            ),
            (
                &["for=192.0.2.43, for=198.51.100.17;by=x"],
                1,
                ip("198.51.100.17"),
            ),
            // the client's own element, then the proxy's on another line
            (
                &["for=6.6.6.6", "proto=https;for=198.51.100.17"],
                1,
                ip("198.51.100.17"),
            ),
            // a quoted comma or semicolon in the client's part shifts nothing
            (
                &["for=\"a,b;c\", for=198.51.100.17"],
                1,
                ip("198.51.100.17"),
            ),
        ];
        for (lines, n, want) in cases {
            assert_eq!(
                forwarded(&headers("forwarded", lines), n),
                Ok(want),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn forwarded_spoofing_attempts_are_refused() {
        for (lines, n) in [
            // the trusted element's own quote does not end (a client's unbalanced quote
            // further left is ignored: what_the_client_writes_left_of_the_trusted_...)
            (&["for=6.6.6.6, for=\"198.51.100.17"][..], 1),
            (&["for=6.6.6.6, for=\"198.51.100.17\\\""][..], 1),
            // the trusted element says nothing usable
            (&["for=unknown"][..], 1),
            (&["for=6.6.6.6, by=203.0.113.43"][..], 1),
            (&["for=_"][..], 1),
            (&["for=_bad/name"][..], 1),
            (&["for=2001:db8::1:80x"][..], 1),
            (&["for=198.51.100.17"][..], 2),
            (&[][..], 1),
        ] {
            assert!(
                forwarded(&headers("forwarded", lines), n).is_err(),
                "{lines:?} {n}"
            );
        }
    }

    fn raw(name: &'static str, lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(name, HeaderValue::from_bytes(l).unwrap());
        }
        h
    }

    /// What the client writes left of the trusted entries proves nothing and must change
    /// nothing: bytes that are not visible ASCII (obs-text, allowed in header values) or
    /// quotes that do not balance, on the proxy's line or a line of their own, made the
    /// whole header unusable, so any client behind the proxies could move itself from its
    /// own bucket to the shared one (`Unusable::SharedKey`) or get a 400 at will.
    #[test]
    fn what_the_client_writes_left_of_the_trusted_entries_changes_nothing() {
        let client_parts: [&[u8]; 7] = [
            b"\xff\xfe",
            b"caf\xc3\xa9",
            b"for=\"",
            b"for=\"6.6.6.6\\\"",
            b"for=\"a\\",
            b"\"\"\"",
            b"for=\"x\xff\"",
        ];
        for client in client_parts {
            let same_line = [client, b", 203.0.113.9"].concat();
            let h = raw("x-forwarded-for", &[&same_line]);
            assert_eq!(x_forwarded_for(&h, 1), Ok(ip("203.0.113.9")), "{client:?}");
            let h = raw("x-forwarded-for", &[client, b"203.0.113.9"]);
            assert_eq!(x_forwarded_for(&h, 1), Ok(ip("203.0.113.9")), "{client:?}");

            for (proxy, want) in [
                (&b"for=198.51.100.17"[..], ip("198.51.100.17")),
                (b"for=\"[2001:db8::1]:4711\";proto=https", ip("2001:db8::1")),
            ] {
                let same_line = [client, b", ", proxy].concat();
                let h = raw("forwarded", &[&same_line]);
                assert_eq!(forwarded(&h, 1), Ok(want.clone()), "{same_line:?}");
                let h = raw("forwarded", &[client, proxy]);
                assert_eq!(forwarded(&h, 1), Ok(want.clone()), "{client:?}");
                // two proxies, the outer one's element read
                let two = [client, b", ", proxy, b", for=192.0.2.1"].concat();
                let h = raw("forwarded", &[&two]);
                assert_eq!(forwarded(&h, 2), Ok(want), "{two:?}");
            }
        }
        // the trusted entry itself must still be an address
        let h = raw("x-forwarded-for", &[b"1.2.3.4, 203.0.113.\xff"]);
        assert!(matches!(
            x_forwarded_for(&h, 1),
            Err(Unusable::Unparsable(_))
        ));
        let h = raw("forwarded", &[b"for=1.2.3.4, for=\"203.0.113.\xff\""]);
        assert!(matches!(forwarded(&h, 1), Err(Unusable::Unparsable(_))));
        let h = raw("forwarded", &[b"for=1.2.3.4, for=\"203.0.113.9"]);
        assert!(matches!(forwarded(&h, 1), Err(Unusable::Unparsable(_))));
        // nor can an element be placed left of a trusted one that does not balance
        let h = raw("forwarded", &[b"for=1.2.3.4", b"for=5.6.7.8, by=\"x"]);
        assert!(matches!(forwarded(&h, 3), Err(Unusable::Unparsable(_))));
    }

    /// RFC 7239 section 6: a node's port may be obfuscated, after an IPv6 address too.
    #[test]
    fn an_obfuscated_port_after_an_ipv6_address_is_understood() {
        let h = headers("forwarded", &["for=\"[2001:db8:cafe::17]:_p0rt\""]);
        assert_eq!(forwarded(&h, 1), Ok(ip("2001:db8:cafe::17")));
        let h = headers("forwarded", &["for=\"192.0.2.43:_p0rt\""]);
        assert_eq!(forwarded(&h, 1), Ok(ip("192.0.2.43")));
        for bad in [
            "for=\"[2001:db8:cafe::17]:x\"",
            "for=\"[2001:db8:cafe::17]x\"",
            "for=\"[2001:db8:cafe::17]:_\"",
            "for=\"[2001:db8:cafe::17]:_a/b\"",
        ] {
            assert!(
                forwarded(&headers("forwarded", &[bad]), 1).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn ipv6_addresses_are_keyed_by_their_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a, 64), "2001:db8:1:2::/64");
        assert_eq!(ip_key(a, 64), ip_key(b, 64));
        assert_ne!(ip_key(a, 64), ip_key(other, 64));
        assert_eq!(ip_key(a, 48), ip_key(other, 48));
        assert_eq!(ip_key(a, 128), "2001:db8:1:2:aaaa::1");
        assert_eq!(ip_key(a, 0), "::/0");
        assert_eq!(ip_key("::ffff:192.0.2.1".parse().unwrap(), 64), "192.0.2.1");
        assert_eq!(ip_key("192.0.2.1".parse().unwrap(), 64), "192.0.2.1");
    }
}
