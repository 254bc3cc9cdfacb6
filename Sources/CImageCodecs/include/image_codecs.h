#ifndef GRAFT_IMAGE_CODECS_H
#define GRAFT_IMAGE_CODECS_H
// PNG and JPEG decoding and encoding behind status codes instead of longjmp, so Swift can throw.
//
// libpng and libjpeg report fatal errors by longjmp, which Swift cannot catch; every call into
// them happens here, under a setjmp, and comes back as a gic_status plus a message. Nothing is
// ever printed to stderr.

#include <stddef.h>
#include <stdint.h>

/// What a codec call achieved.
typedef enum {
  GIC_OK = 0,
  /// The data is not a valid file of the format (bad header, bad chunk, bad Huffman code, ...).
  GIC_CORRUPT = 1,
  /// The data ends before the image does.
  GIC_TRUNCATED = 2,
  /// Valid, but a variant this build cannot handle (12-bit JPEG, too many pixels, ...).
  GIC_UNSUPPORTED = 3,
  GIC_OUT_OF_MEMORY = 4,
  /// Bad arguments (zero or negative sizes, quality out of range).
  GIC_INVALID_ARGUMENT = 5,
  /// The header promises more pixels than the caller's limit.
  GIC_TOO_MANY_PIXELS = 6,
} gic_status;

/// Room for a message; longer ones are cut.
#define GIC_MESSAGE_CAPACITY 256

/// Images with more pixels than this are refused as unsupported: Pillow's
/// DecompressionBombError threshold (2 × Image.MAX_IMAGE_PIXELS).
#define GIC_MAX_PIXELS 178956970ULL

/// A decoded image: `height` rows of `width` RGB pixels, 3 bytes each, no row padding.
/// `pixels` is allocated with malloc; release it with gic_free.
typedef struct {
  int width;
  int height;
  uint8_t *pixels;
} gic_image;

/// Decodes a PNG of any colour type and bit depth to 8-bit RGB the way Pillow's
/// `Image.open(f).convert("RGB")` does: alpha and tRNS dropped (not composited), grey
/// replicated, palette expanded, 16-bit samples cut to their high byte, gamma/ICC ignored.
/// On failure `out` is untouched and `message` (capacity GIC_MESSAGE_CAPACITY) says why.
/// Images with more than `max_pixels` pixels (GIC_MAX_PIXELS when 0) are refused from their
/// header with GIC_TOO_MANY_PIXELS, before any allocation.
gic_status gic_decode_png(
    const uint8_t *data, size_t size, unsigned long long max_pixels, gic_image *out,
    char *message);

/// Decodes a baseline or progressive JPEG (grey, YCbCr/RGB, CMYK/YCCK) to 8-bit RGB as Pillow
/// does; CMYK is taken as Adobe-inverted and converted with Pillow's formula. A file that ends
/// before its EOI marker is GIC_TRUNCATED, as in Pillow (libjpeg alone would pad it with grey);
/// libjpeg's other warnings (corrupt entropy data) are ignored, as Pillow ignores them.
/// `max_pixels` as for gic_decode_png.
gic_status gic_decode_jpeg(
    const uint8_t *data, size_t size, unsigned long long max_pixels, gic_image *out,
    char *message);

/// Encodes 8-bit RGB (`width * height * 3` bytes, no padding) as a PNG. On success `*out`
/// (malloc'd, release with gic_free) holds `*out_size` bytes.
gic_status gic_encode_png(
    const uint8_t *rgb, int width, int height, uint8_t **out, size_t *out_size, char *message);

/// Encodes 8-bit RGB as a baseline JFIF JPEG with 4:2:0 chroma subsampling at `quality`
/// (1...100). On success `*out` (release with gic_free) holds `*out_size` bytes.
gic_status gic_encode_jpeg(
    const uint8_t *rgb, int width, int height, int quality, uint8_t **out, size_t *out_size,
    char *message);

/// Releases memory returned by the functions above.
void gic_free(void *pointer);

#endif
