//! Where the processes meet: `--dist_url` (`tcp://HOST:PORT` or torchrun's `env://`).

use std::net::{SocketAddr, ToSocketAddrs};

use crate::error::TrainError;

/// Where the processes meet: rank 0's listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendezvous {
    /// Host name or address of rank 0.
    pub host: String,
    /// The port rank 0 listens on.
    pub port: u16,
}

impl Rendezvous {
    /// Reads `--dist_url`: `tcp://HOST:PORT`, or `env://` for `MASTER_ADDR` and
    /// `MASTER_PORT` (torchrun's variables), looked up with `env`.
    pub fn parse(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, TrainError> {
        let bad = |m: String| Err(TrainError::Config(format!("--dist_url {url}: {m}")));
        let (host, port) = if url == "env://" {
            let (Some(host), Some(port)) = (env("MASTER_ADDR"), env("MASTER_PORT")) else {
                return bad(
                    "env:// needs MASTER_ADDR and MASTER_PORT in the environment (or give \
                     --dist_url tcp://HOST:PORT)"
                        .into(),
                );
            };
            (host, port)
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() => (h.to_string(), p.to_string()),
                _ => return bad("expected tcp://HOST:PORT".into()),
            }
        } else {
            return bad("expected tcp://HOST:PORT or env://".into());
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Self { host, port: p }),
            _ => bad(format!("`{port}` is not a port number")),
        }
    }

    /// The address, resolved.
    pub(crate) fn resolve(&self) -> Result<SocketAddr, TrainError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                TrainError::Distributed(format!(
                    "cannot resolve the --dist_url host `{}`",
                    self.host
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dist_url_reads_tcp_and_torchrun_variables() {
        let none = |_: &str| None;
        assert_eq!(
            Rendezvous::parse("tcp://10.0.0.5:29500", none).unwrap(),
            Rendezvous {
                host: "10.0.0.5".into(),
                port: 29500
            }
        );
        let env = |k: &str| match k {
            "MASTER_ADDR" => Some("node0".to_string()),
            "MASTER_PORT" => Some("1234".to_string()),
            _ => None,
        };
        let r = Rendezvous::parse("env://", env).unwrap();
        assert_eq!((r.host.as_str(), r.port), ("node0", 1234));
        for (url, needle) in [
            ("env://", "MASTER_ADDR"),
            ("tcp://host", "tcp://HOST:PORT"),
            ("tcp://host:http", "not a port"),
            ("udp://host:1", "tcp://HOST:PORT or env://"),
        ] {
            let e = Rendezvous::parse(url, none).unwrap_err().to_string();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }
}
