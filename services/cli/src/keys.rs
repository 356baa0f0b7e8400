//! `empathy keys create|list|revoke`: API keys, kept by the trainer (admin role).

use anyhow::Context;
use empathy_grpc::v1::{
    ApiKey, CreateKeyRequest, ListKeysRequest, RevokeKeyRequest, Role,
    key_service_client::KeyServiceClient,
};

use crate::learn::TrainerEndpoint;

#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    endpoint: TrainerEndpoint,
}

#[derive(clap::Subcommand)]
enum Action {
    /// A new key; it is printed once and stored only as a hash.
    Create {
        /// The tenant the key's analyses and feedback belong to.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// analyze (Analyze, AnalyzeStream, Info), feedback (+ Feedback) or admin
        /// (+ training, rollback, keys, purge, forget).
        #[arg(long, value_parser = ["analyze", "feedback", "admin"])]
        role: String,
        /// A note on who holds it.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Keys (not their secrets), of one tenant or all.
    List {
        #[arg(long, default_value = "")]
        tenant: String,
    },
    /// Stops a key from working (within 30 s at fusion, which caches keys).
    Revoke { key_id: String },
}

fn role(code: i32) -> &'static str {
    match Role::try_from(code) {
        Ok(Role::Analyze) => "analyze",
        Ok(Role::Feedback) => "feedback",
        Ok(Role::Admin) => "admin",
        _ => "none",
    }
}

fn line(k: &ApiKey) -> String {
    let state = if k.revoked { "revoked" } else { "valid" };
    format!(
        "{:<18} {:<16} {:<9} {:<8} {}",
        k.key_id,
        k.tenant,
        role(k.role),
        state,
        k.label
    )
}

pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let conn = crate::connection::connect(&args.endpoint.trainer, "the trainer").await?;
    let mut client = KeyServiceClient::new(conn);
    let status = |s: tonic::Status| anyhow::anyhow!("{}: {}", s.code(), s.message());
    match args.action {
        Action::Create {
            tenant,
            role,
            label,
        } => {
            let role = Role::from_str_name(&format!("ROLE_{}", role.to_ascii_uppercase()))
                .context("unknown role")?;
            let made = client
                .create_key(CreateKeyRequest {
                    tenant,
                    role: role as i32,
                    label,
                })
                .await
                .map_err(status)?
                .into_inner();
            let key = made.key.unwrap_or_default();
            eprintln!(
                "key {} for tenant {} with role {}; keep it secret, it is not shown again:",
                key.key_id,
                key.tenant,
                self::role(key.role)
            );
            println!("{}", made.secret);
        }
        Action::List { tenant } => {
            let keys = client
                .list_keys(ListKeysRequest { tenant })
                .await
                .map_err(status)?
                .into_inner()
                .keys;
            println!(
                "{:<18} {:<16} {:<9} {:<8} label",
                "key id", "tenant", "role", "state"
            );
            for k in &keys {
                println!("{}", line(k));
            }
        }
        Action::Revoke { key_id } => {
            let key = client
                .revoke_key(RevokeKeyRequest { key_id })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", line(&key));
        }
    }
    Ok(())
}
