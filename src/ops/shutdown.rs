//! SIGTERM and SIGINT: the first asks the daemon to stop (the batch in hand is
//! finished within the grace period, else rolled back), the second stops at once
//! (the batch in hand is rolled back).

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How many stop signals arrived; cheap to clone and share between tasks.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<u32>,
}

/// The sending side, for tests and embedders that stop the daemon themselves.
#[derive(Debug, Clone)]
pub struct Stopper(std::sync::Arc<watch::Sender<u32>>);

impl Stopper {
    pub fn stop(&self) {
        self.0.send_modify(|n| *n += 1);
    }
}

impl Shutdown {
    /// A pair not tied to any signal.
    pub fn manual() -> (Stopper, Shutdown) {
        let (tx, rx) = watch::channel(0);
        (Stopper(std::sync::Arc::new(tx)), Shutdown { rx })
    }

    /// Listen for SIGTERM and SIGINT.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        let (stopper, shutdown) = Shutdown::manual();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                let first = *stopper.0.borrow() == 0;
                if first {
                    tracing::info!(
                        signal = name,
                        "stopping: finishing or rolling back the batch in hand (send it again to stop at once)"
                    );
                } else {
                    tracing::warn!(
                        signal = name,
                        "stopping at once: rolling back the batch in hand"
                    );
                }
                stopper.stop();
            }
        });
        Ok(shutdown)
    }

    /// Has a stop been asked for?
    pub fn requested(&self) -> bool {
        *self.rx.borrow() > 0
    }

    /// Resolves once a stop is asked for.
    pub async fn wait(&self) {
        self.wait_for(1).await
    }

    /// Resolves once a second stop is asked for.
    pub async fn wait_again(&self) {
        self.wait_for(2).await
    }

    async fn wait_for(&self, n: u32) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|got| *got >= n).await.is_err() {
            // no one can ask any more
            std::future::pending::<()>().await;
        }
    }
}
