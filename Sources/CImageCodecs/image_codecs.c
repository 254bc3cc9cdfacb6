#include "image_codecs.h"

#include <setjmp.h>
#include <stdio.h>  // jpeglib.h needs FILE
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

// Each decoder keeps its state in a "job" struct that lives in the caller's frame and runs the
// library calls in a separate function that does the setjmp. Objects that are not local to the
// function calling setjmp keep their values across longjmp, so no `volatile` juggling is needed.

static void set_message(char *message, const char *text) {
  if (message == NULL) return;
  snprintf(message, GIC_MESSAGE_CAPACITY, "%s", text);
}

void gic_free(void *pointer) { free(pointer); }

// Checks the pixel count against `max_pixels` (GIC_MAX_PIXELS when 0) and returns
// width * height * 3, or 0 with `message` set.
static size_t rgb_size(
    size_t width, size_t height, unsigned long long max_pixels, gic_status *status,
    char *message) {
  if (width == 0 || height == 0) {
    *status = GIC_CORRUPT;
    set_message(message, "image has zero width or height");
    return 0;
  }
  unsigned long long limit = max_pixels == 0 ? GIC_MAX_PIXELS : max_pixels;
  if (width > limit / height) {
    *status = GIC_TOO_MANY_PIXELS;
    snprintf(
        message, GIC_MESSAGE_CAPACITY, "%zu x %zu = %llu pixels is more than the limit of %llu",
        width, height, (unsigned long long)width * height, limit);
    return 0;
  }
  return width * height * 3;
}

// MARK: PNG decoding (libpng's classic API)
//
// The simplified png_image_* reader is not used for decoding because it is not what Pillow does:
// it composites alpha onto a background, treats 16-bit data as linear light and re-encodes it to
// sRGB, and applies gAMA. The classic API with explicit transforms reproduces Pillow exactly.

typedef struct {
  const uint8_t *data;
  size_t size;
  unsigned long long max_pixels;
  size_t offset;
  gic_status status;
  char *message;
  png_structp png;
  png_infop info;
  uint8_t *pixels;
  png_bytep *rows;
  png_uint_32 width, height;
  jmp_buf jump;
} png_job;

static void png_on_error(png_structp png, png_const_charp text) {
  png_job *job = png_get_error_ptr(png);
  if (job->status == GIC_OK) job->status = GIC_CORRUPT;
  set_message(job->message, text);
  longjmp(job->jump, 1);
}

// libpng warns about harmless things (known-bad sRGB profiles, unknown chunks); stay quiet.
static void png_on_warning(png_structp png, png_const_charp text) {
  (void)png;
  (void)text;
}

static void png_read_memory(png_structp png, png_bytep out, size_t length) {
  png_job *job = png_get_io_ptr(png);
  if (length > job->size - job->offset) {
    job->status = GIC_TRUNCATED;
    png_error(png, "file ends before the image data does");
  }
  memcpy(out, job->data + job->offset, length);
  job->offset += length;
}

