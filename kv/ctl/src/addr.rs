//! Server addresses on the command line: `--addr` (a store) and
//! `--scheduler` (the cluster's scheduler), and the addresses a store or
//! the scheduler names.
//!
//! Both servers speak plain gRPC, so an address is `HOST:PORT` or
//! `http://HOST:PORT` (with an optional `/` at the end); `https://` is
//! refused, and every other mistake gets a message that says what is
//! wrong and gives an example.

use tonic::transport::Endpoint;

/// A server address, checked: `HOST:PORT` with a host and a port from 1 to
/// 65535.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    /// `HOST:PORT` (an IPv6 host in brackets).
    host_port: String,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host_port)
    }
}

/// Which server an address is for: its program name, for "speaks plain
/// gRPC", and the port the examples in the messages use.
#[derive(Clone, Copy, Debug)]
struct Server {
    name: &'static str,
    example_port: u16,
}

/// A store (`tinykv-server`; 20160 is its default port).
const STORE: Server = Server { name: "tinykv-server", example_port: 20160 };

/// The scheduler (`tinykv-scheduler`; 2379 is its default port).
const SCHEDULER: Server = Server { name: "tinykv-scheduler", example_port: 2379 };

/// `--addr` (and a leader address a store names): `HOST:PORT`, or
/// `http://HOST:PORT` with an optional `/` at the end; says what is wrong
/// with anything else.
pub fn parse_addr(text: &str) -> Result<Addr, String> {
    parse_for(text, STORE)
}

/// `--scheduler`: the same forms as [`parse_addr`], with the scheduler's
/// name and port in the messages.
pub fn parse_scheduler_addr(text: &str) -> Result<Addr, String> {
    parse_for(text, SCHEDULER)
}

fn parse_for(text: &str, server: Server) -> Result<Addr, String> {
    let example = server.example_port;
    let host_port = match text.split_once("://") {
        None => text,
        Some(("http", rest)) => rest.strip_suffix('/').unwrap_or(rest),
        Some(("https", _)) => {
            return Err(format!(
                "{} speaks plain gRPC, without TLS: use HOST:PORT or http://HOST:PORT",
                server.name
            ));
        }
        Some((scheme, _)) => {
            return Err(format!("unknown scheme {scheme}://: use HOST:PORT or http://HOST:PORT"));
        }
    };
    if host_port.contains('/') {
        return Err(format!(
            "{host_port:?} has a path: expected HOST:PORT, e.g. 127.0.0.1:{example}"
        ));
    }
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return Err(format!("no port: expected HOST:PORT, e.g. {host_port}:{example}"));
    };
    if host.is_empty() {
        return Err(format!("no host before the port: expected HOST:PORT, e.g. 127.0.0.1:{port}"));
    }
    if port.is_empty() {
        return Err(format!("no port after the colon: expected HOST:PORT, e.g. {host}:{example}"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("an IPv6 address goes in brackets: e.g. [::1]:{example}"));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    let port = port.parse::<u64>().unwrap_or(u64::MAX);
    if !(1..=65535).contains(&port) {
        return Err(format!("port {port} is out of range: ports go from 1 to 65535"));
    }
    let host_port = format!("{host}:{port}");
    if Endpoint::from_shared(format!("http://{host_port}")).is_err() {
        return Err(format!("{host:?} is not a host name or an IP address"));
    }
    Ok(Addr { host_port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let ok = |text: &str| parse_addr(text).map(|a| a.to_string());
        assert_eq!(ok("127.0.0.1:20160"), Ok("127.0.0.1:20160".into()));
        assert_eq!(ok("http://localhost:20160"), Ok("localhost:20160".into()));
        assert_eq!(ok("http://localhost:20160/"), Ok("localhost:20160".into()));
        assert_eq!(ok("[::1]:20160"), Ok("[::1]:20160".into()));
        for bad in
            ["localhost", "h:", ":1", "h:0", "h:65536", "h:x", "::1:1", "https://h:1", "h:1/p"]
        {
            assert!(parse_addr(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn scheduler_addresses_say_scheduler() {
        assert_eq!(
            parse_scheduler_addr("localhost"),
            Err("no port: expected HOST:PORT, e.g. localhost:2379".into())
        );
        let tls = parse_scheduler_addr("https://h:1").unwrap_err();
        assert!(tls.starts_with("tinykv-scheduler speaks plain gRPC"), "{tls}");
    }
}
