//! Zero-copy parser of the fanotify read buffer: `&[u8]` in, `Event<'buf>` out, each with an
//! iterator over its info records (`InfoRecord<'buf>`, handle and name borrowed).
//!
//! Layout (fanotify(7), uapi/linux/fanotify.h): `struct fanotify_event_metadata` { u32
//! event_len, u8 vers, u8 reserved, u16 metadata_len, u64 mask, i32 fd, i32 pid } (24 bytes),
//! then info records up to `event_len`, each starting with { u8 info_type, u8 pad, u16 len }.
//! FID-type records continue with the fsid (2 x i32), a `struct file_handle` { u32 handle_bytes,
//! i32 handle_type, bytes } and, for the *_NAME types, a NUL-terminated name padded to 4 bytes.
//! Events are not 8-byte aligned in general, so fields are read with `from_ne_bytes`.
//! Any length that does not fit stops the walk: a corrupt buffer never panics.

/// `FAN_EVENT_METADATA_LEN`: size of the metadata of version 3.
pub const METADATA_LEN: usize = 24;
/// `FANOTIFY_METADATA_VERSION` the layout above describes.
pub const METADATA_VERSION: u8 = 3;
/// Info record header: info_type, pad, len.
const INFO_HEADER_LEN: usize = 4;
/// Header + fsid + file_handle header: the smallest FID-type record.
const FID_FIXED_LEN: usize = INFO_HEADER_LEN + 8 + 8;

/// Info record types (uapi/linux/fanotify.h, FAN_EVENT_INFO_TYPE_*).
pub const INFO_FID: u8 = 1;
pub const INFO_DFID_NAME: u8 = 2;
pub const INFO_DFID: u8 = 3;
pub const INFO_OLD_DFID_NAME: u8 = 10;
pub const INFO_NEW_DFID_NAME: u8 = 12;

/// What an info record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoKind {
    /// The object itself (FAN_REPORT_FID / TARGET_FID).
    Fid,
    /// The parent directory (or the directory itself) and no name.
    Dfid,
    /// The parent directory and the entry name ("." for an event on the directory itself).
    DfidName,
    /// FAN_RENAME: where the entry was.
    OldDfidName,
    /// FAN_RENAME: where the entry is now.
    NewDfidName,
    /// A record this parser does not decode (pidfd, error, future types): handle and name
    /// are empty.
    Other(u8),
}

impl InfoKind {
    fn from_type(info_type: u8) -> Self {
        match info_type {
            INFO_FID => Self::Fid,
            INFO_DFID_NAME => Self::DfidName,
            INFO_DFID => Self::Dfid,
            INFO_OLD_DFID_NAME => Self::OldDfidName,
            INFO_NEW_DFID_NAME => Self::NewDfidName,
            other => Self::Other(other),
        }
    }

    fn has_name(self) -> bool {
        matches!(self, Self::DfidName | Self::OldDfidName | Self::NewDfidName)
    }
}

/// One info record, borrowing from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoRecord<'buf> {
    pub kind: InfoKind,
    /// `__kernel_fsid_t` of the object's filesystem.
    pub fsid: [i32; 2],
    pub handle_type: i32,
    /// The opaque handle bytes, as `name_to_handle_at(2)` would produce them.
    pub handle: &'buf [u8],
    /// The entry name without its NUL; empty for records without a name.
    pub name: &'buf [u8],
}

/// One event: metadata plus its info records (not yet walked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'buf> {
    /// Event bits; merged events carry several (e.g. FAN_CREATE | FAN_CLOSE_WRITE).
    pub mask: u64,
    /// FAN_NOFD (-1) in FID mode.
    pub fd: i32,
    pub pid: i32,
    /// The bytes after the metadata, up to `event_len`.
    info: &'buf [u8],
}

impl<'buf> Event<'buf> {
    /// Iterator over the info records, walked by their `len`.
    pub fn records(&self) -> InfoRecords<'buf> {
        InfoRecords {
            buf: self.info,
            pos: 0,
        }
    }

    /// The first record of `kind`, if any.
    pub fn record(&self, kind: InfoKind) -> Option<InfoRecord<'buf>> {
        self.records().find(|r| r.kind == kind)
    }
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&buf[at..at + 8]);
    u64::from_ne_bytes(word)
}

