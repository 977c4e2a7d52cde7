//! Windows: this host's addresses from the IP Helper tables.
//!
//! * `GetUnicastIpAddressTable`: every unicast address of every interface, both families
//!   (Windows receives on an interface's own addresses: the strong host model).
//! * `GetIpForwardTable2`: the routes Windows itself marks `Loopback` (the gateway is this
//!   host) and every route on a software-loopback interface (127.0.0.0/8, ::1, and whatever
//!   an administrator routes there). Host routes to the interfaces' own addresses are
//!   already in the first table.
//!
//! Changes: `NotifyUnicastIpAddressChange` and `NotifyRouteChange2` wake a waiter. Where
//! either cannot be registered (Wine 8 answers ERROR_NOT_SUPPORTED), the table is read
//! again every [`POLL_EVERY`] instead.

use parking_lot::{Condvar, Mutex};
use std::ffi::c_void;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use windows_sys::Win32::Foundation::{ERROR_NOT_FOUND, HANDLE, NO_ERROR};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    CancelMibChangeNotify2, FreeMibTable, GetIpForwardTable2, GetUnicastIpAddressTable, NotifyRouteChange2,
    NotifyUnicastIpAddressChange, MIB_IPFORWARD_ROW2, MIB_IPFORWARD_TABLE2, MIB_NOTIFICATION_TYPE,
    MIB_UNICASTIPADDRESS_ROW, MIB_UNICASTIPADDRESS_TABLE,
};
use windows_sys::Win32::NetworkManagement::Ndis::NET_LUID_LH;
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6, AF_UNSPEC, SOCKADDR_INET};

use super::LocalError;

/// How often the table is read again when the OS cannot say that it changed.
pub(super) const POLL_EVERY: Duration = Duration::from_secs(1);
/// `IF_TYPE_SOFTWARE_LOOPBACK` (ipifcons.h).
const IF_TYPE_SOFTWARE_LOOPBACK: u64 = 24;

pub(super) fn read() -> Result<Vec<IpNet>, LocalError> {
    let mut nets = Vec::new();
    let mut addresses: *mut MIB_UNICASTIPADDRESS_TABLE = std::ptr::null_mut();
    // SAFETY: an out pointer to a table that Windows allocates; freed by `Table`.
    let rc = unsafe { GetUnicastIpAddressTable(AF_UNSPEC, &mut addresses) };
    let table = Table::checked("GetUnicastIpAddressTable", rc, addresses.cast())?;
    // SAFETY: a successful call returned a table of NumEntries rows, alive until `table` drops.
    for row in unsafe { rows(addresses) } {
        nets.extend(ip(&row.Address).map(IpNet::from));
    }
    drop(table);

    let mut routes: *mut MIB_IPFORWARD_TABLE2 = std::ptr::null_mut();
    // SAFETY: as above.
    let rc = unsafe { GetIpForwardTable2(AF_UNSPEC, &mut routes) };
    let table = Table::checked("GetIpForwardTable2", rc, routes.cast())?;
    // SAFETY: as above.
    for row in unsafe { route_rows(routes) } {
        if row.Loopback || if_type(row.InterfaceLuid) == IF_TYPE_SOFTWARE_LOOPBACK {
            let prefix = &row.DestinationPrefix;
            if let Some(addr) = ip(&prefix.Prefix) {
                let net = IpNet::new(addr, prefix.PrefixLength)
                    .map_err(|_| LocalError::Malformed(format!("a route prefix {addr}/{}", prefix.PrefixLength)))?;
                nets.push(net);
            }
        }
    }
    drop(table);
    Ok(nets)
}

/// A table allocated by the IP Helper, freed when dropped. `ERROR_NOT_FOUND` is an empty table.
struct Table(*const c_void);

impl Table {
    fn checked(call: &'static str, rc: u32, table: *const c_void) -> Result<Option<Table>, LocalError> {
        match rc {
            NO_ERROR if !table.is_null() => Ok(Some(Table(table))),
            NO_ERROR | ERROR_NOT_FOUND => Ok(None),
            code => Err(LocalError::os(call, std::io::Error::from_raw_os_error(code as i32))),
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: a table the IP Helper allocated, freed once.
        unsafe { FreeMibTable(self.0) };
    }
}

/// # Safety
/// `table` is null or a table returned by `GetUnicastIpAddressTable`, not yet freed.
unsafe fn rows<'a>(table: *const MIB_UNICASTIPADDRESS_TABLE) -> &'a [MIB_UNICASTIPADDRESS_ROW] {
    match table.is_null() {
        true => &[],
        // SAFETY: the caller's promise; the rows follow the count.
        false => unsafe { std::slice::from_raw_parts((*table).Table.as_ptr(), (*table).NumEntries as usize) },
    }
}

/// # Safety
/// `table` is null or a table returned by `GetIpForwardTable2`, not yet freed.
unsafe fn route_rows<'a>(table: *const MIB_IPFORWARD_TABLE2) -> &'a [MIB_IPFORWARD_ROW2] {
    match table.is_null() {
        true => &[],
        // SAFETY: the caller's promise; the rows follow the count.
        false => unsafe { std::slice::from_raw_parts((*table).Table.as_ptr(), (*table).NumEntries as usize) },
    }
}

fn ip(addr: &SOCKADDR_INET) -> Option<IpAddr> {
    // SAFETY: si_family says which member of the union is set; every member starts with it.
    unsafe {
        match addr.si_family {
            AF_INET => Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(addr.Ipv4.sin_addr.S_un.S_addr)))),
            AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(addr.Ipv6.sin6_addr.u.Byte))),
            _ => None,
        }
    }
}

