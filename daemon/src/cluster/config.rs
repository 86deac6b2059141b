//! The `[cluster]` table of the bootstrap file: where the cluster database
//! is, how to reach it safely, and where this node answers its peers.
//!
//! ```toml
//! [cluster]
//! database_url = "postgresql://sealgate@db.example.net:5432/sealgate"
//! password_file = "/etc/sealgate/db-password"   # mode 0600; never in the URL
//! database_ca = "/etc/sealgate/db-ca.pem"        # the database server's CA
//! listen = "10.0.0.11:7443"                      # this node's cluster API (mutual TLS)
//! # advertise = "gw1.example.net:7443"           # how peers reach it (default: listen)
//! ```
//!
//! Without a `[cluster]` table the node is a single appliance: its shared
//! state stays in its own sled database and no database is needed at all.
//!
//! Trusts: the bootstrap file. Must never: accept a password inside the
//! URL (it would end up in backups of the file and in process listings),
//! or talk to the database in clear over the network.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// The `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// libpq-style URL or key/value string, without a password:
    /// `postgresql://user@host:port/dbname`. Several hosts
    /// (`host=db1,db2 target_session_attrs=read-write`) find the primary
    /// of a replicated pair.
    pub database_url: String,
    /// A file holding the database password (one line; mode 0600).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM certificates the database server's certificate must chain to.
    #[serde(default)]
    pub database_ca: Option<PathBuf>,
    /// `verify-full` (default): TLS, the server's certificate chains to
    /// `database_ca` and names the host. `disable`: no TLS, allowed only
    /// for a database on the loopback interface.
    #[serde(default)]
    pub database_tls: DatabaseTls,
    /// A client certificate (PEM chain) for the database's `cert`
    /// authentication; goes with `client_key`.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// This node's cluster API (mutual TLS with the cluster CA): tracking
    /// searches and status from the other nodes.
    pub listen: SocketAddr,
    /// How the other nodes reach this one, `host:port` (default: `listen`).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Seconds between this node's heartbeats in the database.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Milliseconds a peer has to answer a cluster request.
    #[serde(default = "default_peer_timeout")]
    pub peer_timeout_ms: u64,
    /// Milliseconds the database has to answer one statement.
    #[serde(default = "default_query_timeout")]
    pub query_timeout_ms: u64,
    /// Connections to the database.
    #[serde(default = "default_pool")]
    pub pool_size: usize,
    /// MiB of answers kept to serve directory and settings reads while the
    /// database cannot be reached.
    #[serde(default = "default_cache")]
    pub read_cache_mib: u64,
}

/// TLS to the cluster database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseTls {
    #[default]
    VerifyFull,
    Disable,
}

fn default_heartbeat() -> u64 {
    5
}
fn default_peer_timeout() -> u64 {
    2000
}
fn default_query_timeout() -> u64 {
    3000
}
fn default_pool() -> usize {
    4
}
fn default_cache() -> u64 {
    64
}

impl ClusterConfig {
    /// Checks what types alone cannot say; the error names the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let db = tokio_postgres::Config::from_str(&self.database_url).map_err(|e| {
            (
                "cluster.database_url",
                format!("not a PostgreSQL connection string: {e}"),
            )
        })?;
        if db.get_password().is_some() {
            return Err((
                "cluster.database_url",
                "holds a password: put it in the file named by `cluster.password_file`".into(),
            ));
        }
        if db.get_hosts().is_empty() {
            return Err(("cluster.database_url", "names no host".into()));
        }
        match self.database_tls {
            DatabaseTls::VerifyFull => {
                if self.database_ca.is_none() {
                    return Err((
                        "cluster.database_ca",
                        "TLS to the database needs the CA certificate its server certificate chains to \
                         (or `database_tls = \"disable\"` for a database on this machine's loopback)"
                            .into(),
                    ));
                }
                if db
                    .get_hosts()
                    .iter()
                    .any(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)))
                {
                    return Err((
                        "cluster.database_url",
                        "a Unix socket cannot carry TLS; use `database_tls = \"disable\"` for a local socket"
                            .into(),
                    ));
                }
            }
            DatabaseTls::Disable => {
                if !db.get_hosts().iter().all(is_local_host) {
                    return Err((
                        "cluster.database_tls",
                        "`disable` is allowed only for a database on the loopback interface or a Unix socket"
                            .into(),
                    ));
                }
            }
        }
        if self.client_certificate.is_some() != self.client_key.is_some() {
            return Err((
                "cluster.client_certificate",
                "`client_certificate` and `client_key` go together".into(),
            ));
        }
        if let Some(advertise) = &self.advertise {
            crate::config::split_host_port(advertise, 0)
                .map_err(|e| ("cluster.advertise", e))
                .and_then(|(_, port)| {
                    if port == 0 {
                        Err(("cluster.advertise", "needs a port (host:port)".to_owned()))
                    } else {
                        Ok(())
                    }
                })?;
        }
        if self.heartbeat_secs == 0 {
            return Err(("cluster.heartbeat_secs", "must be at least 1".into()));
        }
        if self.peer_timeout_ms < 10 {
            return Err(("cluster.peer_timeout_ms", "must be at least 10".into()));
        }
        if self.query_timeout_ms < 10 {
            return Err(("cluster.query_timeout_ms", "must be at least 10".into()));
        }
        if self.pool_size == 0 || self.pool_size > 64 {
            return Err(("cluster.pool_size", "must be between 1 and 64".into()));
        }
        Ok(())
    }

    /// Where the other nodes reach this one.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    pub fn peer_timeout(&self) -> Duration {
        Duration::from_millis(self.peer_timeout_ms)
    }

    pub fn query_timeout(&self) -> Duration {
        Duration::from_millis(self.query_timeout_ms)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs)
    }
}

fn is_local_host(host: &tokio_postgres::config::Host) -> bool {
    match host {
        tokio_postgres::config::Host::Unix(_) => true,
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, String> {
        let c: ClusterConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check().map_err(|(k, e)| format!("{k}: {e}"))?;
        Ok(c)
    }

    #[test]
    fn the_cluster_table() {
        let ok = parse(
            "database_url = \"postgresql://sg@db.example.net/sealgate\"\n\
             database_ca = \"/etc/ca.pem\"\nlisten = \"10.0.0.1:7443\"\n",
        )
        .unwrap();
        assert_eq!(ok.advertised(), "10.0.0.1:7443");
        assert_eq!(ok.heartbeat_secs, 5);
        let e = parse(
            "database_url = \"postgresql://sg:secret@db.example.net/sealgate\"\n\
             database_ca = \"/etc/ca.pem\"\nlisten = \"10.0.0.1:7443\"\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("cluster.database_url: holds a password"),
            "{e}"
        );
        let e = parse(
            "database_url = \"postgresql://sg@db.example.net/sealgate\"\nlisten = \"10.0.0.1:7443\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("cluster.database_ca"), "{e}");
        let e = parse(
            "database_url = \"postgresql://sg@db.example.net/sealgate\"\ndatabase_tls = \"disable\"\n\
             listen = \"10.0.0.1:7443\"\n",
        )
        .unwrap_err();
        assert!(e.starts_with("cluster.database_tls"), "{e}");
        parse(
            "database_url = \"host=127.0.0.1 user=sg dbname=sealgate\"\ndatabase_tls = \"disable\"\n\
             listen = \"127.0.0.1:7443\"\n",
        )
        .unwrap();
        assert!(parse("database_url = \"x\"\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").is_err());
    }
}
