//! One URL for every topology, so `REDIS_URL` can name a cluster or a sentinel group:
//!
//! * `redis://…`, `rediss://…`, `unix://…` — one server (redis-rs's own forms);
//! * `redis+cluster://[user[:password]@]host:port[,host:port…]` — a Redis Cluster through
//!   these seed nodes (`rediss+cluster://` for TLS);
//! * `redis+sentinel://[user[:password]@]host:port[,host:port…]/master[/db]` — the primary
//!   that these sentinels monitor as `master` (`rediss+sentinel://` for TLS).
//!
//! Credentials are percent-decoded and become the configuration's user name and password
//! (the data nodes' credentials). A port may be left out (6379 for cluster nodes, 26379
//! for sentinels); IPv6 addresses go in brackets. Query parameters are not understood in
//! the two multi-host forms and are refused rather than ignored.

use crate::config::RedisConfigBuilder;
use crate::error::{Error, Result};

/// The builder for `url`, in any of the forms above.
pub(crate) fn builder_for(url: &str) -> Result<RedisConfigBuilder> {
    let builder = RedisConfigBuilder::default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(builder.url(url));
    };
    let (tls, kind) = match scheme.to_ascii_lowercase().as_str() {
        "redis+cluster" => (false, Kind::Cluster),
        "rediss+cluster" => (true, Kind::Cluster),
        "redis+sentinel" => (false, Kind::Sentinel),
        "rediss+sentinel" => (true, Kind::Sentinel),
        _ => return Ok(builder.url(url)),
    };
    let bad = |why: &str| Error::Config(format!("{scheme}:// URL: {why}"));
    if rest.contains('?') || rest.contains('#') {
        return Err(bad(
            "query parameters and fragments are not understood here; use \
             RedisConfig::builder() for other settings",
        ));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if path.contains('@') {
        // A `/` in a password ends the host list early, and the password's tail would be
        // read as hosts and ports (and shown in errors): refuse, without echoing it.
        return Err(bad(
            "an `@` after the first `/`: write a `/` in the user name or password as %2F \
             (and an `@` in the master name as %40)",
        ));
    }
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let default_port = match kind {
        Kind::Cluster => 6379,
        Kind::Sentinel => 26379,
    };
    let node_scheme = if tls { "rediss" } else { "redis" };
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        let host = host.trim();
        if host.is_empty() {
            return Err(bad("an empty host in the host list"));
        }
        nodes.push(format!(
            "{node_scheme}://{}",
            with_port(host, default_port, &bad)?
        ));
    }
    let mut builder = match kind {
        Kind::Cluster => {
            if !path.is_empty() && path != "0" {
                return Err(bad(
                    "Redis Cluster has only database 0; leave the path empty",
                ));
            }
            builder.cluster(nodes)
        }
        Kind::Sentinel => {
            let mut parts = path.split('/');
            let master = decode(parts.next().unwrap_or(""), &bad)?;
            if master.is_empty() {
                return Err(bad("the master name is missing (…/mymaster)"));
            }
            let mut b = builder.sentinel(master, nodes);
            match (parts.next(), parts.next()) {
                (None | Some(""), None) => {}
                (Some(db), None) => {
                    let db = db
                        .parse::<i64>()
                        .map_err(|_| bad("the database after the master name is not a number"))?;
                    b = b.database(db);
                }
                _ => return Err(bad("too many path segments (expected /master[/db])")),
            }
            b
        }
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let user = decode(user, &bad)?;
        if !user.is_empty() {
            builder = builder.username(user);
        }
        // an empty password is no password, as redis-rs reads `redis://user:@host` (an
        // `AUTH user ""` would fail against a server without one)
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            builder = builder.password(decode(p, &bad)?);
        }
    }
    Ok(builder)
}

enum Kind {
    Cluster,
    Sentinel,
}

/// `host` with `default` added when it names no port; checks the port is a number.
fn with_port(host: &str, default: u16, bad: &dyn Fn(&str) -> Error) -> Result<String> {
    let port = if let Some(v6) = host.strip_prefix('[') {
        let (_, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address without its closing bracket"))?;
        match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("unexpected text after an IPv6 address"))?,
            ),
        }
    } else {
        host.split_once(':').map(|(_, p)| p)
    };
    match port {
        None => Ok(format!("{host}:{default}")),
        Some(p) if p.parse::<u16>().is_ok_and(|p| p > 0) => Ok(host.to_string()),
        // (the text is not shown: a malformed URL may have a password there)
        Some(_) => Err(bad("a port that is not a number from 1 to 65535")),
    }
}

