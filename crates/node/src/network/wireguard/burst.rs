//! Encrypted datagrams laid end to end for one UDP segmentation-offload send (`UDP_SEGMENT`):
//! one destination, every datagram of one size but the last, which may be shorter. The kernel
//! cuts the buffer back into datagrams, so a whole TCP burst leaves in one system call.

use std::net::SocketAddr;

/// Largest payload of one segmented send: the UDP length field bounds the whole.
pub(crate) const MAX_BYTES: usize = 65_000;
/// Room kept after the datagrams for the next one: an IP packet of the largest MTU we
/// configure plus WireGuard's overhead and padding.
pub(crate) const MAX_DATAGRAM: usize = 2048;

/// A buffer of datagrams to one destination, sent in one go.
pub(crate) struct Burst {
    buf: Vec<u8>,
    len: usize,
    segment: usize,
    count: usize,
    to: Option<SocketAddr>,
    /// A shorter datagram ended the burst: the next one starts another.
    closed: bool,
    max_segments: usize,
}

/// What [`Burst::commit`] needs the caller to do before the next datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing: the datagram joined the burst.
    Carry,
    /// Send the burst now (it is full or closed); the datagram is part of it.
    Send,
    /// Send the first `n` bytes of the burst, then [`Burst::restart`]: the datagram was larger
    /// than the burst's segments and starts the next one.
    SendBefore(usize),
}

impl Burst {
    /// An empty burst that holds at most `max_segments` datagrams.
    pub(crate) fn new(max_segments: usize) -> Self {
        Self {
            buf: vec![0; MAX_BYTES + MAX_DATAGRAM],
            len: 0,
            segment: 0,
            count: 0,
            to: None,
            closed: false,
            max_segments: max_segments.max(1),
        }
    }

    /// Whether a datagram to `to` cannot join the burst, which must be sent first.
    pub(crate) fn must_send_before(&self, to: SocketAddr) -> bool {
        self.count > 0 && (self.to != Some(to) || self.closed)
    }

    /// Where the next datagram is to be written (at least [`MAX_DATAGRAM`] bytes).
    pub(crate) fn room(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Account for a datagram of `n` bytes to `to` just written at [`Burst::room`].
    pub(crate) fn commit(&mut self, to: SocketAddr, n: usize) -> Next {
        debug_assert!(!self.must_send_before(to));
        if self.count > 0 && n > self.segment {
            return Next::SendBefore(self.len);
        }
        if self.count == 0 {
            self.segment = n;
            self.to = Some(to);
        } else if n < self.segment {
            self.closed = true;
        }
        self.len += n;
        self.count += 1;
        if self.closed || self.count >= self.max_segments || self.len + MAX_DATAGRAM > MAX_BYTES {
            Next::Send
        } else {
            Next::Carry
        }
    }

    /// Move the datagram of `n` bytes written after the first `sent` bytes to the front, as the
    /// first of a new burst (after [`Next::SendBefore`]).
    pub(crate) fn restart(&mut self, to: SocketAddr, sent: usize, n: usize) -> Next {
        self.buf.copy_within(sent..sent + n, 0);
        self.clear();
        self.commit(to, n)
    }

    /// The datagrams, their destination and segment size (`None` for a single datagram);
    /// `None` when empty.
    pub(crate) fn contents(&self) -> Option<(&[u8], SocketAddr, Option<usize>)> {
        let to = self.to.filter(|_| self.count > 0)?;
        Some((&self.buf[..self.len], to, (self.count > 1).then_some(self.segment)))
    }

    /// Forget the datagrams (after sending them).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.count = 0;
        self.closed = false;
        self.to = None;
    }

    /// Send no more than `n` datagrams at once (the kernel refused more).
    pub(crate) fn limit(&mut self, n: usize) {
        self.max_segments = n.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// Write a datagram of `n` bytes of `fill` and commit it.
    fn put(b: &mut Burst, to: SocketAddr, n: usize, fill: u8) -> Next {
        b.room()[..n].fill(fill);
        b.commit(to, n)
    }

    #[test]
    fn equal_datagrams_then_a_shorter_one_make_one_send_with_their_segment_size() {
        let mut b = Burst::new(64);
        assert_eq!(put(&mut b, at(1), 1456, 1), Next::Carry);
        assert_eq!(put(&mut b, at(1), 1456, 2), Next::Carry);
        assert_eq!(put(&mut b, at(1), 200, 3), Next::Send, "a shorter datagram ends the burst");
        let (bytes, to, segment) = b.contents().unwrap();
        assert_eq!((bytes.len(), to, segment), (1456 * 2 + 200, at(1), Some(1456)));
        assert!(bytes[..1456].iter().all(|&x| x == 1) && bytes[1456..2912].iter().all(|&x| x == 2));
        assert!(bytes[2912..].iter().all(|&x| x == 3));
        assert!(b.must_send_before(at(1)), "nothing may follow the shorter datagram");
        b.clear();
        assert!(b.contents().is_none());
    }

    #[test]
    fn a_larger_datagram_is_moved_to_the_front_of_the_next_burst() {
        let mut b = Burst::new(64);
        put(&mut b, at(1), 100, 7);
        assert_eq!(put(&mut b, at(1), 300, 9), Next::SendBefore(100));
        let (bytes, _, segment) = b.contents().unwrap();
        assert_eq!((bytes.len(), segment), (100, None), "only the first datagram is sent");
        assert_eq!(b.restart(at(1), 100, 300), Next::Carry);
        let (bytes, _, segment) = b.contents().unwrap();
        assert_eq!((bytes.len(), segment), (300, None));
        assert!(bytes.iter().all(|&x| x == 9));
    }

    #[test]
    fn another_destination_or_a_full_burst_sends_first() {
        let mut b = Burst::new(3);
        put(&mut b, at(1), 1000, 0);
        assert!(b.must_send_before(at(2)));
        assert!(!b.must_send_before(at(1)));
        put(&mut b, at(1), 1000, 0);
        assert_eq!(put(&mut b, at(1), 1000, 0), Next::Send, "three is the limit");
        let mut b = Burst::new(1000);
        let mut n = 0;
        while put(&mut b, at(1), 1456, 0) == Next::Carry {
            n += 1;
        }
        assert!(b.contents().unwrap().0.len() <= MAX_BYTES, "{n} datagrams");
        assert!(b.room().len() >= MAX_DATAGRAM);
    }
}
