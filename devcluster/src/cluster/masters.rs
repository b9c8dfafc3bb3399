//! Several masters sharing the agents, one of which leads.
//!
//! Only the leading master serves the scheduler API; the others redirect to it
//! (or answer 503 while none leads). A change of leader is a master failover as
//! Mesos has it: the new master starts without frameworks' connections and offers
//! (every subscription stream ends, offers and filters are forgotten), while the
//! agents keep their executors and tasks untouched. A framework re-subscribing with
//! its FrameworkID to the new leader finds its tasks again (they are keyed by it)
//! and its unacknowledged updates are resent; one that does not re-subscribe is
//! removed when its failover timeout passes, as if it had disconnected at the
//! failover.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mesos_stateful_proto::v1::{self, MasterInfo};

use super::Cluster;

/// The MasterInfo of a master answering at `addr`, with a fresh ID.
pub fn master_info(addr: SocketAddr) -> MasterInfo {
    let ip = addr.ip().to_string();
    let ip_network_order = match addr.ip() {
        std::net::IpAddr::V4(v4) => u32::from_le_bytes(v4.octets()),
        std::net::IpAddr::V6(_) => 0,
    };
    MasterInfo {
        id: uuid::Uuid::new_v4().to_string(),
        ip: ip_network_order,
        port: u32::from(addr.port()),
        pid: Some(format!("master@{ip}:{}", addr.port())),
        hostname: Some(ip.clone()),
        version: Some(crate::MESOS_VERSION.to_string()),
        address: Some(v1::Address {
            hostname: Some(ip.clone()),
            ip: Some(ip),
            port: i32::from(addr.port()),
        }),
        ..Default::default()
    }
}

/// The `host:port` a master is known by (`MasterInfo.hostname`, else its IP).
fn authority(info: &MasterInfo) -> String {
    let host = info
        .hostname
        .clone()
        .or_else(|| info.address.as_ref().and_then(|a| a.ip.clone()))
        .unwrap_or_default();
    format!("{host}:{}", info.port)
}

impl Cluster {
    /// Adds a standby master answering at `addr`; returns its index.
    pub fn add_master(&mut self, addr: SocketAddr) -> usize {
        self.masters.push(master_info(addr));
        self.masters.len() - 1
    }

    /// The MasterInfo of master `index`.
    pub fn master(&self, index: usize) -> Option<&MasterInfo> {
        self.masters.get(index)
    }

    /// The index of the leading master, if one leads.
    pub fn leader(&self) -> Option<usize> {
        self.leader
    }

    /// The IDs of the frameworks subscribed (connected) to the leader, sorted.
    pub fn subscribed_frameworks(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .frameworks
            .values()
            .filter(|framework| framework.connection.is_some())
            .map(|framework| framework.id.value.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The leading master's `host:port`, as `/master/redirect` and the 307 of a
    /// standby master report it.
    pub fn leader_authority(&self) -> Option<String> {
        self.leader
            .and_then(|index| self.masters.get(index))
            .map(authority)
    }

    /// Master `index` (or none) now leads. A change ends every framework's
    /// subscription and forgets offers and filters (see the module documentation).
    pub fn set_leader(&mut self, leader: Option<usize>, now: Instant) {
        if leader == self.leader || leader.is_some_and(|index| index >= self.masters.len()) {
            return;
        }
        tracing::info!(from = ?self.leader, to = ?leader, "leading master changed");
        self.leader = leader;
        if let Some(info) = leader.and_then(|index| self.masters.get(index)) {
            self.master_info = info.clone();
        }
        self.offers.clear();
        self.filters = crate::allocator::OfferFilters::default();
        self.next_allocation = now;
        for framework in self.frameworks.values_mut() {
            // Dropping the sender ends the HTTP stream, as the old master's death does.
            if framework.connection.take().is_some() {
                let timeout = framework.info.failover_timeout.unwrap_or(0.0);
                let timeout = if timeout.is_finite() && timeout > 0.0 {
                    Duration::from_secs_f64(timeout.min(1e9))
                } else {
                    Duration::ZERO
                };
                framework.failover_deadline = Some(now + timeout);
            }
        }
    }
}
