//! DNS answers with their DNSSEC status, from a validating resolver.
//!
//! DANE (RFC 7672 for SMTP, RFC 8162 SMIMEA, RFC 7929 OPENPGPKEY) is only
//! as good as the proof that the records came from the domain's owner.
//! The gateway does not validate signatures itself: like Postfix with
//! `smtp_dns_support_level = dnssec`, it asks a validating resolver (the
//! appliance's local Unbound, or the one `delivery.dns_server` names) and
//! believes the resolver's Authenticated Data bit (RFC 4035 §3.2.3, RFC
//! 6840 §5.8). That bit is worth something only when nobody can change it
//! on the way, so it is trusted from a resolver on a loopback address and
//! ignored from any other (every answer is then [`Security::Insecure`]).
//! A record that fails validation comes back as SERVFAIL, which is an
//! error here: never "no record".
//!
//! A small stub of its own (hickory-proto builds and parses the messages)
//! rather than a full resolver, because the AD bit of each answer, the
//! difference between "does not exist" and "failed", and the TTLs are
//! exactly what the callers decide on.
//!
//! Trusts: a loopback resolver's AD bit; nothing else in an answer.
//! Bounded: one UDP datagram (a 1232-octet EDNS buffer), one TCP message
//! (64 KiB) on truncation, a timeout per query, at most
//! [`MAX_RECORDS`] records and [`MAX_CNAMES`] aliases.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Most records of the asked type taken from one answer.
pub const MAX_RECORDS: usize = 64;
/// Most CNAMEs followed within one answer.
pub const MAX_CNAMES: usize = 8;
/// Longest TTL believed (a day): cached answers are asked again after it.
pub const MAX_TTL: u32 = 86_400;

/// Whether the resolver vouched for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// No proof: an unsigned zone, or a resolver whose AD bit we do not trust.
    Insecure,
    /// Validated by a trusted resolver (AD set).
    Secure,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records of the type asked for (after following CNAMEs).
    Records {
        records: Vec<RData>,
        security: Security,
        /// Seconds the answer may be kept.
        ttl: u32,
    },
    /// The name has no records of that type, or does not exist
    /// (`nx`); `security` says whether that denial was proven.
    Nothing {
        security: Security,
        nx: bool,
        /// Seconds the denial may be kept (the SOA minimum).
        ttl: u32,
    },
}

impl Answer {
    pub fn security(&self) -> Security {
        match self {
            Answer::Records { security, .. } | Answer::Nothing { security, .. } => *security,
        }
    }

    pub fn ttl(&self) -> u32 {
        match self {
            Answer::Records { ttl, .. } | Answer::Nothing { ttl, .. } => *ttl,
        }
    }

    /// The records, if any.
    pub fn records(&self) -> &[RData] {
        match self {
            Answer::Records { records, .. } => records,
            Answer::Nothing { .. } => &[],
        }
    }
}

/// A lookup that did not give an answer. Every variant is temporary: the
/// caller tries again later, and never reads it as "no record".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("`{0}` is not a domain name")]
    BadName(String),
    #[error("DNS server {0} did not answer in time")]
    Timeout(SocketAddr),
    #[error("DNS server {server}: {error}")]
    Io { server: SocketAddr, error: String },
    #[error("DNS server {0} sent an answer that does not parse or does not match the question")]
    Malformed(SocketAddr),
    /// SERVFAIL is also what a validating resolver answers for records
    /// whose signatures fail (bogus).
    #[error(
        "DNS lookup of {name} {rtype} failed: {rcode}{}",
        if *rcode == "SERVFAIL" { " (DNSSEC validation failure or server trouble)" } else { "" }
    )]
    Failed {
        name: String,
        rtype: String,
        rcode: String,
    },
}

/// The stub: one validating resolver, a timeout per query.
#[derive(Debug, Clone)]
pub struct SecureDns {
    server: SocketAddr,
    timeout: Duration,
    trust_ad: bool,
}

impl SecureDns {
    /// A stub asking `server` (default: the first `nameserver` of
    /// `/etc/resolv.conf`, else 127.0.0.1:53). Its AD bit is trusted only
    /// when it is on a loopback address.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> SecureDns {
        let server = server.unwrap_or_else(system_resolver);
        SecureDns {
            server,
            timeout,
            trust_ad: server.ip().is_loopback(),
        }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Whether answers can ever be [`Security::Secure`].
    pub fn trusts_ad(&self) -> bool {
        self.trust_ad
    }

