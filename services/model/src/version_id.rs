//! Version ids: `v0002` in the base line, `acme/v0002` in tenant acme's line. Apart
//! from the registry so that checkpoints can name versions without reading it.

use anyhow::ensure;
use empathy_proto::is_tenant_name;

/// A version name as the registry writes them: `v` and digits.
pub fn is_version_name(name: &str) -> bool {
    name.len() > 1 && name.starts_with('v') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

/// A version id split into its line's tenant (None: the base) and its name there.
pub fn parse_version_id(id: &str) -> anyhow::Result<(Option<&str>, &str)> {
    let (tenant, name) = match id.split_once('/') {
        Some((tenant, name)) => {
            ensure!(
                is_tenant_name(tenant),
                "{id:?} is not a model version id (like v0002 or acme/v0002)"
            );
            (Some(tenant), name)
        }
        None => (None, id),
    };
    ensure!(
        is_version_name(name),
        "{id:?} is not a model version id (like v0002 or acme/v0002)"
    );
    Ok((tenant, name))
}

/// A version id as the registry writes them: `name` in the base line, `tenant/name`
/// in a tenant's.
pub fn version_id(tenant: Option<&str>, name: &str) -> String {
    match tenant {
        Some(t) => format!("{t}/{name}"),
        None => name.to_string(),
    }
}
