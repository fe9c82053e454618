//! The save format: what `pvio save` writes and `pvio restore` reads, and
//! what `pvio migrate` sends ahead of the device model's stream.
//!
//! ```text
//! offset 0   "PVIOSAVE"                      magic, 8 bytes
//!        8   format version                  u32 little-endian
//!       12   header length (JSON bytes)      u32 LE, at most 1 MiB
//!       16   CRC-32 of the header            u32 LE
//!       20   reserved                        u32, zero
//!       24   stream length                   u64 LE (0 while writing, and on the wire)
//!       32   header: the domain as it runs now, JSON
//!            zero padding to the next 4 KiB
//!  stream    the device model's migration stream, to the end
//! ```
//!
//! The header is checked before anything starts: magic, version, CRC,
//! and (in a file) that the stream is all there. A corrupted stream is
//! QEMU's to find; the restore then ends with nothing left behind.
//!
//! It must not know how the domain is started or the stream made.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::record::{DiskEntry, NicEntry};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"PVIOSAVE";
/// The format this pvio writes and reads.
pub const VERSION: u32 = 1;
/// The fixed part before the header.
const PREFIX: usize = 32;
/// The stream starts at a multiple of this.
pub const ALIGN: u64 = 4096;
/// The largest header accepted.
const MAX_HEADER: u32 = 1 << 20;
/// Where the stream length sits in the prefix.
pub const STREAM_LEN_AT: u64 = 24;

/// Where a hot-plugged device sits in the guest, so that the restored
/// device model has it in the same place (the stream expects it there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// QEMU's device id (`xvdb`, `nic1`).
    pub id: String,
    /// The device's bus: a PCIe root port's id, or `None` for the root
    /// bus.
    pub bus: Option<String>,
    /// Its slot on that bus.
    pub slot: u8,
}

/// The domain as it ran when saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDomain {
    /// The domain's name.
    pub name: String,
    /// Its UUID (kept: the guest sees it).
    pub uuid: String,
    /// The config's text as the domain was created from it.
    pub config_text: String,
    /// Where that config was.
    pub config_path: Option<PathBuf>,
    /// The `key=value` overrides given to `create`.
    pub overrides: Vec<String>,
    /// RAM in MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// The disks as they ran: hot-plugged ones, CD media as changed.
    pub disks: Vec<DiskEntry>,
    /// The NICs as they ran, MACs included.
    pub nics: Vec<NicEntry>,
    /// Where the hot-plugged devices sat.
    pub placements: Vec<Placement>,
    /// The size of each disk image (not CD media) when saved.
    pub image_sizes: Vec<(PathBuf, u64)>,
    /// The guest was paused when saved.
    pub paused: bool,
    /// When (seconds since the epoch).
    pub saved_at: u64,
}

/// Why a save file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    /// Not a pvio save file.
    #[error("is not a pvio save file (no PVIOSAVE at its start)")]
    NotSaveFile,
    /// Another format.
    #[error("is format version {0}; this pvio reads version {VERSION}")]
    Version(u32),
    /// Shorter than it says.
    #[error("is truncated: {0}")]
    Truncated(String),
    /// The header does not match its checksum or does not parse.
    #[error("has a damaged header: {0}")]
    Damaged(String),
    /// Reading failed.
    #[error("cannot be read")]
    Io(#[source] io::Error),
}

/// The header's bytes: prefix, JSON and padding; the stream follows at
/// `ALIGN` boundary (the returned length).
pub fn encode(d: &SavedDomain) -> Vec<u8> {
    let json = serde_json::to_vec(d).unwrap_or_default();
    let len = u32::try_from(json.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(PREFIX + json.len() + 4096);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&json);
    let padded = stream_offset(json.len());
    out.resize(usize::try_from(padded).unwrap_or(out.len()), 0);
    out
}

/// Where the stream starts after a header of `json_len` bytes.
fn stream_offset(json_len: usize) -> u64 {
    let end = (PREFIX + json_len) as u64;
    end.div_ceil(ALIGN) * ALIGN
}

/// A header read back: the domain, where the stream starts, and the
/// stream's length as recorded (0: not recorded, as on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The domain.
    pub domain: SavedDomain,
    /// The stream's offset from the start.
    pub stream_at: u64,
    /// The stream's length, when the file records it.
    pub stream_len: u64,
}

