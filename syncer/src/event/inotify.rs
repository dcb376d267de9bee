//! Zero-copy parser of the inotify read buffer: `&[u8]` in, `RawEvent<'buf>` out.
//!
//! Layout (inotify(7)): a 16-byte header `{ i32 wd, u32 mask, u32 cookie, u32 len }` followed by
//! `len` bytes of NUL-padded name. Records are only 4-byte aligned in general, so fields are read
//! with `from_ne_bytes` on byte slices (unaligned loads), never by casting pointers.

/// Size of `struct inotify_event` without the name.
pub const HEADER_LEN: usize = 16;

/// One kernel record, borrowing its name from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'buf> {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    /// The entry name inside the watched directory, without NUL padding; empty for events on
    /// the directory itself and for IN_Q_OVERFLOW.
    pub name: &'buf [u8],
}

/// Iterator over the records in one `read(2)` result.
pub struct Records<'buf> {
    buf: &'buf [u8],
    pos: usize,
}

impl<'buf> Records<'buf> {
    pub fn new(buf: &'buf [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes left unparsed because they do not form a whole record. The kernel only returns
    /// whole records, so anything here means a corrupt buffer: the reader counts it as an
    /// error and reconciles the whole tree.
    pub fn trailing_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&buf[at..at + 4]);
    u32::from_ne_bytes(word)
}

impl<'buf> Iterator for Records<'buf> {
    type Item = RawEvent<'buf>;

    fn next(&mut self) -> Option<RawEvent<'buf>> {
        let rest = &self.buf[self.pos..];
        if rest.len() < HEADER_LEN {
            return None;
        }
        let name_len = u32_at(rest, 12) as usize;
        let record_len = HEADER_LEN.checked_add(name_len)?;
        if rest.len() < record_len {
            return None;
        }
        let padded = &rest[HEADER_LEN..record_len];
        let name_end = padded.iter().position(|&b| b == 0).unwrap_or(padded.len());
        self.pos += record_len;
        Some(RawEvent {
            wd: u32_at(rest, 0) as i32,
            mask: u32_at(rest, 4),
            cookie: u32_at(rest, 8),
            name: &padded[..name_end],
        })
    }
}

