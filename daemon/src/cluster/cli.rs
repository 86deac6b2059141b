//! `sealgate cluster init|join|status|track`.
//!
//! `init` and `join` set a node up (see `setup`); they work on the
//! database and the token directly. `status` and `track` are the service's
//! `cluster.status` and `cluster.track`, through the daemon's control
//! socket, or on a stopped daemon's data directory (which then asks the
//! other nodes over the cluster API with this node's identity).

use std::process::ExitCode;

use clap::Subcommand;
use sealgate_api::ops::cluster::{ClusterReport, ClusterStatus, ClusterTrack, ClusterTrackResult};

use crate::config::Config;
use crate::util::iso8601_ms;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make this node the first node of a cluster: create the cluster CA
    /// on the token and copy this node's shared state (settings, audit,
    /// key directory, accounts, invitations) into the cluster database.
    /// Stop the daemon first; set `[cluster]` in the bootstrap file.
    Init {
        /// A name for the cluster (in its CA certificate).
        #[arg(long, default_value = "sealgate")]
        name: String,
    },
    /// Add this node to an existing cluster (its token must be the
    /// cluster's): issue its certificate and register it.
    Join {
        /// Issue a new certificate for a node that joined before.
        #[arg(long)]
        renew: bool,
    },
    /// Every node: version, settings version, queue, whether it answers.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Search message tracking on every node.
    Track(crate::cli::TrackArgs),
}

/// Runs a `cluster` verb.
pub fn run(command: ClusterCommand, config: &Config) -> ExitCode {
    match command {
        ClusterCommand::Init { name } => match super::setup::init(config, &name) {
            Ok(report) => {
                println!(
                    "Node {} is the first node of cluster {name:?} ({}).",
                    config.node_name, report.database
                );
                if report.ca_created {
                    println!(
                        "  cluster CA: created on the token (key `{}`)",
                        super::identity::CA_LABEL
                    );
                } else {
                    println!(
                        "  cluster CA: the token's existing `{}`",
                        super::identity::CA_LABEL
                    );
                }
                for (space, n) in &report.copied {
                    println!("  copied {n:>7} {}", space.name());
                }
                if report.settings_imported {
                    println!("  settings: the bootstrap file's, as version 1");
                }
                println!(
                    "Start the daemon; on the other nodes (same token), run `sealgate cluster join`."
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string(), e.is_temporary()),
        },
        ClusterCommand::Join { renew } => match super::setup::join(config, renew) {
            Ok(report) => {
                println!(
                    "Node {} is a member of cluster {:?} ({}), {} node(s) in all.",
                    config.node_name, report.cluster, report.database, report.members
                );
                if let Some(ms) = report.not_after_ms {
                    println!("  node certificate valid until {}", iso8601_ms(ms));
                }
                for (space, n) in &report.local_state_left {
                    println!(
                        "  note: this node's own {} ({n}) stays in its local database and is not used in the cluster",
                        space.name()
                    );
                }
                println!("Start (or restart) the daemon.");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string(), e.is_temporary()),
        },
        ClusterCommand::Status { json } => {
            let report = match crate::cli::call(config, &ClusterStatus {}) {
                Ok(r) => r,
                Err(e) => return fail(&e.to_string(), e.is_temporary()),
            };
            if json {
                return print_json(&report);
            }
            print_status(&report);
            ExitCode::SUCCESS
        }
        ClusterCommand::Track(args) => {
            let query = match crate::cli::track_query(&args) {
                Ok(q) => q,
                Err(e) => return fail(&e, false),
            };
            let result = match crate::cli::call(config, &ClusterTrack { query }) {
                Ok(r) => r,
                Err(e) => return fail(&e.to_string(), e.is_temporary()),
            };
            if args.json {
                if print_json(&result) != ExitCode::SUCCESS {
                    return ExitCode::FAILURE;
                }
            } else {
                print_track(&result);
            }
            if result.nodes.iter().all(|n| n.answered) {
                ExitCode::SUCCESS
            } else {
                // Part of the answer is missing: say so to scripts too.
                ExitCode::from(75)
            }
        }
    }
}

fn fail(text: &str, temporary: bool) -> ExitCode {
    eprintln!("sealgate: {text}");
    ExitCode::from(if temporary { 75 } else { 1 })
}

fn print_json<T: serde::Serialize>(value: &T) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string(), false),
    }
}

fn print_status(report: &ClusterReport) {
    if let Some(db) = &report.database {
        println!(
            "Cluster database {}: {}",
            db.database,
            if db.connected {
                "connected".to_owned()
            } else {
                format!(
                    "NOT REACHABLE ({})",
                    db.last_error.as_deref().unwrap_or("no answer")
                )
            }
        );
    }
    println!(
        "{:<16} {:<22} {:<14} {:<8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}  LAST HEARTBEAT",
        "NODE",
        "ADDRESS",
        "ANSWERS",
        "VERSION",
        "SETTINGS",
        "MSGS",
        "SCHED",
        "DEFER",
        "HELD",
        "QUAR"
    );
    let now = crate::envelope::now_ms();
    for n in &report.nodes {
        let answers = match (n.answers, n.latency_ms) {
            (true, Some(ms)) => format!("yes ({ms} ms)"),
            (true, None) => "yes".to_owned(),
            (false, _) => "NO".to_owned(),
        };
        let heartbeat = n.last_heartbeat_ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("{} s ago", now.saturating_sub(ms) / 1000),
        );
        let q = &n.state.queue;
        println!(
            "{:<16} {:<22} {:<14} {:<8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}  {heartbeat}",
            n.name,
            n.address,
            answers,
            n.state.version,
            n.state.settings_version,
            q.messages,
            q.scheduled,
            q.deferred,
            q.held,
            q.quarantined
        );
        if let Some(e) = &n.error {
            println!("    {}: {e}", n.name);
        }
    }
}

fn print_track(result: &ClusterTrackResult) {
    if result.events.is_empty() {
        println!("No events match.");
    }
    for e in &result.events {
        println!(
            "{}  {:<12} {:<3} {:<9} {}  {} -> {}  [{}] {}",
            iso8601_ms(e.time_ms),
            e.node,
            format!("{:?}", e.direction).to_lowercase(),
            e.kind.as_str(),
            e.queue_id,
            e.sender,
            e.recipient,
            e.remote,
            e.detail
        );
    }
    if result.truncated {
        println!("(more events match: narrow the search or raise --limit)");
    }
    for n in &result.nodes {
        if n.answered {
            println!(
                "node {}: answered, {} events, {} ms",
                n.node, n.events, n.elapsed_ms
            );
        } else {
            println!(
                "node {}: DID NOT ANSWER ({})",
                n.node,
                n.error.as_deref().unwrap_or("?")
            );
        }
    }
}