/// Reads and checks the header from `r`, consuming exactly the header and
/// its padding (nothing of the stream: `r` may be a pipe QEMU reads on
/// from).
pub fn read_header(r: &mut impl Read) -> Result<Header, SavedError> {
    let mut prefix = [0u8; PREFIX];
    read_all(r, &mut prefix, "it ends inside the header")?;
    if &prefix[..8] != MAGIC {
        return Err(SavedError::NotSaveFile);
    }
    let word = |at: usize| {
        u32::from_le_bytes([prefix[at], prefix[at + 1], prefix[at + 2], prefix[at + 3]])
    };
    let version = word(8);
    if version != VERSION {
        return Err(SavedError::Version(version));
    }
    let len = word(12);
    if len > MAX_HEADER {
        return Err(SavedError::Damaged(format!(
            "it claims {len} bytes, more than {MAX_HEADER}"
        )));
    }
    let crc = word(16);
    let mut stream_len = [0u8; 8];
    stream_len.copy_from_slice(&prefix[24..32]);
    let stream_len = u64::from_le_bytes(stream_len);
    let mut json = vec![0u8; len as usize];
    read_all(r, &mut json, "it ends inside the header")?;
    if crc32fast::hash(&json) != crc {
        return Err(SavedError::Damaged(
            "its checksum does not match (the file was changed or damaged)".to_owned(),
        ));
    }
    let domain: SavedDomain =
        serde_json::from_slice(&json).map_err(|e| SavedError::Damaged(e.to_string()))?;
    let stream_at = stream_offset(json.len());
    let pad_len = stream_at - (PREFIX + json.len()) as u64;
    let mut pad = vec![0u8; usize::try_from(pad_len).unwrap_or(0)];
    read_all(r, &mut pad, "it ends before the device model's stream")?;
    Ok(Header {
        domain,
        stream_at,
        stream_len,
    })
}

/// Checks that a file of `file_len` bytes holds all of `h`'s stream.
pub fn check_complete(h: &Header, file_len: u64) -> Result<(), SavedError> {
    if h.stream_len == 0 {
        return Err(SavedError::Truncated(
            "its save never finished (no stream length recorded)".to_owned(),
        ));
    }
    let want = h.stream_at + h.stream_len;
    if file_len < want {
        return Err(SavedError::Truncated(format!(
            "{file_len} bytes where the save wrote {want}"
        )));
    }
    Ok(())
}

/// Writes the header to `w` (the stream goes after it).
pub fn write_header(w: &mut impl Write, d: &SavedDomain) -> io::Result<u64> {
    let bytes = encode(d);
    w.write_all(&bytes)?;
    Ok(bytes.len() as u64)
}

fn read_all(r: &mut impl Read, buf: &mut [u8], short: &str) -> Result<(), SavedError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SavedError::Truncated(short.to_owned())
        } else {
            SavedError::Io(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> SavedDomain {
        SavedDomain {
            name: "web".into(),
            uuid: "2f0e6d33-0000-4000-8000-000000000001".into(),
            config_text: "name = \"web\"\nmemory = 256\n".into(),
            config_path: Some("/etc/xen/web".into()),
            overrides: vec!["vcpus=2".into()],
            memory_mib: 256,
            vcpus: 2,
            disks: Vec::new(),
            nics: Vec::new(),
            placements: vec![Placement {
                id: "xvdb".into(),
                bus: Some("pvio-rp1".into()),
                slot: 0,
            }],
            image_sizes: vec![("/img/web.raw".into(), 1 << 30)],
            paused: false,
            saved_at: 1,
        }
    }

    #[test]
    fn a_header_round_trips_and_the_stream_starts_aligned() {
        let d = domain();
        let bytes = encode(&d);
        assert_eq!(bytes.len() as u64 % ALIGN, 0);
        let mut with_stream = bytes.clone();
        with_stream.extend_from_slice(b"QEVM");
        let mut r = &with_stream[..];
        let h = read_header(&mut r).unwrap();
        assert_eq!(h.domain, d);
        assert_eq!(h.stream_at, bytes.len() as u64);
        assert_eq!(r, b"QEVM", "exactly the header is consumed");
    }

    #[test]
    fn another_version_a_changed_byte_and_a_short_file_are_refused() {
        let bytes = encode(&domain());
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert_eq!(
            read_header(&mut &v2[..]).unwrap_err().to_string(),
            "is format version 2; this pvio reads version 1"
        );
        let mut changed = bytes.clone();
        changed[PREFIX + 10] ^= 1;
        assert!(matches!(
            read_header(&mut &changed[..]),
            Err(SavedError::Damaged(_))
        ));
        let short = &bytes[..PREFIX + 5];
        assert!(matches!(
            read_header(&mut &short[..]),
            Err(SavedError::Truncated(_))
        ));
        assert!(matches!(
            read_header(&mut &b"QEVM\0\0\0\x03garbage-garbage-garbage-garbage"[..]),
            Err(SavedError::NotSaveFile)
        ));
    }

    #[test]
    fn a_file_shorter_than_its_recorded_stream_is_truncated() {
        let mut bytes = encode(&domain());
        bytes[24..32].copy_from_slice(&1000u64.to_le_bytes());
        let h = read_header(&mut &bytes[..]).unwrap();
        assert_eq!(h.stream_len, 1000);
        assert!(check_complete(&h, h.stream_at + 1000).is_ok());
        let e = check_complete(&h, h.stream_at + 999).unwrap_err();
        assert!(e.to_string().starts_with("is truncated"), "{e}");
        let unfinished = Header { stream_len: 0, ..h };
        assert!(check_complete(&unfinished, 1 << 40).is_err());
    }
}
