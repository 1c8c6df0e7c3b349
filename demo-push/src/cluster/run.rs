//! Each service of the cluster as a process: `longlink-push room|register|saver|
//! coordinator|dispatcher|center --config …`. Every one runs until Ctrl-C or SIGTERM; a room
//! drains first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use longlink_pool::db::Db;

use super::fanout::ClusterRooms;
use super::grace::GraceRegister;
use super::handlers::{CoordinatorHandler, RegisterHandler, RoomHandler, SaverHandler};
use super::hot::HotSaver;
use super::membership::{Membership, MembershipView, RoomInfo};
use super::redis_register::{RedisRegister, redis_connection};
use super::remote::{RemoteCoordinator, RemoteRegister, RemoteSaver};
use super::routes::ClusterRoutes;
use super::services::{coordinator_svc, register_svc, room_svc, saver_svc};
use crate::PushError;
use crate::center::{CenterState, DevPage};
use crate::config::Config;
use crate::coordinator::{AppHooks, Coordinator};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::now_ms;
use crate::room::Room;
use crate::saver::{Saver, SqlSaver};
use crate::system::{StartError, prepare};
use crate::token::Tokens;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn bind_err(
    what: &'static str,
    addr: std::net::SocketAddr,
) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Bind { what, addr, source }
}

async fn rpc_server(config: &Config) -> Result<longlink_rpc::Server, StartError> {
    let addr = config.cluster.rpc_listen;
    // Services are called over one multiplexed connection per caller: a connect storm on
    // a room puts thousands of calls on it at once.
    let server = longlink_rpc::Server::builder()
        .max_concurrent_per_conn(4096)
        .max_concurrent(16_384)
        .bind(addr)
        .await
        .map_err(bind_err("the RPC server", addr))?;
    println!("rpc {}", server.local_addr());
    Ok(server)
}

