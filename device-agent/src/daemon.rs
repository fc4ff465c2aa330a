//! The daemon: one `assent-device` device answering through the configured
//! policy, and the control socket feeding it OTPs. Everything stops when the
//! shutdown token fires or the server revokes the device.

use assent_device::Device;
use tokio_util::sync::CancellationToken;

use crate::AgentError;
use crate::config::AgentConfig;
use crate::control;
use crate::policy::PolicyHandler;

/// Runs the daemon for the enrollment in `config.state_dir`: serves the
/// control socket and keeps a stream to the server until `shutdown` fires,
/// then removes the socket.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let handler = PolicyHandler::new(config.policy.clone(), config.exec_timeout);
    // Fails before the socket exists when there is no usable enrollment.
    let mut device = Device::start(config.device(), handler)?;
    let socket = control::socket_path(&config.state_dir);
    let listener = control::bind(&socket).await?;
    tracing::info!(
        socket = %socket.display(),
        server = %config.server,
        policy = %config.policy,
        "agent daemon started"
    );
    let stop_control = CancellationToken::new();
    let target = control::DaemonTarget {
        device: device.handle(),
        policy: config.policy.to_string().into(),
        server: config.server.as_str().into(),
    };
    let serving = control::serve(listener, target, stop_control.clone());
    let ((), ended) = tokio::join!(serving, async {
        let ended = tokio::select! {
            () = shutdown.cancelled() => None,
            ended = device.stopped() => Some(ended),
        };
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
