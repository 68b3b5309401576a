//! The encoding itself: which payloads are compressed, how they are marked,
//! and how they are decoded without trusting their size.

use std::io::Read;

use bytes::Bytes;
use flextide_queue_core::Message;

/// The header that marks a compressed payload, as in HTTP.
pub const CONTENT_ENCODING: &str = "content-encoding";
/// Its value for a zstd frame.
pub const ZSTD: &str = "zstd";

/// When and how payloads are compressed.
///
/// ```
/// use flextide_queue_compression::Compression;
/// let c = Compression::default().threshold(4096).level(6);
/// assert_eq!(c.threshold_bytes(), 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    threshold: usize,
    level: i32,
    max_decoded: usize,
    only_if_smaller: bool,
}

impl Default for Compression {
    /// Payloads of 1 KiB and more, zstd level 3, decoded up to 64 MiB,
    /// kept as they are when compressing would not make them smaller.
    fn default() -> Self {
        Compression {
            threshold: 1024,
            level: 3,
            max_decoded: 64 << 20,
            only_if_smaller: true,
        }
    }
}

impl Compression {
    /// Compresses payloads of at least this many bytes (smaller ones gain
    /// little and cost a frame header).
    pub const fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The zstd level: 1 (fastest) to 22 (smallest); 3 is zstd's default.
    pub const fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// The largest payload a compressed one may decode to. A frame that
    /// claims or produces more is treated as undecodable (a guard against
    /// decompression bombs from other producers).
    pub const fn max_decoded(mut self, bytes: usize) -> Self {
        self.max_decoded = bytes;
        self
    }

    /// Whether a payload that would not get smaller is sent as it is
    /// (default `true`). `false` compresses everything above the threshold,
    /// so a consumer sees the header on every such message.
    pub const fn only_if_smaller(mut self, yes: bool) -> Self {
        self.only_if_smaller = yes;
        self
    }

    /// See [`Compression::threshold`].
    pub const fn threshold_bytes(&self) -> usize {
        self.threshold
    }

    /// Compresses `message`'s payload when the settings say so and marks it.
    /// A message that already carries a `content-encoding` header is the
    /// caller's own encoding and is sent untouched.
    pub fn encode(&self, mut message: Message) -> std::io::Result<Message> {
        if message.payload.len() < self.threshold || message.headers.contains_key(CONTENT_ENCODING)
        {
            return Ok(message);
        }
        let packed = zstd::bulk::compress(&message.payload, self.level)?;
        if self.only_if_smaller && packed.len() >= message.payload.len() {
            return Ok(message);
        }
        message.payload = Bytes::from(packed);
        message
            .headers
            .insert(CONTENT_ENCODING.to_owned(), ZSTD.to_owned());
        Ok(message)
    }

    /// Decodes, in place, a payload this codec marked; other messages are
    /// left untouched. On a frame that is corrupt or decodes past
    /// [`Compression::max_decoded`], the message is left as it was and the
    /// error says what is wrong.
    pub fn decode(&self, message: &mut Message) -> Result<(), String> {
        if !is_zstd(message) {
            return Ok(());
        }
        let plain = decode_bounded(&message.payload, self.max_decoded)?;
        message.payload = Bytes::from(plain);
        message.headers.remove(CONTENT_ENCODING);
        Ok(())
    }
}

/// Whether the message carries a zstd payload.
pub fn is_zstd(message: &Message) -> bool {
    message
        .headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(ZSTD))
}

/// Decodes every frame of `packed`, reading at most `max + 1` bytes so a
/// bomb costs no more memory than the limit.
fn decode_bounded(packed: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let decoder = zstd::stream::read::Decoder::new(packed)
        .map_err(|e| format!("zstd payload cannot be decoded: {e}"))?;
    let mut out = Vec::with_capacity(packed.len().saturating_mul(4).min(max));
    decoder
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd payload cannot be decoded: {e}"))?;
    if out.len() > max {
        return Err(format!(
            "zstd payload decodes to more than {max} bytes (the consumer's limit)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from("[");
        for i in 0..n {
            s.push_str(&format!(
                "{{\"sku\":\"A-{i}\",\"qty\":{},\"note\":\"same text\"}},",
                i % 7
            ));
        }
        s.push_str("{}]");
        s.into_bytes()
    }

    #[test]
    fn compresses_above_the_threshold_and_round_trips() {
        let c = Compression::default();
        let body = json(500);
        let m = c.encode(Message::new(body.clone())).unwrap();
        assert!(is_zstd(&m));
        assert!(
            m.payload.len() < body.len() / 3,
            "{} of {}",
            m.payload.len(),
            body.len()
        );
        let mut back = m;
        c.decode(&mut back).unwrap();
        assert_eq!(back.payload, body);
        assert!(!back.headers.contains_key(CONTENT_ENCODING));
    }

    #[test]
    fn small_incompressible_and_preencoded_payloads_pass_untouched() {
        let c = Compression::default();
        let small = c.encode(Message::new("tiny")).unwrap();
        assert!(!is_zstd(&small));
        // Bytes that do not compress stay as they are.
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                // xorshift64: bytes zstd cannot shrink.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let m = c.encode(Message::new(noise.clone())).unwrap();
        assert_eq!(m.payload, noise);
        assert!(!is_zstd(&m));
        // The caller's own encoding is respected.
        let gz = Message::new(json(500)).with_header(CONTENT_ENCODING, "gzip");
        let mut m = c.encode(gz.clone()).unwrap();
        assert_eq!(m.payload, gz.payload);
        c.decode(&mut m).unwrap();
        assert_eq!(m, gz);
    }

    #[test]
    fn everything_above_the_threshold_when_asked() {
        let c = Compression::default().threshold(0).only_if_smaller(false);
        let mut m = c.encode(Message::new("x")).unwrap();
        assert!(is_zstd(&m));
        c.decode(&mut m).unwrap();
        assert_eq!(m.payload, "x");
    }

    #[test]
    fn corrupt_frames_and_bombs_are_refused_and_the_message_kept() {
        let c = Compression::default().max_decoded(1 << 20);
        let bad = Message::new("not zstd at all").with_header(CONTENT_ENCODING, "zstd");
        let mut kept = bad.clone();
        let why = c.decode(&mut kept).unwrap_err();
        assert_eq!(kept, bad);
        assert!(why.contains("cannot be decoded"), "{why}");
        // 16 MiB of zeros compress to a few hundred bytes.
        let bomb = zstd::bulk::compress(&vec![0u8; 16 << 20], 3).unwrap();
        assert!(bomb.len() < 4096);
        let mut m = Message::new(bomb).with_header(CONTENT_ENCODING, "ZSTD");
        let why = c.decode(&mut m).unwrap_err();
        assert!(why.contains("more than 1048576 bytes"), "{why}");
    }
}