/// A small HTTP server with `/metrics` and `/healthz` for a service without the center.
async fn serve_metrics(
    config: &Config,
    metrics: Arc<Metrics>,
    extra: impl Fn() -> String + Send + Sync + 'static,
) -> Result<(), StartError> {
    let extra = Arc::new(extra);
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let (metrics, extra) = (Arc::clone(&metrics), Arc::clone(&extra));
                async move { metrics.render(&extra()) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(bind_err("the metrics endpoint", config.http_listen))?;
    println!(
        "http {}",
        listener
            .local_addr()
            .map_err(bind_err("the metrics endpoint", config.http_listen))?
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(())
}

/// The register service: sessions and groups in Redis, behind RPC.
pub async fn register(mut config: Config) -> Result<(), StartError> {
    prepare(&mut config)?;
    let c = &config.cluster;
    let register = RedisRegister::new(
        redis_connection(&c.redis)?,
        &c.redis_prefix,
        Duration::from_secs(c.session_ttl_secs.max(1)),
        Duration::from_millis(c.settle_ms),
    );
    serve_metrics(&config, Arc::new(Metrics::default()), String::new).await?;
    let server = rpc_server(&config).await?;
    tokio::select! {
        r = server.serve(register_svc::Server::new(RegisterHandler(register))) => {
            r.map_err(bind_err("the RPC server", config.cluster.rpc_listen))?;
        }
        _ = stop_signal() => {}
    }
    Ok(())
}

/// The saver service: messages in MySQL (the schema is created at start), behind RPC.
/// While MySQL is down it answers with a storage error; it resumes by itself.
pub async fn saver(mut config: Config) -> Result<(), StartError> {
    prepare(&mut config)?;
    let db = Db::builder()
        .max_open(config.database_max_open.max(1))
        .max_idle(config.database_max_open.max(1))
        .open(&config.database_dsn())
        .map_err(PushError::from)?;
    // The migration needs the database: wait for it rather than exit.
    let saver = loop {
        match SqlSaver::open(db.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "the message store is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let metrics = Arc::new(Metrics::default());
    let c = &config.cluster;
    let saver: Arc<dyn Saver> = Arc::new(HotSaver::start(
        saver,
        redis_connection(&c.redis)?,
        &c.redis_prefix,
        Duration::from_millis(c.epoch_check_ms.max(50)),
        Arc::clone(&metrics),
    ));
    {
        let db = db.clone();
        serve_metrics(&config, Arc::clone(&metrics), move || {
            db.stats().to_prometheus("longlink_push_db", &[])
        })
        .await?;
    }
    let sweep_every = Duration::from_secs(config.sweep_interval_secs.max(1));
    let sweeper = Arc::clone(&saver);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(sweep_every);
        loop {
            ticks.tick().await;
            if let Err(e) = sweeper.sweep(now_ms()).await {
                tracing::warn!(error = %e, "expiry sweep failed");
            }
        }
    });
    let server = rpc_server(&config).await?;
    tokio::select! {
        r = server.serve(saver_svc::Server::new(SaverHandler(saver))) => {
            r.map_err(bind_err("the RPC server", config.cluster.rpc_listen))?;
        }
        _ = stop_signal() => {}
    }
    db.close();
    Ok(())
}

fn webhooks(config: &Config) -> std::collections::HashMap<String, AppHooks> {
    config
        .apps
        .iter()
        .map(|a| {
            let hooks = AppHooks {
                webhook: a.webhook.clone(),
                upstream: a.upstream_routes.clone().into_iter().collect(),
            };
            (a.name.clone(), hooks)
        })
        .collect()
}

/// The coordinator service: webhooks, behind RPC.
pub async fn coordinator(mut config: Config) -> Result<(), StartError> {
    prepare(&mut config)?;
    let metrics = Arc::new(Metrics::default());
    let coordinator = Coordinator::new(webhooks(&config), Arc::clone(&metrics));
    serve_metrics(&config, metrics, String::new).await?;
    let server = rpc_server(&config).await?;
    tokio::select! {
        r = server.serve(coordinator_svc::Server::new(CoordinatorHandler(coordinator))) => {
            r.map_err(bind_err("the RPC server", config.cluster.rpc_listen))?;
        }
        _ = stop_signal() => {}
    }
    Ok(())
}

/// A room: the gateway, its RPC server (deliveries, drain), its membership heartbeat and
/// its side of the register (grace, refresh, re-flush). On Ctrl-C or SIGTERM it drains
/// over the drain window, then leaves membership and exits.
pub async fn room(mut config: Config) -> Result<(), StartError> {
    let (secret, _) = prepare(&mut config)?;
    let c = config.cluster.clone();
    let metrics = Arc::new(Metrics::default());
    let remote = RemoteRegister::new(&c)?;
    let grace = GraceRegister::start(
        remote,
        Duration::from_millis(c.grace_ms),
        Duration::from_secs((c.session_ttl_secs / 3).max(1)),
        Duration::from_millis(c.epoch_check_ms.max(50)),
        Arc::clone(&metrics),
    );
    let hub = Hub::for_room(
        Arc::new(grace.clone()),
        Arc::new(RemoteSaver::new(&c)?),
        Arc::new(RemoteCoordinator::new(&c)?),
        config.hub.to_hub_config(),
        Arc::clone(&metrics),
    );
    let room_config = config.room.to_room_config();
    let room = Room::new(
        room_config.clone(),
        Tokens::new(secret.as_bytes()),
        Arc::clone(&hub) as Arc<dyn crate::room::RoomEvents>,
        Arc::clone(&metrics),
    );
    hub.attach_room(room.clone());
    let addrs = room
        .start()
        .await
        .map_err(bind_err("the room", room_config.ws_listen))?;
    println!("ws {}\ntcp {}", addrs.ws, addrs.tcp);
    let server = rpc_server(&config).await?;
    let rpc_addr = server.local_addr();
    let rpc_public = c.rpc_public.clone().unwrap_or_else(|| rpc_addr.to_string());
    let draining = Arc::new(AtomicBool::new(false));
    let handler = RoomHandler {
        room: room.clone(),
        hub: Arc::clone(&hub),
        draining: Arc::clone(&draining),
    };
    let handle = server.handle();
    tokio::spawn(server.serve(room_svc::Server::new(handler.clone())));
    {
        let (room, grace) = (room.clone(), grace.clone());
        serve_metrics(&config, Arc::clone(&metrics), move || {
            format!(
                "# HELP longlink_push_room_sessions Sessions live or in their grace period.\n# TYPE longlink_push_room_sessions gauge\nlonglink_push_room_sessions {}\n# HELP longlink_push_wheel_entries Heartbeat-wheel entries.\n# TYPE longlink_push_wheel_entries gauge\nlonglink_push_wheel_entries{{room=\"{}\"}} {}\n",
                grace.len(),
                room.name(),
                room.wheel_entries()
            )
        })
        .await?;
    }
    let host = config
        .public_host
        .clone()
        .unwrap_or_else(|| addrs.ws.ip().to_string());
    let membership = Membership::new(
        redis_connection(&c.redis)?,
        &c.redis_prefix,
        Duration::from_millis(c.room_ttl_ms.max(100)),
    );
    let info = {
        let (room, draining) = (room.clone(), Arc::clone(&draining));
        let (name, ws, tcp) = (
            room.name().to_owned(),
            format!("ws://{host}:{}/", addrs.ws.port()),
            format!("{host}:{}", addrs.tcp.port()),
        );
        // Full at the configured capacity, or where the open-file limit leaves no room.
        let capacity = match metrics.capacity.load(Ordering::Relaxed) {
            0 => c.room_capacity,
            fd => c.room_capacity.min(fd as usize),
        };
        metrics.capacity.store(capacity as u64, Ordering::Relaxed);
        move || RoomInfo {
            name: name.clone(),
            ws: ws.clone(),
            tcp: tcp.clone(),
            rpc: rpc_public.clone(),
            connections: room.connections(),
            capacity,
            draining: draining.load(Ordering::SeqCst),
            seen_ms: now_ms(),
        }
    };
    let announce_every = Duration::from_millis(c.announce_ms.max(50));
    let announcer = {
        let (membership, info) = (membership.clone(), info.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(announce_every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(e) = membership.announce(&info()).await {
                    tracing::warn!(error = %e, "membership announce failed");
                }
            }
        })
    };
    stop_signal().await;
    let window = Duration::from_millis(c.drain_window_ms);
    tracing::info!(?window, "draining");
    handler.drain(window);
    let _ = membership.announce(&info()).await;
    // Clients reconnect over the window; deliveries still reach those not yet gone.
    tokio::time::sleep(window + Duration::from_millis(500)).await;
    announcer.abort();
    let _ = membership.leave(room.name()).await;
    handle.begin_shutdown(Duration::from_millis(500));
    Ok(())
}

async fn membership_view(config: &Config) -> Result<MembershipView, StartError> {
    let c = &config.cluster;
    let membership = Membership::new(
        redis_connection(&c.redis)?,
        &c.redis_prefix,
        Duration::from_millis(c.room_ttl_ms.max(100)),
    );
    Ok(MembershipView::start(
        membership,
        Duration::from_millis((c.announce_ms / 2).max(50)),
        Duration::from_millis(c.room_ttl_ms.max(100)),
    )
    .await)
}

/// The dispatcher service: `GET /dispatch` from membership and the register.
pub async fn dispatcher(mut config: Config) -> Result<(), StartError> {
    prepare(&mut config)?;
    let view = membership_view(&config).await?;
    let routes = ClusterRoutes::new(
        view,
        RemoteRegister::new(&config.cluster)?,
        config.room.heartbeats.clone(),
    );
    let addr = config.cluster.dispatcher_listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err("the dispatcher", addr))?;
    println!(
        "http {}",
        listener
            .local_addr()
            .map_err(bind_err("the dispatcher", addr))?
    );
    let router = crate::dispatcher::router(Arc::new(routes));
    tokio::select! {
        r = axum::serve(listener, router) => { r.map_err(bind_err("the dispatcher", addr))?; }
        _ = stop_signal() => {}
    }
    Ok(())
}

