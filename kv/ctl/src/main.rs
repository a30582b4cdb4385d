//! `tinykv-ctl`: talk to a TinyKV server from the shell.
//!
//! ```text
//! tinykv-ctl [--addr 127.0.0.1:20160] raw put KEY VALUE [--cf CF]
//! tinykv-ctl raw get KEY [--cf CF]
//! tinykv-ctl raw delete KEY [--cf CF]
//! tinykv-ctl raw scan [START] [--limit N] [--cf CF]
//! ```
//!
//! Keys and values are taken as UTF-8 text, or as hex with `--hex`. Output
//! shows printable bytes as text and escapes the rest (`\x00`). The exit
//! status is 0 on success (a missing key is a success: it prints
//! `(not found)`), 1 when the server reports an error or cannot be reached,
//! 2 on a bad command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tinykv_proto::kvrpcpb::{RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest};
use tinykv_proto::tinykvpb::tiny_kv_client::TinyKvClient;
use tonic::transport::Channel;

/// Command-line client for a TinyKV server.
#[derive(Debug, Parser)]
#[command(name = "tinykv-ctl", version, about)]
struct Cli {
    /// The server address (HOST:PORT).
    #[arg(long, global = true, default_value = "127.0.0.1:20160")]
    addr: String,

    /// Read keys and values on the command line as hex (e.g. `6b31`).
    #[arg(long, global = true)]
    hex: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The raw (non-transactional) API.
    #[command(subcommand)]
    Raw(RawCommand),
}

#[derive(Debug, Subcommand)]
enum RawCommand {
    /// Set KEY to VALUE.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        cf: CfArg,
    },
    /// Print the value of KEY, or `(not found)`.
    Get {
        key: String,
        #[command(flatten)]
        cf: CfArg,
    },
    /// Remove KEY (succeeds when KEY is missing).
    Delete {
        key: String,
        #[command(flatten)]
        cf: CfArg,
    },
    /// Print up to LIMIT pairs with keys >= START, in key order.
    Scan {
        /// The first key to include (default: the very first key).
        #[arg(default_value = "")]
        start: String,
        /// How many pairs at most (1 to 10000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        cf: CfArg,
    },
}

#[derive(Debug, Args)]
struct CfArg {
    /// The column family: default, lock or write.
    #[arg(long, default_value = "default")]
    cf: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

async fn run(cli: Cli) -> Result<(), String> {
    let Command::Raw(command) = cli.command;
    let parse = |text: &str| parse_bytes(text, cli.hex);
    let mut client = connect(&cli.addr).await?;
    match command {
        RawCommand::Put { key, value, cf } => {
            let req = RawPutRequest {
                key: parse(&key)?,
                value: parse(&value)?,
                cf: cf.cf,
                ..Default::default()
            };
            let resp = client.raw_put(req).await.map_err(status_message)?.into_inner();
            check(&resp.error, resp.region_error.is_some())?;
            println!("OK");
        }
        RawCommand::Get { key, cf } => {
            let req = RawGetRequest { key: parse(&key)?, cf: cf.cf, ..Default::default() };
            let resp = client.raw_get(req).await.map_err(status_message)?.into_inner();
            check(&resp.error, resp.region_error.is_some())?;
            if resp.not_found {
                println!("(not found)");
            } else {
                println!("{}", show(&resp.value));
            }
        }
        RawCommand::Delete { key, cf } => {
            let req = RawDeleteRequest { key: parse(&key)?, cf: cf.cf, ..Default::default() };
            let resp = client.raw_delete(req).await.map_err(status_message)?.into_inner();
            check(&resp.error, resp.region_error.is_some())?;
            println!("OK");
        }
        RawCommand::Scan { start, limit, cf } => {
            let req = RawScanRequest {
                start_key: parse(&start)?,
                limit,
                cf: cf.cf,
                ..Default::default()
            };
            let resp = client.raw_scan(req).await.map_err(status_message)?.into_inner();
            check(&resp.error, resp.region_error.is_some())?;
            for pair in &resp.kvs {
                println!("{} => {}", show(&pair.key), show(&pair.value));
            }
            let n = resp.kvs.len();
            println!("({n} pair{})", if n == 1 { "" } else { "s" });
        }
    }
    Ok(())
}

async fn connect(addr: &str) -> Result<TinyKvClient<Channel>, String> {
    let endpoint = format!("http://{addr}");
    TinyKvClient::connect(endpoint).await.map_err(|e| {
        format!(
            "cannot connect to {addr}: {e} (is tinykv-server running there? `make run` starts one)"
        )
    })
}

/// Turns a response's error fields into an `Err`.
fn check(error: &str, has_region_error: bool) -> Result<(), String> {
    if !error.is_empty() {
        return Err(format!("server: {error}"));
    }
    if has_region_error {
        return Err("server: region error (the request reached the wrong region or peer)".into());
    }
    Ok(())
}

fn status_message(status: tonic::Status) -> String {
    format!("server answered {:?}: {}", status.code(), status.message())
}

/// The bytes of a command-line argument: its UTF-8 text, or hex.
fn parse_bytes(text: &str, hex: bool) -> Result<Vec<u8>, String> {
    if !hex {
        return Ok(text.as_bytes().to_vec());
    }
    if !text.len().is_multiple_of(2) {
        return Err(format!("{text:?} is not hex: odd number of digits"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("{text:?} is not hex"))
        })
        .collect()
}

/// Printable ASCII as is, everything else escaped.
fn show(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_arguments() {
        assert_eq!(parse_bytes("6b31", true).unwrap(), b"k1");
        assert_eq!(parse_bytes("k1", false).unwrap(), b"k1");
        assert!(parse_bytes("6b3", true).is_err());
        assert!(parse_bytes("zz", true).is_err());
    }

    #[test]
    fn shows_escaped_bytes() {
        assert_eq!(show(b"ab\x00"), "ab\\x00");
    }
}
