//! The shutdown signal: SIGTERM or SIGINT cancel one token that every
//! listener and connection task watches.

use tokio_util::sync::CancellationToken;

/// A cloneable "stop accepting" signal.
#[derive(Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self(CancellationToken::new())
    }

    /// Trigger shutdown (idempotent).
    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once shutdown was triggered.
    pub async fn wait(&self) {
        self.0.cancelled().await
    }

    /// Trigger this token on SIGTERM or SIGINT (spawns a task).
    pub fn on_signals(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received, shutting down");
            me.trigger();
        });
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
