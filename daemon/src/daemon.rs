//! `sealgate run`: opens the data directory, reconciles the queue, binds the
//! listeners and runs the SMTP server, the scheduler and the control socket
//! until SIGTERM or SIGINT.

use std::sync::Arc;

use crate::config::{Config, DeliveryMode};
use crate::delivery::Deliverer;
use crate::queue::{Queue, SchedulerRequest, recover, scheduler};

/// Opens the state store (sled) of a data directory.
pub fn open_db(config: &Config) -> std::io::Result<crate::db::Db> {
    crate::db::Db::open(&config.data_dir.join("db"))
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

/// The parts every front end needs, opened on a data directory: the
/// state store, the shared store, the settings in force (importing the
/// bootstrap file's settings on the first start), the queue.
pub struct Opened {
    pub db: crate::db::Db,
    pub shared: Arc<dyn crate::store::SharedStore>,
    /// Where the shared store lives: this node's sled, or the cluster database.
    pub cluster: crate::cluster::Shared,
    pub settings: crate::settings::SettingsStore,
    pub live: Arc<crate::settings::Live>,
    pub queue: Queue,
    pub requests: tokio::sync::mpsc::UnboundedReceiver<SchedulerRequest>,
}

/// Opens a data directory for the daemon or for the CLI on a stopped one.
pub fn open(file: Config) -> std::io::Result<Opened> {
    std::fs::create_dir_all(&file.data_dir)?;
    let db = open_db(&file)?;
    let cluster = crate::cluster::Shared::open(&file, &db).map_err(std::io::Error::other)?;
    let shared = cluster.store();
    let settings = crate::settings::SettingsStore::new(shared.clone());
    let audit = crate::audit::Audit::new(shared.clone());
    let live = Arc::new(crate::settings::live::start(file, &settings, &audit)?);
    let (queue, requests) = Queue::open(live.bootstrap(), &db, shared.clone())?;
    Ok(Opened {
        db,
        shared,
        cluster,
        settings,
        live,
        queue,
        requests,
    })
}

/// The web front end over the admin service, and the web listener's limits.
fn web_app(
    config: &Config,
    service: Arc<crate::service::AdminService>,
) -> (axum::Router, sealgate_webui::Limits) {
    let metrics_token = std::fs::read_to_string(config.data_dir.join("metrics-token"))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let state = sealgate_webui::WebState::new(service, config.node_name.clone(), metrics_token);
    let limits = sealgate_webui::Limits {
        max_connections: config.web.max_connections,
        max_connections_per_ip: config.web.max_connections_per_ip,
        ..sealgate_webui::Limits::default()
    };
    (sealgate_webui::app(state, &limits), limits)
}

/// On a cluster node: follows the shared key directory, so that a key
/// imported or harvested on another node releases the mail this node
/// holds for its owner (this node's own imports and harvests release
/// their addresses directly). Changes are taken at most once a second: a
/// burst of harvests costs one look at the held mail.
async fn follow_directory(shared: Arc<dyn crate::store::SharedStore>, queue: Queue) {
    let mut changes = shared.subscribe(crate::store::Space::Directory);
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        changes.mark_unchanged();
        if queue
            .request(crate::queue::SchedulerRequest::DirectoryChanged)
            .is_err()
        {
            return;
        }
    }
}

