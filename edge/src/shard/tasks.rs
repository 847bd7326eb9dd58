//! The tasks of one shard and their life: [`run`] starts the accept loops, the readiness
//! reports, the raw driver, the control-flush task (registry events of a turn, sent
//! together), the timer and the delivery port, serves the control thread's
//! commands until `Shutdown`, then closes every connection and stops.
//!
//! Kept apart from [`super::Shard`] (the state and its I/O layer) so the layer the drivers and
//! the delivery port use does not also depend on them.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use tokio::sync::mpsc;

use super::readiness::ReadyBatches;
use super::Shard;
use crate::conn::accept::Listener;
use crate::control::messages::ShardCommand;

/// Runs the shard: accept loops, readiness reports, timer, delivery port, until `Shutdown`
/// arrives.
pub async fn run(
    shard: Rc<Shard>,
    mut ready: ReadyBatches,
    client: Listener,
    tls_client: Option<Listener>,
    delivery: TcpListener,
    mut commands: mpsc::UnboundedReceiver<ShardCommand>,
) {
    shard.with(|st, _| st.delivery_port = delivery.local_addr().map_or(0, |a| a.port()));
    let reports = glommio::spawn_local({
        let shard = shard.clone();
        async move {
            while let Some(batch) = ready.recv().await {
                for token in batch {
                    shard.on_ready(token);
                }
            }
        }
    });
    let raw = glommio::spawn_local(crate::conn::raw_driver::run(shard.clone()));
    let control = glommio::spawn_local({
        let shard = shard.clone();
        async move {
            loop {
                let events = shard.take_control_events().await;
                shard.send_control(events);
            }
        }
    });
    let mut accept = Some(glommio::spawn_local(crate::conn::accept::accept_loop(
        shard.clone(),
        client,
    )));
    let mut accept_tls = tls_client.map(|listener| {
        glommio::spawn_local(crate::conn::accept::accept_loop(shard.clone(), listener))
    });
    let timer = glommio::spawn_local({
        let shard = shard.clone();
        async move {
            let tick = shard.cfg.timer_tick;
            let mut due = shard.epoch.elapsed() + tick;
            loop {
                glommio::timer::sleep(due.saturating_sub(shard.epoch.elapsed())).await;
                let lag = shard.epoch.elapsed().saturating_sub(due);
                shard.with(|st, now| {
                    st.probe.tick_late(lag);
                    st.on_tick(now);
                });
                due = shard.epoch.elapsed().max(due) + tick;
            }
        }
    });
    let delivery = glommio::spawn_local(crate::delivery_port::serve(shard.clone(), delivery));
    while let Some(cmd) = commands.recv().await {
        match cmd {
            ShardCommand::Snapshot(tx) => {
                let _ = tx.send(shard.inspect(|st, now| st.snapshot(now)));
            }
            ShardCommand::Reassert => shard.reassert().await,
            ShardCommand::Drain { window, max_rate } => {
                // Stop accepting: the listeners close with their tasks.
                accept = None;
                accept_tls = None;
                shard.with(|st, now| st.start_drain(window, max_rate, now));
            }
            ShardCommand::ShortenDrain => shard.with(|st, now| st.shorten_drain(now)),
            ShardCommand::Supersede(batch) => shard.with(|st, now| {
                for s in &batch {
                    st.supersede(&s.user, &s.device, s.nonce, now);
                }
            }),
            ShardCommand::Recovered { conn, read } => {
                shard.with(|st, now| st.finish_recovery(conn, read, now))
            }
            ShardCommand::Shutdown => break,
        }
    }
    drop(accept);
    drop(accept_tls);
    drop(delivery);
    shard.with(|st, now| st.close_all(now));
    // Give drivers a moment to flush their last frames, then stop.
    let deadline = Instant::now() + Duration::from_secs(2);
    while shard.inspect(|st, _| st.live()) > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
        shard.with(|st, _| st.close_stragglers());
    }
    drop(timer);
    drop(reports);
    drop(raw);
    drop(control);
    shard.flush_control();
    log::info!("shard {} stopped", shard.index);
}
