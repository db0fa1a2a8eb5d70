//! What stands between a failure decision and a fence: the self-check (this host's carrier,
//! then its witnesses).
use super::{heartbeat::Command, Daemon, DaemonError};
use crate::{
    event::Event,
    role::{Input, SelfCheck},
};

impl Daemon {
    /// The witnesses: `witness.addresses`, else the default gateway on the interface. With
    /// neither, a `no_witness` warning (repeated at every failure decision).
    pub(super) async fn resolve_witnesses(&mut self) -> Result<(), DaemonError> {
        self.witnesses = self.cfg.witness.addresses.clone();
        if self.witnesses.is_empty() {
            match self.addrs.default_gateway(self.cfg.node.address.addr).await {
                Ok(Some(gw)) => {
                    tracing::info!(gateway = %gw, "witness: the default gateway");
                    self.witnesses.push(gw);
                }
                Ok(None) => self.warn_no_witness(),
                Err(e) => {
                    self.emit(Event::DaemonError, &crate::error_chain(&e));
                    self.warn_no_witness();
                }
            }
        }
        Ok(())
    }

    fn warn_no_witness(&self) {
        self.emit(
            Event::NoWitness,
            "no witness.addresses and no default gateway: before a fence this host checks only \
             its own carrier, so a fault between it and the primary beyond its link cannot be \
             told from a failed primary",
        );
    }

    /// The first half of the self-check (carrier) now; the witnesses' half on the heartbeat
    /// thread, whose answer comes back as `Report::SelfCheck`.
    pub(super) async fn self_check(&mut self) -> Option<Input> {
        match self.addrs.has_carrier().await {
            Ok(true) => {}
            Ok(false) => return Some(Input::SelfChecked(SelfCheck::NoCarrier)),
            Err(e) => {
                // Cannot show that this side works: no fence.
                self.emit(Event::DaemonError, &crate::error_chain(&e));
                return Some(Input::SelfChecked(SelfCheck::NoCarrier));
            }
        }
        if self.witnesses.is_empty() {
            self.warn_no_witness();
            return Some(Input::SelfChecked(SelfCheck::Passed { answered: 0 }));
        }
        self.heartbeat.send(Command::SelfCheck {
            needed: self.witness_min(),
            timeout: self.cfg.witness.timeout.0,
        });
        None
    }

    /// How many witnesses must answer.
    pub(super) fn witness_min(&self) -> usize {
        (self.cfg.witness.min as usize).min(self.witnesses.len())
    }

    /// The witnesses' answer.
    pub(super) fn witnesses_answered(&self, answered: u8) -> Input {
        let needed = self.witness_min();
        Input::SelfChecked(if answered as usize >= needed {
            SelfCheck::Passed { answered }
        } else {
            SelfCheck::WitnessesSilent {
                answered,
                needed: needed as u8,
            }
        })
    }
}
