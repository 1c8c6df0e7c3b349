//! Each service of the cluster as a process: `longlink-push room|register|saver|
//! coordinator|dispatcher|center --config …`. Each is the component `all` runs, wired by
//! [`node`] with remote implementations of what it depends on, and served
//! over RPC where others call it. Every one runs until Ctrl-C or SIGTERM; a room drains
//! first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use super::services::{Announcer, Services};
use crate::config::Config;
use crate::coordinator::{Callbacks, coordinator_svc};
use crate::courier::CourierParts;
use crate::ids::IdLease;
use crate::metrics::{Metrics, Snapshot};
use crate::model::now_ms;
use crate::node::{self, CenterDeps, StartError, bind_err, prepare};
use crate::redis_conn::redis_connection;
use crate::register::{GraceRegister, RedisRegister, Register, register_svc};
use crate::remote::{Remote, RpcOptions, Served};
use crate::rooms::{Gateway, Membership, MembershipView, RoomInfo, room_svc};
use crate::saver::{HotSaver, Saver, saver_svc};
use longlink_rpc::Balancer;

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

/// The process's RPC server for `service`: TLS with `[cluster.tls]`, its counters on the
/// metrics page (`rpc_server_*`: connections, requests, refusals, TLS handshakes and their
/// failures) and its latency histograms (`rpc_server_{queue,handler}_seconds{service,method}`).
async fn rpc_server(
    service: &'static str,
    config: &Config,
    metrics: &Metrics,
) -> Result<longlink_rpc::Server, StartError> {
    let addr = config.cluster.rpc_listen;
    // Services are called over one multiplexed connection per caller: a connect storm on
    // a room puts thousands of calls on it at once.
    let mut builder = longlink_rpc::ServerBuilder::default()
        .max_concurrent_per_conn(4096)
        .max_concurrent(16_384);
    if let Some(tls) = config.cluster.rpc_server_tls()? {
        builder = builder.tls(tls);
    }
    let server = builder
        .bind(addr)
        .await
        .map_err(bind_err("the RPC server", addr))?;
    let handle = server.handle();
    metrics.rpc().server(service, handle.clone());
    metrics.add_family(Snapshot::new("rpc_server", move || {
        handle.stats().samples()
    }));
    println!("rpc {}", server.local_addr());
    Ok(server)
}

/// Serves `svc` and announces it in membership until Ctrl-C or SIGTERM; then announces it
/// draining, waits until every caller's view has left it out (two announce intervals),
/// drains the calls still in flight, and leaves membership.
async fn serve_until_stopped<S>(
    server: longlink_rpc::Server,
    svc: S,
    role: &'static str,
    config: &Config,
) -> Result<(), StartError>
where
    S: tower_service::Service<longlink_rpc::Request, Response = longlink_rpc::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let announcer = announce_rpc(&server, role, config)?;
    let settle = 2 * config.cluster.announce + Duration::from_millis(200);
    let signal = async {
        stop_signal().await;
        tracing::info!(role, "draining");
        announcer.drain().await;
        tokio::time::sleep(settle).await;
    };
    let served = server
        .serve_with_shutdown(svc, signal, Duration::from_millis(1000))
        .await
        .map_err(bind_err("the RPC server", config.cluster.rpc_listen));
    announcer.leave().await;
    served
}

/// Announces this process's RPC server as an instance of `role`, its load the calls in
/// flight.
fn announce_rpc(
    server: &longlink_rpc::Server,
    role: &'static str,
    config: &Config,
) -> Result<Announcer, StartError> {
    let load = Arc::new(AtomicU64::new(0));
    {
        let (handle, load) = (server.handle(), Arc::clone(&load));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(250));
            loop {
                ticks.tick().await;
                load.store(handle.stats().in_flight, Ordering::Relaxed);
            }
        });
    }
    let public = config
        .cluster
        .rpc_public
        .clone()
        .unwrap_or_else(|| server.local_addr().to_string());
    Ok(Announcer::start(
        services(config)?,
        role,
        public,
        config.cluster.announce,
        load,
    ))
}

fn services(config: &Config) -> Result<Services, StartError> {
    let c = &config.cluster;
    Ok(Services::new(
        redis_connection(c)?,
        &c.redis_prefix,
        c.room_ttl,
    ))
}

