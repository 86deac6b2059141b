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
    pub settings: crate::settings::SettingsStore,
    pub live: Arc<crate::settings::Live>,
    pub queue: Queue,
    pub requests: tokio::sync::mpsc::UnboundedReceiver<SchedulerRequest>,
}

/// Opens a data directory for the daemon or for the CLI on a stopped one.
pub fn open(file: Config) -> std::io::Result<Opened> {
    std::fs::create_dir_all(&file.data_dir)?;
    let db = open_db(&file)?;
    let shared: Arc<dyn crate::store::SharedStore> = Arc::new(crate::store::SledStore::new(&db));
    let settings = crate::settings::SettingsStore::new(shared.clone());
    let audit = crate::audit::Audit::new(shared.clone());
    let live = Arc::new(crate::settings::live::start(file, &settings, &audit)?);
    let (queue, requests) = Queue::open(live.bootstrap(), &db, shared.clone())?;
    Ok(Opened {
        db,
        shared,
        settings,
        live,
        queue,
        requests,
    })
}

/// Runs the daemon until a termination signal.
pub async fn run(config: Config) -> std::io::Result<()> {
    let opened = open(config)?;
    let config = opened.live.bootstrap().clone();
    let keys = crate::keys::Keys::open(&config).await;
    let service =
        crate::service::AdminService::new(crate::service::Ctx::of(&opened, keys.clone(), true));
    let Opened {
        db,
        shared,
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
    let setup_token = crate::setup_token::ensure(&config.data_dir)?;
    let deliverer = Arc::new(Deliverer::new(&live.get().config)?);
    tokio::spawn(keys.clone().follow(config.clone()));
    crate::control::serve(config.data_dir.clone(), Arc::new(service)).await?;
    tokio::spawn(crate::settings::live::follow(live.clone(), settings));
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
    for listener in web_listeners {
        let state = crate::web::WebState {
            data_dir: config.data_dir.clone(),
        };
        tokio::spawn(crate::web::serve(listener, live.get().tls.clone(), state));
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
        println!("  web setup (HTTPS):       https://{web}/setup");
        if let Some(token) = setup_token {
            println!(
                "  one-time setup token:    {token}   (shown here only; never served over HTTP)"
            );
        }
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
