//! The `sealgate` command line: `run` starts the daemon; the other verbs
//! inspect and manage it (through the control socket when it runs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::control::{Request, Response};
use crate::tracking::Query;

#[derive(Debug, Parser)]
#[command(
    name = "sealgate",
    version,
    about = "Sealgate email encryption gateway"
)]
pub struct Cli {
    /// TOML bootstrap configuration (default: the embedded development default).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Run,
    /// Inspect and manage the queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Search message tracking events.
    Track(TrackArgs),
    /// Check a configuration file and print the effective settings.
    CheckConfig,
    /// Manage the gateway's keys on the PKCS#11 token.
    #[command(subcommand)]
    Keys(sealgate_hsm::cli::KeysCommand),
    /// Create and inspect the PKCS#11 token.
    #[command(subcommand)]
    Hsm(sealgate_hsm::cli::HsmCommand),
    /// The gateway's OpenPGP certificate; decrypt, encrypt, sign, verify a message.
    #[command(subcommand)]
    Pgp(sealgate_openpgp::cli::PgpCommand),
    /// The serial console recovery menu (or one of its actions).
    Console(crate::console::ConsoleArgs),
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// List queued messages and the state of each recipient.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one message's recipients, attempts and headers.
    Show { id: String },
    /// Delete a message from the queue.
    Delete { id: String },
    /// Retry a message now.
    Retry { id: String },
}

#[derive(Debug, clap::Args)]
pub struct TrackArgs {
    /// Sender address (substring).
    #[arg(long = "from")]
    pub sender: Option<String>,
    /// Recipient address (substring).
    #[arg(long = "to")]
    pub recipient: Option<String>,
    /// Queue id.
    #[arg(long)]
    pub id: Option<String>,
    /// Start of the time range: RFC 3339 (2026-11-28T17:00:00Z), Unix seconds, or an age like 30m, 2h, 1d.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the time range, same forms as --since.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

/// Loads the configuration named on the command line, or the embedded default.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// Parses `--since`/`--until`: RFC 3339, Unix seconds, or an age (`90s`, `30m`, `2h`, `1d`).
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs * 1000);
    }
    let units = [('s', 1u64), ('m', 60), ('h', 3600), ('d', 86400)];
    for (suffix, secs) in units {
        if let Some(n) = text
            .strip_suffix(suffix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            return Ok(now_ms.saturating_sub(n * secs * 1000));
        }
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
        .map_err(|_| format!("`{text}`: expected RFC 3339 time, Unix seconds, or an age like 2h"))
}

/// Runs a control request: through the daemon if it runs, else directly.
pub fn control(config: &Config, request: Request) -> Result<Response, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        if let Some(response) = crate::control::call_daemon(&config.data_dir, &request)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(response);
        }
        if !config.data_dir.exists() {
            return Err(format!(
                "{}: no data directory (has the gateway ever run with this configuration?)",
                config.data_dir.display()
            ));
        }
        let db = crate::daemon::open_db(config).map_err(|e| e.to_string())?;
        let (queue, _requests) =
            crate::queue::Queue::open(config, &db).map_err(|e| e.to_string())?;
        // The spool is the truth: bring the index up to date before answering.
        crate::queue::recover::reconcile(&queue).map_err(|e| e.to_string())?;
        let response = crate::control::execute(&queue, request, false).await;
        let _ = db.flush_async().await;
        Ok(response)
    })
}

/// Prints a control response for humans (or JSON); the exit code says if it worked.
pub fn print_response(response: &Response, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(response) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("{e}"),
        }
        return if matches!(response, Response::Error { .. }) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match response {
        Response::Entries { entries } => {
            if entries.is_empty() {
                println!("Queue is empty.");
            }
            for e in entries {
                println!(
                    "{}  {}  {} octets  from {}  attempts {}  next {}",
                    e.queue_id,
                    crate::util::iso8601_ms(e.received_at_ms),
                    e.size,
                    e.sender_text(),
                    e.attempts,
                    crate::util::iso8601_ms(e.next_attempt_ms)
                );
                for r in &e.recipients {
                    println!(
                        "    {:<40} {}",
                        r.recipient.address.to_string(),
                        describe_status(&r.status)
                    );
                }
            }
        }
        Response::Message { entry, headers } => {
            println!("Queue id:  {}", entry.queue_id);
            println!(
                "Received:  {}",
                crate::util::iso8601_ms(entry.received_at_ms)
            );
            println!("Sender:    {}", entry.sender_text());
            println!("Size:      {} octets", entry.size);
            println!("Attempts:  {}", entry.attempts);
            println!(
                "Next try:  {}",
                crate::util::iso8601_ms(entry.next_attempt_ms)
            );
            println!("Recipients:");
            for r in &entry.recipients {
                println!(
                    "    {:<40} {} (attempts {})",
                    r.recipient.address.to_string(),
                    describe_status(&r.status),
                    r.attempts
                );
            }
            println!("Headers:\n{headers}");
        }
        Response::Events { events } => {
            if events.is_empty() {
                println!("No events match.");
            }
            for e in events {
                println!(
                    "{}  {:<8} {:<3} {:<9} {}  {} -> {}  [{}] {}",
                    crate::util::iso8601_ms(e.time_ms),
                    e.node,
                    format!("{:?}", e.direction).to_lowercase(),
                    format!("{:?}", e.kind).to_lowercase(),
                    e.queue_id,
                    e.sender,
                    e.recipient,
                    e.remote,
                    e.detail
                );
            }
        }
        Response::Done { text } => println!("{text}"),
        Response::Error { error } => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn describe_status(status: &crate::queue::state::RecipientStatus) -> String {
    use crate::queue::state::RecipientStatus::*;
    match status {
        Scheduled => "scheduled".into(),
        Deferred { reason } => format!("deferred: {reason}"),
        Delivered { reply } => format!("delivered: {reply}"),
        Bounced { reason } => format!("bounced: {reason}"),
        Deleted => "deleted".into(),
    }
}

/// Builds the tracking query from the command line.
pub fn track_query(args: &TrackArgs) -> Result<Query, String> {
    let now = crate::envelope::now_ms();
    Ok(Query {
        sender: args.sender.clone(),
        recipient: args.recipient.clone(),
        queue_id: args.id.clone(),
        since_ms: args
            .since
            .as_deref()
            .map(|t| parse_time(t, now))
            .transpose()?,
        until_ms: args
            .until
            .as_deref()
            .map(|t| parse_time(t, now))
            .transpose()?,
        limit: Some(args.limit),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn time_forms() {
        assert_eq!(parse_time("100", 0).unwrap(), 100_000);
        assert_eq!(
            parse_time("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert_eq!(parse_time("1970-01-01T00:01:00Z", 0).unwrap(), 60_000);
        assert!(parse_time("yesterday", 0).is_err());
    }
}