/// The interface type in a LUID's top 16 bits.
fn if_type(luid: NET_LUID_LH) -> u64 {
    // SAFETY: both members of the union are the same 64 bits.
    (unsafe { luid.Value } >> 48) & 0xffff
}

/// What the notification callbacks set.
#[derive(Default)]
struct Signal {
    changed: Mutex<bool>,
    wake: Condvar,
}

unsafe extern "system" fn address_changed(
    context: *const c_void,
    _row: *const MIB_UNICASTIPADDRESS_ROW,
    _kind: MIB_NOTIFICATION_TYPE,
) {
    // SAFETY: the context is the `Signal` that `Changes` keeps alive until it has cancelled
    // the notification (CancelMibChangeNotify2 waits for a callback in progress).
    unsafe { notify(context) }
}

unsafe extern "system" fn route_changed(
    context: *const c_void,
    _row: *const MIB_IPFORWARD_ROW2,
    _kind: MIB_NOTIFICATION_TYPE,
) {
    // SAFETY: as above.
    unsafe { notify(context) }
}

/// # Safety
/// `context` points to a live `Signal`.
unsafe fn notify(context: *const c_void) {
    // SAFETY: the caller's promise.
    let signal = unsafe { &*context.cast::<Signal>() };
    *signal.changed.lock() = true;
    signal.wake.notify_all();
}

/// Registered notifications, or polling where they are not available.
pub(super) struct Changes {
    signal: Arc<Signal>,
    handles: Vec<HANDLE>,
    /// Set when a notification could not be registered: read again every [`POLL_EVERY`].
    next_poll: Option<Instant>,
}

// SAFETY: the handles are only passed to CancelMibChangeNotify2, which any thread may call.
unsafe impl Send for Changes {}

impl Changes {
    pub(super) fn subscribe() -> Result<Self, LocalError> {
        let signal = Arc::new(Signal::default());
        let context: *const c_void = Arc::as_ptr(&signal).cast();
        let mut changes = Changes { signal, handles: Vec::new(), next_poll: None };
        let mut address: HANDLE = std::ptr::null_mut();
        // SAFETY: the callback and its context stay valid until the handle is cancelled in Drop.
        let rc =
            unsafe { NotifyUnicastIpAddressChange(AF_UNSPEC, Some(address_changed), context, false, &mut address) };
        changes.keep(rc, address);
        let mut route: HANDLE = std::ptr::null_mut();
        // SAFETY: as above.
        let rc = unsafe { NotifyRouteChange2(AF_UNSPEC, Some(route_changed), context, false, &mut route) };
        changes.keep(rc, route);
        if changes.next_poll.is_some() {
            tracing::debug!("Windows does not notify address or route changes here; reading them every {POLL_EVERY:?}");
        }
        Ok(changes)
    }

    fn keep(&mut self, rc: u32, handle: HANDLE) {
        match rc == NO_ERROR && !handle.is_null() {
            true => self.handles.push(handle),
            false => self.next_poll = Some(Instant::now() + POLL_EVERY),
        }
    }

    pub(super) fn wait(&mut self, timeout: Duration) -> Result<bool, LocalError> {
        let deadline = Instant::now() + timeout;
        let until = self.next_poll.map_or(deadline, |poll| poll.min(deadline));
        let mut changed = self.signal.changed.lock();
        while !*changed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.signal.wake.wait_for(&mut changed, left);
        }
        let notified = std::mem::take(&mut *changed);
        drop(changed);
        let polled = match self.next_poll {
            Some(poll) if Instant::now() >= poll => {
                self.next_poll = Some(Instant::now() + POLL_EVERY);
                true
            }
            _ => false,
        };
        Ok(notified || polled)
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        for handle in self.handles.drain(..) {
            // SAFETY: a handle registered above, cancelled once; the call returns after any
            // callback in progress, so `signal` may go after it.
            unsafe { CancelMibChangeNotify2(handle) };
        }
    }
}