    /// Asks for `rtype` records of `name` (a domain name, with or without
    /// the final dot).
    pub async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let qname = Name::from_ascii(&fqdn).map_err(|_| DnsError::BadName(name.to_owned()))?;
        let id: u16 = rand::random();
        let mut request = Message::query();
        request.metadata.id = id;
        request.metadata.recursion_desired = true;
        // Ask the resolver to say whether it validated (RFC 6840 §5.7).
        request.metadata.authentic_data = true;
        request.add_query(Query::query(qname.clone(), rtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(true);
        request.set_edns(edns);
        let bytes = request
            .to_vec()
            .map_err(|_| DnsError::BadName(name.to_owned()))?;
        let mut response = self.over_udp(&bytes, id).await?;
        if response.metadata.truncation {
            response = self.over_tcp(&bytes, id).await?;
        }
        self.read(&response, &qname, rtype)
    }

    async fn over_udp(&self, request: &[u8], id: u16) -> Result<Message, DnsError> {
        let io = |e: std::io::Error| DnsError::Io {
            server: self.server,
            error: e.to_string(),
        };
        let local: SocketAddr = match self.server.ip() {
            IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(self.server).await.map_err(io)?;
        socket.send(request).await.map_err(io)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut buffer = vec![0u8; 4096];
        // Datagrams that are not the answer (another id) are skipped, a few.
        for _ in 0..8 {
            let n = tokio::time::timeout_at(deadline, socket.recv(&mut buffer))
                .await
                .map_err(|_| DnsError::Timeout(self.server))?
                .map_err(io)?;
            let Ok(message) = Message::from_vec(buffer.get(..n).unwrap_or(&[])) else {
                continue;
            };
            if message.metadata.id == id && message.metadata.message_type == MessageType::Response {
                return Ok(message);
            }
        }
        Err(DnsError::Malformed(self.server))
    }

    async fn over_tcp(&self, request: &[u8], id: u16) -> Result<Message, DnsError> {
        let io = |e: std::io::Error| DnsError::Io {
            server: self.server,
            error: e.to_string(),
        };
        let exchange = async {
            let mut stream = TcpStream::connect(self.server).await.map_err(io)?;
            let len = u16::try_from(request.len()).map_err(|_| DnsError::Malformed(self.server))?;
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(request);
            stream.write_all(&framed).await.map_err(io)?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await.map_err(io)?;
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut body).await.map_err(io)?;
            Ok::<_, DnsError>(body)
        };
        let body = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DnsError::Timeout(self.server))??;
        let message = Message::from_vec(&body).map_err(|_| DnsError::Malformed(self.server))?;
        if message.metadata.id != id {
            return Err(DnsError::Malformed(self.server));
        }
        Ok(message)
    }

    /// The answer to `qname`/`rtype` in `response`.
    fn read(
        &self,
        response: &Message,
        qname: &Name,
        rtype: RecordType,
    ) -> Result<Answer, DnsError> {
        let asked = response.queries.first();
        if response.queries.len() != 1
            || asked.is_none_or(|q| q.name() != qname || q.query_type() != rtype)
        {
            return Err(DnsError::Malformed(self.server));
        }
        let security = if self.trust_ad && response.metadata.authentic_data {
            Security::Secure
        } else {
            Security::Insecure
        };
        let failed = |rcode: &str| DnsError::Failed {
            name: qname.to_ascii(),
            rtype: rtype.to_string(),
            rcode: rcode.to_owned(),
        };
        let nx = match response.metadata.response_code {
            ResponseCode::NoError => false,
            ResponseCode::NXDomain => true,
            ResponseCode::ServFail => return Err(failed("SERVFAIL")),
            other => return Err(failed(&other.to_string())),
        };
        // Follow aliases within the answer, then take the asked type.
        let mut owner = qname.clone();
        let mut ttl = MAX_TTL;
        for _ in 0..MAX_CNAMES {
            let alias = response.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(target) if r.name == owner => Some((target.0.clone(), r.ttl)),
                _ => None,
            });
            match alias {
                Some((target, t)) => {
                    owner = target;
                    ttl = ttl.min(t);
                }
                None => break,
            }
        }
        let records: Vec<RData> = response
            .answers
            .iter()
            .filter(|r| r.name == owner && r.record_type() == rtype)
            .take(MAX_RECORDS)
            .map(|r| {
                ttl = ttl.min(r.ttl);
                r.data.clone()
            })
            .collect();
        if !records.is_empty() && !nx {
            return Ok(Answer::Records {
                records,
                security,
                ttl,
            });
        }
        // A denial is kept for the SOA's minimum (RFC 2308 §5).
        let negative = response
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
            .unwrap_or(60);
        Ok(Answer::Nothing {
            security,
            nx,
            ttl: negative.min(MAX_TTL),
        })
    }
}

