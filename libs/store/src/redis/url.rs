//! `WEIR_REDIS_URL`: the three forms a production Redis comes in
//! (protocol.md §3), parsed before anything connects so that a wrong URL is
//! refused at start with a line that names the forms.

use std::fmt;

use percent_encoding::percent_decode_str;

/// What a bad URL's error says, after what was wrong.
pub const ACCEPTED_FORMS: &str = "accepted forms: redis://[user:pass@]host:port[/db], \
     rediss://[user:pass@]host:port[/db], \
     redis+sentinel://[user:pass@]host1:port1,host2:port2,.../<master name>[?db=N], \
     redis+cluster://[user:pass@]host1:port1,host2:port2,...";

/// Sentinels listen on 26379 unless told otherwise; Redis on 6379.
const SENTINEL_PORT: u16 = 26379;
const REDIS_PORT: u16 = 6379;

/// A Redis URL that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Redis URL {url:?}: {problem}; {ACCEPTED_FORMS}")]
pub struct UrlError {
    /// The URL with its password hidden.
    pub url: String,
    pub problem: String,
}

/// Where the session store is.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisUrl {
    /// One server, or a managed endpoint that fails over behind one address
    /// (`redis://`, `rediss://`, `unix://`): the URL as given.
    Single(String),
    /// A master looked up through sentinels.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        db: i64,
        auth: Auth,
    },
    /// A Redis Cluster, discovered from any of `nodes`.
    Cluster {
        nodes: Vec<(String, u16)>,
        auth: Auth,
    },
}

/// Credentials for the data nodes (never the sentinels').
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<RedisUrl, UrlError> {
        let fail = |problem: &str| UrlError {
            url: redact(url),
            problem: problem.to_owned(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| fail("no scheme"))?;
        match scheme {
            "redis" | "rediss" | "unix" | "redis+unix" => {
                redis::Client::open(url).map_err(|e| fail(&e.to_string()))?;
                Ok(RedisUrl::Single(url.to_owned()))
            }
            "redis+sentinel" => {
                let (authority, path, query) = split(rest);
                let (auth, hosts) = credentials(authority).map_err(|p| fail(&p))?;
                let sentinels = hosts_of(hosts, SENTINEL_PORT).map_err(|p| fail(&p))?;
                let master = path.trim_matches('/');
                if master.is_empty() || master.contains('/') {
                    return Err(fail("no master name (…/<master name>)"));
                }
                let db = db_of(query).map_err(|p| fail(&p))?;
                Ok(RedisUrl::Sentinel {
                    sentinels,
                    master: decode(master),
                    db,
                    auth,
                })
            }
            "redis+cluster" => {
                let (authority, path, query) = split(rest);
                if !path.trim_matches('/').is_empty() || !query.is_empty() {
                    return Err(fail(
                        "a cluster URL takes no path or query (a cluster has one database)",
                    ));
                }
                let (auth, hosts) = credentials(authority).map_err(|p| fail(&p))?;
                let nodes = hosts_of(hosts, REDIS_PORT).map_err(|p| fail(&p))?;
                Ok(RedisUrl::Cluster { nodes, auth })
            }
            other => Err(fail(&format!("unknown scheme {other:?}"))),
        }
    }

    /// `single`, `sentinel` or `cluster`, for logs and status.
    pub fn deployment(&self) -> &'static str {
        match self {
            RedisUrl::Single(_) => "single",
            RedisUrl::Sentinel { .. } => "sentinel",
            RedisUrl::Cluster { .. } => "cluster",
        }
    }
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let user = rest[..at].split_once(':').map_or(&rest[..at], |(u, _)| u);
    let hidden = if rest[..at].contains(':') {
        format!("{user}:***")
    } else {
        "***".to_owned()
    };
    format!("{scheme}://{hidden}{}", &rest[at..])
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisUrl::Single(url) => write!(f, "Single({})", redact(url)),
            RedisUrl::Sentinel {
                sentinels,
                master,
                db,
                ..
            } => write!(f, "Sentinel({sentinels:?}, {master}, db {db})"),
            RedisUrl::Cluster { nodes, .. } => write!(f, "Cluster({nodes:?})"),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Auth({:?}, ***)", self.username)
    }
}

/// `authority`, `path`, `query` of what follows `scheme://`.
fn split(rest: &str) -> (&str, &str, &str) {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    (authority, path, query)
}

fn credentials(authority: &str) -> Result<(Auth, &str), String> {
    let Some((userinfo, hosts)) = authority.rsplit_once('@') else {
        return Ok((Auth::default(), authority));
    };
    let (user, pass) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let auth = Auth {
        username: (!user.is_empty()).then(|| decode(user)),
        password: pass.filter(|p| !p.is_empty()).map(decode),
    };
    if auth.username.is_some() && auth.password.is_none() {
        return Err("a user name without a password".into());
    }
    Ok((auth, hosts))
}

