//! Failed operations by kind: which of a few coarse classes a driver's error falls in, so
//! the report can tell timeouts and overload from unavailability and quorum failures.

use super::driver::DriverError;

/// The classes the report counts errors in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum ErrorKind {
    /// No answer within the request timeout.
    Timeout,
    /// The store refused the request for load (Chorus: overloaded; etcd: resource
    /// exhausted).
    Overloaded,
    /// No node or member could be reached.
    Unavailable,
    /// Too few replicas answered or acknowledged (Chorus: quorum; Redis: a short WAIT).
    Quorum,
    /// Anything else.
    Other,
}

impl ErrorKind {
    pub(super) const ALL: [ErrorKind; 5] = [
        ErrorKind::Timeout,
        ErrorKind::Overloaded,
        ErrorKind::Unavailable,
        ErrorKind::Quorum,
        ErrorKind::Other,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Quorum => "quorum",
            ErrorKind::Other => "other",
        }
    }

    /// The class a driver's error counts in.
    pub(super) fn of(e: &DriverError) -> ErrorKind {
        match e {
            DriverError::Chorus(e) => of_chorus(e),
            DriverError::Redis(e) => {
                if e.is_timeout() {
                    ErrorKind::Timeout
                } else if e.is_connection_refusal() || e.is_connection_dropped() {
                    ErrorKind::Unavailable
                } else {
                    ErrorKind::Other
                }
            }
            DriverError::NotReplicated { .. } => ErrorKind::Quorum,
            DriverError::Etcd(s) => of_grpc(s),
            DriverError::EtcdConnect { .. } => ErrorKind::Unavailable,
            DriverError::Setup(_) => ErrorKind::Other,
        }
    }
}

fn of_chorus(e: &chorus_client::Error) -> ErrorKind {
    use chorus_client::Error as E;
    match e {
        E::Timeout(_) => ErrorKind::Timeout,
        E::Overloaded(_) => ErrorKind::Overloaded,
        E::Unavailable(_) => ErrorKind::Unavailable,
        E::Quorum { .. } => ErrorKind::Quorum,
        _ => ErrorKind::Other,
    }
}

fn of_grpc(s: &tonic::Status) -> ErrorKind {
    use tonic::Code;
    match s.code() {
        Code::DeadlineExceeded => ErrorKind::Timeout,
        // tonic's channel timeout cancels the call with "Timeout expired".
        Code::Cancelled if s.message().contains("Timeout expired") => ErrorKind::Timeout,
        Code::ResourceExhausted => ErrorKind::Overloaded,
        Code::Unavailable => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn kind(e: impl Into<DriverError>) -> &'static str {
        ErrorKind::of(&e.into()).name()
    }

    #[test]
    fn chorus_errors_map_to_their_kinds() {
        use chorus_client::Error as E;
        assert_eq!(kind(E::Timeout(Duration::from_secs(10))), "timeout");
        assert_eq!(kind(E::Overloaded("busy".into())), "overloaded");
        assert_eq!(kind(E::Unavailable("down".into())), "unavailable");
        let quorum = E::Quorum {
            needed: 2,
            answered: 1,
            message: "1 of 2".into(),
        };
        assert_eq!(kind(quorum), "quorum");
        for other in [
            E::Server("boom".into()),
            E::BadRequest("no".into()),
            E::TooLarge("big".into()),
            E::PermissionDenied("admin".into()),
            E::Unexpected("?".into()),
        ] {
            assert_eq!(kind(other), "other");
        }
    }

    #[test]
    fn redis_and_etcd_errors_map_to_their_kinds() {
        let io = |k| redis::RedisError::from(std::io::Error::new(k, "x"));
        assert_eq!(kind(io(std::io::ErrorKind::TimedOut)), "timeout");
        assert_eq!(
            kind(io(std::io::ErrorKind::ConnectionRefused)),
            "unavailable"
        );
        assert_eq!(kind(io(std::io::ErrorKind::ConnectionReset)), "unavailable");
        let short_wait = DriverError::NotReplicated {
            acked: 0,
            wanted: 1,
            timeout: Duration::from_secs(5),
        };
        assert_eq!(kind(short_wait), "quorum");
        assert_eq!(kind(tonic::Status::deadline_exceeded("late")), "timeout");
        assert_eq!(kind(tonic::Status::cancelled("Timeout expired")), "timeout");
        assert_eq!(kind(tonic::Status::cancelled("client went away")), "other");
        assert_eq!(
            kind(tonic::Status::resource_exhausted("slow down")),
            "overloaded"
        );
        assert_eq!(kind(tonic::Status::unavailable("no leader")), "unavailable");
        assert_eq!(kind(tonic::Status::internal("bug")), "other");
        assert_eq!(kind(DriverError::Setup("pool".into())), "other");
    }

    #[test]
    fn every_kind_has_its_own_name() {
        let mut names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
