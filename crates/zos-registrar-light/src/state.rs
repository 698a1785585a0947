//! The registration state, shared by the state machine (which writes it) and the bus objects (which read it),
//! always under its lock, and `registrar.registrar@0.0.1`.

use std::sync::Mutex;

use tokio::sync::Notify;
use zos_api::bus::CallError;
use zos_api::registrar::{Registrar, RegistrationPhase, RegistrationState};
use zos_types::GoTime;

/// The message of `NodeID`/`TwinID` while registering (Zero-OS's text).
pub const IN_PROGRESS: &str = "registration is still in progress";

/// The node's ids on the registrar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ids {
    pub twin_id: u64,
    pub node_id: u64,
}

/// The reason of the state before the first attempt ended.
pub const FIRST_ATTEMPT: &str = "the first registration attempt is under way";

/// The state and a way for other parts to ask the state machine to check the ids again.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<RegistrationState>,
    recheck: Notify,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            state: Mutex::new(RegistrationState {
                reason: FIRST_ATTEMPT.to_string(),
                ..Default::default()
            }),
            recheck: Notify::new(),
        }
    }
}

impl Shared {
    /// A fresh state: in progress, the first attempt under way.
    pub fn new() -> Shared {
        Shared::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistrationState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the state.
    pub fn state(&self) -> RegistrationState {
        self.lock().clone()
    }

    /// The ids, when registered.
    pub fn ids(&self) -> Result<Ids, CallError> {
        let s = self.lock();
        match s.phase {
            RegistrationPhase::Registered => Ok(Ids {
                twin_id: u64::from(s.twin_id),
                node_id: u64::from(s.node_id),
            }),
            RegistrationPhase::InProgress => Err(in_progress_error(&s.reason)),
            RegistrationPhase::Failed => Err(failed_error(&s.reason)),
        }
    }

    /// Registered (or updated) now with `ids`; `reason` notes a problem that did not prevent it.
    pub fn set_registered(&self, ids: Ids, reason: String) -> Result<(), String> {
        let node_id = u32::try_from(ids.node_id)
            .map_err(|_| format!("node id {} does not fit the bus's u32", ids.node_id))?;
        let twin_id = u32::try_from(ids.twin_id)
            .map_err(|_| format!("twin id {} does not fit the bus's u32", ids.twin_id))?;
        let mut s = self.lock();
        *s = RegistrationState {
            phase: RegistrationPhase::Registered,
            node_id,
            twin_id,
            reason,
            updated: GoTime::now(),
        };
        Ok(())
    }

    /// Still registered, but the last update failed or noted something: keep the ids, record why.
    pub fn set_note(&self, reason: String) {
        self.lock().reason = reason;
    }

    /// Not registered (yet, or any more); retrying. The ids are forgotten.
    pub fn set_in_progress(&self, reason: String) {
        let mut s = self.lock();
        s.phase = RegistrationPhase::InProgress;
        s.node_id = 0;
        s.twin_id = 0;
        s.reason = reason;
    }

    /// Registration cannot proceed until something outside changes (re-checked). The ids are forgotten.
    pub fn set_failed(&self, reason: String) {
        let mut s = self.lock();
        s.phase = RegistrationPhase::Failed;
        s.node_id = 0;
        s.twin_id = 0;
        s.reason = reason;
    }

    /// Ask the state machine to check that the ids are still valid (the registrar answered 401/404 to them).
    pub fn request_recheck(&self) {
        self.recheck.notify_one();
    }

    /// Completes when a re-check was asked for.
    pub async fn recheck_requested(&self) {
        self.recheck.notified().await
    }
}

/// The error of `NodeID`/`TwinID` while registering: kind `unavailable` (try again later).
pub fn in_progress_error(reason: &str) -> CallError {
    if reason.is_empty() {
        CallError::with_kind("unavailable", IN_PROGRESS)
    } else {
        CallError::with_kind("unavailable", format!("{IN_PROGRESS} ({reason})"))
    }
}

/// The error of `NodeID`/`TwinID` when registration failed: kind `not_found` (there are no ids; the
/// condition is re-checked, so they may come later).
pub fn failed_error(reason: &str) -> CallError {
    CallError::with_kind("not_found", format!("registration failed: {reason}"))
}

/// `registrar.registrar@0.0.1`.
pub struct RegistrarObject {
    shared: std::sync::Arc<Shared>,
}

impl RegistrarObject {
    /// The object over `shared`.
    pub fn new(shared: std::sync::Arc<Shared>) -> RegistrarObject {
        RegistrarObject { shared }
    }
}

impl Registrar for RegistrarObject {
    async fn node_id(&self) -> Result<u32, CallError> {
        let ids = self.shared.ids()?;
        Ok(ids.node_id as u32)
    }

    async fn twin_id(&self) -> Result<u32, CallError> {
        let ids = self.shared.ids()?;
        Ok(ids.twin_id as u32)
    }

    async fn state(&self) -> Result<RegistrationState, CallError> {
        Ok(self.shared.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_only_when_registered() {
        let s = Shared::new();
        let e = s.ids().unwrap_err();
        assert_eq!(
            e.message,
            "registration is still in progress (the first registration attempt is under way)"
        );
        assert_eq!(e.kind.as_deref(), Some("unavailable"));
        assert_eq!(in_progress_error("").message, IN_PROGRESS);
        s.set_in_progress("the registrar does not answer".into());
        let e = s.ids().unwrap_err();
        assert_eq!(
            e.message,
            "registration is still in progress (the registrar does not answer)"
        );
        s.set_registered(
            Ids {
                twin_id: 7,
                node_id: 3,
            },
            String::new(),
        )
        .unwrap();
        assert_eq!(
            s.ids().unwrap(),
            Ids {
                twin_id: 7,
                node_id: 3
            }
        );
        assert!(!s.state().updated.is_zero());
        s.set_failed("farm 9 does not exist".into());
        let e = s.ids().unwrap_err();
        assert_eq!(e.message, "registration failed: farm 9 does not exist");
        assert_eq!(e.kind.as_deref(), Some("not_found"));
        assert_eq!(s.state().node_id, 0);
        let err = s
            .set_registered(
                Ids {
                    twin_id: 1,
                    node_id: 1 << 40,
                },
                String::new(),
            )
            .unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
    }
}
