//! The pre-tokenized shard file (docs/protocol.md §Shard format).
//!
//! ```text
//! header (96 bytes, little-endian)
//!   0  magic "FRMSHARD"          8  version u16 = 1      10 token width u8 (2|4)
//!   11 reserved u8 = 0           12 sequence length u32  16 token count u64
//!   24 blake3(token section)     56 blake3(sample table)  88 reserved 8 bytes = 0
//! token section: token count × width bytes; sample i = tokens [i·L, (i+1)·L)
//! sample table:  one 16-byte truncated blake3 per sample, of that sample's bytes
//! ```
//! The manifest pins blake3(header), which pins both section hashes; a reader that holds the
//! table verifies any single sample with one range read.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// File magic.
pub const MAGIC: &[u8; 8] = b"FRMSHARD";
/// Current format version.
pub const VERSION: u16 = 1;
/// Header length in bytes.
pub const HEADER_LEN: u64 = 96;
/// Bytes per sample-table entry.
pub const SAMPLE_HASH_LEN: usize = 16;

/// A parsed shard header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardHeader {
    pub token_width: u8,
    pub sequence_length: u32,
    pub token_count: u64,
    pub tokens_blake3: [u8; 32],
    pub table_blake3: [u8; 32],
}

/// A header that is not a valid shard header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header is {0} bytes, expected {HEADER_LEN}")]
    Short(usize),
    #[error("bad magic (not a Ferrum shard)")]
    Magic,
    #[error("unsupported version {0} (this build reads version {VERSION})")]
    Version(u16),
    #[error("token width {0} (must be 2 or 4)")]
    Width(u8),
    #[error("reserved bytes are not zero")]
    Reserved,
    #[error("sequence length 0")]
    ZeroSequence,
    #[error("token count {count} is not a multiple of the sequence length {seq}")]
    Ragged { count: u64, seq: u32 },
}

impl ShardHeader {
    /// Samples in the shard.
    pub fn samples(&self) -> u64 {
        self.token_count / u64::from(self.sequence_length)
    }

    /// Bytes of one sample.
    pub fn sample_bytes(&self) -> u64 {
        u64::from(self.sequence_length) * u64::from(self.token_width)
    }

    /// Offset of the sample table.
    pub fn table_offset(&self) -> u64 {
        HEADER_LEN + self.token_count * u64::from(self.token_width)
    }

    /// Total file size this header implies.
    pub fn file_len(&self) -> u64 {
        self.table_offset() + self.samples() * SAMPLE_HASH_LEN as u64
    }

    /// Serializes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[0..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[10] = self.token_width;
        h[12..16].copy_from_slice(&self.sequence_length.to_le_bytes());
        h[16..24].copy_from_slice(&self.token_count.to_le_bytes());
        h[24..56].copy_from_slice(&self.tokens_blake3);
        h[56..88].copy_from_slice(&self.table_blake3);
        h
    }

    /// Parses and checks a header.
    pub fn parse(b: &[u8]) -> Result<ShardHeader, HeaderError> {
        if b.len() != HEADER_LEN as usize {
            return Err(HeaderError::Short(b.len()));
        }
        if &b[0..8] != MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let token_width = b[10];
        if token_width != 2 && token_width != 4 {
            return Err(HeaderError::Width(token_width));
        }
        if b[11] != 0 || b[88..96].iter().any(|&x| x != 0) {
            return Err(HeaderError::Reserved);
        }
        let sequence_length = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        let token_count = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        if sequence_length == 0 {
            return Err(HeaderError::ZeroSequence);
        }
        if token_count % u64::from(sequence_length) != 0 {
            return Err(HeaderError::Ragged { count: token_count, seq: sequence_length });
        }
        Ok(ShardHeader {
            token_width,
            sequence_length,
            token_count,
            tokens_blake3: b[24..56].try_into().expect("32 bytes"),
            table_blake3: b[56..88].try_into().expect("32 bytes"),
        })
    }
}

/// Hash of one sample's bytes, as stored in the sample table.
pub fn sample_hash(bytes: &[u8]) -> [u8; SAMPLE_HASH_LEN] {
    let full = blake3::hash(bytes);
    full.as_bytes()[..SAMPLE_HASH_LEN].try_into().expect("16 bytes")
}

/// Decodes little-endian tokens of the given width.
pub fn decode_tokens(bytes: &[u8], width: u8) -> Vec<u32> {
    match width {
        2 => bytes.chunks_exact(2).map(|c| u32::from(u16::from_le_bytes([c[0], c[1]]))).collect(),
        _ => bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
    }
}

/// What a finished shard looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSummary {
    pub header: ShardHeader,
    pub bytes: u64,
    /// blake3 of the encoded header: what the manifest pins.
    pub header_blake3: [u8; 32],
}