static void png_decode_steps(png_job *job) {
  if (setjmp(job->jump)) return;
  job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_on_error, png_on_warning);
  if (job->png == NULL) {
    job->status = GIC_OUT_OF_MEMORY;
    set_message(job->message, "cannot allocate a PNG reader");
    return;
  }
  job->info = png_create_info_struct(job->png);
  if (job->info == NULL) {
    job->status = GIC_OUT_OF_MEMORY;
    set_message(job->message, "cannot allocate a PNG reader");
    return;
  }
  png_set_read_fn(job->png, job, png_read_memory);
  // libpng refuses a side over 1,000,000 pixels by default; Pillow opens any side PNG allows
  // (2^31 - 1), and rgb_size below bounds the whole image by the pixel limit instead.
  png_set_user_limits(job->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_read_info(job->png, job->info);

  int depth = 0, color = 0;
  png_get_IHDR(job->png, job->info, &job->width, &job->height, &depth, &color, NULL, NULL, NULL);
  size_t bytes = rgb_size(job->width, job->height, job->max_pixels, &job->status, job->message);
  if (bytes == 0) return;

  // To 8-bit RGB, as Pillow's decoders followed by convert("RGB"). Pillow's raw modes for
  // 16-bit files ("RGB;16B", "LA;16B", ...) keep the high byte: png_set_strip_16, not scale_16.
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(job->png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(job->png);
  if (depth == 16) png_set_strip_16(job->png);
  // Also removes the alpha that palette expansion makes from a tRNS chunk: Pillow's
  // convert("RGB") drops transparency instead of compositing it.
  png_set_strip_alpha(job->png);
  if (!(color & PNG_COLOR_MASK_COLOR)) png_set_gray_to_rgb(job->png);
  png_set_interlace_handling(job->png);
  png_read_update_info(job->png, job->info);
  if (png_get_rowbytes(job->png, job->info) != (size_t)job->width * 3) {
    job->status = GIC_UNSUPPORTED;
    set_message(job->message, "PNG layout did not reduce to 8-bit RGB");
    return;
  }

  job->pixels = malloc(bytes);
  job->rows = malloc(sizeof(png_bytep) * job->height);
  if (job->pixels == NULL || job->rows == NULL) {
    job->status = GIC_OUT_OF_MEMORY;
    set_message(job->message, "cannot allocate the decoded image");
    return;
  }
  for (png_uint_32 y = 0; y < job->height; y++) {
    job->rows[y] = job->pixels + (size_t)y * job->width * 3;
  }
  png_read_image(job->png, job->rows);
  // png_read_end is skipped on purpose: chunks after the image data (and a missing IEND) do not
  // change the pixels, and Pillow does not insist on them either.
}

gic_status gic_decode_png(
    const uint8_t *data, size_t size, unsigned long long max_pixels, gic_image *out,
    char *message) {
  png_job job;
  memset(&job, 0, sizeof job);
  job.data = data;
  job.size = size;
  job.max_pixels = max_pixels;
  job.status = GIC_OK;
  job.message = message;
  png_decode_steps(&job);
  if (job.png != NULL) png_destroy_read_struct(&job.png, job.info ? &job.info : NULL, NULL);
  free(job.rows);
  if (job.status != GIC_OK) {
    free(job.pixels);
    return job.status;
  }
  out->width = (int)job.width;
  out->height = (int)job.height;
  out->pixels = job.pixels;
  return GIC_OK;
}

// MARK: JPEG error manager

typedef struct {
  struct jpeg_error_mgr manager;  // first, so libjpeg's pointer to it is a pointer to this
  jmp_buf jump;
  gic_status status;
  char *message;
} jpeg_failure;

static gic_status jpeg_status_for(int code) {
  switch (code) {
  case JERR_INPUT_EOF:
  case JERR_INPUT_EMPTY:
    return GIC_TRUNCATED;
  case JERR_BAD_PRECISION:
  case JERR_SOF_UNSUPPORTED:  // lossless (SOF3) and hierarchical JPEG: a valid file
  case JERR_NOT_COMPILED:
  case JERR_CONVERSION_NOTIMPL:
  case JERR_IMAGE_TOO_BIG:
  case JERR_WIDTH_OVERFLOW:
    return GIC_UNSUPPORTED;
  case JERR_OUT_OF_MEMORY:
    return GIC_OUT_OF_MEMORY;
  default:
    return GIC_CORRUPT;
  }
}

// Replaces libjpeg's error_exit, which prints and calls exit().
static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_failure *failure = (jpeg_failure *)cinfo->err;
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  if (failure->status == GIC_OK) failure->status = jpeg_status_for(cinfo->err->msg_code);
  if (cinfo->err->msg_code == JERR_SOF_UNSUPPORTED && failure->message != NULL) {
    snprintf(
        failure->message, GIC_MESSAGE_CAPACITY,
        "%s (a lossless or hierarchical JPEG, which this libjpeg does not decode; convert it "
        "to PNG)",
        text);
  } else {
    set_message(failure->message, text);
  }
  longjmp(failure->jump, 1);
}

// Replaces emit_message, which prints warnings. libjpeg treats running out of data as a
// warning and goes on with made-up grey blocks; Pillow refuses such files, and so do we.
static void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
    ((jpeg_failure *)cinfo->err)->status = GIC_TRUNCATED;
    jpeg_on_error(cinfo);
  }
  cinfo->err->num_warnings++;
}