fn hosts_of(hosts: &str, default_port: u16) -> Result<Vec<(String, u16)>, String> {
    if hosts.is_empty() {
        return Err("no host".into());
    }
    hosts
        .split(',')
        .map(|h| {
            let (host, port) = match h.rsplit_once(':').filter(|_| !h.ends_with(']')) {
                Some((host, _)) if !host.ends_with(']') && host.contains(':') => {
                    return Err(format!("IPv6 address {h:?} must be in brackets"));
                }
                Some((host, port)) => (
                    host,
                    port.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| format!("bad port in {h:?}"))?,
                ),
                None => (h, default_port),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() || host.contains(['/', '@', ' ']) {
                return Err(format!("bad host {h:?}"));
            }
            Ok((host.to_owned(), port))
        })
        .collect()
}

fn db_of(query: &str) -> Result<i64, String> {
    let mut db = 0;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("db", n)) => {
                db = n
                    .parse()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("db {n:?} is not a database number"))?;
            }
            _ => return Err(format!("unknown option {pair:?} (only db=N)")),
        }
    }
    Ok(db)
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[(&str, u16)]) -> Vec<(String, u16)> {
        list.iter().map(|(h, p)| (h.to_string(), *p)).collect()
    }

    #[test]
    fn each_accepted_form_parses_to_its_deployment() {
        let rows = [
            ("redis://127.0.0.1:6379", "single"),
            ("redis://:secret@redis:6379/2", "single"),
            ("rediss://user:pw@cache.example.com:6380", "single"),
            ("redis+sentinel://s1:26379,s2:26379,s3/mymaster", "sentinel"),
            ("redis+cluster://n1:7000,n2:7001", "cluster"),
        ];
        for (url, deployment) in rows {
            let parsed = RedisUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed.deployment(), deployment, "{url}");
        }
    }

    #[test]
    fn a_sentinel_url_gives_its_sentinels_master_database_and_credentials() {
        let url = "redis+sentinel://weir:p%40ss@s1:26380,[::1]:26381,s3/my%20master?db=3";
        let RedisUrl::Sentinel {
            sentinels,
            master,
            db,
            auth,
        } = RedisUrl::parse(url).unwrap()
        else {
            panic!("not a sentinel URL")
        };
        assert_eq!(
            sentinels,
            hosts(&[("s1", 26380), ("::1", 26381), ("s3", 26379)])
        );
        assert_eq!((master.as_str(), db), ("my master", 3));
        assert_eq!(auth.username.as_deref(), Some("weir"));
        assert_eq!(auth.password.as_deref(), Some("p@ss"));
    }

    #[test]
    fn a_cluster_url_gives_its_nodes_and_a_password_alone() {
        let RedisUrl::Cluster { nodes, auth } =
            RedisUrl::parse("redis+cluster://:pw@n1:7000,n2").unwrap()
        else {
            panic!("not a cluster URL")
        };
        assert_eq!(nodes, hosts(&[("n1", 7000), ("n2", 6379)]));
        assert_eq!(
            (auth.username, auth.password.as_deref()),
            (None, Some("pw"))
        );
    }

    #[test]
    fn bad_urls_are_refused_naming_the_problem_and_the_accepted_forms() {
        let rows = [
            ("127.0.0.1:6379", "no scheme"),
            ("http://redis:6379", "unknown scheme"),
            ("redis+sentinel://s1:26379", "no master name"),
            ("redis+sentinel://s1:26379/", "no master name"),
            ("redis+sentinel:///mymaster", "no host"),
            ("redis+sentinel://s1:x/mymaster", "bad port"),
            ("redis+sentinel://s1,,s2/mymaster", "bad host"),
            ("redis+sentinel://s1/m?db=-1", "not a database number"),
            ("redis+sentinel://s1/m?timeout=3", "unknown option"),
            ("redis+cluster://n1:7000/2", "no path or query"),
            ("redis+cluster://weir@n1:7000", "without a password"),
            ("redis+cluster://::1:7000", "must be in brackets"),
        ];
        for (url, problem) in rows {
            let e = RedisUrl::parse(url).expect_err(url).to_string();
            assert!(e.contains(problem), "{url}: {e}");
            assert!(e.contains("redis+sentinel://") && e.contains("redis+cluster://"));
        }
    }

    #[test]
    fn passwords_never_reach_errors_or_debug_output() {
        let e = RedisUrl::parse("redis+sentinel://u:hunter2@s1").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(redact("redis://u:hunter2@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        let url = RedisUrl::parse("redis+cluster://:hunter2@n1").unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
