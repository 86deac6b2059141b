//! `sealgate run`: opens the data directory, reconciles the queue, binds the
//! listeners and runs the SMTP server, the scheduler and the control socket
//! until SIGTERM or SIGINT.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::config::{Config, DeliveryMode};
use crate::delivery::Deliverer;
use crate::pipeline::unwrap::KeyStore;
use crate::queue::{Queue, SchedulerRequest, recover, scheduler};

/// Opens the state store (sled) of a data directory.
pub fn open_db(config: &Config) -> std::io::Result<crate::db::Db> {
    crate::db::Db::open(&config.data_dir.join("db"))
}

/// The gateway's own keys, if a token is set up (configured, or a SoftHSM2
/// token in the data directory) and its keys have certificates. A token
/// that is set up but cannot be opened is `Unavailable`: mail that may be
/// encrypted for the gateway then waits instead of passing unopened.
async fn load_gateway_keys(config: &Config) -> KeyStore {
    let settings = config.hsm_settings();
    if config.hsm.is_none() && !settings.softhsm_conf().exists() {
        tracing::info!("no key store set up: mail encrypted for the gateway is not opened");
        return KeyStore::NotSetUp;
    }
    let openpgp_dir = config.data_dir.join("openpgp");
    let opened = tokio::task::spawn_blocking(move || {
        let hsm = sealgate_hsm::Hsm::open(&settings)?;
        crate::pipeline::unwrap::GatewayKeys::load(
            &hsm,
            crate::pipeline::unwrap::SMIME_KEY_LABELS,
            &openpgp_dir,
        )
    })
    .await;
    // An unavailable key store is reported by the caller, once per change.
    match opened {
        Ok(Ok(keys)) if !keys.is_empty() => {
            tracing::info!(?keys, "gateway decryption keys loaded from the token");
            KeyStore::Ready(Arc::new(keys))
        }
        Ok(Ok(_)) => {
            tracing::info!(
                "the token has no decryption key with a certificate: mail encrypted for the gateway is not opened"
            );
            KeyStore::NotSetUp
        }
        Ok(Err(e)) => KeyStore::Unavailable(e.to_string()),
        Err(e) => KeyStore::Unavailable(format!("loading the gateway keys stopped: {e}")),
    }
}

/// Logs an unavailable key store when it becomes so or its reason changes,
/// not on every retry.
fn report_unavailable(previous: Option<&KeyStore>, current: &KeyStore) {
    let KeyStore::Unavailable(why) = current else {
        return;
    };
    if let Some(KeyStore::Unavailable(before)) = previous
        && before == why
    {
        return;
    }
    tracing::error!(
        error = %why,
        "key store unavailable: mail that needs the gateway's keys (encrypted for it, or to be signed) waits; \
         it is tried again every {} s",
        KEY_STORE_RETRY.as_secs()
    );
}

/// How often an unavailable key store is tried again.
const KEY_STORE_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

/// Loads the gateway's keys again on every SIGHUP (`systemctl reload`), so
/// keys or certificates added to the token (`sealgate keys self-sign`,
/// `sealgate pgp init`, a token set up after start) take effect without a
/// restart; and, while the key store is unavailable, every
/// [`KEY_STORE_RETRY`] until it opens.
async fn reload_keys(config: Arc<Config>, queue: Queue, mut current: KeyStore) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup())
        .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
        .ok();
    loop {
        let retry = matches!(current, KeyStore::Unavailable(_));
        tokio::select! {
            Some(()) = async { hangup.as_mut()?.recv().await } => {
                tracing::info!("SIGHUP: loading the gateway keys again");
            }
            () = tokio::time::sleep(KEY_STORE_RETRY), if retry => {}
            // No SIGHUP stream and nothing to retry: keys load only at start.
            else => return,
        }
        let loaded = load_gateway_keys(&config).await;
        report_unavailable(Some(&current), &loaded);
        current = loaded;
        if retry && matches!(current, KeyStore::Unavailable(_)) {
            continue;
        }
        if queue
            .request(SchedulerRequest::ReloadKeys(current.clone()))
            .is_err()
        {
            return;
        }
        tracing::info!("gateway keys reloaded: delivery attempts from now on use them");
    }
}

