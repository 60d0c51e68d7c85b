//! The access token in the driver: fetching from the provider, scheduled refreshes, a
//! token set by hand, and pushing a changed token to every joined channel.

use std::time::Duration;

use crier_protocol::events::ACCESS_TOKEN;
use crier_protocol::{Message, Payload};
use serde_json::json;

use super::{Driver, Timer};
use crate::Error;
use crate::auth::TokenError;

impl Driver {
    /// Asks the provider for a token, unless a fetch is in flight or there is no provider.
    pub(super) fn fetch_token(&mut self) {
        if self.token_fetch.is_some() {
            return;
        }
        if let Some(provider) = self.auth.provider() {
            self.token_fetch = Some(provider.fetch());
        }
    }

    /// A fetch ended: use the token and schedule its refresh, or retry in 5 s.
    pub(super) fn on_token(&mut self, result: Result<String, TokenError>) {
        match result {
            Ok(token) => {
                let changed = self.auth.accept_fetched(token);
                self.token_changed(changed);
                let key = self.refresh_key.take();
                self.cancel(key);
                if let Some(refresh_in) = self.auth.refresh_in(unix_now()) {
                    // Never refresh more often than once a second.
                    let refresh_in = refresh_in.max(Duration::from_secs(1));
                    self.refresh_key = Some(self.timers.insert(Timer::TokenRefresh, refresh_in));
                }
                if std::mem::take(&mut self.connect_after_token) {
                    self.start_connect();
                }
            }
            Err(err) => {
                let error = Error::TokenProvider(err.to_string());
                tracing::warn!(%error, "token provider failed; retrying in 5 s");
                if std::mem::take(&mut self.connect_after_token) {
                    for waiter in self.connect_waiters.drain(..) {
                        let _ = waiter.send(Err(error.clone()));
                    }
                    self.connect_after_token = true;
                }
                for channel in self.channels.values_mut() {
                    channel.token_failed(&error);
                }
                let key = self.refresh_key.take();
                self.cancel(key);
                self.refresh_key = Some(
                    self.timers
                        .insert(Timer::TokenRefresh, Duration::from_secs(5)),
                );
            }
        }
    }

    /// `set_auth()`: a token by hand, or `None` to go back to the provider.
    pub(super) fn set_auth(&mut self, token: Option<String>) {
        let clearing = token.is_none();
        let changed = self.auth.set_manual(token);
        if clearing {
            self.fetch_token();
        }
        self.token_changed(changed);
        if self.refused && changed {
            self.refused = false;
            self.start_connect();
        }
    }

    /// After any token source update: mirror it for HTTP calls, push it to joined channels
    /// when it changed, and (re)join channels that were waiting for a token.
    fn token_changed(&mut self, changed: bool) {
        let current = self.auth.current().map(str::to_owned);
        *self.token_mirror.lock().expect("not poisoned") = current.clone();
        if changed && let Some(token) = current {
            let joined: Vec<(String, Option<String>)> = self
                .channels
                .iter()
                .filter(|(_, c)| c.is_joined())
                .map(|(topic, c)| (topic.clone(), c.join_ref.clone()))
                .collect();
            for (topic, join_ref) in joined {
                let msg_ref = self.make_ref();
                self.send(&Message {
                    join_ref,
                    msg_ref: Some(msg_ref),
                    topic,
                    event: ACCESS_TOKEN.into(),
                    payload: Payload::Json(json!({"access_token": token})),
                });
            }
        }
        let waiting: Vec<String> = self
            .channels
            .iter_mut()
            .filter_map(|(topic, c)| c.take_token_wait(changed).then(|| topic.clone()))
            .collect();
        for topic in waiting {
            self.join(&topic);
        }
    }
}

/// Seconds since the epoch, the unit of a JWT's `exp` (0 if the clock is before 1970).
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
