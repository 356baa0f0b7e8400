//! Decompression bombs: small files that would make a decoder allocate a lot. Each is
//! refused (or decoded) within a bounded allocation, measured by this test binary's own
//! allocator; one test at a time (the whole test, not just the decode: another test
//! building its multi-megabyte input meanwhile would count), so the peak is this
//! decode's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use empathy_plugin_image::decode::{MAX_PIXELS, Refused, decode};
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: the caller's layout contract passes through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1 << 20;

/// Held for a whole test, so that no other test allocates while it measures.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decodes `bytes`; returns the outcome and the most memory allocated meanwhile.
fn peak_of(bytes: &[u8], max_pixels: u64) -> (Result<(u32, u32), Refused>, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let outcome = decode(bytes, max_pixels).map(|img| img.dimensions());
    (outcome, PEAK.load(Ordering::Relaxed) - before)
}

fn png_of(width: u32, height: u32) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(width, height, Rgb([9, 9, 9])));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png).expect("encode");
    out.into_inner()
}

fn jpeg_of(width: u32, height: u32) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(width, height, Rgb([9, 9, 9])));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Jpeg).expect("encode");
    out.into_inner()
}

#[test]
fn a_jpeg_claiming_20_megapixels_is_refused_from_its_header() {
    let _one = one_at_a_time();
    // A real 16x16 JPEG whose frame header (SOF0) then claims 5000x4000: over the 16 MP
    // cap, under the 40 MP that used to pass.
    let mut jpeg = jpeg_of(16, 16);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline frame header");
    // Marker (2), length (2), precision (1), then height and width.
    jpeg[sof + 5..sof + 7].copy_from_slice(&4000u16.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&5000u16.to_be_bytes());
    let (outcome, peak) = peak_of(&jpeg, u64::MAX);
    let message = outcome.expect_err("refused").0;
    assert!(
        message.contains("5000x4000") && message.contains(&MAX_PIXELS.to_string()),
        "{message}"
    );
    assert!(peak < MIB, "{peak} bytes allocated to refuse it");
}

#[test]
fn a_png_claiming_400_megapixels_is_refused_from_its_header() {
    let _one = one_at_a_time();
    let mut png = png_of(16, 16);
    // IHDR's data starts after the signature (8), its length (4) and type (4).
    png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let (outcome, peak) = peak_of(&png, u64::MAX);
    let message = outcome.expect_err("refused").0;
    assert!(message.contains("20000x20000"), "{message}");
    assert!(peak < MIB, "{peak} bytes allocated to refuse it");
}

#[test]
fn a_png_with_a_huge_compressed_icc_profile_stays_within_the_allocation_limit() {
    let _one = one_at_a_time();
    // 16x16 pixels and an ICC profile that inflates to 600 MiB from ~3 MB: the pixel
    // check cannot see it; the decoder's allocation limit (8 bytes a pixel of the
    // limit: 8 MB for 1 MP) must stop it. Without one, image's default let 512 MiB in.
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend(zlib_zeros(600 * MIB));
    let mut png = png_of(16, 16);
    let mut chunk = (iccp.len() as u32).to_be_bytes().to_vec();
    chunk.extend(b"iCCP");
    chunk.extend(&iccp);
    chunk.extend(crc32fast::hash(&chunk[4..]).to_be_bytes());
    png.splice(33..33, chunk);
    let (outcome, peak) = peak_of(&png, 1_000_000);
    assert_eq!(outcome.map_err(|r| r.0), Ok((16, 16)));
    assert!(peak < 64 * MIB, "{} MiB allocated", peak / MIB);
}

/// A zlib stream of `n` zero bytes: one literal, then copies of 258 bytes at distance 1
/// in a fixed-Huffman block (13 bits each), so 600 MiB fit in about 4 MB.
fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.push(1, 1); // final block
    bits.push(1, 2); // fixed Huffman
    bits.push_code(0b0011_0000, 8); // literal 0
    let mut left = n - 1;
    while left >= 258 {
        bits.push_code(0b1100_0101, 8); // length 258 (code 285)
        bits.push_code(0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        bits.push_code(0b0011_0000, 8);
    }
    bits.push_code(0, 7); // end of block
    let mut out = vec![0x78, 0x01];
    out.extend(bits.bytes);
    if bits.used > 0 {
        out.push(bits.partial);
    }
    // Adler-32 of n zeros: a = 1, b = n (mod 65521).
    let b = (n % 65_521) as u32;
    out.extend(((b << 16) | 1).to_be_bytes());
    out
}

#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    partial: u8,
    used: u32,
}

impl Bits {
    /// `count` bits of `value`, least significant first (header fields).
    fn push(&mut self, value: u32, count: u32) {
        for i in 0..count {
            self.partial |= (((value >> i) & 1) as u8) << self.used;
            self.used += 1;
            if self.used == 8 {
                self.bytes.push(self.partial);
                (self.partial, self.used) = (0, 0);
            }
        }
    }

    /// A Huffman code: most significant bit first.
    fn push_code(&mut self, code: u32, count: u32) {
        for i in (0..count).rev() {
            self.push((code >> i) & 1, 1);
        }
    }
}