/// What the state store lost while it was failing is made good once it is
/// reopened: events that waited in memory are written, and queue state of
/// messages that finished meanwhile is removed.
fn after_store_reopened(queue: &Queue) {
    queue.tracker().write_backlog();
    match recover::drop_ghosts(queue) {
        Ok(dropped) if !dropped.is_empty() => tracing::info!(
            count = dropped.len(),
            "finished messages' stale queue state removed after the state store was reopened"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(
            error = %e,
            "stale queue state not checked after the state store was reopened"
        ),
    }
}

/// The web front end over the admin service, and the web listener's limits.
fn web_app(
    config: &Arc<Config>,
    db: &crate::db::Db,
    queue: &Queue,
) -> (axum::Router, sealgate_webui::Limits) {
    use crate::accounts::{Accounts, Timeouts, setup::Setup};
    use crate::service::{AdminService, Ctx, StoreSettings};
    use crate::store::{SharedStore, SledStore};
    let store: Arc<dyn SharedStore> = Arc::new(SledStore::new(db));
    let accounts = Arc::new(Accounts::new(
        store.clone(),
        Timeouts {
            idle: std::time::Duration::from_secs(config.web.session_idle_secs),
            absolute: std::time::Duration::from_secs(config.web.session_max_secs),
        },
    ));
    let settings = Arc::new(StoreSettings {
        store: store.clone(),
        config: config.clone(),
    });
    let setup = Arc::new(Setup::new(
        config.data_dir.clone(),
        accounts.clone(),
        store.clone(),
        settings.clone(),
    ));
    let service = AdminService::new(Ctx {
        config: config.clone(),
        queue: queue.clone(),
        store,
        accounts,
        setup,
        settings,
        started_ms: crate::envelope::now_ms(),
    });
    let metrics_token = std::fs::read_to_string(config.data_dir.join("metrics-token"))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let state =
        sealgate_webui::WebState::new(Arc::new(service), config.node_name.clone(), metrics_token);
    let limits = sealgate_webui::Limits {
        max_connections: config.web.max_connections,
        max_connections_per_ip: config.web.max_connections_per_ip,
        ..sealgate_webui::Limits::default()
    };
    (sealgate_webui::app(state, &limits), limits)
}

/// Runs the daemon until a termination signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let config = Arc::new(config);
    let db = open_db(&config)?;
    let (queue, requests) = Queue::open(&config, &db)?;
    let recovery = recover::reconcile(&queue)?;
    tokio::spawn(db.clone().recover({
        let queue = queue.clone();
        move || after_store_reopened(&queue)
    }));
    let tls = crate::tls::server_config(&config)?;
    let listeners = crate::smtp::server::bind(&config).await?;
    let mut web_listeners = Vec::new();
    for addr in &config.web.listen {
        web_listeners.push(
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?,
        );
    }
    let setup_token = crate::setup_token::ensure(&config.data_dir)?;
    let deliverer = Arc::new(Deliverer::new(config.clone())?);
    crate::control::serve(config.data_dir.clone(), queue.clone()).await?;
    let policy = Arc::new(config.policy().map_err(std::io::Error::other)?);
    let keys = load_gateway_keys(&config).await;
    report_unavailable(None, &keys);
    tokio::spawn(reload_keys(config.clone(), queue.clone(), keys.clone()));
    tokio::spawn(scheduler::run(
        queue.clone(),
        config.clone(),
        policy,
        Arc::new(keys),
        deliverer,
        requests,
        recovery.scheduled.clone(),
    ));
    for listener in listeners {
        tokio::spawn(crate::smtp::server::serve(
            listener,
            config.clone(),
            Some(TlsAcceptor::from(tls.clone())),
            queue.clone(),
        ));
    }
    if !web_listeners.is_empty() {
        let (app, limits) = web_app(&config, &db, &queue);
        for listener in web_listeners {
            tokio::spawn(sealgate_webui::serve(
                listener,
                tls.clone(),
                app.clone(),
                limits.clone(),
            ));
        }
    }
    print_banner(&config, recovery.scheduled.len(), setup_token.as_deref());
    wait_for_shutdown().await;
    tracing::info!("shutting down");
    let _ = tokio::task::spawn_blocking(move || db.flush()).await;
    let _ = std::fs::remove_file(crate::control::socket_path(&config.data_dir));
    Ok(())
}

fn print_banner(config: &Config, queued: usize, setup_token: Option<&str>) {
    let listen: Vec<String> = config.smtp.listen.iter().map(ToString::to_string).collect();
    let first = listen.first().cloned().unwrap_or_default();
    let (host, port) = first.rsplit_once(':').unwrap_or((&first, "25"));
    let delivery = match config.delivery.mode {
        DeliveryMode::Outbox => {
            format!("written as .eml files to {}", config.outbox_dir().display())
        }
        DeliveryMode::Smarthost => format!(
            "relayed to smart host {}",
            config.delivery.smarthost.as_deref().unwrap_or("?")
        ),
        DeliveryMode::Mx => "delivered to each domain's MX hosts".to_string(),
    };
    tracing::info!(listen = ?listen, data_dir = %config.data_dir.display(), queued, "sealgate started");
    println!("Sealgate is running (node {}).", config.node_name);
    println!("  SMTP (STARTTLS offered): {}", listen.join(", "));
    println!("  data directory:          {}", config.data_dir.display());
    println!("  outbound mail:           {delivery}");
    println!("  messages in queue:       {queued}");
    if let Some(web) = config.web.listen.first() {
        println!("  administration (HTTPS):  https://{web}/");
        if let Some(token) = setup_token {
            // Under systemd standard output goes to the journal: the token
            // is for the console (and a developer's terminal) only.
            let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
            if terminal && std::env::var_os("JOURNAL_STREAM").is_none() {
                println!(
                    "  one-time setup token:    {token}   (type it into the setup page; shown on this terminal only)"
                );
            } else {
                println!(
                    "  setup:                   open the address above with the setup token shown on the console ({})",
                    crate::setup_token::path(&config.data_dir).display()
                );
            }
        }
    }
    println!();
    println!("Try it:");
    println!(
        "  swaks --server {host} --port {port} --from me@example.com --to you@example.net --tls"
    );
    println!("  sealgate queue list            # what is waiting");
    println!("  sealgate track --to you@example.net   # what happened");
    println!("Stop with Ctrl-C.");
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
