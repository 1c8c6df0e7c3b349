//! Every component in one process: the `all` subcommand, and what end-to-end tests start.
//! Each is wired by [`node`] with the in-process implementations of what it
//! depends on: an in-memory register, the SQL store, the coordinator, the one room.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use longlink_pool::db::Db;

use crate::center::AppConfig;
use crate::config::Config;
use crate::courier::CourierParts;
use crate::metrics::Metrics;
use crate::model::IdGenerator;
use crate::node::{self, CenterDeps};
pub use crate::node::{Generated, StartError, prepare};
use crate::pusher::Pusher;
use crate::register::{MemoryRegister, Register};
use crate::room::Room;
use crate::rooms::{Gateway, Local, RoomInfo};
use crate::saver::Saver;
use crate::token::Tokens;

/// A running system.
#[derive(Debug)]
pub struct System {
    /// The center's address (API, dispatcher, page).
    pub http: SocketAddr,
    /// The center speaks HTTPS (`[tls]`).
    pub https: bool,
    /// The room's WebSocket address (`None`: plaintext is off).
    pub ws: Option<SocketAddr>,
    /// The room's raw TCP address.
    pub tcp: Option<SocketAddr>,
    /// The room's `wss://` address (with `[tls]`).
    pub wss: Option<SocketAddr>,
    /// The room's TCP+TLS address (with `[tls]`).
    pub tls: Option<SocketAddr>,
    /// The certificate every TLS listener serves (reload it with
    /// [`Certificates::reload`](crate::tls::Certificates::reload)).
    pub certificates: Option<Arc<crate::tls::Certificates>>,
    /// The apps, with their keys.
    pub apps: Vec<AppConfig>,
    /// Issues tokens clients can use.
    pub tokens: Tokens,
    /// What this start generated.
    pub generated: Generated,
    /// The push engine.
    pub pusher: Arc<Pusher>,
    /// The register.
    pub register: Arc<dyn Register>,
    /// The room.
    pub room: Room,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    db: Db,
    saver: Arc<dyn Saver>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl System {
    /// Starts every component on `config`: opens the store (SQLite under the data dir by
    /// default), binds the room and the center, and starts the TTL sweep.
    pub async fn start(mut config: Config) -> Result<System, StartError> {
        let (tokens, generated) = prepare(&mut config)?;
        let metrics = Arc::new(Metrics::default());
        let tls = node::tls(&config, &metrics)?;
        let (db, sql) = node::message_store(&config, false, &metrics).await?;
        let saver: Arc<dyn Saver> = Arc::new(sql);
        node::sweep(&saver, config.sweep_interval, Arc::clone(&metrics));
        let register: Arc<dyn Register> = Arc::new(MemoryRegister::default());
        let coordinator = node::coordinator(&config, Arc::clone(&metrics));
        let ids = Arc::new(IdGenerator::starting_after(saver.max_id().await?));
        let room = {
            let ids = Arc::clone(&ids);
            node::room(
                &config,
                tokens.clone(),
                CourierParts {
                    register: Arc::clone(&register),
                    saver: Arc::clone(&saver),
                    callbacks: Arc::new(coordinator.clone()),
                    // The ids are issued here: redelivery skips what was delivered live.
                    last_issued: Arc::new(move || ids.last()),
                    max_attempts: config.push.max_attempts,
                    metrics: Arc::clone(&metrics),
                },
                tls.clone(),
            )
            .await?
        };
        let addrs = room.client_addrs(&config);
        let directory = Local::new(
            RoomInfo {
                tcp_tls: addrs.tcp_tls,
                ..RoomInfo::local(room.room.name(), &addrs.ws, &addrs.tcp)
            },
            Arc::new(room.room.clone()) as Arc<dyn Gateway>,
        );
        let center = node::center(
            &config,
            tokens.clone(),
            CenterDeps {
                register: Arc::clone(&register),
                saver: Arc::clone(&saver),
                directory: Arc::new(directory),
                ids,
                metrics: Arc::clone(&metrics),
                pacing: None,
            },
            tls.as_ref(),
        )
        .await?;
        Ok(System {
            http: center.http,
            https: center.https,
            ws: room.addrs.ws,
            tcp: room.addrs.tcp,
            wss: room.addrs.wss,
            tls: room.addrs.tls,
            certificates: tls,
            apps: config.apps,
            tokens,
            generated,
            pusher: center.pusher,
            register,
            room: room.room,
            metrics,
            db,
            saver,
            tasks: vec![center.task],
        })
    }

    /// The message store's pool.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The message store.
    pub fn saver(&self) -> &Arc<dyn Saver> {
        &self.saver
    }

    /// The center's base URL.
    pub fn center_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.http)
    }

    /// Tells clients to reconnect within `window` (spread out), gives them a moment to
    /// hear it, and stops the center and the store.
    pub async fn shutdown(self, window: Duration) {
        self.room.drain("server shutting down", window);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for task in &self.tasks {
            task.abort();
        }
        self.db.close();
    }
}