/// The center: the HTTP API over the register, saver, coordinator and rooms of the
/// cluster. It waits for the saver at start (message ids continue after the stored ones).
pub async fn center(mut config: Config) -> Result<(), StartError> {
    let (secret, _) = prepare(&mut config)?;
    let c = config.cluster.clone();
    let metrics = Arc::new(Metrics::default());
    let register = RemoteRegister::new(&c)?;
    let saver = RemoteSaver::new(&c)?;
    let hub = loop {
        match Hub::new(
            Arc::new(register.clone()),
            Arc::new(saver.clone()),
            Arc::new(RemoteCoordinator::new(&c)?),
            config.hub.to_hub_config(),
            Arc::clone(&metrics),
        )
        .await
        {
            Ok(hub) => break hub,
            Err(e) => {
                tracing::warn!(error = %e, "waiting for the saver");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let view = membership_view(&config).await?;
    hub.attach_rooms(Arc::new(ClusterRooms::new(
        view.clone(),
        register.clone(),
        c.clone(),
        Arc::clone(&metrics),
    )));
    let routes = ClusterRoutes::new(view.clone(), register, config.room.heartbeats.clone());
    let tokens = Tokens::new(secret.as_bytes());
    let mut state = CenterState::new(
        Arc::clone(&hub),
        &config.apps,
        tokens,
        Arc::new(routes),
        Arc::clone(&metrics),
    )
    .with_extra_metrics(Arc::new(move || {
        let rooms = view.rooms();
        let mut out = String::from(
            "# HELP longlink_push_cluster_rooms Rooms in membership.\n# TYPE longlink_push_cluster_rooms gauge\n",
        );
        out.push_str(&format!("longlink_push_cluster_rooms {}\n", rooms.len()));
        out.push_str("# HELP longlink_push_room_connections Connections per room (membership).\n# TYPE longlink_push_room_connections gauge\n");
        for r in rooms.iter() {
            out.push_str(&format!(
                "longlink_push_room_connections{{room=\"{}\",draining=\"{}\"}} {}\n",
                r.name, r.draining, r.connections
            ));
        }
        out
    }));
    if config.dev_page {
        state = state.with_dev_page(DevPage {
            app: config.apps[0].clone(),
            token_ttl: Duration::from_secs(24 * 3600),
        });
    }
    let router = crate::center::router(Arc::new(state), config.max_request_bytes);
    let addr = config.http_listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err("the center", addr))?;
    println!(
        "http {}",
        listener
            .local_addr()
            .map_err(bind_err("the center", addr))?
    );
    tokio::select! {
        r = axum::serve(listener, router) => { r.map_err(bind_err("the center", addr))?; }
        _ = stop_signal() => {}
    }
    Ok(())
}