/// Percent-decodes one URL component.
fn decode(s: &str, bad: &dyn Fn(&str) -> Error) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("a broken %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("a %-escape that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Topology;

    #[test]
    fn plain_urls_stay_standalone() {
        for url in [
            "redis://127.0.0.1:6379",
            "unix:///tmp/r.sock",
            "rediss://h:1",
        ] {
            let c = builder_for(url).unwrap();
            let c = c.tcp_nodelay(true);
            let topology = format!("{:?}", c);
            assert!(topology.contains("Standalone"), "{topology}");
        }
    }

    #[test]
    fn cluster_urls_name_every_seed() {
        let c = builder_for("redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            c.topology,
            Topology::Cluster {
                nodes: vec![
                    "redis://10.0.0.1:7000".into(),
                    "redis://10.0.0.2:6379".into(),
                    "redis://[::1]:7002".into(),
                ]
            }
        );
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("p@ss"));
        assert!(!format!("{c:?}").contains("p@ss"));
    }

    #[test]
    fn sentinel_urls_name_the_master_and_database() {
        let c = builder_for("redis+sentinel://:secret@s1:26379,s2/mymaster/2")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(
            c.topology,
            Topology::Sentinel {
                master: "mymaster".into(),
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
            }
        );
        assert_eq!(c.database, Some(2));
        assert_eq!(c.username, None);
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("secret"));
    }

    #[test]
    fn errors_never_show_a_password_that_broke_the_url() {
        for url in [
            "redis+cluster://:hunter2/x@h1:7000",
            "redis+cluster://app:hunter2/x@h1:7000,h2:7001",
            "redis+sentinel://:hunter2/x@s1:26379/mymaster",
            "redis+sentinel://app:a@hunter2/x@s1/mymaster",
            "redis+cluster://:hunter2",
            "rediss+cluster://app:hunter2@h1:hunter2",
        ] {
            let err = builder_for(url).and_then(|b| b.build()).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
            assert!(!err.to_string().contains("hunter2"), "{url}: {err}");
        }
        // written as %2F, a `/` in a password works
        let c = builder_for("redis+cluster://:hunter2%2Fx@h1:7000")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.password.as_ref().map(|p| p.expose()), Some("hunter2/x"));
    }

    #[test]
    fn credentials_read_like_redis_rs_reads_them() {
        use redis::IntoConnectionInfo;
        for (userinfo, user, password) in [
            ("u:@", Some("u"), None),
            (":@", None, None),
            ("u@", Some("u"), None),
            (":p@", None, Some("p")),
        ] {
            let one = format!("redis://{userinfo}127.0.0.1:7000")
                .into_connection_info()
                .unwrap();
            assert_eq!(one.redis_settings().username(), user, "{userinfo}");
            assert_eq!(one.redis_settings().password(), password, "{userinfo}");
            let c = builder_for(&format!("redis+cluster://{userinfo}127.0.0.1:7000"))
                .unwrap()
                .build()
                .unwrap();
            assert_eq!(c.username.as_deref(), user, "{userinfo}");
            assert_eq!(
                c.password.as_ref().map(|p| p.expose()),
                password,
                "{userinfo}"
            );
        }
    }

    #[test]
    fn malformed_multi_host_urls_are_config_errors() {
        for url in [
            "redis+cluster://",
            "redis+cluster://h1:7000,,h2:7001",
            "redis+cluster://h1:notaport",
            "redis+cluster://h1:0",
            "redis+cluster://h1:7000/3",
            "redis+cluster://h1:7000?timeout=1",
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1:26379/m/x",
            "redis+sentinel://s1:26379/m/1/2",
            "redis+sentinel://u:%zz@s1/m",
            "redis+cluster://[::1:7000",
        ] {
            let err = builder_for(url).and_then(|b| b.build()).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{url}: {err:?}");
        }
    }
}