/// A small HTTP server with `/metrics` and `/healthz` for a service without the center.
async fn serve_metrics(config: &Config, metrics: &Metrics) -> Result<(), StartError> {
    let page = Arc::new(metrics.registry());
    let router = Router::new()
        .route(
            "/metrics",
            get(move || {
                let page = Arc::clone(&page);
                async move { crate::metrics::response(&page) }
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

/// The instances of `role` as its callers reach them: the configured addresses and every
/// one in membership, balanced (see [`services`](super::services)).
fn balanced(
    config: &Config,
    rpc: &RpcOptions,
    role: &'static str,
    seeds: &[String],
) -> Result<Balancer, StartError> {
    let balancer = rpc.balancer(role, seeds);
    let make = {
        let rpc = rpc.clone();
        Arc::new(move |addr: &str| rpc.client(role, addr))
    };
    super::services::watch(
        services(config)?,
        role,
        seeds.to_vec(),
        balancer.clone(),
        make,
        (config.cluster.announce / 2).max(Duration::from_millis(25)),
    );
    Ok(balancer)
}

/// The register service as its callers reach it: every instance, balanced.
fn remote_register(config: &Config, rpc: &RpcOptions) -> Result<Arc<dyn Register>, StartError> {
    Ok(Arc::new(Remote::new(register_svc::Client::new(balanced(
        config,
        rpc,
        "register",
        &config.cluster.register,
    )?))))
}

fn remote_saver(config: &Config, rpc: &RpcOptions) -> Result<Arc<dyn Saver>, StartError> {
    Ok(Arc::new(Remote::new(saver_svc::Client::new(balanced(
        config,
        rpc,
        "saver",
        &config.cluster.saver,
    )?))))
}

fn remote_coordinator(config: &Config, rpc: &RpcOptions) -> Result<Arc<dyn Callbacks>, StartError> {
    Ok(Arc::new(Remote::new(coordinator_svc::Client::new(
        balanced(config, rpc, "coordinator", &config.cluster.coordinator)?,
    ))))
}

fn membership(config: &Config) -> Result<Membership, StartError> {
    let c = &config.cluster;
    Ok(Membership::new(
        redis_connection(c)?,
        &c.redis_prefix,
        c.room_ttl,
    ))
}

/// The rooms as the center and the dispatcher see them: membership, each room reached
/// over RPC.
async fn membership_view(
    config: &Config,
    rpc: &RpcOptions,
    metrics: &Metrics,
) -> Result<MembershipView, StartError> {
    let c = &config.cluster;
    let rpc = rpc.clone();
    Ok(MembershipView::start(
        membership(config)?,
        (c.announce / 2).max(Duration::from_millis(50)),
        c.room_ttl,
        Arc::new(move |room: &RoomInfo| {
            Arc::new(Remote::new(room_svc::Client::new(
                rpc.client("room", &room.rpc),
            ))) as Arc<dyn Gateway>
        }),
        metrics,
    )
    .await)
}

/// Removes the sessions of `room` from the register and sends their offline callbacks
/// (once: of several reapers, one gets them). Failures are logged: the sessions then
/// expire with their TTL, without callbacks.
async fn reap(register: Arc<dyn Register>, callbacks: Arc<dyn Callbacks>, room: String) {
    match register.reap(room.clone()).await {
        Ok(sessions) => {
            if !sessions.is_empty() {
                tracing::info!(
                    room,
                    sessions = sessions.len(),
                    "sessions of a room that is gone: offline"
                );
            }
            for session in sessions {
                if let Err(e) = callbacks.presence(session, false).await {
                    tracing::warn!(room, error = %e, "an offline callback was not passed on");
                }
            }
        }
        Err(e) => {
            tracing::warn!(room, error = %e, "the sessions of a room that is gone were not reaped (their TTL ends them)")
        }
    }
}

/// The register service: sessions and groups in Redis, behind RPC.
pub async fn register(mut config: Config) -> Result<(), StartError> {
    prepare(&mut config)?;
    let c = &config.cluster;
    let register: Arc<dyn Register> = Arc::new(RedisRegister::new(
        redis_connection(c)?,
        &c.redis_prefix,
        c.session_ttl,
        c.settle,
    ));
    let metrics = Metrics::default();
    serve_metrics(&config, &metrics).await?;
    let server = rpc_server("register", &config, &metrics).await?;
    serve_until_stopped(
        server,
        register_svc::Server::new(Served(register)),
        "register",
        &config,
    )
    .await
}

/// The saver service: messages in MySQL (the schema is created at start; it waits for the
/// database) with their pending index in Redis, behind RPC. While MySQL is down it answers
/// with a storage error; it resumes by itself.
pub async fn saver(mut config: Config) -> Result<(), StartError> {
    prepare(&mut config)?;
    let metrics = Arc::new(Metrics::default());
    let (db, sql) = node::message_store(&config, true, &metrics).await?;
    let c = &config.cluster;
    // Half the callers' deadline (`rpc_timeout`, one setting for the cluster): a store stuck
    // on a connection to MySQL that went silent answers "did not run" while the caller can
    // still move it to another saver, instead of "may have run" at the deadline.
    let sql = sql.commit_within(c.rpc_timeout / 2);
    let hot = HotSaver::start(
        sql,
        redis_connection(c)?,
        &c.redis_prefix,
        c.epoch_check.max(Duration::from_millis(50)),
        Arc::clone(&metrics),
    )
    .prune_after(c.index_prune_after);
    let saver: Arc<dyn Saver> = Arc::new(hot.clone());
    node::sweep(&saver, config.sweep_interval, Arc::clone(&metrics));
    serve_metrics(&config, &metrics).await?;
    let server = rpc_server("saver", &config, &metrics).await?;
    let served = serve_until_stopped(
        server,
        saver_svc::Server::new(Served(saver)),
        "saver",
        &config,
    )
    .await;
    hot.leave().await;
    db.close();
    served
}

/// The coordinator service: webhooks, behind RPC.
pub async fn coordinator(mut config: Config) -> Result<(), StartError> {
    prepare(&mut config)?;
    let metrics = Arc::new(Metrics::default());
    let coordinator = node::coordinator(&config, Arc::clone(&metrics));
    serve_metrics(&config, &metrics).await?;
    let server = rpc_server("coordinator", &config, &metrics).await?;
    let callbacks: Arc<dyn Callbacks> = Arc::new(coordinator);
    serve_until_stopped(
        server,
        coordinator_svc::Server::new(Served(callbacks)),
        "coordinator",
        &config,
    )
    .await
}

/// A room: the gateway and its courier, its RPC server (deliveries, drain), its membership
/// heartbeat and its side of the register (grace, refresh, re-flush). On Ctrl-C or SIGTERM
/// it drains over the drain window, then leaves membership and exits.
pub async fn room(mut config: Config) -> Result<(), StartError> {
    let (tokens, _) = prepare(&mut config)?;
    let c = config.cluster.clone();
    let metrics = Arc::new(Metrics::default());
    let rpc = c.rpc(metrics.rpc())?;
    let callbacks = remote_coordinator(&config, &rpc)?;
    // A room that starts holds no connection: sessions left under its name by a previous
    // run (killed) are gone, with their offline callbacks, before it takes any.
    reap(
        remote_register(&config, &rpc)?,
        Arc::clone(&callbacks),
        config.room.name.clone(),
    )
    .await;
    let grace = GraceRegister::start(
        remote_register(&config, &rpc)?,
        c.grace,
        (c.session_ttl / 3).max(Duration::from_secs(1)),
        c.epoch_check.max(Duration::from_millis(50)),
        Arc::clone(&metrics),
    );
    let node = node::room(
        &config,
        tokens,
        CourierParts {
            register: Arc::new(grace.clone()),
            saver: remote_saver(&config, &rpc)?,
            callbacks,
            // Ids are issued by the center: every pending message is sent on connect.
            last_issued: Arc::new(|| u64::MAX),
            max_attempts: config.push.max_attempts,
            metrics: Arc::clone(&metrics),
        },
        node::tls(&config, &metrics)?,
    )
    .await?;
    let room = node.room.clone();
    for (what, addr) in [
        ("ws", node.addrs.ws),
        ("tcp", node.addrs.tcp),
        ("wss", node.addrs.wss),
        ("tls", node.addrs.tls),
    ] {
        if let Some(addr) = addr {
            println!("{what} {addr}");
        }
    }
    let server = rpc_server("room", &config, &metrics).await?;
    let rpc_public = c
        .rpc_public
        .clone()
        .unwrap_or_else(|| server.local_addr().to_string());
    let handle = server.handle();
    let gateway: Arc<dyn Gateway> = Arc::new(room.clone());
    tokio::spawn(server.serve(room_svc::Server::new(Served(gateway))));
    serve_metrics(&config, &metrics).await?;
    let membership = membership(&config)?;
    let info = {
        let room = room.clone();
        let addrs = node.client_addrs(&config);
        // Full at the configured capacity, or where the open-file limit leaves no room.
        let capacity = match metrics.capacity.get() {
            ..=0 => c.room_capacity,
            fd => c.room_capacity.min(fd as usize),
        };
        metrics.capacity.set(capacity as i64);
        move || RoomInfo {
            name: room.name().to_owned(),
            ws: addrs.ws.clone(),
            tcp: addrs.tcp.clone(),
            tcp_tls: addrs.tcp_tls,
            rpc: rpc_public.clone(),
            connections: room.connections(),
            capacity,
            draining: room.is_draining(),
            seen_ms: now_ms(),
        }
    };
    let announcer = {
        let (membership, info) = (membership.clone(), info.clone());
        let every = c.announce.max(Duration::from_millis(50));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
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
    tracing::info!(window = ?c.drain_window, "draining");
    room.drain("room draining", c.drain_window);
    let _ = membership.announce(&info()).await;
    // Clients reconnect over the window; deliveries still reach those not yet gone.
    tokio::time::sleep(c.drain_window + Duration::from_millis(500)).await;
    announcer.abort();
    let _ = membership.leave(room.name()).await;
    handle.begin_shutdown(Duration::from_millis(500));
    Ok(())
}

/// The dispatcher service: `GET /dispatch` from membership and the register.
pub async fn dispatcher(mut config: Config) -> Result<(), StartError> {
    prepare(&mut config)?;
    // The dispatcher serves no metrics page: what its clients record is not shown.
    let metrics = Arc::new(Metrics::default());
    let rpc = config.cluster.rpc(metrics.rpc())?;
    let dispatcher = crate::dispatcher::Dispatcher::new(
        Arc::new(membership_view(&config, &rpc, &metrics).await?),
        remote_register(&config, &rpc)?,
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
    let local = listener
        .local_addr()
        .map_err(bind_err("the dispatcher", addr))?;
    let router = crate::center::dispatcher_router(dispatcher);
    let https = node::https(node::tls(&config, &metrics)?.as_ref())?;
    let announcer = Announcer::start(
        services(&config)?,
        "dispatcher",
        local.to_string(),
        config.cluster.announce,
        Arc::new(AtomicU64::new(0)),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(crate::tls::https::serve(
        listener,
        router,
        https,
        metrics,
        stop.clone(),
    ));
    stop_signal().await;
    announcer.drain().await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
    announcer.leave().await;
    Ok(())
}

/// The center: the HTTP API over the register, saver and rooms of the cluster. It waits
/// for the saver at start (message ids continue after the stored ones).
pub async fn center(mut config: Config) -> Result<(), StartError> {
    let (tokens, _) = prepare(&mut config)?;
    let metrics = Arc::new(Metrics::default());
    let rpc = config.cluster.rpc(metrics.rpc())?;
    let register = remote_register(&config, &rpc)?;
    let saver = remote_saver(&config, &rpc)?;
    let floor = loop {
        match saver.max_id().await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!(error = %e, "the saver is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // This center's lane of message ids, leased in Redis: other centers issue from theirs.
    let lease = loop {
        match IdLease::acquire(
            redis_connection(&config.cluster)?,
            &config.cluster.redis_prefix,
            config.cluster.id_lease,
            Arc::clone(&metrics),
        )
        .await
        {
            Ok(lease) => break lease,
            Err(e) => {
                tracing::warn!(error = %e, "no id lane leased yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let view = membership_view(&config, &rpc, &metrics).await?;
    {
        // A room gone from membership and not answering: its users are offline.
        let (register, callbacks) = (Arc::clone(&register), remote_coordinator(&config, &rpc)?);
        view.on_gone(Arc::new(move |room: RoomInfo| {
            tokio::spawn(reap(
                Arc::clone(&register),
                Arc::clone(&callbacks),
                room.name,
            ));
        }));
    }
    let tls = node::tls(&config, &metrics)?;
    let center = node::center(
        &config,
        tokens,
        CenterDeps {
            register,
            saver,
            directory: Arc::new(view),
            ids: Arc::new(lease.generator(floor)),
            pacing: Some(crate::pacing::SharedPacing::new(
                redis_connection(&config.cluster)?,
                &config.cluster.redis_prefix,
            )),
            metrics,
        },
        tls.as_ref(),
    )
    .await?;
    println!(
        "{} {}",
        if center.https { "https" } else { "http" },
        center.http
    );
    let announcer = Announcer::start(
        services(&config)?,
        "center",
        center.http.to_string(),
        config.cluster.announce,
        Arc::new(AtomicU64::new(0)),
    );
    stop_signal().await;
    // A graceful stop: `/healthz` says draining (a load balancer moves away), then no new
    // connections (a business client's next try goes to another center), every request in
    // flight answered, then the id lane given back.
    tracing::info!("draining");
    center
        .draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    announcer.drain().await;
    // Health checks see `draining` for two announce intervals before the port closes.
    tokio::time::sleep(2 * config.cluster.announce).await;
    center.stop.cancel();
    if tokio::time::timeout(Duration::from_secs(10), center.task)
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after 10 s: stopping anyway");
    }
    lease.release().await;
    announcer.leave().await;
    Ok(())
}