static void jpeg_no_output(j_common_ptr cinfo) { (void)cinfo; }

static void jpeg_failure_init(jpeg_failure *failure, char *message) {
  jpeg_std_error(&failure->manager);
  failure->manager.error_exit = jpeg_on_error;
  failure->manager.emit_message = jpeg_on_message;
  failure->manager.output_message = jpeg_no_output;
  failure->status = GIC_OK;
  failure->message = message;
}

// MARK: JPEG decoding

typedef struct {
  const uint8_t *data;
  size_t size;
  unsigned long long max_pixels;
  jpeg_failure failure;
  struct jpeg_decompress_struct cinfo;
  int created;
  uint8_t *pixels;
  uint8_t *row;  // one CMYK scanline
} jpeg_decode_job;

// Pillow's CMYK -> RGB (Convert.c, cmyk2rgb) after its "CMYK;I" unpacker undoes Adobe's inversion:
// r = 255 - k - c * (255 - k) / 255, rounded as MULDIV255 does.
static uint8_t cmyk_channel(uint8_t stored_ink, uint8_t stored_black) {
  int ink = 255 - stored_ink;
  int not_black = stored_black;  // 255 - (255 - stored)
  int t = ink * not_black + 128;
  int v = not_black - (((t >> 8) + t) >> 8);
  return (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

static void jpeg_decode_steps(jpeg_decode_job *job) {
  struct jpeg_decompress_struct *cinfo = &job->cinfo;
  if (setjmp(job->failure.jump)) return;
  jpeg_create_decompress(cinfo);
  job->created = 1;
  jpeg_mem_src(cinfo, job->data, (unsigned long)job->size);
  jpeg_read_header(cinfo, TRUE);

  int cmyk = 0;
  switch (cinfo->num_components) {
  case 1:
  case 3:
    cinfo->out_color_space = JCS_RGB;  // libjpeg-turbo replicates grey itself
    break;
  case 4:
    cinfo->out_color_space = JCS_CMYK;  // YCCK is turned into CMYK by libjpeg
    cmyk = 1;
    break;
  default:
    job->failure.status = GIC_UNSUPPORTED;
    snprintf(
        job->failure.message, GIC_MESSAGE_CAPACITY, "JPEG with %d colour components",
        cinfo->num_components);
    return;
  }
  size_t bytes =
      rgb_size(
          cinfo->image_width, cinfo->image_height, job->max_pixels, &job->failure.status,
          job->failure.message);
  if (bytes == 0) return;

  jpeg_start_decompress(cinfo);
  size_t width = cinfo->output_width;
  job->pixels = malloc(bytes);
  if (cmyk) job->row = malloc(width * 4);
  if (job->pixels == NULL || (cmyk && job->row == NULL)) {
    job->failure.status = GIC_OUT_OF_MEMORY;
    set_message(job->failure.message, "cannot allocate the decoded image");
    return;
  }
  while (cinfo->output_scanline < cinfo->output_height) {
    uint8_t *dst = job->pixels + (size_t)cinfo->output_scanline * width * 3;
    JSAMPROW row = cmyk ? job->row : dst;
    if (jpeg_read_scanlines(cinfo, &row, 1) != 1) {
      job->failure.status = GIC_TRUNCATED;
      set_message(job->failure.message, "JPEG data ends early");
      return;
    }
    if (cmyk) {
      for (size_t x = 0; x < width; x++) {
        const uint8_t *p = job->row + x * 4;
        dst[x * 3 + 0] = cmyk_channel(p[0], p[3]);
        dst[x * 3 + 1] = cmyk_channel(p[1], p[3]);
        dst[x * 3 + 2] = cmyk_channel(p[2], p[3]);
      }
    }
  }
  // Reads on to the EOI marker: like Pillow, a file that lacks it counts as truncated.
  jpeg_finish_decompress(cinfo);
}

gic_status gic_decode_jpeg(
    const uint8_t *data, size_t size, unsigned long long max_pixels, gic_image *out,
    char *message) {
  jpeg_decode_job job;
  memset(&job, 0, sizeof job);
  job.data = data;
  job.size = size;
  job.max_pixels = max_pixels;
  jpeg_failure_init(&job.failure, message);
  job.cinfo.err = &job.failure.manager;
  jpeg_decode_steps(&job);
  if (job.created) jpeg_destroy_decompress(&job.cinfo);
  free(job.row);
  if (job.failure.status != GIC_OK) {
    free(job.pixels);
    return job.failure.status;
  }
  out->width = (int)job.cinfo.output_width;
  out->height = (int)job.cinfo.output_height;
  out->pixels = job.pixels;
  return GIC_OK;
}

// MARK: Encoding

gic_status gic_encode_png(
    const uint8_t *rgb, int width, int height, uint8_t **out, size_t *out_size, char *message) {
  if (width <= 0 || height <= 0) {
    set_message(message, "image has zero width or height");
    return GIC_INVALID_ARGUMENT;
  }
  // The simplified writer needs no setjmp and is exact for 8-bit RGB input.
  png_image image;
  memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = (png_uint_32)width;
  image.height = (png_uint_32)height;
  image.format = PNG_FORMAT_RGB;
  size_t capacity = 0;
  if (!png_image_write_to_memory(&image, NULL, &capacity, 0, rgb, 0, NULL)) {
    set_message(message, image.message);
    png_image_free(&image);
    return GIC_INVALID_ARGUMENT;
  }
  uint8_t *buffer = malloc(capacity);
  if (buffer == NULL) {
    set_message(message, "cannot allocate the PNG buffer");
    return GIC_OUT_OF_MEMORY;
  }
  size_t written = capacity;
  if (!png_image_write_to_memory(&image, buffer, &written, 0, rgb, 0, NULL)) {
    set_message(message, image.message);
    png_image_free(&image);
    free(buffer);
    return GIC_INVALID_ARGUMENT;
  }
  *out = buffer;
  *out_size = written;
  return GIC_OK;
}

typedef struct {
  const uint8_t *rgb;
  int width, height, quality;
  jpeg_failure failure;
  struct jpeg_compress_struct cinfo;
  int created;
  unsigned char *buffer;  // grown by libjpeg's memory destination with malloc
  unsigned long size;
} jpeg_encode_job;

static void jpeg_encode_steps(jpeg_encode_job *job) {
  struct jpeg_compress_struct *cinfo = &job->cinfo;
  if (setjmp(job->failure.jump)) return;
  jpeg_create_compress(cinfo);
  job->created = 1;
  jpeg_mem_dest(cinfo, &job->buffer, &job->size);
  cinfo->image_width = (JDIMENSION)job->width;
  cinfo->image_height = (JDIMENSION)job->height;
  cinfo->input_components = 3;
  cinfo->in_color_space = JCS_RGB;
  jpeg_set_defaults(cinfo);
  jpeg_set_quality(cinfo, job->quality, TRUE);
  jpeg_start_compress(cinfo, TRUE);
  while (cinfo->next_scanline < cinfo->image_height) {
    // libjpeg's API takes non-const rows but only reads them.
    JSAMPROW row = (JSAMPROW)(job->rgb + (size_t)cinfo->next_scanline * job->width * 3);
    jpeg_write_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_compress(cinfo);
}

gic_status gic_encode_jpeg(
    const uint8_t *rgb, int width, int height, int quality, uint8_t **out, size_t *out_size,
    char *message) {
  if (width <= 0 || height <= 0 || width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION) {
    set_message(message, "JPEG sides must be 1...65500 pixels");
    return GIC_INVALID_ARGUMENT;
  }
  if (quality < 1 || quality > 100) {
    set_message(message, "JPEG quality must be 1...100");
    return GIC_INVALID_ARGUMENT;
  }
  jpeg_encode_job job;
  memset(&job, 0, sizeof job);
  job.rgb = rgb;
  job.width = width;
  job.height = height;
  job.quality = quality;
  jpeg_failure_init(&job.failure, message);
  job.cinfo.err = &job.failure.manager;
  jpeg_encode_steps(&job);
  if (job.created) jpeg_destroy_compress(&job.cinfo);
  if (job.failure.status != GIC_OK) {
    free(job.buffer);
    return job.failure.status;
  }
  *out = job.buffer;
  *out_size = job.size;
  return GIC_OK;
}
