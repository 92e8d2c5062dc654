//! Proxy errors that say where they came from (the agent, the upstream, or gate itself) in one
//! line a person can act on, and the HTTP status each one becomes.
use std::fmt;

use http::StatusCode;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The agent (client) sent something gate cannot or will not handle.
    Agent,
    /// The upstream server failed or could not be trusted.
    Upstream,
    /// gate itself failed (audit log, CA, configuration).
    Internal,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Agent => "agent",
            Origin::Upstream => "upstream",
            Origin::Internal => "internal",
        })
    }
}

/// Why an upstream certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    Expired,
    NotYetValid,
    WrongHost,
    UnknownIssuer,
    Revoked,
    Other(String),
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertProblem::Expired => f.write_str("it has expired"),
            CertProblem::NotYetValid => f.write_str("it is not valid yet"),
            CertProblem::WrongHost => f.write_str("it was issued for a different host name"),
            CertProblem::UnknownIssuer => f.write_str(
                "it is self-signed or signed by an unknown authority (a corporate or test root \
                 can be trusted with --upstream-ca FILE)",
            ),
            CertProblem::Revoked => f.write_str("it has been revoked"),
            CertProblem::Other(why) => write!(f, "{why}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // ---- agent ----
    #[error("agent: {0}")]
    BadRequest(String),
    #[error("agent: TLS SNI `{sni}` does not match the CONNECT host `{connect}` (domain fronting)")]
    SniMismatch { sni: String, connect: String },
    #[error(
        "agent: request names host `{named}` on a connection to `{tls}`; open a new connection \
         for it"
    )]
    Misdirected { named: String, tls: String },
    #[error("agent: {0}")]
    ClientIo(String),

    // ---- policy (the agent asked for something gate refuses) ----
    #[error("refused: {host} is on the deny list (hosts.deny in {config})")]
    Denied { host: String, config: String },
    #[error(
        "refused: {host} is not on the allow list and hosts.enforce_allowlist is on (add it to \
         hosts.allow in {config})"
    )]
    NotAllowed { host: String, config: String },
    #[error(
        "refused: {dest} is not HTTP or TLS; raw TCP is only allowed for proxy.allow_tunnels \
         entries (add \"{dest}\" in {config})"
    )]
    TunnelNotAllowed { dest: String, config: String },
    #[error("refused: {reason}")]
    Inspector {
        status: StatusCode,
        reason: String,
        /// A body in the client's own protocol (content type, bytes), if the inspector gave one.
        body: Option<(String, bytes::Bytes)>,
    },

    // ---- upstream ----
    #[error("upstream {host}: cannot resolve the name: {why}")]
    Resolve { host: String, why: String },
    #[error("upstream {host}: {why}")]
    LoopbackDenied { host: String, why: String },
    #[error("upstream {host}:{port}: cannot connect: {why}")]
    Connect {
        host: String,
        port: u16,
        why: String,
    },
    #[error("upstream {host}: certificate refused because {problem}")]
    Certificate { host: String, problem: CertProblem },
    #[error("upstream {host}: TLS handshake failed: {why}")]
    Tls { host: String, why: String },
    #[error("upstream {host}: {why}")]
    UpstreamIo { host: String, why: String },
    #[error("upstream {host}: no answer within {secs} s")]
    Timeout { host: String, secs: u64 },

    // ---- internal ----
    #[error("internal: audit log unwritable, refusing traffic (fail closed): {0}")]
    Audit(String),
    #[error("internal: certificate authority: {0}")]
    Ca(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<super::inspect::Refusal> for ProxyError {
    fn from(r: super::inspect::Refusal) -> Self {
        ProxyError::Inspector {
            status: r.status,
            reason: r.reason,
            body: r.body,
        }
    }
}

impl ProxyError {
    pub fn origin(&self) -> Origin {
        use ProxyError::*;
        match self {
            BadRequest(_) | SniMismatch { .. } | Misdirected { .. } | ClientIo(_) => Origin::Agent,
            Denied { .. } | NotAllowed { .. } | TunnelNotAllowed { .. } | Inspector { .. } => {
                Origin::Agent
            }
            Resolve { .. }
            | LoopbackDenied { .. }
            | Connect { .. }
            | Certificate { .. }
            | Tls { .. }
            | UpstreamIo { .. }
            | Timeout { .. } => Origin::Upstream,
            Audit(_) | Ca(_) | Internal(_) => Origin::Internal,
        }
    }

    /// Whether this is a policy refusal (as opposed to a failure).
    pub fn is_policy(&self) -> bool {
        matches!(
            self,
            ProxyError::Denied { .. }
                | ProxyError::NotAllowed { .. }
                | ProxyError::TunnelNotAllowed { .. }
                | ProxyError::SniMismatch { .. }
                | ProxyError::Misdirected { .. }
                | ProxyError::Inspector { .. }
        )
    }

    pub fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            BadRequest(_) | ClientIo(_) => StatusCode::BAD_REQUEST,
            Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            SniMismatch { .. } | Denied { .. } | NotAllowed { .. } | TunnelNotAllowed { .. } => {
                StatusCode::FORBIDDEN
            }
            Inspector { status, .. } => *status,
            Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Resolve { .. }
            | LoopbackDenied { .. }
            | Connect { .. }
            | Certificate { .. }
            | Tls { .. }
            | UpstreamIo { .. } => StatusCode::BAD_GATEWAY,
            Audit(_) => StatusCode::SERVICE_UNAVAILABLE,
            Ca(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_where_and_one_line() {
        let e = ProxyError::Certificate {
            host: "x.test".into(),
            problem: CertProblem::UnknownIssuer,
        };
        assert_eq!(e.origin(), Origin::Upstream);
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        let m = e.to_string();
        assert!(m.starts_with("upstream x.test"), "{m}");
        assert!(m.contains("--upstream-ca") && !m.contains('\n'), "{m}");
        let d = ProxyError::Denied {
            host: "paste.test".into(),
            config: "config".into(),
        };
        assert_eq!(d.status(), StatusCode::FORBIDDEN);
        assert!(d.is_policy());
    }
}
