//! Zstandard streams as the OpenTelemetry Collector's `file` exporter writes them
//! (`compression: zstd`), decoded with the pure-Rust `ruzstd`.
//!
//! A zstd stream is one or more frames back to back (RFC 8878 §3.1), and the Collector
//! writes many: with its native compression, a new frame at every flush (`flush_interval`)
//! or, when rotating, one frame per write, so that every rotated file is a valid `.zst`
//! (`compression_writer.go`); in its older layout, each length-prefixed record is one
//! frame of its own (`zstdCompress` with `EncodeAll`). `ruzstd` decodes one frame at a
//! time; [`ZstdFrames`] strings them together, skips skippable frames (§3.1.2, as
//! `pzstd` writes them), and checks each frame's content checksum (§3.1.1), which
//! `ruzstd` computes but leaves to the caller to compare.
//!
//! Errors are `io::Error`s (they surface through the record readers), with a message
//! that says where in the compressed input they happened and, for a stream that ends
//! inside a frame, that the capture is truncated.

use std::io::{self, BufRead, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// The magic number opening a zstd frame, 0xFD2FB528 little-endian.
pub(crate) const FRAME_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Whether `head` opens a zstd stream: a frame, or a skippable frame (magic
/// 0x184D2A50..=0x184D2A5F little-endian).
pub(crate) fn starts_a_stream(head: &[u8]) -> bool {
    match head {
        [a, b, c, d, ..] => {
            [*a, *b, *c, *d] == FRAME_MAGIC || ([*b, *c, *d] == [0x2a, 0x4d, 0x18] && a >> 4 == 5)
        }
        _ => false,
    }
}

/// The decompressed content of a zstd stream of any number of frames.
pub(crate) struct ZstdFrames<R> {
    source: Counting<R>,
    decoder: FrameDecoder,
    /// A frame's header has been read and its last bytes not yet handed out.
    in_frame: bool,
    /// Compressed offset of the current frame, for error messages.
    frame_start: u64,
}

impl<R: BufRead> ZstdFrames<R> {
    /// Decodes `source`, which must start with a frame (or be empty).
    pub(crate) fn new(source: R) -> Self {
        ZstdFrames {
            source: Counting {
                inner: source,
                offset: 0,
                ended: false,
            },
            decoder: FrameDecoder::new(),
            in_frame: false,
            frame_start: 0,
        }
    }

    /// Reads the next frame's header, skipping skippable frames. `false` when the source
    /// ends at a frame boundary: the end of the stream.
    fn start_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.inner.fill_buf()?.is_empty() {
                return Ok(false);
            }
            self.frame_start = self.source.offset;
            match self.decoder.reset(&mut self.source) {
                Ok(()) => {
                    self.in_frame = true;
                    return Ok(true);
                }
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                    length,
                    ..
                })) => {
                    let skipped =
                        io::copy(&mut (&mut self.source).take(length.into()), &mut io::sink())?;
                    if skipped < u64::from(length) {
                        return Err(self.truncated());
                    }
                }
                Err(FrameDecoderError::ReadFrameHeaderError(
                    ReadFrameHeaderError::BadMagicNumber(magic),
                )) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "zstd: the bytes at compressed offset {} are not a zstd frame \
                             (magic number {magic:#010x}): trailing garbage after the last frame?",
                            self.frame_start
                        ),
                    ))
                }
                Err(e) => return Err(self.corrupt(e)),
            }
        }
    }

    /// The checksum at the end of the frame just drained, if it has one, against the
    /// content handed out.
    fn check_frame(&self) -> io::Result<()> {
        let (Some(written), Some(computed)) = (
            self.decoder.get_checksum_from_data(),
            self.decoder.get_calculated_checksum(),
        ) else {
            return Ok(());
        };
        if written == computed {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "zstd: the frame at compressed offset {} fails its checksum \
                 ({written:#010x} written, {computed:#010x} computed): a corrupt capture",
                self.frame_start
            ),
        ))
    }

    fn truncated(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "zstd: the input ends inside the frame at compressed offset {} \
                 (a truncated capture, or a file the Collector is still writing)",
                self.frame_start
            ),
        )
    }

    fn corrupt(&self, e: FrameDecoderError) -> io::Error {
        if self.source.ended {
            return self.truncated();
        }
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "zstd: the frame at compressed offset {} does not decode: {e}",
                self.frame_start
            ),
        )
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame && !self.start_frame()? {
                return Ok(0);
            }
            // One block at a time (at most 128 KiB of output): memory stays at the
            // frame's window, whatever the frame's size.
            while self.decoder.can_collect() == 0 && !self.decoder.is_finished() {
                if let Err(e) = self
                    .decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBlocks(1))
                {
                    return Err(self.corrupt(e));
                }
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            // Finished and drained: the checksum covers everything handed out.
            self.check_frame()?;
            self.in_frame = false;
        }
    }
}

