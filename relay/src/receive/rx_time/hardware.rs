//! NIC hardware receive stamps (`relay receive --hw-timestamps`): asks the interface's driver to
//! stamp every received packet with the NIC's clock (SIOCSHWTSTAMP, `rx_filter` ALL, transmit
//! stamps left as they are off). The stamps then arrive two ways: with each datagram on the
//! socket (SO_TIMESTAMPING raw hardware, [`super::kernel`]) and in the tc program's records
//! (`__sk_buff->hwtstamp`); the split takes them as the first stamp ([`NicSource::Hardware`]).
//! The NIC's clock is taken as CLOCK_REALTIME: keep it on the system clock in UTC
//! (`phc2sys -s CLOCK_REALTIME -c <iface> -O 0`), as DEPLOY.md says.
//!
//! [`NicSource::Hardware`]: relay_core::record::NicSource::Hardware

use std::os::fd::AsRawFd;

use relay_core::record::summary::HardwareStamps;

/// An `ifreq` naming `iface` (nothing else set), for the interface ioctls.
pub fn ifreq(iface: &str) -> std::io::Result<libc::ifreq> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains('\0') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{iface:?} is not an interface name (1-15 bytes)"),
        ));
    }
    // SAFETY: an all-zero ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// Turns hardware receive stamping on for every packet on `iface`; returns the filter the
/// driver granted (it may grant a wider one than asked).
fn enable(iface: &str) -> std::io::Result<libc::c_int> {
    let mut config = libc::hwtstamp_config {
        flags: 0,
        tx_type: libc::HWTSTAMP_TX_OFF as libc::c_int,
        rx_filter: libc::HWTSTAMP_FILTER_ALL as libc::c_int,
    };
    let mut req = ifreq(iface)?;
    req.ifr_ifru.ifru_data = (&mut config as *mut libc::hwtstamp_config).cast();
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: SIOCSHWTSTAMP reads the ifreq and the config it points at and writes the granted
    // config back into it; both live until the call returns.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSHWTSTAMP as _, &mut req) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(config.rx_filter)
}

/// `--hw-timestamps` on `iface`: enables them and says how it went, on stderr and in the
/// summary's `hardware_timestamps`; never fatal (the other stamps carry on).
pub fn request(iface: &str) -> HardwareStamps {
    let granted = enable(iface);
    let report = HardwareStamps {
        interface: iface.to_string(),
        enabled: matches!(granted, Ok(f) if f == libc::HWTSTAMP_FILTER_ALL as libc::c_int),
        rx_filter: granted.as_ref().ok().map(|&f| f as u32),
        error: match &granted {
            Ok(f) if *f == libc::HWTSTAMP_FILTER_ALL as libc::c_int => None,
            Ok(f) => Some(format!(
                "the driver granted receive filter {f}, not ALL (1): relay datagrams are not stamped"
            )),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Some(format!(
                "{iface} cannot stamp in hardware (SIOCSHWTSTAMP: {e}; veth and lo never can)"
            )),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Some(format!(
                "enabling hardware stamps on {iface} needs CAP_NET_ADMIN (SIOCSHWTSTAMP: {e})"
            )),
            Err(e) => Some(format!("SIOCSHWTSTAMP on {iface}: {e}")),
        },
    };
    match &report.error {
        None => eprintln!("receiver: NIC hardware receive stamps on {iface}"),
        Some(why) => eprintln!(
            "receiver: no NIC hardware stamps: {why}; carrying on with eBPF and software stamps"
        ),
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_without_a_hardware_clock_are_refused_with_the_reason() {
        // lo has no hardware clock: EOPNOTSUPP as root, EPERM without CAP_NET_ADMIN.
        let lo = request("lo");
        assert!(!lo.enabled && lo.rx_filter.is_none(), "{lo:?}");
        let why = lo.error.unwrap();
        assert!(
            why.contains("cannot stamp in hardware") || why.contains("CAP_NET_ADMIN"),
            "{why}"
        );
        let missing = request("no-such-if0").error.unwrap();
        assert!(missing.contains("no-such-if0"), "{missing}");
        assert!(request(&"x".repeat(16))
            .error
            .unwrap()
            .contains("not an interface name"));
    }
}
