//! Who may ask for what. Any client certificate from the cluster CA may read and write;
//! cluster changes (leave, remove, repair) and truncating a bucket need an admin certificate, one that names
//! [`crate::certs::ADMIN_NAME`].

use chorus_proto::{ErrorKind, Request, Response};

use crate::certs::ADMIN_NAME;

/// Whether a request changes the cluster rather than data, and so needs an admin.
pub fn needs_admin(req: &Request) -> bool {
    matches!(
        req,
        Request::Leave { .. } | Request::Remove { .. } | Request::Repair | Request::Truncate { .. }
    )
}

/// The answer to a client without the admin role.
pub fn denied(req: &Request) -> Response {
    let what = match req {
        Request::Leave { .. } => "leave",
        Request::Remove { .. } => "remove",
        Request::Repair => "repair",
        Request::Truncate { .. } => "truncate",
        _ => "this request",
    };
    Response::error(
        ErrorKind::PermissionDenied,
        format!("{what} needs an admin certificate (see `chorus certs admin`); this client's certificate is not one"),
    )
}

/// Whether the (already CA-verified) client certificate on a connection is an admin's.
pub fn is_admin_certificate(conn: &quinn::Connection) -> bool {
    crate::transport::certificate_names(conn, ADMIN_NAME)
}