/// Runs the daemon until a termination signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    let opened = open(config)?;
    let config = opened.live.bootstrap().clone();
    let keys = crate::keys::Keys::open(&config).await;
    // On a cluster node: the cluster API and the heartbeat (nothing on a
    // single appliance); the service answers `cluster.*` with this view.
    let cluster =
        crate::cluster::start(&config, &opened.cluster, &opened.queue, opened.live.clone()).await?;
    let service = crate::service::AdminService::new(crate::service::Ctx {
        cluster,
        ..crate::service::Ctx::of(&opened, keys.clone(), true)
    });
    let Opened {
        db,
        shared,
        cluster: _,
        settings,
        live,
        queue,
        requests,
    } = opened;
    let recovery = recover::reconcile(&queue)?;
    tokio::spawn(db.clone().recover({
        let queue = queue.clone();
        move || after_store_reopened(&queue)
    }));
    let listeners = crate::smtp::server::bind(&config).await?;
    let mut web_listeners = Vec::new();
    for addr in &config.web.listen {
        web_listeners.push(
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?,
        );
    }
    let mut portal_listeners = Vec::new();
    for addr in &config.portal.listen {
        portal_listeners.push(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr} (portal): {e}"))
        })?);
    }
    let setup_token = crate::setup_token::ensure(&config.data_dir)?;
    // One outbound TLS state (policies, MTA-STS cache, TLS-RPT counts)
    // for the deliverer, the reports and the trust machinery.
    let trust = service.ctx().trust.clone();
    let outbound_tls = trust.outbound_tls().clone();
    tokio::spawn(crate::outbound_tls::report::run(
        outbound_tls.clone(),
        queue.clone(),
        live.clone(),
    ));
    let deliverer = Arc::new(Deliverer::new(&live.get().config, outbound_tls)?);
    tokio::spawn(keys.clone().follow(config.clone()));
    let service = Arc::new(service);
    crate::control::serve(config.data_dir.clone(), service.clone()).await?;
    tokio::spawn(crate::settings::live::follow(live.clone(), settings));
    if config.cluster.is_some() {
        tokio::spawn(follow_directory(shared.clone(), queue.clone()));
    }
    tokio::spawn(crate::tracking::retention::run(
        live.clone(),
        queue.tracker().clone(),
        crate::audit::Audit::new(shared),
    ));
    tokio::spawn(scheduler::run(
        queue.clone(),
        live.clone(),
        keys,
        deliverer,
        trust.clone(),
        requests,
        recovery.scheduled.clone(),
    ));
    for listener in listeners {
        tokio::spawn(crate::smtp::server::serve(
            listener,
            live.clone(),
            queue.clone(),
        ));
    }
    if !web_listeners.is_empty() {
        let (app, limits) = web_app(&config, service);
        for listener in web_listeners {
            let live = live.clone();
            tokio::spawn(sealgate_webui::serve(
                listener,
                // The certificate of the settings version in force, per connection.
                move || live.get().tls.clone(),
                app.clone(),
                limits.clone(),
            ));
        }
    }
    // The portal: its own listener and router, its own sessions (never
    // the admin UI's), over the portal service.
    tokio::spawn(crate::portal::service::expire_loop(queue.clone()));
    if !portal_listeners.is_empty() {
        let service: Arc<dyn sealgate_api::portal::PortalService> = Arc::new(
            crate::portal::service::PortalServer::new(queue.clone(), live.clone()),
        );
        let limits = sealgate_webui::Limits {
            max_connections: config.web.max_connections,
            max_connections_per_ip: config.web.max_connections_per_ip,
            ..sealgate_webui::Limits::default()
        };
        let app = sealgate_webui::portal::portal_app(
            sealgate_webui::portal::PortalState::new(service),
            &limits,
        );
        for listener in portal_listeners {
            let live = live.clone();
            tokio::spawn(sealgate_webui::serve(
                listener,
                move || live.get().tls.clone(),
                app.clone(),
                limits.clone(),
            ));
        }
    }
    print_banner(
        &live.get().config,
        recovery.scheduled.len(),
        setup_token.as_deref(),
    );
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
    if let Some(portal) = config.portal.listen.first() {
        println!(
            "  secure web mail portal:  https://{portal}/{}",
            if config.portal.settings.enabled {
                ""
            } else {
                "   (off: [portal] enabled = false)"
            }
        );
    }
    println!();
    println!("Try it:");
    println!(
        "  swaks --server {host} --port {port} --from me@example.com --to you@example.net --tls"
    );
    println!("  sealgate queue list            # what is waiting");
    println!("  sealgate track --to you@example.net   # what happened");
    println!("  sealgate status                # settings version, queue, key store");
    println!("  sealgate settings history      # every change, who made it, and why");
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
