//! Who is calling: the tenant and role an API key grants, put in each request's
//! extensions by the authenticating layer and read by handlers (feedback records carry
//! the tenant, admin calls check the role).

use empathy_proto::v1::Role;

pub use empathy_proto::DEFAULT_TENANT;

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

    /// The identity a request carries. Without API keys (no layer set one) the caller
    /// is the local admin of the tenant its `x-empathy-tenant` header names, else of
    /// "default": local insecure mode trusts whoever can reach the port. With keys the
    /// key decides and the header is ignored.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Identity, tonic::Status> {
        if let Some(identity) = request.extensions().get::<Identity>() {
            return Ok(identity.clone());
        }
        let Some(value) = request.metadata().get(empathy_proto::TENANT_HEADER) else {
            return Ok(Identity::local());
        };
        match value.to_str() {
            Ok(t) if empathy_proto::is_tenant_name(t) => Ok(Identity {
                tenant: t.to_string(),
                ..Identity::local()
            }),
            _ => Err(tonic::Status::invalid_argument(format!(
                "the {} header must name a tenant: 1-64 characters of a-z, 0-9, '-' and '_'",
                empathy_proto::TENANT_HEADER
            ))),
        }
    }

    /// The tenant a request names in a field, else the caller's. Naming another
    /// tenant than one's own takes the admin role (a deployment's operator).
    pub fn tenant_for(&self, named: &str) -> Result<String, tonic::Status> {
        let named = named.trim();
        if named.is_empty() || named == self.tenant {
            return Ok(self.tenant.clone());
        }
        if !empathy_proto::is_tenant_name(named) {
            return Err(tonic::Status::invalid_argument(format!(
                "{named:?} is not a tenant name: 1-64 characters of a-z, 0-9, '-' and '_'"
            )));
        }
        if self.role != Role::Admin {
            return Err(tonic::Status::permission_denied(format!(
                "this key belongs to tenant {}; acting on tenant {named} takes an admin key",
                self.tenant
            )));
        }
        Ok(named.to_string())
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