/// Iterator over the events in one `read(2)` result.
pub struct Events<'buf> {
    buf: &'buf [u8],
    pos: usize,
}

impl<'buf> Events<'buf> {
    pub fn new(buf: &'buf [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes left unparsed because they do not form a whole, valid event. The kernel only
    /// returns whole events, so anything here means a corrupt buffer; callers count it.
    pub fn trailing_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl<'buf> Iterator for Events<'buf> {
    type Item = Event<'buf>;

    fn next(&mut self) -> Option<Event<'buf>> {
        let rest = &self.buf[self.pos..];
        if rest.len() < METADATA_LEN {
            return None;
        }
        let event_len = u32_at(rest, 0) as usize;
        let vers = rest[4];
        let metadata_len = u16_at(rest, 6) as usize;
        // A different version means a different layout (fanotify(7): check `vers`).
        if vers != METADATA_VERSION
            || metadata_len < METADATA_LEN
            || event_len < metadata_len
            || event_len > rest.len()
        {
            return None;
        }
        self.pos += event_len;
        Some(Event {
            mask: u64_at(rest, 8),
            fd: u32_at(rest, 16) as i32,
            pid: u32_at(rest, 20) as i32,
            info: &rest[metadata_len..event_len],
        })
    }
}

/// Iterator over the info records of one event.
pub struct InfoRecords<'buf> {
    buf: &'buf [u8],
    pos: usize,
}

impl<'buf> InfoRecords<'buf> {
    /// Bytes of the event left unwalked (0 after a clean walk).
    pub fn trailing_bytes(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl<'buf> Iterator for InfoRecords<'buf> {
    type Item = InfoRecord<'buf>;

    fn next(&mut self) -> Option<InfoRecord<'buf>> {
        let rest = &self.buf[self.pos..];
        if rest.len() < INFO_HEADER_LEN {
            return None;
        }
        let kind = InfoKind::from_type(rest[0]);
        let len = u16_at(rest, 2) as usize;
        if len < INFO_HEADER_LEN || len > rest.len() {
            return None;
        }
        let record = &rest[..len];
        let parsed = match kind {
            InfoKind::Other(_) => InfoRecord {
                kind,
                fsid: [0, 0],
                handle_type: 0,
                handle: &[],
                name: &[],
            },
            _ => parse_fid(kind, record)?,
        };
        self.pos += len;
        Some(parsed)
    }
}

/// Decodes a FID-type record; `None` when its handle does not fit its `len`.
fn parse_fid(kind: InfoKind, record: &[u8]) -> Option<InfoRecord<'_>> {
    if record.len() < FID_FIXED_LEN {
        return None;
    }
    let handle_bytes = u32_at(record, 12) as usize;
    let handle_end = FID_FIXED_LEN.checked_add(handle_bytes)?;
    if handle_end > record.len() {
        return None;
    }
    let name = if kind.has_name() {
        let tail = &record[handle_end..];
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    } else {
        &[]
    };
    Some(InfoRecord {
        kind,
        fsid: [u32_at(record, 4) as i32, u32_at(record, 8) as i32],
        handle_type: u32_at(record, 16) as i32,
        handle: &record[FID_FIXED_LEN..handle_end],
        name,
    })
}

/// One info record to encode (tests and benches).
#[derive(Debug, Clone, Copy)]
pub struct EncodeRecord<'a> {
    pub info_type: u8,
    pub fsid: [i32; 2],
    pub handle_type: i32,
    pub handle: &'a [u8],
    /// Written NUL-terminated for the *_NAME types; ignored otherwise.
    pub name: &'a [u8],
}

