//! Socket plumbing the measuring ends share: batches of message headers for `sendmmsg` /
//! `recvmmsg` (receive buffers: `relay_host::sock`).

/// `batch` message headers for sendmmsg/recvmmsg, each pointing at its own `slot`-byte piece of
/// `bufs`. The iovecs are returned too: the headers point into them, so they must live as long
/// (and `bufs` must not move or be resized while the headers are used).
pub fn mmsg_slots(
    bufs: &mut [u8],
    slot: usize,
    batch: usize,
) -> (Vec<libc::iovec>, Vec<libc::mmsghdr>) {
    assert!(
        bufs.len() >= slot * batch,
        "buffer too small for {batch} slots of {slot} bytes"
    );
    let mut iov: Vec<libc::iovec> = (0..batch)
        .map(|i| libc::iovec {
            iov_base: bufs[i * slot..].as_mut_ptr().cast(),
            iov_len: slot,
        })
        .collect();
    let hdrs = (0..batch)
        .map(|i| {
            // SAFETY: an all-zero mmsghdr is valid; the iovec it points at lives in the returned
            // Vec, whose heap storage does not move with the Vec.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = &mut iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    (iov, hdrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_point_at_their_own_piece_of_the_buffer() {
        let mut bufs = vec![0u8; 3 * 100];
        let base = bufs.as_ptr() as usize;
        let (iov, hdrs) = mmsg_slots(&mut bufs, 100, 3);
        for (i, h) in hdrs.iter().enumerate() {
            assert_eq!(h.msg_hdr.msg_iovlen, 1);
            assert!(std::ptr::eq(h.msg_hdr.msg_iov, &iov[i]));
            assert_eq!(iov[i].iov_base as usize, base + i * 100);
            assert_eq!(iov[i].iov_len, 100);
        }
    }
}
