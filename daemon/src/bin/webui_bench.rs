//! The web UI's benchmark: the tracking page's first result page and the
//! dashboard, each a whole request through the router (session check,
//! service call, storage, template) over a data directory holding
//! 1,000,000 tracking events (250,000 messages with two recipients, a
//! policy decision and a delivery each), all within the page's default
//! window (the last hour). Prints the median and the 95th percentile.
//!
//! `cargo run --release -p sealgate --bin webui-bench [-- EVENTS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use sealgate::tracking::{Direction, EventKind};
use sealgate_api::Role;
use sealgate_api::ops::accounts::SessionKind;
use tower::ServiceExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("sealgate-webui-bench-{}", std::process::id()));
    let result = runtime.block_on(bench(events, dir.clone()));
    // Half a gigabyte of events: gone whether or not the bench succeeded.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn bench(events: usize, dir: std::path::PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let config = sealgate::config::Config {
        data_dir: dir.clone(),
        ..sealgate::config::Config::default()
    };
    let opened = sealgate::daemon::open(config)?;
    let tracker = opened.queue.tracker().clone();
    let started = Instant::now();
    let messages = events / 4;
    for m in 0..messages {
        let id = format!("{m:020}");
        let sender = format!("user{}@example.org", m % 997);
        let labels = sealgate::tracking::messages::Labels {
            subject: Some(format!("Quarterly report {m}")),
            message_id: Some(format!("{m}@example.org")),
        };
        for r in 0..2 {
            let rcpt = format!("rcpt{}@partner{}.example", m % 1013, r);
            tracker.record_labelled(
                &id,
                EventKind::Received,
                Direction::In,
                &sender,
                &rcpt,
                "10.0.0.5",
                "12000 octets",
                Some(&labels),
            );
        }
        let rcpt = format!("rcpt{}@partner0.example", m % 1013);
        tracker.record(
            &id,
            EventKind::Policy,
            Direction::In,
            &sender,
            &rcpt,
            "",
            "encrypt-if-possible: default for outbound mail",
        );
        tracker.record(
            &id,
            EventKind::Delivered,
            Direction::Out,
            &sender,
            &rcpt,
            "mx.partner0.example",
            "250 2.0.0 ok",
        );
    }
    let db_flush = opened.db.flush();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "wrote {} events ({messages} messages) in {seconds:.1} s ({:.0} events/s, each with its index update){}",
        messages * 4,
        (messages * 4) as f64 / seconds,
        if db_flush.is_ok() {
            ""
        } else {
            " (flush failed)"
        }
    );
    let ctx = sealgate::service::Ctx::of(
        &opened,
        sealgate::keys::Keys::with(sealgate::keys::KeyStore::NotSetUp),
        false,
    );
    let grant = ctx
        .accounts
        .open_session(SessionKind::Account, "bench", Role::Admin, None)?;
    let service = Arc::new(sealgate::service::AdminService::new(ctx));
    let state = sealgate_webui::WebState::new(service, "bench".into(), None);
    let app = sealgate_webui::app(state, &sealgate_webui::Limits::default());
    let cookie = format!("__Host-sealgate={}", grant.id);
    for (page, target_ms) in [("/tracking", 100.0), ("/dashboard", 20.0)] {
        let mut times = Vec::new();
        for _ in 0..50 {
            let request = Request::builder()
                .uri(page)
                .header("cookie", &cookie)
                .header("host", "bench")
                .body(Body::empty())?;
            let t = Instant::now();
            let response = app.clone().oneshot(request).await?;
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 16 << 20).await?;
            times.push(t.elapsed());
            if !status.is_success() || body.is_empty() {
                return Err(format!("{page}: {status}").into());
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: usize| times.get(times.len() * q / 100).copied().map_or(0.0, ms);
        let (median, p95) = (at(50), at(95));
        println!(
            "{page:<11} median {median:7.2} ms   p95 {p95:7.2} ms   (target < {target_ms} ms: {})",
            if p95 < target_ms { "met" } else { "MISSED" }
        );
    }
    Ok(())
}
