//! A few encoded bytes assembled on the stack, so that a small message is
//! written into the outgoing buffer with one copy rather than a call per
//! byte; the lengths of the fields it writes, to measure a message before
//! writing it; and the one-byte field keys the hand-written encodings (and
//! the batch request's reader) compare and write.

use prost::encoding::{WireType, encoded_len_varint};

/// The one-byte key of field `number` (1-15) with `wire_type`, as protobuf
/// writes it: the hand-written encodings name their keys by field, not by
/// byte value.
pub const fn field_key(number: u8, wire_type: WireType) -> u8 {
    assert!(
        number >= 1 && number <= 15,
        "a one-byte key holds fields 1-15"
    );
    number << 3 | wire_type as u8
}

/// The length of a field [`Scratch::varint_field`] writes for `value`.
pub fn varint_field_len(value: u64) -> usize {
    match value {
        0 => 0,
        value => 1 + encoded_len_varint(value),
    }
}

/// The length of a field [`Scratch::bytes_field`] writes for `len` bytes.
pub fn bytes_field_len(len: usize) -> usize {
    match len {
        0 => 0,
        len => nested_len(len),
    }
}

/// The length of a field that is always written, even empty (a nested
/// message, a `oneof` member): a one-byte key, the length, `inner` bytes.
pub fn nested_len(inner: usize) -> usize {
    1 + encoded_len_varint(inner as u64) + inner
}

/// Up to `N` bytes; callers size `N` for the longest message they write.
pub struct Scratch<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Scratch<N> {
    fn default() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Scratch<N> {
    /// Appends one byte.
    pub fn put(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// Appends `value` as a protobuf varint.
    pub fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.put((value as u8) | 0x80);
            value >>= 7;
        }
        self.put(value as u8);
    }

    /// Appends `slice`.
    pub fn slice(&mut self, slice: &[u8]) {
        self.bytes[self.len..self.len + slice.len()].copy_from_slice(slice);
        self.len += slice.len();
    }

    /// Appends a varint field (its one-byte `key`, then `value`), left out
    /// when zero, as proto3 leaves it out.
    pub fn varint_field(&mut self, key: u8, value: u64) {
        if value != 0 {
            self.put(key);
            self.varint(value);
        }
    }

    /// Appends a length-delimited field (its one-byte `key`, its length,
    /// then `bytes`), left out when empty, as proto3 leaves it out.
    pub fn bytes_field(&mut self, key: u8, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.put(key);
            self.varint(bytes.len() as u64);
            self.slice(bytes);
        }
    }

    /// What was appended.
    pub fn written(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