/// The first `nameserver` in `/etc/resolv.conf`, else 127.0.0.1:53 (the
/// appliance runs a validating Unbound there).
fn system_resolver() -> SocketAddr {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .take(200)
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .find_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map_or_else(
            || SocketAddr::from(([127, 0, 0, 1], 53)),
            |ip| SocketAddr::new(ip, 53),
        )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};

    fn response(ad: bool, rcode: ResponseCode, answers: Vec<Record>) -> Message {
        let mut m = Message::response(7, OpCode::Query);
        m.metadata.authentic_data = ad;
        m.metadata.response_code = rcode;
        m.add_query(Query::query(
            Name::from_ascii("a.test.").unwrap(),
            RecordType::A,
        ));
        m.add_answers(answers);
        m
    }

    fn stub(server: &str) -> SecureDns {
        SecureDns::new(Some(server.parse().unwrap()), Duration::from_secs(1))
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn the_ad_bit_counts_only_from_loopback() {
        let a = Record::from_rdata(name("a.test."), 300, RData::A(A::new(1, 2, 3, 4)));
        let m = response(true, ResponseCode::NoError, vec![a]);
        let local = stub("127.0.0.1:53")
            .read(&m, &name("a.test."), RecordType::A)
            .unwrap();
        assert_eq!(local.security(), Security::Secure);
        assert_eq!(local.ttl(), 300);
        let remote = stub("192.0.2.1:53")
            .read(&m, &name("a.test."), RecordType::A)
            .unwrap();
        assert_eq!(remote.security(), Security::Insecure);
    }

    #[test]
    fn servfail_is_an_error_and_nxdomain_a_denial() {
        let s = stub("127.0.0.1:53");
        let m = response(false, ResponseCode::ServFail, vec![]);
        assert!(matches!(
            s.read(&m, &name("a.test."), RecordType::A),
            Err(DnsError::Failed { .. })
        ));
        let mut m = response(true, ResponseCode::NXDomain, vec![]);
        m.add_authority(Record::from_rdata(
            name("test."),
            600,
            RData::SOA(SOA::new(
                name("ns.test."),
                name("h.test."),
                1,
                60,
                60,
                600,
                10,
            )),
        ));
        let got = s.read(&m, &name("a.test."), RecordType::A).unwrap();
        assert_eq!(
            got,
            Answer::Nothing {
                security: Security::Secure,
                nx: true,
                ttl: 10
            }
        );
    }

    #[test]
    fn aliases_are_followed_and_other_owners_ignored() {
        let s = stub("127.0.0.1:53");
        let m = response(
            true,
            ResponseCode::NoError,
            vec![
                Record::from_rdata(name("a.test."), 100, RData::CNAME(CNAME(name("b.test.")))),
                Record::from_rdata(name("b.test."), 200, RData::A(A::new(5, 6, 7, 8))),
                Record::from_rdata(name("evil.test."), 200, RData::A(A::new(6, 6, 6, 6))),
            ],
        );
        let got = s.read(&m, &name("a.test."), RecordType::A).unwrap();
        assert_eq!(got.records(), &[RData::A(A::new(5, 6, 7, 8))]);
        assert_eq!(got.ttl(), 100);
        // An answer to another question is refused.
        assert!(matches!(
            s.read(&m, &name("c.test."), RecordType::A),
            Err(DnsError::Malformed(_))
        ));
    }
}
