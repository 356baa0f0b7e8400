//! The `empathy` client: each command is one or a few calls to the public gRPC API of a
//! running system. It links the contract and tonic, nothing that serves or trains; the
//! operator's commands (assets, up, train, ...) are `empathy-admin`'s, run through
//! [`admin`] so that users see one tool.

pub mod admin;
pub mod analyze;
pub mod batch;
pub mod bench;
pub mod connection;
pub mod conversation;
pub mod keys;
pub mod learn;
pub mod load;
pub mod privacy;
pub mod replies;
pub mod suggest;
pub mod summary;
pub mod trajectory;

use empathy_grpc::v1::empathy_service_client::EmpathyServiceClient;

/// A refused call as the commands report it: the status code and the server's words.
pub fn refused(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "the server refused the request ({:?}): {}",
        s.code(),
        s.message()
    )
}

/// Prints a response in protobuf's JSON mapping (`--json`) or as `table` renders it
/// for a person.
pub fn print<T: serde::Serialize>(
    response: &T,
    json: bool,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(response)?);
    } else {
        print!("{}", table(response));
    }
    Ok(())
}

/// The public EmpathyService a command talks to.
#[derive(clap::Args, Clone, Debug)]
pub struct FusionEndpoint {
    /// The empathy server (`empathy up` starts it here).
    #[arg(
        long,
        env = "EMPATHY_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    pub endpoint: String,
    #[command(flatten)]
    pub tenant: connection::Tenant,
}

impl FusionEndpoint {
    /// A client whose calls name `--tenant` (if given) in the tenant header.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let conn =
            connection::connect_as(&self.endpoint, "the empathy server", &self.tenant).await?;
        Ok(client(conn))
    }
}

/// A client of the public EmpathyService.
pub type Client = EmpathyServiceClient<connection::Conn>;

/// A client of the public EmpathyService at `endpoint`, taking answers up to 64 MiB.
pub async fn connect(endpoint: &str) -> anyhow::Result<Client> {
    let conn = connection::connect(endpoint, "the empathy server").await?;
    Ok(client(conn))
}

fn client(conn: connection::Conn) -> Client {
    EmpathyServiceClient::new(conn)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
}

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The process's exit code for a command's result, printing the error chain on failure.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        fusion: FusionEndpoint,
    }

    #[test]
    fn fusion_commands_take_a_tenant_and_refuse_a_bad_one() {
        let parse = |args: &[&str]| {
            Command::try_parse_from(std::iter::once("analyze").chain(args.iter().copied()))
                .map(|c| c.fusion.tenant.given().map(str::to_string))
        };
        assert_eq!(
            parse(&["--tenant", "clinic_7"]).ok(),
            Some(Some("clinic_7".into()))
        );
        assert_eq!(parse(&["--tenant", ""]).ok(), Some(None));
        for bad in ["Acme", "a/b", &"x".repeat(65)] {
            assert!(parse(&["--tenant", bad]).is_err(), "{bad:?}");
        }
    }
}
