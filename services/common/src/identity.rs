//! Who is calling: the tenant and role an API key grants, put in each request's
//! extensions by the authenticating layer and read by handlers (feedback records carry
//! the tenant, admin calls check the role).

use empathy_proto::v1::Role;

/// The tenant of a single local user, and of every caller in insecure mode.
pub const DEFAULT_TENANT: &str = "default";

/// The caller of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub tenant: String,
    /// The key's public id ("" in insecure mode, "mtls:<service>" for an internal peer).
    pub key_id: String,
    pub role: Role,
}

impl Identity {
    /// Insecure mode: no keys, everyone is the default tenant's admin.
    pub fn local() -> Identity {
        Identity {
            tenant: DEFAULT_TENANT.into(),
            key_id: String::new(),
            role: Role::Admin,
        }
    }

    /// The identity a request carries, or the local one when no layer set it.
    pub fn of<T>(request: &tonic::Request<T>) -> Identity {
        request
            .extensions()
            .get::<Identity>()
            .cloned()
            .unwrap_or_else(Identity::local)
    }
}

/// A role as people write it: "analyze", "feedback", "admin".
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Unspecified => "none",
        Role::Analyze => "analyze",
        Role::Feedback => "feedback",
        Role::Admin => "admin",
    }
}

/// Parses a role as people write it.
pub fn parse_role(name: &str) -> Option<Role> {
    [Role::Analyze, Role::Feedback, Role::Admin]
        .into_iter()
        .find(|r| role_name(*r) == name.trim().to_ascii_lowercase())
}