/// Counts the compressed bytes read, and notes when the source ran dry.
struct Counting<R> {
    inner: R,
    offset: u64,
    ended: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ended = true;
        }
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A frame of raw (stored) blocks holding `content`, with or without its checksum:
    /// frames built by hand, byte for byte as RFC 8878 §3.1.1 lays them out.
    pub(crate) fn raw_frame(content: &[u8], checksum: bool) -> Vec<u8> {
        // Frame_Header_Descriptor: no content size, not single-segment, no dictionary;
        // bit 2 is the Content_Checksum_flag. Window_Descriptor 0x50: a 1 MiB window.
        let mut out = FRAME_MAGIC.to_vec();
        out.push(if checksum { 0x04 } else { 0x00 });
        out.push(0x50);
        let chunks: Vec<&[u8]> = if content.is_empty() {
            vec![&[]]
        } else {
            content.chunks(128 * 1024).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let last = u32::from(i + 1 == chunks.len());
            // Block_Header: Last_Block, Block_Type 0 (raw), Block_Size.
            let header = last | ((chunk.len() as u32) << 3);
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            out.extend_from_slice(chunk);
        }
        if checksum {
            // XXH64 of the content, low 4 bytes: taken from a frame that `ruzstd`'s own
            // encoder writes (it always adds the checksum), so no second hash crate.
            let reference = ruzstd::encoding::compress_to_vec(
                content,
                ruzstd::encoding::CompressionLevel::Uncompressed,
            );
            out.extend_from_slice(&reference[reference.len() - 4..]);
        }
        out
    }

    /// A frame that decompresses to `len` copies of `byte` from a few bytes: RLE blocks
    /// of 128 KiB each (Block_Type 1). The shape of a decompression bomb.
    pub(crate) fn rle_frame(byte: u8, len: usize) -> Vec<u8> {
        let mut out = FRAME_MAGIC.to_vec();
        out.extend_from_slice(&[0x00, 0x50]);
        let mut left = len;
        loop {
            let n = left.min(128 * 1024);
            left -= n;
            let last = u32::from(left == 0);
            let header = last | (1 << 1) | ((n as u32) << 3);
            out.extend_from_slice(&header.to_le_bytes()[..3]);
            out.push(byte);
            if left == 0 {
                return out;
            }
        }
    }

    /// A skippable frame (RFC 8878 §3.1.2) carrying `payload`.
    pub(crate) fn skippable_frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x53, 0x2a, 0x4d, 0x18];
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn decode(stream: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ZstdFrames::new(stream).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn concatenated_frames_of_every_kind_decode_as_one_stream() {
        let compressed = ruzstd::encoding::compress_to_vec(
            &b"compressed frame, "[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let stream = [
            skippable_frame(b"pzstd puts its index here"),
            raw_frame(b"raw with checksum, ", true),
            raw_frame(b"", false),
            compressed,
            rle_frame(b'z', 3),
            skippable_frame(b""),
        ]
        .concat();
        assert_eq!(
            decode(&stream).unwrap(),
            b"raw with checksum, compressed frame, zzz"
        );
        assert_eq!(decode(b"").unwrap(), b"");
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_truncated() {
        let stream = [raw_frame(b"first", true), raw_frame(b"second", true)].concat();
        let boundary = raw_frame(b"first", true).len();
        // Cut at a frame boundary: a shorter, valid stream (a rotated file).
        assert_eq!(decode(&stream[..boundary]).unwrap(), b"first");
        for cut in [boundary + 2, boundary + 7, stream.len() - 1] {
            let e = decode(&stream[..cut]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{cut}: {e}");
            assert!(e.to_string().contains("truncated"), "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("compressed offset {boundary}")),
                "{e}"
            );
        }
        let skip = skippable_frame(b"0123456789");
        let e = decode(&skip[..skip.len() - 3]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn a_wrong_checksum_and_trailing_garbage_are_errors() {
        let mut frame = raw_frame(b"payload", true);
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        let e = decode(&frame).unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");
        let garbage = [raw_frame(b"ok", false), b"\n\n\n\n".to_vec()].concat();
        let e = decode(&garbage).unwrap_err();
        assert!(e.to_string().contains("not a zstd frame"), "{e}");
    }

    #[test]
    fn stream_starts_are_recognised() {
        assert!(starts_a_stream(&raw_frame(b"", false)));
        assert!(starts_a_stream(&skippable_frame(b"")));
        assert!(!starts_a_stream(&FRAME_MAGIC[..3]));
        assert!(!starts_a_stream(b"{\"resourceSpans\":[]}"));
        assert!(!starts_a_stream(&[0x1f, 0x8b, 8, 0]));
    }
}
