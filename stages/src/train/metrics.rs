//! Training metrics: one row per (step, tag) scalar, written as a Parquet table (the adapter's, in
//! [`crate::kinds::adapter`]) and as TensorBoard event files. The event file is TFRecord framing
//! (length, masked CRC-32C of the length, the record, masked CRC-32C of the record) around
//! `tensorflow.Event` protobufs encoded by hand.

use std::io::Write;
use std::path::Path;

use crate::kinds::adapter::MetricRow;

/// CRC-32C (Castagnoli), bitwise-reflected, as TFRecord uses.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// TFRecord's masking of a CRC, so CRCs of CRCs stay well distributed.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xA282_EAD8)
}

/// One TFRecord frame around `data`.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

fn varint(mut x: u64, out: &mut Vec<u8>) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn bytes_field(tag: u8, data: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// A `tensorflow.Event` with `wall_time` (field 1), `step` (2) and either `file_version` (3) or a
/// `Summary` (5) holding one `Summary.Value` with `tag` (1) and `simple_value` (2).
pub fn event(wall_time: f64, step: u64, what: EventBody<'_>) -> Vec<u8> {
    let mut e = vec![0x09];
    e.extend_from_slice(&wall_time.to_le_bytes());
    e.push(0x10);
    varint(step, &mut e);
    match what {
        EventBody::FileVersion(v) => bytes_field(0x1A, v.as_bytes(), &mut e),
        EventBody::Scalar(tag, value) => {
            let mut v = Vec::new();
            bytes_field(0x0A, tag.as_bytes(), &mut v);
            v.push(0x15);
            v.extend_from_slice(&(value as f32).to_le_bytes());
            let mut summary = Vec::new();
            bytes_field(0x0A, &v, &mut summary);
            bytes_field(0x2A, &summary, &mut e);
        }
    }
    e
}

/// What an event carries.
pub enum EventBody<'a> {
    /// The header event, `brain.Event:2`.
    FileVersion(&'a str),
    /// One scalar.
    Scalar(&'a str, f64),
}

/// Writes `rows` as a TensorBoard event file `events.out.tfevents.<time>.medalign` in `dir`.
pub fn write_events(dir: &Path, rows: &[MetricRow]) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let start = rows.first().map_or(0.0, |r| r.wall_time);
    let path = dir.join(format!("events.out.tfevents.{}.medalign", start as u64));
    let mut out = Vec::new();
    out.extend(tfrecord(&event(start, 0, EventBody::FileVersion("brain.Event:2"))));
    for r in rows {
        out.extend(tfrecord(&event(r.wall_time, r.step, EventBody::Scalar(&r.tag, r.value))));
    }
    let tmp = dir.join(".events.tmp");
    std::fs::File::create(&tmp)?.write_all(&out)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn tfrecord_frames_length_and_crcs() {
        let r = tfrecord(b"abc");
        assert_eq!(r.len(), 8 + 4 + 3 + 4);
        assert_eq!(&r[..8], &3u64.to_le_bytes());
        assert_eq!(&r[12..15], b"abc");
        assert_eq!(&r[15..], &masked_crc32c(b"abc").to_le_bytes());
    }
}
