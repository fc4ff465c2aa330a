//! The daemon: one `assent-device` device answering through the configured
//! policy, and the control socket feeding it OTPs. Everything stops when the
//! shutdown token fires or the server revokes the device. The service
//! manager hears `READY=1` once the socket listens, watchdog pings while the
//! device answers, and `STOPPING=1` at the end.

use std::time::Duration;

use assent_device::{Device, DeviceHandle};
use tokio_util::sync::CancellationToken;

use crate::AgentError;
use crate::config::AgentConfig;
use crate::control;
use crate::policy::PolicyHandler;
use crate::service_manager::ServiceManager;

/// Runs the daemon for the enrollment in `config.state_dir`: serves the
/// control socket and keeps a stream to the server until `shutdown` fires,
/// then removes the socket.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let manager = ServiceManager::from_env();
    let handler = PolicyHandler::new(config.policy.clone(), config.exec_timeout);
    // Fails before the socket exists when there is no usable enrollment.
    let mut device = Device::start(config.device(), handler)?;
    let socket = config.socket_path();
    let listener = match control::bind(&socket, config.socket_group.as_ref()).await {
        Ok(listener) => listener,
        Err(error) => {
            let _ = device.stop().await;
            return Err(error);
        }
    };
    tracing::info!(
        socket = %socket.display(),
        socket_group = config.socket_group.as_ref().map(tracing::field::display),
        server = %config.server,
        policy = %config.policy,
        "agent daemon started"
    );
    manager.notify("READY=1");
    let stop_control = CancellationToken::new();
    let target = control::DaemonTarget {
        device: device.handle(),
        policy: config.policy.to_string().into(),
        server: config.server.as_str().into(),
    };
    let serving = control::serve(listener, target, stop_control.clone());
    let watchdog = keep_watchdog(&manager, device.handle(), stop_control.clone());
    let ((), (), ended) = tokio::join!(serving, watchdog, async {
        let ended = tokio::select! {
            () = shutdown.cancelled() => None,
            ended = device.stopped() => Some(ended),
        };
        manager.notify("STOPPING=1");
        // Callers still waiting are answered by the device as it stops.
        let ended = match ended {
            Some(ended) => ended,
            None => device.stop().await,
        };
        stop_control.cancel();
        ended
    });
    if let Err(error) = std::fs::remove_file(&socket) {
        tracing::warn!(%error, "cannot remove the control socket");
    }
    ended?;
    tracing::info!("agent daemon stopped");
    Ok(())
}

/// Pings the service manager's watchdog every interval while the device's
/// event loop answers a status query within it, until `stop` fires; a
/// device that does not answer gets no ping, so a wedged daemon is
/// restarted.
async fn keep_watchdog(manager: &ServiceManager, device: DeviceHandle, stop: CancellationToken) {
    let Some(interval) = manager.watchdog_interval() else {
        return;
    };
    // Answering takes far less; the rest of the interval is slack.
    let answer_within = interval.min(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match tokio::time::timeout(answer_within, device.status()).await {
            Ok(Some(_)) => manager.notify("WATCHDOG=1"),
            Ok(None) => return,
            Err(_) => tracing::warn!("the device did not answer in time; no watchdog ping"),
        }
    }
}