/// Encodes one event the way the kernel does: metadata, then records each padded to 4 bytes
/// (FANOTIFY_EVENT_ALIGN in fs/notify/fanotify/fanotify_user.c). For tests and benches.
pub fn encode(out: &mut Vec<u8>, mask: u64, pid: i32, records: &[EncodeRecord<'_>]) {
    let start = out.len();
    out.extend_from_slice(&[0; METADATA_LEN]);
    for r in records {
        let rec_start = out.len();
        out.extend_from_slice(&[r.info_type, 0, 0, 0]);
        out.extend_from_slice(&r.fsid[0].to_ne_bytes());
        out.extend_from_slice(&r.fsid[1].to_ne_bytes());
        out.extend_from_slice(&(r.handle.len() as u32).to_ne_bytes());
        out.extend_from_slice(&r.handle_type.to_ne_bytes());
        out.extend_from_slice(r.handle);
        if InfoKind::from_type(r.info_type).has_name() {
            out.extend_from_slice(r.name);
            out.push(0);
        }
        out.resize(rec_start + (out.len() - rec_start).next_multiple_of(4), 0);
        let rec_len = (out.len() - rec_start) as u16;
        out[rec_start + 2..rec_start + 4].copy_from_slice(&rec_len.to_ne_bytes());
    }
    let event_len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&event_len.to_ne_bytes());
    out[start + 4] = METADATA_VERSION;
    out[start + 6..start + 8].copy_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
    out[start + 8..start + 16].copy_from_slice(&mask.to_ne_bytes());
    out[start + 16..start + 20].copy_from_slice(&(-1i32).to_ne_bytes());
    out[start + 20..start + 24].copy_from_slice(&pid.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{
        FAN_CLOSE_WRITE, FAN_CREATE, FAN_DELETE_SELF, FAN_MODIFY, FAN_ONDIR, FAN_Q_OVERFLOW,
        FAN_RENAME,
    };

    const FSID: [i32; 2] = [0x1234, -7];
    const DIR: &[u8] = &[1, 2, 3, 4, 5, 6, 7, 8];
    const OTHER_DIR: &[u8] = &[9, 9, 9, 9, 1, 0, 0, 0];

    fn rec<'a>(info_type: u8, handle: &'a [u8], name: &'a [u8]) -> EncodeRecord<'a> {
        EncodeRecord {
            info_type,
            fsid: FSID,
            handle_type: 1,
            handle,
            name,
        }
    }

    #[test]
    fn dfid_name_event_with_odd_name_lengths() {
        let mut buf = Vec::new();
        for name in [&b"a"[..], b"ab", b"abc", b"abcd", b"abcde"] {
            encode(&mut buf, FAN_CREATE, 42, &[rec(INFO_DFID_NAME, DIR, name)]);
        }
        let events: Vec<_> = Events::new(&buf).collect();
        assert_eq!(events.len(), 5);
        for (event, name) in events
            .iter()
            .zip([&b"a"[..], b"ab", b"abc", b"abcd", b"abcde"])
        {
            assert_eq!(event.mask, FAN_CREATE);
            assert_eq!(event.pid, 42);
            assert_eq!(event.fd, -1);
            let records: Vec<_> = event.records().collect();
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].kind, InfoKind::DfidName);
            assert_eq!(records[0].fsid, FSID);
            assert_eq!(records[0].handle_type, 1);
            assert_eq!(records[0].handle, DIR);
            assert_eq!(records[0].name, name);
        }
    }

    #[test]
    fn several_records_walked_by_length_including_dot_and_no_name() {
        let mut buf = Vec::new();
        // DFID_NAME_TARGET on a directory itself: ".", then the dir's own FID, then a DFID.
        let odd_handle: &[u8] = &[7, 7, 7, 7, 7]; // 5 bytes: forces padding
        encode(
            &mut buf,
            FAN_DELETE_SELF | FAN_ONDIR,
            1,
            &[
                rec(INFO_DFID_NAME, DIR, b"."),
                rec(INFO_FID, odd_handle, b"ignored"),
                rec(INFO_DFID, OTHER_DIR, b""),
            ],
        );
        let event = Events::new(&buf).next().unwrap();
        assert_eq!(event.mask, FAN_DELETE_SELF | FAN_ONDIR);
        let mut records = event.records();
        let first = records.next().unwrap();
        assert_eq!((first.kind, first.name), (InfoKind::DfidName, &b"."[..]));
        let second = records.next().unwrap();
        assert_eq!((second.kind, second.handle), (InfoKind::Fid, odd_handle));
        assert_eq!(second.name, b"");
        let third = records.next().unwrap();
        assert_eq!(third.kind, InfoKind::Dfid);
        assert_eq!((third.handle, third.name), (OTHER_DIR, &b""[..]));
        assert!(records.next().is_none());
        assert_eq!(records.trailing_bytes(), 0);
        assert_eq!(event.record(InfoKind::Dfid).unwrap().handle, OTHER_DIR);
    }

    #[test]
    fn rename_carries_old_and_new_in_one_event() {
        let mut buf = Vec::new();
        encode(
            &mut buf,
            FAN_RENAME | FAN_ONDIR,
            5,
            &[
                rec(INFO_OLD_DFID_NAME, DIR, b"old name"),
                rec(INFO_NEW_DFID_NAME, OTHER_DIR, b"n"),
            ],
        );
        let event = Events::new(&buf).next().unwrap();
        let old = event.record(InfoKind::OldDfidName).unwrap();
        let new = event.record(InfoKind::NewDfidName).unwrap();
        assert_eq!((old.handle, old.name), (DIR, &b"old name"[..]));
        assert_eq!((new.handle, new.name), (OTHER_DIR, &b"n"[..]));
    }

    #[test]
    fn merged_bits_and_overflow_without_records() {
        let mut buf = Vec::new();
        let merged = FAN_CREATE | FAN_MODIFY | FAN_CLOSE_WRITE;
        encode(&mut buf, merged, 3, &[rec(INFO_DFID_NAME, DIR, b"f")]);
        encode(&mut buf, FAN_Q_OVERFLOW, 0, &[]);
        let events: Vec<_> = Events::new(&buf).collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].mask, merged);
        assert_eq!(events[1].mask, FAN_Q_OVERFLOW);
        assert_eq!(events[1].records().count(), 0);
    }

    #[test]
    fn unknown_record_types_are_skipped_by_length() {
        let mut buf = Vec::new();
        encode(&mut buf, FAN_CREATE, 0, &[rec(INFO_DFID_NAME, DIR, b"x")]);
        // Splice an 8-byte pidfd-like record (type 4) in front of the DFID_NAME record.
        let mut patched = buf[..METADATA_LEN].to_vec();
        patched.extend_from_slice(&[4, 0, 8, 0, 0xff, 0xff, 0xff, 0xff]);
        patched.extend_from_slice(&buf[METADATA_LEN..]);
        let len = patched.len() as u32;
        patched[..4].copy_from_slice(&len.to_ne_bytes());
        let event = Events::new(&patched).next().unwrap();
        let kinds: Vec<_> = event.records().map(|r| r.kind).collect();
        assert_eq!(kinds, [InfoKind::Other(4), InfoKind::DfidName]);
        assert_eq!(event.record(InfoKind::DfidName).unwrap().name, b"x");
    }

    #[test]
    fn truncated_buffer_stops_and_is_reported() {
        let mut buf = Vec::new();
        encode(&mut buf, FAN_CREATE, 0, &[rec(INFO_DFID_NAME, DIR, b"one")]);
        let first_len = buf.len();
        encode(&mut buf, FAN_CREATE, 0, &[rec(INFO_DFID_NAME, DIR, b"two")]);
        for cut in 0..buf.len() - first_len {
            let short = &buf[..buf.len() - 1 - cut];
            let mut events = Events::new(short);
            assert!(events.next().is_some());
            assert!(events.next().is_none());
            assert_eq!(events.trailing_bytes(), short.len() - first_len);
        }
    }

    #[test]
    fn bogus_lengths_stop_without_panic() {
        let mut good = Vec::new();
        encode(
            &mut good,
            FAN_CREATE,
            0,
            &[rec(INFO_DFID_NAME, DIR, b"name")],
        );
        // Every single-byte corruption of every position parses without panicking.
        for at in 0..good.len() {
            for value in [0u8, 1, 3, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = value;
                for event in Events::new(&bad) {
                    for record in event.records() {
                        assert!(record.handle.len() <= bad.len());
                    }
                }
            }
        }
        // Specific cases: event_len below the metadata, record len 0, handle past the record.
        let mut bad = good.clone();
        bad[..4].copy_from_slice(&10u32.to_ne_bytes());
        assert!(Events::new(&bad).next().is_none());
        let mut bad = good.clone();
        bad[METADATA_LEN + 2..METADATA_LEN + 4].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(Events::new(&bad).next().unwrap().records().count(), 0);
        let mut bad = good.clone();
        bad[METADATA_LEN + 12..METADATA_LEN + 16].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(Events::new(&bad).next().unwrap().records().count(), 0);
        let mut bad = good;
        bad[4] = 2; // unknown metadata version
        assert!(Events::new(&bad).next().is_none());
    }

    #[test]
    fn unaligned_buffer_parses() {
        let mut buf = vec![0u8];
        encode(
            &mut buf,
            FAN_CREATE | FAN_ONDIR,
            9,
            &[rec(INFO_DFID_NAME, DIR, b"d")],
        );
        let event = Events::new(&buf[1..]).next().unwrap();
        assert_eq!(event.mask, FAN_CREATE | FAN_ONDIR);
        assert_eq!(event.pid, 9);
        assert_eq!(event.record(InfoKind::DfidName).unwrap().name, b"d");
    }

    mod prop {
        use proptest::collection::vec;
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::super::*;

        type Walked<'b> = (Event<'b>, Vec<InfoRecord<'b>>);

        /// Walks every event and every info record, checking that each step consumes at least
        /// a header (so both walks end) and that handles and names lie inside their event.
        fn walk(buf: &[u8]) -> (Vec<Walked<'_>>, usize) {
            let mut events = Events::new(buf);
            let mut out = Vec::new();
            let mut left = buf.len();
            while let Some(event) = events.next() {
                let now = events.trailing_bytes();
                assert!(now + METADATA_LEN <= left, "no progress over events");
                let mut records = event.records();
                let info_len = records.trailing_bytes();
                assert!(info_len <= left - now - METADATA_LEN);
                let mut rec_left = info_len;
                let mut parsed = Vec::new();
                while let Some(record) = records.next() {
                    let rec_now = records.trailing_bytes();
                    assert!(
                        rec_now + INFO_HEADER_LEN <= rec_left,
                        "no progress over records"
                    );
                    assert!(record.handle.len() + record.name.len() <= rec_left - rec_now);
                    assert!(!record.name.contains(&0));
                    rec_left = rec_now;
                    parsed.push(record);
                }
                left = now;
                out.push((event, parsed));
            }
            assert_eq!(events.trailing_bytes(), left);
            (out, left)
        }

        #[derive(Debug, Clone)]
        struct Rec {
            info_type: u8,
            fsid: [i32; 2],
            handle_type: i32,
            handle: Vec<u8>,
            name: Vec<u8>,
        }

        #[derive(Debug, Clone)]
        struct Ev {
            mask: u64,
            pid: i32,
            records: Vec<Rec>,
        }

        fn rec() -> impl Strategy<Value = Rec> {
            (
                prop_oneof![
                    Just(INFO_FID),
                    Just(INFO_DFID_NAME),
                    Just(INFO_DFID),
                    Just(INFO_OLD_DFID_NAME),
                    Just(INFO_NEW_DFID_NAME),
                    any::<u8>(),
                ],
                any::<[i32; 2]>(),
                any::<i32>(),
                vec(any::<u8>(), 0..=64),
                vec(1u8..=255, 0..40),
            )
                .prop_map(|(info_type, fsid, handle_type, handle, name)| Rec {
                    info_type,
                    fsid,
                    handle_type,
                    handle,
                    name,
                })
        }

        fn ev() -> impl Strategy<Value = Ev> {
            (any::<u64>(), any::<i32>(), vec(rec(), 0..4)).prop_map(|(mask, pid, records)| Ev {
                mask,
                pid,
                records,
            })
        }

        /// The buffer, where each event starts, and where each event's records start.
        fn encoded(events: &[Ev]) -> (Vec<u8>, Vec<usize>, Vec<Vec<usize>>) {
            let mut buf = Vec::new();
            let (mut starts, mut record_starts) = (Vec::new(), Vec::new());
            for e in events {
                let start = buf.len();
                let records: Vec<EncodeRecord<'_>> = e
                    .records
                    .iter()
                    .map(|r| EncodeRecord {
                        info_type: r.info_type,
                        fsid: r.fsid,
                        handle_type: r.handle_type,
                        handle: &r.handle,
                        name: &r.name,
                    })
                    .collect();
                encode(&mut buf, e.mask, e.pid, &records);
                let mut at = start + METADATA_LEN;
                let mut recs = Vec::new();
                while at < buf.len() {
                    recs.push(at);
                    at += usize::from(u16_at(&buf, at + 2));
                }
                starts.push(start);
                record_starts.push(recs);
            }
            (buf, starts, record_starts)
        }

        fn same_event(parsed: &Walked<'_>, e: &Ev) -> bool {
            let (event, records) = parsed;
            event.mask == e.mask
                && event.pid == e.pid
                && event.fd == -1
                && records.len() == e.records.len()
                && records.iter().zip(&e.records).all(|(p, r)| {
                    let kind = InfoKind::from_type(r.info_type);
                    let expected = match kind {
                        InfoKind::Other(_) => ([0, 0], 0, &[][..], &[][..]),
                        _ if kind.has_name() => (r.fsid, r.handle_type, &r.handle[..], &r.name[..]),
                        _ => (r.fsid, r.handle_type, &r.handle[..], &[][..]),
                    };
                    p.kind == kind && (p.fsid, p.handle_type, p.handle, p.name) == expected
                })
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_fanotify_any_bytes_never_panic(buf in vec(any::<u8>(), 0..2048)) {
                walk(&buf);
            }

            /// Random bytes behind a valid metadata header, so the info-record walk is reached.
            #[test]
            fn prop_fanotify_any_info_records_never_panic(
                info in vec(any::<u8>(), 0..512),
                metadata_len in prop_oneof![Just(METADATA_LEN as u16), any::<u16>()],
            ) {
                let mut buf = Vec::new();
                encode(&mut buf, 0, 0, &[]);
                buf.extend_from_slice(&info);
                let len = buf.len() as u32;
                buf[..4].copy_from_slice(&len.to_ne_bytes());
                buf[6..8].copy_from_slice(&metadata_len.to_ne_bytes());
                walk(&buf);
            }

            #[test]
            fn prop_fanotify_encoded_events_round_trip(events in vec(ev(), 0..8)) {
                let (buf, _, _) = encoded(&events);
                let (parsed, left) = walk(&buf);
                prop_assert_eq!(left, 0);
                prop_assert_eq!(parsed.len(), events.len());
                for (p, e) in parsed.iter().zip(&events) {
                    prop_assert!(same_event(p, e), "{:?} vs {:?}", p, e);
                    let mut records = p.0.records();
                    records.by_ref().for_each(drop);
                    prop_assert_eq!(records.trailing_bytes(), 0);
                }
            }

            /// A buffer cut anywhere keeps the whole events before the cut and reports the
            /// torn one as trailing bytes.
            #[test]
            fn prop_fanotify_truncated_buffer_keeps_whole_events(
                events in vec(ev(), 1..6),
                cut in any::<Index>(),
            ) {
                let (buf, mut starts, _) = encoded(&events);
                starts.push(buf.len());
                let cut = cut.index(buf.len() + 1);
                let whole = starts[1..].iter().filter(|&&end| end <= cut).count();
                let (parsed, left) = walk(&buf[..cut]);
                prop_assert_eq!(parsed.len(), whole);
                prop_assert_eq!(left, cut - starts[whole]);
            }

            /// One corrupt length or version field (event_len, vers, metadata_len, a record's
            /// len or handle_bytes) never panics, and the events before it parse as before.
            #[test]
            fn prop_fanotify_bogus_fields_never_panic(
                events in vec(ev(), 1..6),
                which_event in any::<Index>(),
                which_record in any::<Index>(),
                field in 0..5usize,
                value in prop_oneof![
                    Just(0u32), Just(1), Just(3), Just(4), Just(23), Just(24), Just(25),
                    Just(u32::from(u16::MAX)), Just(u32::MAX), 0u32..600, any::<u32>(),
                ],
            ) {
                let (mut buf, starts, record_starts) = encoded(&events);
                let k = which_event.index(events.len());
                let at = starts[k];
                let records = &record_starts[k];
                let rec = (!records.is_empty()).then(|| records[which_record.index(records.len())]);
                match (field, rec) {
                    (1, _) => buf[at + 4] = value as u8,
                    (2, _) => buf[at + 6..at + 8].copy_from_slice(&(value as u16).to_ne_bytes()),
                    (3, Some(r)) => {
                        buf[r + 2..r + 4].copy_from_slice(&(value as u16).to_ne_bytes());
                    }
                    (4, Some(r)) => buf[r + 12..r + 16].copy_from_slice(&value.to_ne_bytes()),
                    _ => buf[at..at + 4].copy_from_slice(&value.to_ne_bytes()),
                }
                let (parsed, _) = walk(&buf);
                prop_assert!(parsed.len() >= k);
                for (p, e) in parsed.iter().zip(&events).take(k) {
                    prop_assert!(same_event(p, e));
                }
            }
        }
    }
}
