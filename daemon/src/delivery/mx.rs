//! Finding a domain's mail exchangers (RFC 5321 §5.1): MX records in
//! preference order, or the domain itself when it has no MX (implicit MX),
//! and a "null MX" (RFC 7505) is a permanent failure.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

/// Why no host could be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxError {
    /// DNS did not answer; try later.
    Temporary(String),
    /// The domain does not exist or accepts no mail.
    Permanent(String),
}

/// An MX resolver, on the system configuration or a configured server.
pub struct MxResolver {
    resolver: TokioResolver,
}

impl MxResolver {
    pub fn new(server: Option<SocketAddr>) -> std::io::Result<MxResolver> {
        let resolver = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                ns.connections = vec![
                    with_port(ConnectionConfig::udp(), addr.port()),
                    with_port(ConnectionConfig::tcp(), addr.port()),
                ];
                let config = ResolverConfig::from_name_servers(vec![ns]);
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
                    .build()
                    .map_err(std::io::Error::other)?
            }
            None => TokioResolver::builder_tokio()
                .map_err(std::io::Error::other)?
                .build()
                .map_err(std::io::Error::other)?,
        };
        Ok(MxResolver { resolver })
    }

    /// The hosts to try for `domain`, best first.
    pub async fn lookup(&self, domain: &str) -> Result<Vec<String>, MxError> {
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            return Ok(vec![literal.trim_start_matches("IPv6:").to_string()]);
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match self.resolver.lookup(fqdn.as_str(), RecordType::MX).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::MX(mx) => Some((
                            mx.preference,
                            mx.exchange.to_utf8().trim_end_matches('.').to_string(),
                        )),
                        _ => None,
                    })
                    .collect();
                mx.sort();
                if mx.len() == 1 && mx.first().is_some_and(|(_, host)| host.is_empty()) {
                    return Err(MxError::Permanent("does not accept mail (null MX)".into()));
                }
                if mx.is_empty() {
                    return Ok(vec![domain.to_string()]);
                }
                Ok(mx
                    .into_iter()
                    .map(|(_, host)| host)
                    .filter(|h| !h.is_empty())
                    .collect())
            }
            Err(e) if e.is_nx_domain() => Err(MxError::Permanent("domain does not exist".into())),
            Err(e) if e.is_no_records_found() => Ok(vec![domain.to_string()]),
            Err(e) => Err(MxError::Temporary(e.to_string())),
        }
    }

    /// The addresses to connect to for `hosts`, in order, through the same
    /// resolver as the MX lookup (so a configured DNS server is used for
    /// both). A host that does not resolve is skipped.
    pub async fn connect_addresses(&self, hosts: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for host in hosts {
            if host.parse::<std::net::IpAddr>().is_ok() {
                out.push(host.clone());
                continue;
            }
            match self
                .resolver
                .lookup_ip(format!("{}.", host.trim_end_matches('.')).as_str())
                .await
            {
                Ok(ips) => out.extend(ips.iter().map(|ip| ip.to_string())),
                Err(e) => tracing::debug!(host, error = %e, "mail exchanger does not resolve"),
            }
        }
        out
    }
}

fn with_port(mut connection: ConnectionConfig, port: u16) -> ConnectionConfig {
    connection.port = port;
    connection
}