/// A token that does not fit the shard's width.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("token {token} does not fit in {width} bytes")]
    TokenTooWide { token: u32, width: u8 },
    #[error("sample has {got} tokens, the shard's sequence length is {expected}")]
    WrongLength { got: usize, expected: u32 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Streams whole samples into a shard file; the header is written on [`finish`](Self::finish).
pub struct ShardWriter {
    out: BufWriter<File>,
    width: u8,
    seq: u32,
    tokens: blake3::Hasher,
    table: Vec<u8>,
    scratch: Vec<u8>,
    count: u64,
}

impl ShardWriter {
    /// Creates the file with a placeholder header.
    pub fn create(path: &Path, token_width: u8, sequence_length: u32) -> std::io::Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        out.write_all(&[0u8; HEADER_LEN as usize])?;
        Ok(ShardWriter {
            out,
            width: token_width,
            seq: sequence_length,
            tokens: blake3::Hasher::new(),
            table: Vec::new(),
            scratch: Vec::with_capacity(sequence_length as usize * token_width as usize),
            count: 0,
        })
    }

    /// Appends one sample of exactly `sequence_length` tokens.
    pub fn push_sample(&mut self, tokens: &[u32]) -> Result<(), WriteError> {
        if tokens.len() != self.seq as usize {
            return Err(WriteError::WrongLength { got: tokens.len(), expected: self.seq });
        }
        self.scratch.clear();
        for &t in tokens {
            if self.width == 2 {
                let v = u16::try_from(t).map_err(|_| WriteError::TokenTooWide { token: t, width: 2 })?;
                self.scratch.extend_from_slice(&v.to_le_bytes());
            } else {
                self.scratch.extend_from_slice(&t.to_le_bytes());
            }
        }
        self.out.write_all(&self.scratch)?;
        self.tokens.update(&self.scratch);
        self.table.extend_from_slice(&sample_hash(&self.scratch));
        self.count += 1;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.count
    }

    /// Writes the sample table and the real header, and syncs the file.
    pub fn finish(mut self) -> std::io::Result<ShardSummary> {
        self.out.write_all(&self.table)?;
        let header = ShardHeader {
            token_width: self.width,
            sequence_length: self.seq,
            token_count: self.count * u64::from(self.seq),
            tokens_blake3: *self.tokens.finalize().as_bytes(),
            table_blake3: *blake3::hash(&self.table).as_bytes(),
        };
        let encoded = header.encode();
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&encoded)?;
        file.sync_all()?;
        Ok(ShardSummary { header, bytes: header.file_len(), header_blake3: *blake3::hash(&encoded).as_bytes() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.fts");
        let mut w = ShardWriter::create(&path, 2, 4).expect("create");
        w.push_sample(&[1, 2, 3, 4]).expect("push");
        w.push_sample(&[65_535, 0, 7, 256]).expect("push");
        assert!(matches!(w.push_sample(&[1, 2, 3]), Err(WriteError::WrongLength { .. })));
        assert!(matches!(w.push_sample(&[1, 2, 3, 65_536]), Err(WriteError::TokenTooWide { .. })));
        let summary = w.finish().expect("finish");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len() as u64, summary.bytes);
        let h = ShardHeader::parse(&bytes[..HEADER_LEN as usize]).expect("parse");
        assert_eq!(h, summary.header);
        assert_eq!(h.samples(), 2);
        let tokens = &bytes[HEADER_LEN as usize..h.table_offset() as usize];
        assert_eq!(blake3::hash(tokens).as_bytes(), &h.tokens_blake3);
        assert_eq!(decode_tokens(&tokens[8..16], 2), vec![65_535, 0, 7, 256]);
        assert_eq!(&bytes[h.table_offset() as usize + 16..], &sample_hash(&tokens[8..16]));
    }

    #[test]
    fn header_rejections() {
        let good = ShardHeader {
            token_width: 4,
            sequence_length: 8,
            token_count: 64,
            tokens_blake3: [1; 32],
            table_blake3: [2; 32],
        }
        .encode();
        assert!(ShardHeader::parse(&good).is_ok());
        assert_eq!(ShardHeader::parse(&good[..50]), Err(HeaderError::Short(50)));
        let mut b = good;
        b[0] = b'X';
        assert_eq!(ShardHeader::parse(&b), Err(HeaderError::Magic));
        let mut b = good;
        b[8] = 9;
        assert_eq!(ShardHeader::parse(&b), Err(HeaderError::Version(9)));
        let mut b = good;
        b[10] = 3;
        assert_eq!(ShardHeader::parse(&b), Err(HeaderError::Width(3)));
        let mut b = good;
        b[95] = 1;
        assert_eq!(ShardHeader::parse(&b), Err(HeaderError::Reserved));
        let mut b = good;
        b[16] = 65;
        assert!(matches!(ShardHeader::parse(&b), Err(HeaderError::Ragged { .. })));
        let mut b = good;
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(ShardHeader::parse(&b), Err(HeaderError::ZeroSequence));
    }
}
