//! `longlink-bench push-unicast`: the same unicast load against the single process and a
//! 2-room cluster with each RPC strategy, printed as one table with ratios against the
//! multiplexed cluster measured in the same run.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::system::{self, Mode};
use super::unicast::{self, Load, Outcome};

/// The suite's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `longlink-push` binary (build it with `--release`).
    pub bin: PathBuf,
    /// The load of each run.
    pub load: Load,
    /// MariaDB DSN for the clusters' saver.
    pub database: String,
    /// Ports count from here.
    pub base_port: u16,
    /// Where the JSON goes.
    pub out: PathBuf,
    /// Only the cluster with one center against the same cluster with two (both
    /// deliveries), instead of the strategies and the single process.
    pub centers: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    system: String,
    delivery: String,
    #[serde(flatten)]
    outcome: Outcome,
}

/// Runs every row and prints the table.
pub async fn run(opts: Options) -> Result<(), String> {
    let with = |strategy: &str, centers: usize| Mode::Cluster {
        rooms: 2,
        strategy: strategy.into(),
        centers,
    };
    let cluster = |strategy: &str| with(strategy, 1);
    let plan: Vec<(Mode, &str)> = if opts.centers {
        vec![
            (cluster("multiplexed"), "at_most_once"),
            (with("multiplexed", 2), "at_most_once"),
            (cluster("multiplexed"), "at_least_once"),
            (with("multiplexed", 2), "at_least_once"),
        ]
    } else {
        vec![
            (cluster("multiplexed"), "at_most_once"),
            (cluster("pooled"), "at_most_once"),
            (cluster("short"), "at_most_once"),
            (Mode::Single, "at_most_once"),
            (cluster("multiplexed"), "at_least_once"),
            (Mode::Single, "at_least_once"),
        ]
    };
    let mut rows = Vec::new();
    for (i, (mode, delivery)) in plan.iter().enumerate() {
        let dir =
            std::env::temp_dir().join(format!("longlink-bench-push-{}-{i}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let running = system::start(&opts.bin, mode, &dir, opts.base_port, &opts.database)?;
        let load = Load {
            delivery: (*delivery).to_owned(),
            ..opts.load.clone()
        };
        eprintln!(
            "{} / {delivery}: {} users, {} pushes in flight, {:?}",
            mode.label(),
            load.users,
            load.concurrency,
            load.duration
        );
        let outcome = unicast::run(&running.centers, &running.key, &running.secret, &load).await?;
        eprintln!(
            "  {:.0} pushes/s, {:.0} received/s, p50 {:.2} ms, p99 {:.2} ms, errors {}, missing {}",
            outcome.pushes_per_sec,
            outcome.received_per_sec,
            outcome.p50_ms,
            outcome.p99_ms,
            outcome.errors,
            outcome.missing
        );
        drop(running);
        let _ = std::fs::remove_dir_all(&dir);
        // Let the ports and the old processes go.
        tokio::time::sleep(Duration::from_secs(1)).await;
        rows.push(Row {
            system: mode.label(),
            delivery: (*delivery).to_owned(),
            outcome,
        });
    }
    println!();
    if opts.centers {
        println!(
            "| system | delivery | pushes/s | received/s | p50 ms | p99 ms | errors | missing | this ÷ one center |"
        );
    } else {
        println!(
            "| system | delivery | pushes/s | received/s | p50 ms | p99 ms | errors | missing | multiplexed cluster ÷ this |"
        );
    }
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in rows.iter().enumerate() {
        // Two centers against one (the row before, same delivery); else the first row.
        let ratio = if opts.centers {
            let one = rows[i - i % 2].outcome.received_per_sec.max(1.0);
            r.outcome.received_per_sec / one
        } else {
            rows[0].outcome.received_per_sec.max(1.0) / r.outcome.received_per_sec.max(1.0)
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {} | {} | {:.2}× |",
            r.system,
            r.delivery,
            r.outcome.pushes_per_sec,
            r.outcome.received_per_sec,
            r.outcome.p50_ms,
            r.outcome.p99_ms,
            r.outcome.errors,
            r.outcome.missing,
            ratio
        );
    }
    if let Some(parent) = opts.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(
        &opts.out,
        serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("\nresults: {}", opts.out.display());
    Ok(())
}
