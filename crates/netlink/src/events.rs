//! Kernel notifications of route, link and neighbour changes: how an agent notices that
//! someone else changed what it programmed, without reading the tables back on a timer.
//!
//! The listener joins the rtnetlink multicast groups of the network namespace it is created
//! in and raises a flag on every notification. Our own changes raise it too: the agent then
//! compares once and finds nothing to do, which costs one route dump. A notification lost
//! because the socket overflowed (ENOBUFS) also raises the flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{Error, Result};

/// rtnetlink multicast groups (`RTNLGRP_*` in `linux/rtnetlink.h`).
const GROUPS: [(u32, &str); 5] = [
    (1, "links"),
    (3, "neighbours"),
    (7, "IPv4 routes"),
    (11, "IPv6 routes"),
    (5, "IPv4 addresses"),
];

/// ENOBUFS on Linux: the socket's queue overflowed.
const ENOBUFS: i32 = 105;

/// Raised flags from a listener thread.
#[derive(Debug, Default)]
struct Flags {
    changed: AtomicBool,
    alive: AtomicBool,
}

/// A running listener (see the module docs). Dropping it leaves the thread blocked in `recv`
/// until the next notification, after which it ends.
#[derive(Debug)]
pub struct RouteEvents {
    flags: Arc<Flags>,
}

impl RouteEvents {
    /// Starts listening in the calling thread's network namespace.
    pub fn spawn() -> Result<Self> {
        let doing = |what: &str| format!("listening to route notifications: {what}");
        let kernel = |what: &str, source| Error::Kernel {
            doing: doing(what),
            source,
        };
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| kernel("opening a netlink socket", e))?;
        socket
            .bind(&SocketAddr::new(0, 0))
            .map_err(|e| kernel("binding the socket", e))?;
        for (group, name) in GROUPS {
            socket
                .add_membership(group)
                .map_err(|e| kernel(&format!("joining the {name} group"), e))?;
        }
        let flags = Arc::new(Flags::default());
        flags.alive.store(true, Ordering::Relaxed);
        let thread_flags = Arc::downgrade(&flags);
        std::thread::Builder::new()
            .name("route-events".into())
            .spawn(move || listen(&socket, &thread_flags))
            .map_err(|e| kernel("starting the listener thread", e))?;
        Ok(RouteEvents { flags })
    }

    /// Whether anything changed since the last call.
    pub fn take_change(&self) -> bool {
        self.flags.changed.swap(false, Ordering::Relaxed)
    }

    /// Whether the listener still runs (if not, the caller must check on a timer).
    pub fn alive(&self) -> bool {
        self.flags.alive.load(Ordering::Relaxed)
    }
}

fn listen(socket: &Socket, flags: &std::sync::Weak<Flags>) {
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        buf.clear();
        let received = socket.recv(&mut buf, 0);
        let Some(flags) = flags.upgrade() else {
            return;
        };
        match received {
            Ok(_) => flags.changed.store(true, Ordering::Relaxed),
            // Notifications were dropped: something changed, we do not know what.
            Err(e) if e.raw_os_error() == Some(ENOBUFS) => {
                flags.changed.store(true, Ordering::Relaxed);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                flags.alive.store(false, Ordering::Relaxed);
                flags.changed.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}
