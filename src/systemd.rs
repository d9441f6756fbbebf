//! Telling systemd how Satchel is doing (`sd_notify`), for `Type=notify` units.
//!
//! With `Type=notify` systemd counts a service as started only when it says
//! `READY=1` on the datagram socket named by `$NOTIFY_SOCKET`. Satchel says it
//! once its start-up checks have passed (store opened, HTTP port listening),
//! so `systemctl start satchel` returns when uploads can be taken, and fails
//! when Satchel stops during start-up because of a bad deployment. It says
//! `STOPPING=1` when it begins to shut down.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to a unix socket, given
//! as a path or, when it starts with `@`, as a Linux abstract name: a few
//! lines of std, no crate needed. Without `$NOTIFY_SOCKET` (not started by
//! systemd, or not as `Type=notify`) nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// The environment variable systemd names its notification socket in.
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells systemd that Satchel has started and serves.
pub fn notify_ready() {
    notify_from_env("READY=1\nSTATUS=serving uploads\n");
}

/// Tells systemd that Satchel is shutting down.
pub fn notify_stopping() {
    notify_from_env("STOPPING=1\n");
}

/// Sends `state` to `$NOTIFY_SOCKET`, if set. A failure is logged, never
/// fatal: systemd then times the start out, which names the cause itself.
fn notify_from_env(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    match notify(&socket, state) {
        Ok(()) => tracing::debug!(state = state.trim_end(), "told systemd"),
        Err(error) => tracing::warn!(
            %error,
            socket = %socket.to_string_lossy(),
            "cannot notify systemd"
        ),
    }
}

/// Sends `state` as one datagram to the notification socket `socket`: a
/// path, or an abstract name written with a leading `@`.
pub fn notify(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let sender = UnixDatagram::unbound()?;
    let sent = match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sender.send_to_addr(state.as_bytes(), &address)?
        }
        Some((b'/', _)) => sender.send_to(state.as_bytes(), socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor an abstract name (@...)",
            ))
        }
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;
    use std::time::Duration;

    fn received(listener: &UnixDatagram) -> String {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 256];
        let len = listener.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..len].to_vec()).unwrap()
    }

    #[test]
    fn ready_reaches_a_socket_bound_to_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        notify(path.as_os_str(), "READY=1\n").unwrap();
        assert_eq!(received(&listener), "READY=1\n");
        notify(path.as_os_str(), "STOPPING=1\n").unwrap();
        assert_eq!(received(&listener), "STOPPING=1\n");
    }

    #[test]
    fn ready_reaches_an_abstract_socket() {
        let name = format!("satchel-test-notify-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        notify(OsStr::new(&format!("@{name}")), "READY=1\n").unwrap();
        assert_eq!(received(&listener), "READY=1\n");
    }

    #[test]
    fn a_bad_socket_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nobody-listens");
        assert!(notify(missing.as_os_str(), "READY=1\n").is_err());
        for bad in ["", "relative/path", "@", "/"] {
            assert!(notify(OsStr::new(bad), "READY=1\n").is_err(), "{bad:?}");
        }
        let too_long = format!("/{}", "x".repeat(200));
        assert!(notify(OsStr::new(&too_long), "READY=1\n").is_err());
    }
}
