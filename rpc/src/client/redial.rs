//! When a client may dial its target again: after a failed connect it waits (exponential
//! backoff with jitter) and calls fail at once with `Unavailable` meanwhile, so a restarting
//! server is not met by a storm of connects. One policy for every strategy: the multiplexed
//! slots, the pool's connects and each short call's connect go through the same [`Redial`].

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Config;
use super::handshake::{self, Greeted};
use crate::RpcError;

const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct State {
    failures: u32,
    retry_at: Option<Instant>,
    /// Why the last connect failed (without the "target unavailable" prefix).
    last_reason: String,
    /// The last failure was a TLS refusal: calls during the backoff say so too (and stay
    /// not retryable), rather than looking like a target that is down.
    last_was_tls: bool,
}

/// The redial state of one target, shared by every clone of its client.
#[derive(Debug, Default)]
pub(crate) struct Redial {
    state: Mutex<State>,
}

/// base × 2^failures, capped, ±30% jitter.
pub(crate) fn delay(failures: u32) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1 << failures.min(16))
        .min(BACKOFF_MAX);
    exp.mul_f64(0.7 + 0.6 * fastrand::f64())
}

impl Redial {
    /// Connects to `addr` (TCP, TLS if configured, HELLO) unless the last connect failed and the backoff
    /// has not passed: then fails at once with `Unavailable`, saying why and when.
    pub(crate) async fn connect(&self, addr: &str, config: &Config) -> Result<Greeted, RpcError> {
        {
            let state = self.state.lock();
            if let Some(at) = state.retry_at {
                let now = Instant::now();
                if at > now {
                    let reason = format!(
                        "{}; reconnecting in {} ms",
                        state.last_reason,
                        (at - now).as_millis().max(1)
                    );
                    return Err(if state.last_was_tls {
                        RpcError::Tls { reason }
                    } else {
                        RpcError::Unavailable { reason }
                    });
                }
            }
        }
        match handshake::connect(addr, config, config.connect_timeout).await {
            Ok(greeted) => {
                *self.state.lock() = State::default();
                Ok(greeted)
            }
            Err(e) => {
                let mut state = self.state.lock();
                state.retry_at = Some(Instant::now() + delay(state.failures));
                state.failures += 1;
                state.last_was_tls = matches!(e, RpcError::Tls { .. });
                state.last_reason = match &e {
                    RpcError::Unavailable { reason } | RpcError::Tls { reason } => reason.clone(),
                    other => other.to_string(),
                };
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for failures in 0..20 {
            let d = delay(failures);
            let nominal = BACKOFF_BASE
                .saturating_mul(1 << failures.min(16))
                .min(BACKOFF_MAX);
            assert!(
                d >= nominal.mul_f64(0.7) && d <= nominal.mul_f64(1.3),
                "{failures}: {d:?}"
            );
        }
        assert!(delay(30) <= BACKOFF_MAX.mul_f64(1.3));
    }

    #[tokio::test]
    async fn a_failed_connect_backs_off_with_one_clear_message() {
        // A port nothing listens on: bind, note it, close.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let redial = Redial::default();
        let config = Config::default();
        let first = redial
            .connect(&addr, &config)
            .await
            .err()
            .expect("nothing listens");
        let second = redial
            .connect(&addr, &config)
            .await
            .err()
            .expect("nothing listens");
        let text = second.to_string();
        assert!(
            first
                .to_string()
                .starts_with("target unavailable: connect to"),
            "{first}"
        );
        assert_eq!(text.matches("target unavailable").count(), 1, "{text}");
        assert!(
            text.contains("; reconnecting in ") && text.ends_with(" ms"),
            "{text}"
        );
        let delay = text.rsplit("in ").next().unwrap();
        assert!(
            !delay.contains('.'),
            "a delay in whole milliseconds: {text}"
        );
    }
}