/// Encodes records the way the kernel does (NUL-padded to 16 bytes); for tests and benches.
pub fn encode(out: &mut Vec<u8>, wd: i32, mask: u32, cookie: u32, name: &[u8]) {
    let padded_len = if name.is_empty() {
        0
    } else {
        (name.len() + 1).div_ceil(16) * 16
    };
    out.extend_from_slice(&wd.to_ne_bytes());
    out.extend_from_slice(&mask.to_ne_bytes());
    out.extend_from_slice(&cookie.to_ne_bytes());
    out.extend_from_slice(&(padded_len as u32).to_ne_bytes());
    out.extend_from_slice(name);
    out.resize(out.len() + padded_len - name.len(), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_with_padding_and_empty_names() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, libc::IN_CREATE, 0, b"a");
        encode(&mut buf, 2, libc::IN_MOVED_FROM, 77, b"exactly-16-bytes");
        encode(&mut buf, 3, libc::IN_DELETE_SELF, 0, b"");
        encode(&mut buf, -1, libc::IN_Q_OVERFLOW, 0, b"");
        let records: Vec<_> = Records::new(&buf).collect();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].name, b"a");
        assert_eq!(records[1].name, b"exactly-16-bytes");
        assert_eq!(records[1].cookie, 77);
        assert_eq!(records[2].name, b"");
        assert_eq!(records[3].wd, -1);
        assert_eq!(records[3].mask, libc::IN_Q_OVERFLOW);
    }

    #[test]
    fn names_keep_any_bytes_but_nul() {
        let mut buf = Vec::new();
        let odd: &[u8] = b"new\nline \xff\xfe";
        encode(&mut buf, 5, libc::IN_CLOSE_WRITE, 0, odd);
        let event = Records::new(&buf).next().unwrap();
        assert_eq!(event.name, odd);
    }

    #[test]
    fn truncated_record_stops_and_is_reported() {
        let mut buf = Vec::new();
        encode(&mut buf, 1, libc::IN_CREATE, 0, b"name");
        encode(&mut buf, 1, libc::IN_CREATE, 0, b"second");
        buf.truncate(buf.len() - 3);
        let mut records = Records::new(&buf);
        assert!(records.next().is_some());
        assert!(records.next().is_none());
        assert_eq!(records.trailing_bytes(), 16 + 13);
    }

    #[test]
    fn unaligned_buffer_parses() {
        let mut buf = vec![0u8];
        encode(&mut buf, 9, libc::IN_ATTRIB, 3, b"x");
        let records: Vec<_> = Records::new(&buf[1..]).collect();
        assert_eq!(records[0].wd, 9);
        assert_eq!(records[0].cookie, 3);
    }

    mod prop {
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::super::*;

        /// Walks every record, checking that each step consumes at least a header and the
        /// name (so the walk ends) and that `trailing_bytes` is what is left.
        fn walk(buf: &[u8]) -> (Vec<RawEvent<'_>>, usize) {
            let mut records = Records::new(buf);
            let mut out = Vec::new();
            let mut left = buf.len();
            while let Some(event) = records.next() {
                let now = records.trailing_bytes();
                assert!(now + HEADER_LEN + event.name.len() <= left, "no progress");
                assert!(!event.name.contains(&0));
                left = now;
                out.push(event);
            }
            assert_eq!(records.trailing_bytes(), left);
            (out, left)
        }

        type Rec = (i32, u32, u32, Vec<u8>);

        /// Names as the kernel gives them: any bytes but NUL, empty for the directory itself.
        fn record() -> impl Strategy<Value = Rec> {
            (
                any::<i32>(),
                any::<u32>(),
                any::<u32>(),
                vec(1u8..=255, 0..40),
            )
        }

        /// The buffer and where each record starts.
        fn encoded(records: &[Rec]) -> (Vec<u8>, Vec<usize>) {
            let mut buf = Vec::new();
            let mut starts = Vec::new();
            for (wd, mask, cookie, name) in records {
                starts.push(buf.len());
                encode(&mut buf, *wd, *mask, *cookie, name);
            }
            (buf, starts)
        }

        fn same(parsed: &RawEvent<'_>, rec: &Rec) -> bool {
            (parsed.wd, parsed.mask, parsed.cookie, parsed.name)
                == (rec.0, rec.1, rec.2, &rec.3[..])
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_inotify_any_bytes_never_panic(buf in vec(any::<u8>(), 0..2048)) {
                let (_, left) = walk(&buf);
                // What is left cannot hold the record its header announces.
                if left >= HEADER_LEN {
                    let name_len = u32_at(&buf, buf.len() - left + 12) as usize;
                    prop_assert!(HEADER_LEN + name_len > left);
                }
            }

            #[test]
            fn prop_inotify_encoded_records_round_trip(records in vec(record(), 0..20)) {
                let (buf, _) = encoded(&records);
                let (parsed, left) = walk(&buf);
                prop_assert_eq!(left, 0);
                prop_assert_eq!(parsed.len(), records.len());
                for (p, r) in parsed.iter().zip(&records) {
                    prop_assert!(same(p, r), "{:?} vs {:?}", p, r);
                }
            }

            /// A buffer cut anywhere keeps the whole records before the cut and reports the
            /// torn one as trailing bytes.
            #[test]
            fn prop_inotify_truncated_buffer_keeps_whole_records(
                records in vec(record(), 1..10),
                cut in any::<Index>(),
            ) {
                let (buf, mut starts) = encoded(&records);
                starts.push(buf.len());
                let cut = cut.index(buf.len() + 1);
                let whole = starts[1..].iter().filter(|&&end| end <= cut).count();
                let (parsed, left) = walk(&buf[..cut]);
                prop_assert_eq!(parsed.len(), whole);
                prop_assert_eq!(left, cut - starts[whole]);
            }

            /// A corrupt `len` (zero, unaligned, past the buffer, near u32::MAX) never panics,
            /// and the records before it parse as before.
            #[test]
            fn prop_inotify_bogus_len_never_panics(
                records in vec(record(), 1..10),
                which in any::<Index>(),
                len in prop_oneof![
                    Just(0u32), Just(1), Just(15), Just(u32::MAX), Just(u32::MAX - 15),
                    0u32..4096, any::<u32>(),
                ],
            ) {
                let (mut buf, starts) = encoded(&records);
                let k = which.index(records.len());
                buf[starts[k] + 12..starts[k] + 16].copy_from_slice(&len.to_ne_bytes());
                let (parsed, _) = walk(&buf);
                prop_assert!(parsed.len() >= k);
                for (p, r) in parsed.iter().zip(&records).take(k) {
                    prop_assert!(same(p, r));
                }
            }
        }
    }
}
