//! Helpers of `scripts/bench-cluster`:
//!
//! - `cluster_bench fill DATA_DIR NODE COUNT`: writes COUNT tracking events
//!   into a stopped node's data directory, spread evenly over the last
//!   24 hours (senders from 1,000 addresses, recipients from 5,000, three
//!   events per message), as the tracker keys them (time, then a
//!   sequence number, both big-endian).
//! - `cluster_bench track CONFIG ROUNDS`: with the identity of the node
//!   CONFIG names, asks every member of its cluster (over the cluster API,
//!   mutual TLS, as `cluster.track` does) for a few typical searches,
//!   ROUNDS times each, and prints a markdown table of the latencies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealgate::tracking::{Direction, Event, EventKind, Query};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fill") if args.len() == 5 => fill(&args[2], &args[3], args[4].parse().unwrap()),
        Some("track") if args.len() == 4 => track(&args[2], args[3].parse().unwrap()),
        _ => {
            eprintln!("usage: cluster_bench fill DATA_DIR NODE COUNT | track CONFIG ROUNDS");
            std::process::exit(2);
        }
    }
}

fn fill(data_dir: &str, node: &str, count: u64) {
    let db = sealgate::db::Db::open(&std::path::Path::new(data_dir).join("db")).unwrap();
    let events = db.tree("events");
    let now = sealgate::envelope::now_ms();
    let span = 24 * 3600 * 1000;
    let kinds = [EventKind::Received, EventKind::Policy, EventKind::Delivered];
    for i in 0..count {
        let message = i / 3;
        let kind = kinds[(i % 3) as usize];
        let time_ms = now - span + span * i / count;
        let event = Event {
            time_ms,
            node: node.to_owned(),
            queue_id: format!(
                "{:020X}",
                (u64::from(node.as_bytes()[node.len() - 1]) << 48) | message
            ),
            kind,
            direction: if kind == EventKind::Received {
                Direction::In
            } else {
                Direction::Out
            },
            sender: format!("user{}@example.org", message % 1000),
            recipient: format!("r{}@ext.example", message % 5000),
            remote: "127.0.0.1".to_owned(),
            detail: match kind {
                EventKind::Received => "10240 octets".to_owned(),
                EventKind::Policy => "encrypt-if-possible (default for outbound mail)".to_owned(),
                _ => "250 2.0.0 Ok: queued as 4Xabc".to_owned(),
            },
            settings_version: Some(1),
            subject: (kind == EventKind::Received).then(|| format!("report {message}")),
            message_id: (kind == EventKind::Received).then(|| format!("<{message}@example.org>")),
        };
        let mut key = time_ms.to_be_bytes().to_vec();
        key.extend_from_slice(&(i + 1).to_be_bytes());
        events
            .insert(key, serde_json::to_vec(&event).unwrap())
            .unwrap();
    }
    db.flush().unwrap();
    println!("{node}: {count} events");
}

fn track(config: &str, rounds: usize) {
    let config = sealgate::config::Config::load(std::path::Path::new(config)).unwrap();
    let cluster = config.cluster.clone().expect("a [cluster] table");
    let identity =
        sealgate::cluster::identity::Identity::load(&config.data_dir, &config.node_name).unwrap();
    let store = Arc::new(
        sealgate::cluster::pg::PgStore::open(
            &cluster,
            &config.node_name,
            None,
            Duration::from_secs(20),
        )
        .unwrap(),
    );
    let view = sealgate::cluster::node::ClusterView {
        node: config.node_name.clone(),
        store: store.clone(),
        local: None,
        peers: Some(sealgate::cluster::peer::PeerClient::new(
            identity.client_config().unwrap(),
            cluster.peer_timeout(),
        )),
        database: Some(store),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let now = sealgate::envelope::now_ms();
    let hour = 3600 * 1000;
    let cases: Vec<(&str, Query)> = vec![
        (
            "first page, last hour, no filter (50 events)",
            Query {
                since_ms: Some(now - hour),
                limit: Some(50),
                ..Query::default()
            },
        ),
        (
            "first page, last 24 h, no filter (50 events)",
            Query {
                since_ms: Some(now - 24 * hour),
                limit: Some(50),
                ..Query::default()
            },
        ),
        (
            "one sender (1 in 1,000), last 24 h, first 50",
            Query {
                sender: Some("user7@example.org".into()),
                since_ms: Some(now - 24 * hour),
                limit: Some(50),
                ..Query::default()
            },
        ),
        (
            "one recipient (1 in 5,000), last 24 h, all",
            Query {
                recipient: Some("r4242@ext.example".into()),
                since_ms: Some(now - 24 * hour),
                limit: Some(1000),
                ..Query::default()
            },
        ),
    ];
    println!(
        "| search (3 nodes x 300,000 events) | events | nodes answered | median ms | p95 ms | max ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, query) in cases {
        let mut times = Vec::new();
        let mut events = 0;
        let mut answered = 0;
        // One warm-up round (connections, page cache).
        runtime.block_on(view.track(&query));
        for _ in 0..rounds {
            let started = Instant::now();
            let result = runtime.block_on(view.track(&query));
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            events = result.events.len();
            answered = result.nodes.iter().filter(|n| n.answered).count();
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "| {name} | {events} | {answered} | {:.1} | {:.1} | {:.1} |",
            at(0.5),
            at(0.95),
            at(1.0)
        );
    }
}
