//! The `sealgate` command line: `run` starts the daemon; the other verbs
//! are a front end over the administration service (`crate::service`):
//! they build a typed operation, send it to the running daemon over the
//! control socket (or, when it is stopped, run the same service on its data
//! directory), and print the answer for people or as JSON. No operation is
//! implemented here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sealgate_api::ops::{
    audit, directory, keys, policy, queue, settings, status, tracking, trust, update,
};
use sealgate_api::{Actor, Operation, Service, ServiceError, WireRequest, WireResponse};

use crate::config::Config;
use crate::util::iso8601_ms;

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
    /// The gateway's state: settings version, queue, key store, storage, expiries.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Inspect and manage the queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Search message tracking events.
    Track(TrackArgs),
    /// Settings that change while the gateway runs: show, change, compare, roll back.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The audit log: who changed what, and what was denied.
    Audit(AuditArgs),
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
    /// Policy tools.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Recipients' certificates and partner gateways' certificates.
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// S/MIME: decrypt, encrypt, sign or verify a message (stdin to stdout).
    #[command(subcommand)]
    Smime(sealgate_smime::cli::SmimeCommand),
    /// Several nodes as one gateway: init, join, status, tracking on every node.
    #[command(subcommand)]
    Cluster(crate::cluster::cli::ClusterCommand),
    /// Key changes waiting for review: list, show both keys, accept, reject.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// Trust anchors and CRLs, key discovery on demand, what to publish.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// The appliance's root slots; install a signed update bundle.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Encrypted backups of the settings history, the directory, the
    /// accounts and the OpenPGP metadata (private keys stay in the token).
    #[command(subcommand)]
    Backup(BackupCommand),
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// The S/MIME trust anchors in force (`smime.trust_anchors`).
    Anchors {
        #[arg(long)]
        json: bool,
    },
    /// The CRLs the gateway holds: list, or upload one.
    #[command(subcommand)]
    Crl(CrlCommand),
    /// Ask the key sources (`discovery.order`) for an address now, not
    /// from the cache; what is found goes to the directory as in delivery.
    Discover {
        address: String,
        #[arg(long)]
        json: bool,
    },
    /// The OPENPGPKEY and SMIMEA records to put into our DNS zone, and
    /// the WKD paths for our keys.
    Publish {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Every CRL held: issuer, where it came from, validity, entries.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Upload a CRL (DER or PEM; `-` reads stdin); kept when a trust
    /// anchor or a CA the directory knows issued it.
    Upload { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// The root slots, their versions and the last update's outcome.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Install a signed update bundle (RAUC) into the root slot that is not
    /// running; it starts with the next boot, on trial.
    Install {
        /// An absolute path to the bundle on the appliance, or an http(s) URL.
        source: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write an encrypted backup to FILE. The passphrase (at least 12
    /// characters) is read from --passphrase-file, or from the first line
    /// of standard input: never from the command line.
    Create {
        file: PathBuf,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Restore a backup made by `backup create` (onto a fresh install):
    /// settings history, directory, reviews and accounts are replaced, the
    /// newest settings version is put in force, every web session ends.
    Restore {
        file: PathBuf,
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Every key change waiting for review.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One key change: the key that turned up and the keys in use, side by side.
    Show { id: String },
    /// Use the new key from now on (as an administrator's); the keys it
    /// replaces leave the directory and mail held for the address is looked
    /// at again.
    Accept { id: String },
    /// Drop the new key; the current key stays in use.
    Reject { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Print a settings version (default: the one in force) as TOML.
    Show {
        #[arg(long)]
        version: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Print one setting (a dotted key: `delivery.smarthost`).
    Get {
        key: String,
        #[arg(long)]
        version: Option<u64>,
    },
    /// Set one setting: a TOML value (`50`, `true`, `["a.example"]`), or text.
    Set {
        key: String,
        value: String,
        #[arg(long)]
        comment: Option<String>,
        /// Refuse the change if the version in force is no longer this one.
        #[arg(long)]
        base: Option<u64>,
    },
    /// Apply a settings file (what `export` writes; a bootstrap file works
    /// too, its bootstrap keys are ignored) as a new version.
    Apply {
        file: PathBuf,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        base: Option<u64>,
    },
    /// What changed between two versions (default: the last change).
    Diff { from: Option<u64>, to: Option<u64> },
    /// The versions, newest first: who, when, via what, why.
    History {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Make an earlier version's settings the current ones (a new version).
    Rollback {
        version: u64,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Print a version as TOML, ready for `apply`.
    Export {
        #[arg(long)]
        version: Option<u64>,
    },
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Start of the time range: RFC 3339, Unix seconds, or an age like 2h, 1d.
    #[arg(long)]
    pub since: Option<String>,
    /// Only this account.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only operations starting with this (`settings.`, `queue.delete`).
    #[arg(long)]
    pub operation: Option<String>,
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Import S/MIME certificates (PEM, one or many, DER, PKCS#7) or OpenPGP
    /// keys (armored or binary); `-` for stdin. Held mail for their
    /// addresses is released at once.
    Import {
        file: PathBuf,
        /// Import as the gateway certificate of a partner domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// List every entry.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show the entries for an address, `@domain` or fingerprint, with their certificates (PEM).
    Show { key: String },
    /// Remove an entry by fingerprint (or a unique prefix of 8+ hex digits).
    Remove { fingerprint: String },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Read a message on stdin and print, per recipient, what the policy
    /// decides and why (a dry run: nothing is queued or sent).
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Envelope sender (default: the From header's address).
    #[arg(long = "from")]
    pub sender: Option<String>,
    /// Envelope recipients (default: the To, Cc and Bcc addresses).
    #[arg(long = "to")]
    pub recipients: Vec<String>,
    /// The connecting client's address (decides internal sender and trusted trigger header).
    #[arg(long, default_value = "127.0.0.1")]
    pub client_ip: std::net::IpAddr,
    #[arg(long)]
    pub json: bool,
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
    /// Delete messages from the queue.
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Retry messages now.
    Retry {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Release messages' held and quarantined recipients: the policy and
    /// the recipients' keys are looked at again now (held mail is never sent
    /// in clear; a released quarantine is delivered as the policy allows).
    Release {
        #[arg(required = true)]
        ids: Vec<String>,
    },
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
        None => {
            let mut config = Config::default();
            // The development default also runs the portal's listener
            // (the portal itself stays off until `portal.enabled`).
            config.portal.listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 8444))];
            Ok(config)
        }
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

/// Runs `op` through the running daemon's service, or, when no daemon
/// runs, through the same service on its data directory.
pub fn call<O: Operation>(config: &Config, op: &O) -> Result<O::Output, ServiceError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ServiceError::failed(e.to_string()))?;
    runtime.block_on(async {
        let request = WireRequest::of(op)?;
        let answer = crate::control::call_daemon(&config.data_dir, &request)
            .await
            .map_err(|e| ServiceError::Unavailable {
                what: format!("the daemon's control socket ({e})"),
            })?;
        let value = match answer {
            Some(WireResponse::Ok(value)) => value,
            Some(WireResponse::Err(e)) => return Err(e),
            None => offline(config, request).await?,
        };
        serde_json::from_value(value)
            .map_err(|e| ServiceError::failed(format!("{}: answer not decodable: {e}", O::NAME)))
    })
}

/// The service on a stopped daemon's data directory.
async fn offline(config: &Config, request: WireRequest) -> Result<serde_json::Value, ServiceError> {
    if !config.data_dir.exists() {
        return Err(ServiceError::NotFound {
            what: format!(
                "{}: no data directory (has the gateway ever run with this configuration?)",
                config.data_dir.display()
            ),
        });
    }
    let opened = crate::daemon::open(config.clone()).map_err(|e| ServiceError::Unavailable {
        what: format!("the data directory ({e})"),
    })?;
    // The spool is the truth: bring the index up to date before answering.
    crate::queue::recover::reconcile(&opened.queue)
        .map_err(|e| ServiceError::failed(format!("queue reconciliation: {e}")))?;
    let service = crate::service::AdminService::new(crate::service::Ctx::of(
        &opened,
        crate::keys::Keys::with(crate::keys::KeyStore::NotSetUp),
        false,
    ));
    let answer = service
        .call(&Actor::local_root(), &request.op, request.args)
        .await;
    let _ = opened.db.flush();
    answer
}

/// Runs a verb: calls the service, prints its answer (`show`), exits 0; or
/// prints the error and exits with its code.
fn run<O: Operation>(
    config: &Config,
    op: &O,
    json: bool,
    show: impl FnOnce(&O::Output),
) -> ExitCode {
    match call(config, op) {
        Ok(output) if json => {
            match serde_json::to_string_pretty(&output) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("sealgate: {e}"),
            }
            ExitCode::SUCCESS
        }
        Ok(output) => {
            show(&output);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &ServiceError) -> ExitCode {
    match e {
        ServiceError::Invalid { errors } if errors.len() > 1 => {
            eprintln!("sealgate: refused:");
            for error in errors {
                eprintln!("  {error}");
            }
        }
        e => eprintln!("sealgate: {e}"),
    }
    ExitCode::from(e.exit_code())
}

fn usage(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("sealgate: {e}");
    ExitCode::from(2)
}

/// Runs every verb but `run`, `check-config`, `hsm`, `smime`, `console`.
pub fn dispatch(config: &Config, command: Command) -> ExitCode {
    match command {
        Command::Status { json } => run(config, &status::Status {}, json, print_status),
        Command::Queue(q) => queue_verb(config, q),
        Command::Track(t) => match track_query(&t) {
            Ok(query) => run(config, &tracking::TrackSearch { query }, t.json, |events| {
                print_events(events)
            }),
            Err(e) => usage(e),
        },
        Command::Settings(s) => settings_verb(config, s),
        Command::Audit(a) => audit_verb(config, &a),
        Command::Directory(d) => directory_verb(config, d),
        Command::Policy(PolicyCommand::Explain(args)) => policy_explain(config, &args),
        Command::Keys(k) => keys_verb(config, k),
        Command::Pgp(p) => pgp_verb(config, p),
        Command::Review(r) => review_verb(config, r),
        Command::Trust(t) => trust_verb(config, t),
        Command::Update(UpdateCommand::Status { json }) => {
            run(config, &update::UpdateStatus {}, json, print_update_status)
        }
        Command::Update(UpdateCommand::Install { source, json }) => {
            run(config, &update::UpdateInstall { source }, json, |done| {
                println!("{}", done.text)
            })
        }
        Command::Backup(b) => backup_verb(config, b),
        Command::Run
        | Command::CheckConfig
        | Command::Hsm(_)
        | Command::Smime(_)
        | Command::Console(_)
        | Command::Cluster(_) => usage("not a service verb"),
    }
}

/// The passphrase from a file or the first line of standard input.
fn passphrase(file: Option<&PathBuf>) -> Result<String, String> {
    let text = match file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("standard input: {e}"))?;
            line
        }
    };
    Ok(text.lines().next().unwrap_or("").to_owned())
}

fn backup_verb(config: &Config, b: BackupCommand) -> ExitCode {
    use base64::Engine as _;
    use sealgate_api::ops::backup;
    let summary = |s: &backup::BackupSummary| {
        format!(
            "{} settings versions (newest {}), {} directory entries, {} accounts, {} reviews, \
             {} OpenPGP files; made on {} at {}",
            s.settings_versions,
            s.settings_version,
            s.directory_entries,
            s.accounts,
            s.reviews,
            s.openpgp_files,
            s.node,
            iso8601_ms(s.created_ms)
        )
    };
    match b {
        BackupCommand::Create {
            file,
            passphrase_file,
        } => {
            let passphrase = match passphrase(passphrase_file.as_ref()) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            match call(config, &backup::BackupCreate { passphrase }) {
                Ok(made) => {
                    let bytes = match base64::engine::general_purpose::STANDARD.decode(&made.data) {
                        Ok(b) => b,
                        Err(e) => return fail(&ServiceError::failed(format!("backup: {e}"))),
                    };
                    if let Err(e) = std::fs::write(&file, bytes) {
                        return usage(format!("{}: {e}", file.display()));
                    }
                    println!("{}: {}", file.display(), summary(&made.summary));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        BackupCommand::Restore {
            file,
            passphrase_file,
        } => {
            let bytes = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => return usage(format!("{}: {e}", file.display())),
            };
            let passphrase = match passphrase(passphrase_file.as_ref()) {
                Ok(p) => p,
                Err(e) => return usage(e),
            };
            let op = backup::BackupRestore {
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
                passphrase,
            };
            run(config, &op, false, |s| println!("restored: {}", summary(s)))
        }
    }
}

fn queue_verb(config: &Config, q: QueueCommand) -> ExitCode {
    let done = |d: &sealgate_api::ops::Done| {
        println!("{}", d.text);
        for f in &d.failed {
            eprintln!("{}: {}", f.id, f.error);
        }
    };
    match q {
        QueueCommand::List { json } => run(config, &queue::QueueList::default(), json, |entries| {
            print_queue(entries)
        }),
        QueueCommand::Show { id } => run(config, &queue::QueueShow { id }, false, print_message),
        QueueCommand::Delete { ids } => run(config, &queue::QueueDelete { ids }, false, done),
        QueueCommand::Retry { ids } => run(config, &queue::QueueRetry { ids }, false, done),
        QueueCommand::Release { ids } => run(config, &queue::QueueRelease { ids }, false, done),
    }
}

fn describe_recipient(r: &queue::QueuedRecipient) -> String {
    let why = r.reason.as_ref().map(|r| r.text.as_str()).unwrap_or("");
    match (r.state, r.since_ms, &r.reply) {
        (queue::RecipientState::Delivered, _, Some(reply)) => format!("delivered: {reply}"),
        (state, Some(since), _) => {
            format!("{} since {}: {why}", state.as_str(), iso8601_ms(since))
        }
        (state, None, _) if why.is_empty() => state.as_str().to_owned(),
        (state, None, _) => format!("{}: {why}", state.as_str()),
    }
}

fn print_queue(entries: &[queue::QueuedMessage]) {
    if entries.is_empty() {
        println!("Queue is empty.");
    }
    for e in entries {
        println!(
            "{}  {}  {} octets  from {}  attempts {}  next {}",
            e.queue_id,
            iso8601_ms(e.received_at_ms),
            e.size,
            e.sender,
            e.attempts,
            iso8601_ms(e.next_attempt_ms)
        );
        for r in &e.recipients {
            println!("    {:<40} {}", r.address, describe_recipient(r));
        }
    }
}

fn print_message(d: &queue::QueuedDetail) {
    let m = &d.message;
    println!("Queue id:  {}", m.queue_id);
    println!(
        "Received:  {} from {} ({})",
        iso8601_ms(m.received_at_ms),
        d.client_ip,
        d.helo
    );
    println!("Sender:    {}", m.sender);
    println!("Size:      {} octets", m.size);
    println!("Attempts:  {}", m.attempts);
    println!("Next try:  {}", iso8601_ms(m.next_attempt_ms));
    println!("Recipients:");
    for r in &m.recipients {
        let code = r
            .reason
            .as_ref()
            .map(|r| format!(" [{}]", r.code))
            .unwrap_or_default();
        println!(
            "    {:<40} {}{code} (attempts {})",
            r.address,
            describe_recipient(r),
            r.attempts
        );
    }
    println!("Headers:\n{}", d.headers);
}

fn print_events(events: &[tracking::Event]) {
    if events.is_empty() {
        println!("No events match.");
    }
    for e in events {
        println!(
            "{}  {:<8} {:<3} {:<9} {}  {} -> {}  [{}] {}",
            iso8601_ms(e.time_ms),
            e.node,
            match e.direction {
                tracking::Direction::In => "in",
                tracking::Direction::Out => "out",
            },
            e.kind.as_str(),
            e.queue_id,
            e.sender,
            e.recipient,
            e.remote,
            e.detail
        );
    }
}

/// Builds the tracking query from the command line.
pub fn track_query(args: &TrackArgs) -> Result<tracking::TrackQuery, String> {
    let now = crate::envelope::now_ms();
    Ok(tracking::TrackQuery {
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

fn print_status(s: &status::StatusReport) {
    println!("node {} ({}), sealgate {}", s.node, s.hostname, s.version);
    println!("  up since:          {}", iso8601_ms(s.started_at_ms));
    println!(
        "  settings version:  {}{}",
        s.settings_version,
        if s.file_settings_differ {
            "  (the bootstrap file's settings differ; the store is authoritative)"
        } else {
            ""
        }
    );
    println!(
        "  queue:             {} message(s): {} scheduled, {} deferred, {} held, {} quarantined",
        s.queue.messages, s.queue.scheduled, s.queue.deferred, s.queue.held, s.queue.quarantined
    );
    println!(
        "  key store:         {}",
        match &s.key_store {
            status::KeyStoreState::Ready => "ready".to_owned(),
            status::KeyStoreState::NotSetUp => "not set up".to_owned(),
            status::KeyStoreState::Unavailable { reason } => format!("UNAVAILABLE: {reason}"),
        }
    );
    if let Some(cause) = &s.storage_failed {
        println!("  state store:       FAILED ({cause}); reopened when the disk has room");
    }
    println!(
        "  data disk:         {} MiB free of {} MiB",
        s.data_disk.free_bytes / (1 << 20),
        s.data_disk.total_bytes / (1 << 20)
    );
    for e in &s.expiring {
        println!("  expires {}: {}", iso8601_ms(e.not_after_ms), e.what);
    }
}

fn print_update_status(r: &update::UpdateReport) {
    println!(
        "running:      {}{}",
        r.running_version,
        if r.live { " (live system)" } else { "" }
    );
    if !r.slots_known {
        println!("root slots:   unknown (RAUC does not answer)");
    }
    for slot in &r.slots {
        let mut line = format!(
            "slot {}:       {} {}",
            slot.name,
            slot.version.as_deref().unwrap_or("empty"),
            slot.boot_status
        );
        if slot.running {
            line.push_str(", running");
        }
        if slot.next_boot {
            line.push_str(", starts next boot");
        }
        println!("{line}");
    }
    if let Some(last) = &r.last_result {
        println!("last update:  {last}");
    }
}

fn settings_verb(config: &Config, cmd: SettingsCommand) -> ExitCode {
    let meta = |m: &settings::VersionMeta| {
        println!(
            "settings version {} ({} by {} via {}){}",
            m.version,
            iso8601_ms(m.time_ms),
            m.author,
            m.via.as_str(),
            m.comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
    };
    match cmd {
        SettingsCommand::Show { version, json } => {
            if json {
                run(config, &settings::SettingsShow { version }, true, |_| {})
            } else {
                run(
                    config,
                    &settings::SettingsExport { version },
                    false,
                    |text| print!("{text}"),
                )
            }
        }
        SettingsCommand::Get { key, version } => run(
            config,
            &settings::SettingsGet { key, version },
            false,
            |value| match value {
                serde_json::Value::String(s) => println!("{s}"),
                other => println!("{other}"),
            },
        ),
        SettingsCommand::Set {
            key,
            value,
            comment,
            base,
        } => run(
            config,
            &settings::SettingsSet {
                key,
                value: toml_value(&value),
                base_version: base,
                comment,
            },
            false,
            meta,
        ),
        SettingsCommand::Apply {
            file,
            comment,
            base,
        } => match Config::load(&file) {
            Ok(read) => run(
                config,
                &settings::SettingsApply {
                    settings: read.settings(),
                    base_version: base,
                    comment: comment.or_else(|| Some(format!("applied {}", file.display()))),
                },
                false,
                meta,
            ),
            Err(e) => usage(e),
        },
        SettingsCommand::Diff { from, to } => run(
            config,
            &settings::SettingsDiff { from, to },
            false,
            |changes| {
                if changes.is_empty() {
                    println!("No differences.");
                }
                let show = |v: &Option<serde_json::Value>| {
                    v.as_ref()
                        .map_or_else(|| "(unset)".to_owned(), ToString::to_string)
                };
                for c in changes {
                    println!("{}: {} -> {}", c.key, show(&c.before), show(&c.after));
                }
            },
        ),
        SettingsCommand::History { limit } => run(
            config,
            &settings::SettingsHistory { limit: Some(limit) },
            false,
            |versions| {
                for m in versions {
                    meta(m);
                }
            },
        ),
        SettingsCommand::Rollback { version, comment } => run(
            config,
            &settings::SettingsRollback {
                to: version,
                base_version: None,
                comment,
            },
            false,
            meta,
        ),
        SettingsCommand::Export { version } => run(
            config,
            &settings::SettingsExport { version },
            false,
            |text| print!("{text}"),
        ),
    }
}

/// A value given on the command line: JSON or TOML (`50`, `true`, `"x"`,
/// `["a"]`, `[{"name": "r", …}]`, `{ name = "r" }`), or else plain text.
fn toml_value(text: &str) -> serde_json::Value {
    serde_json::from_str(text)
        .ok()
        .or_else(|| {
            toml::from_str::<toml::Table>(&format!("v = {text}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .and_then(|v| serde_json::to_value(v).ok())
        })
        .unwrap_or_else(|| serde_json::Value::String(text.to_owned()))
}

fn audit_verb(config: &Config, a: &AuditArgs) -> ExitCode {
    let since = match a
        .since
        .as_deref()
        .map(|t| parse_time(t, crate::envelope::now_ms()))
        .transpose()
    {
        Ok(since) => since,
        Err(e) => return usage(e),
    };
    let op = audit::AuditSearch {
        since_ms: since,
        until_ms: None,
        actor: a.actor.clone(),
        operation: a.operation.clone(),
        limit: Some(a.limit),
    };
    run(config, &op, a.json, |records| {
        if records.is_empty() {
            println!("No audit records match.");
        }
        for r in records {
            let outcome = match &r.outcome {
                audit::AuditOutcome::Done => "done".to_owned(),
                audit::AuditOutcome::Denied => "DENIED".to_owned(),
                audit::AuditOutcome::Failed(why) => format!("failed: {why}"),
            };
            println!(
                "{}  {} ({}, {}{})  {}  {}  settings {}->{}  {}",
                iso8601_ms(r.time_ms),
                r.actor,
                r.role.as_str(),
                r.via.as_str(),
                r.from
                    .as_deref()
                    .map(|f| format!(" from {f}"))
                    .unwrap_or_default(),
                r.operation,
                outcome,
                r.settings_before,
                r.settings_after,
                r.args
            );
        }
    })
}

/// A file (or stdin for `-`) of at most `limit` octets.
fn read_bounded(file: &std::path::Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().take(limit + 1).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| format!("{}: {e}", file.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{}: larger than {limit} octets", file.display()));
    }
    Ok(bytes)
}

fn directory_verb(config: &Config, cmd: DirectoryCommand) -> ExitCode {
    use base64::Engine as _;
    match cmd {
        DirectoryCommand::Import { file, domain } => {
            let bytes = match read_bounded(&file, 512 * 1024) {
                Ok(bytes) => bytes,
                Err(e) => return usage(e),
            };
            let op = directory::DirectoryImport {
                data: base64::engine::general_purpose::STANDARD.encode(&bytes),
                domain,
            };
            run(config, &op, false, |imported| {
                for e in &imported.entries {
                    println!(
                        "imported {} {} for {}{}",
                        e.fingerprint,
                        e.subject,
                        target(e),
                        if imported.not_usable.contains(&e.fingerprint) {
                            " (NOT usable for encryption: expired, not yet valid, or no encryption key usage)"
                        } else {
                            ""
                        }
                    );
                }
                println!("{}", imported.released);
            })
        }
        DirectoryCommand::List { json } => run(
            config,
            &directory::DirectoryList::default(),
            json,
            |entries| {
                if entries.is_empty() {
                    println!("No entries.");
                }
                for e in entries {
                    print_entry(e);
                }
            },
        ),
        DirectoryCommand::Show { key } => {
            run(config, &directory::DirectoryShow { key }, false, |items| {
                if items.is_empty() {
                    println!("No entries.");
                }
                for item in items {
                    print_entry(&item.entry);
                    println!("    subject: {}", item.entry.subject);
                    println!("    sha256:  {}", item.entry.fingerprint);
                    println!(
                        "    seen:    {} .. {}",
                        iso8601_ms(item.entry.first_seen_ms),
                        iso8601_ms(item.entry.last_seen_ms)
                    );
                    print!("{}", item.armored);
                }
            })
        }
        DirectoryCommand::Remove { fingerprint } => run(
            config,
            &directory::DirectoryRemove { fingerprint },
            false,
            |e| println!("removed {} ({})", e.fingerprint, e.subject),
        ),
    }
}

fn review_verb(config: &Config, cmd: ReviewCommand) -> ExitCode {
    let done = |d: &sealgate_api::ops::Done| println!("{}", d.text);
    match cmd {
        ReviewCommand::List { json } => {
            run(config, &trust::ReviewList::default(), json, |reviews| {
                if reviews.is_empty() {
                    println!("No key changes wait for review.");
                }
                for r in reviews {
                    println!(
                        "{}  {} {} ({})  since {}  seen {}x  replaces {}\n    {}",
                        r.id,
                        r.trust.as_str(),
                        r.source,
                        r.address,
                        iso8601_ms(r.since_ms),
                        r.seen,
                        if r.current.is_empty() {
                            "nothing".to_owned()
                        } else {
                            r.current.join(", ")
                        },
                        r.why
                    );
                }
            })
        }
        ReviewCommand::Show { id } => run(config, &trust::ReviewShow { id }, false, |d| {
            println!("{} for {}: {}", d.review.id, d.review.address, d.review.why);
            println!("new key:");
            print_entry(&d.candidate.entry);
            print!("{}", d.candidate.armored);
            println!("keys in use:");
            if d.current.is_empty() {
                println!("  none");
            }
            for item in &d.current {
                print_entry(&item.entry);
                print!("{}", item.armored);
            }
        }),
        ReviewCommand::Accept { id } => run(config, &trust::ReviewAccept { id }, false, done),
        ReviewCommand::Reject { id } => run(config, &trust::ReviewReject { id }, false, done),
    }
}

fn trust_verb(config: &Config, cmd: TrustCommand) -> ExitCode {
    use base64::Engine as _;
    let print_crl = |c: &trust::CrlInfo| {
        println!(
            "{}  from {}  this update {}  next update {}  {} revoked",
            c.issuer,
            c.origin,
            iso8601_ms(c.this_update_ms),
            c.next_update_ms
                .map_or_else(|| "none".to_owned(), iso8601_ms),
            c.revoked
        );
    };
    match cmd {
        TrustCommand::Anchors { json } => {
            run(config, &trust::AnchorsList::default(), json, |anchors| {
                if anchors.is_empty() {
                    println!("No trust anchors (smime.trust_anchors is empty).");
                }
                for a in anchors {
                    println!(
                        "{}  {}  valid until {}",
                        a.fingerprint,
                        a.subject,
                        iso8601_ms(a.not_after_ms)
                    );
                }
            })
        }
        TrustCommand::Crl(CrlCommand::List { json }) => {
            run(config, &trust::CrlList::default(), json, |crls| {
                if crls.is_empty() {
                    println!("No CRLs held.");
                }
                crls.iter().for_each(print_crl);
            })
        }
        TrustCommand::Crl(CrlCommand::Upload { file }) => {
            let bytes = match read_bounded(&file, 16 * 1024 * 1024) {
                Ok(bytes) => bytes,
                Err(e) => return usage(e),
            };
            let op = trust::CrlUpload {
                data: base64::engine::general_purpose::STANDARD.encode(&bytes),
            };
            run(config, &op, false, |c| {
                print!("kept: ");
                print_crl(c);
            })
        }
        TrustCommand::Discover { address, json } => {
            run(config, &trust::DiscoveryLookup { address }, json, |r| {
                println!("{}: {}", r.address, r.status);
                for f in &r.found {
                    println!(
                        "  {:?} key from {} ({}){}",
                        f.kind,
                        f.source,
                        f.origin,
                        f.domain
                            .as_ref()
                            .map_or_else(String::new, |d| format!(", for domain {d}"))
                    );
                }
                if let Some(e) = &r.error {
                    println!("  error: {e}");
                }
            })
        }
        TrustCommand::Publish { json } => {
            run(config, &trust::PublishRecords::default(), json, |records| {
                if records.is_empty() {
                    println!(
                        "Nothing to publish: no keys of ours in the directory or on the token."
                    );
                }
                for r in records {
                    if r.kind == "WKD" {
                        println!("; WKD for {}\n{}  (key {})", r.address, r.name, r.data);
                    } else {
                        println!(
                            "; {} for {}\n{} {} {}",
                            r.kind, r.address, r.name, r.kind, r.data
                        );
                    }
                }
            })
        }
    }
}

fn target(e: &directory::DirectoryEntry) -> String {
    e.domain
        .as_ref()
        .map_or_else(|| e.addresses.join(", "), |d| format!("domain {d}"))
}

fn print_entry(e: &directory::DirectoryEntry) {
    println!(
        "{}  {:<7} {:<9} {}  valid {} .. {}{}  {}",
        e.fingerprint.get(..16).unwrap_or(&e.fingerprint),
        e.kind.as_str(),
        e.trust.as_str(),
        target(e),
        iso8601_ms(e.not_before_ms),
        iso8601_ms(e.not_after_ms),
        if e.can_encrypt {
            ""
        } else {
            " (cannot encrypt)"
        },
        e.source
    );
}

/// `sealgate policy explain`: decisions for a message read from stdin.
fn policy_explain(config: &Config, args: &ExplainArgs) -> ExitCode {
    use base64::Engine as _;
    use std::io::Read;
    let mut content = Vec::new();
    let limit = config.smtp.max_message_size;
    if let Err(e) = std::io::stdin()
        .take(limit.saturating_add(1))
        .read_to_end(&mut content)
    {
        return usage(format!("reading the message: {e}"));
    }
    let op = policy::PolicyExplain {
        message: base64::engine::general_purpose::STANDARD.encode(&content),
        sender: args.sender.clone(),
        recipients: args.recipients.clone(),
        client_ip: Some(args.client_ip),
    };
    run(config, &op, args.json, |explanations| {
        for e in explanations {
            println!("{}", e.line);
            println!("    -> {}", e.outcome);
        }
    })
}

fn keys_verb(config: &Config, cmd: sealgate_hsm::cli::KeysCommand) -> ExitCode {
    use sealgate_hsm::cli::KeysCommand as K;
    let subject = |s: sealgate_hsm::cli::SubjectArgs| keys::Subject {
        common_name: s.cn,
        organization: s.org,
        emails: s.emails,
        dns_names: s.dns_names,
    };
    let write = |out: Option<PathBuf>, text: &str| match out {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("sealgate: {}: {e}", path.display());
            }
        }
        None => print!("{text}"),
    };
    match cmd {
        K::List => run(config, &keys::KeysList {}, false, |view| {
            if let Some(e) = &view.token.error {
                println!("token {:?}: {e}", view.token.label);
            }
            println!("{:<28} {:<9} {:<8} CERTIFICATE", "LABEL", "ALG", "USAGE");
            for k in &view.keys {
                println!(
                    "{:<28} {:<9} {:<8} {}",
                    k.label,
                    k.algorithm,
                    k.usage,
                    k.certificate.as_ref().map_or_else(
                        || "-".to_owned(),
                        |c| format!("{} until {}", c.subject, iso8601_ms(c.not_after_ms))
                    )
                );
            }
            if let Some(pgp) = &view.openpgp {
                println!("openpgp identity {} {:?}", pgp.fingerprint, pgp.user_ids);
            }
        }),
        K::Generate {
            label,
            algorithm,
            usage,
        } => {
            let name = |v: Option<clap::builder::PossibleValue>| {
                v.map(|v| v.get_name().to_owned()).unwrap_or_default()
            };
            use clap::ValueEnum as _;
            let op = keys::KeyGenerate {
                label,
                algorithm: name(algorithm.to_possible_value()),
                usage: name(usage.to_possible_value()),
            };
            run(config, &op, false, |k| {
                println!("generated {} {} {}", k.label, k.algorithm, k.usage)
            })
        }
        K::Show { label } => run(config, &keys::KeysList {}, false, move |view| {
            match view.keys.iter().find(|k| k.label == label) {
                Some(k) => {
                    println!("label:     {}", k.label);
                    println!("algorithm: {}", k.algorithm);
                    println!("usage:     {}", k.usage);
                    if let Some(c) = &k.certificate {
                        println!("subject:   {}", c.subject);
                        println!("issuer:    {}", c.issuer);
                        println!(
                            "valid:     {} .. {}",
                            iso8601_ms(c.not_before_ms),
                            iso8601_ms(c.not_after_ms)
                        );
                        println!("certificates: {}", c.chain_length);
                    }
                }
                None => eprintln!("sealgate: no key labelled {label:?}"),
            }
        }),
        K::SelfSign {
            label,
            subject: s,
            issuer,
            days,
        } => {
            let op = keys::KeySelfSign {
                label,
                subject: subject(s),
                issuer,
                days,
            };
            run(config, &op, false, |c| {
                println!(
                    "certificate {} for {} until {}",
                    c.fingerprint,
                    c.subject,
                    iso8601_ms(c.not_after_ms)
                )
            })
        }
        K::Csr {
            label,
            subject: s,
            out,
        } => {
            let op = keys::KeyCsr {
                label,
                subject: subject(s),
            };
            run(config, &op, false, move |pem| write(out, pem))
        }
        K::ImportCert { label, file } => match std::fs::read(&file) {
            Ok(bytes) => {
                let certificate = match String::from_utf8(bytes) {
                    Ok(text) if text.contains("-----BEGIN") => text,
                    Ok(text) => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
                    }
                    Err(e) => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.encode(e.into_bytes())
                    }
                };
                run(
                    config,
                    &keys::KeyImportCert {
                        label: label.clone(),
                        certificate,
                    },
                    false,
                    |c| println!("imported certificate for {label}: {}", c.subject),
                )
            }
            Err(e) => usage(format!("{}: {e}", file.display())),
        },
        K::ExportCert { label, format, out } => {
            let der = format == sealgate_hsm::certs::CertFormat::Der;
            run(
                config,
                &keys::KeyExportCert { label, der },
                false,
                move |text| {
                    if der {
                        use base64::Engine as _;
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(text.as_bytes())
                            .unwrap_or_default();
                        match out {
                            Some(path) => {
                                if let Err(e) = std::fs::write(&path, bytes) {
                                    eprintln!("sealgate: {}: {e}", path.display());
                                }
                            }
                            None => {
                                use std::io::Write as _;
                                let _ = std::io::stdout().write_all(&bytes);
                            }
                        }
                    } else {
                        write(out, text)
                    }
                },
            )
        }
        K::Delete { label, yes } => {
            if !yes {
                return usage("deleting a key is final; confirm with --yes");
            }
            run(config, &keys::KeyDelete { label }, false, |d| {
                println!("{}", d.text)
            })
        }
        _ => usage("unknown keys verb"),
    }
}

fn pgp_verb(config: &Config, cmd: sealgate_openpgp::cli::PgpCommand) -> ExitCode {
    use sealgate_openpgp::cli::PgpCommand as P;
    match cmd {
        P::Init {
            user_id,
            algorithm,
            label_prefix: _,
        } => {
            use clap::ValueEnum as _;
            let op = keys::PgpInit {
                user_id,
                algorithm: algorithm
                    .to_possible_value()
                    .map(|v| v.get_name().to_owned()),
            };
            run(config, &op, false, |info| {
                println!("{}", info.fingerprint.to_ascii_uppercase())
            })
        }
        P::Rotate => run(config, &keys::PgpRotate {}, false, |info| {
            println!("{}", info.fingerprint.to_ascii_uppercase())
        }),
        P::ExportGatewayCert { binary: false, out } => run(
            config,
            &keys::PgpExport {},
            false,
            move |armored| match out {
                Some(path) => {
                    if let Err(e) = std::fs::write(&path, armored) {
                        eprintln!("sealgate: {}: {e}", path.display());
                    }
                }
                None => print!("{armored}"),
            },
        ),
        // The engine's tools: they work on files, not on the gateway's state.
        other => {
            match sealgate_openpgp::cli::run_pgp(other, &config.hsm_settings(), &config.data_dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.is_temporary() => {
                    eprintln!("sealgate: {e}");
                    ExitCode::from(75)
                }
                Err(e) => {
                    eprintln!("sealgate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
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

    #[test]
    fn command_line_values_are_toml_or_text() {
        assert_eq!(toml_value("50"), serde_json::json!(50));
        assert_eq!(toml_value("true"), serde_json::json!(true));
        assert_eq!(
            toml_value("[\"a.example\"]"),
            serde_json::json!(["a.example"])
        );
        assert_eq!(toml_value("mx"), serde_json::json!("mx"));
        assert_eq!(
            toml_value("mail.example:25"),
            serde_json::json!("mail.example:25")
        );
    }
}
