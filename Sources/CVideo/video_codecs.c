// See include/video_codecs.h. The conversion follows what FFmpeg's command line (fftools, 5.x)
// does between the decoder and `-pix_fmt rgb24`: autorotation by the stream's display matrix
// (transpose / hflip / vflip on the decoded planes), then an automatically inserted scale filter
// with swscale flags "bicubic" that sets the colour matrix and range from each frame.

#include "video_codecs.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

// Consecutive rejected packets after which decoding gives up (a file of garbage after a valid
// header would otherwise be read to its end one error at a time, which is fine, but a decoder
// that keeps failing on every packet has nothing to give).
#define GV_MAX_CONSECUTIVE_ERRORS 500

// MARK: - Log capture

static _Thread_local char last_log[GV_MESSAGE_CAPACITY];
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

// Keeps the last error line of this thread instead of printing it.
static void log_callback(void *avcl, int level, const char *fmt, va_list args) {
  if (level > AV_LOG_ERROR) return;
  char line[GV_MESSAGE_CAPACITY];
  int print_prefix = 0;  // no "[class @ address]" prefix
  av_log_format_line(avcl, level, fmt, args, line, sizeof line, &print_prefix);
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
  if (n > 0) snprintf(last_log, sizeof last_log, "%s", line);
}

static void install_log(void) { av_log_set_callback(log_callback); }

static void set_message(char *message, const char *fmt, ...) {
  if (!message) return;
  va_list args;
  va_start(args, fmt);
  vsnprintf(message, GV_MESSAGE_CAPACITY, fmt, args);
  va_end(args);
}

// `what`: FFmpeg's error text, plus its last log line when there is one.
static void set_av_message(char *message, const char *what, int err) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, text, sizeof text);
  if (last_log[0])
    set_message(message, "%s: %s (%s)", what, text, last_log);
  else
    set_message(message, "%s: %s", what, text);
}

// MARK: - Orientation

// How frames are turned for display, as fftools' autorotation: a transpose with vf_transpose's
// direction (0 cclock_flip, 1 clock, 2 cclock, 3 clock_flip), or flips.
typedef struct {
  int transpose;  // -1: none
  int hflip;
  int vflip;
} orientation;

static orientation orientation_of(const int32_t *matrix, int *degrees) {
  orientation o = {-1, 0, 0};
  *degrees = 0;
  if (!matrix) return o;
  double theta = -round(av_display_rotation_get(matrix));
  theta -= 360 * floor(theta / 360 + 0.9 / 360);
  *degrees = (int)lround(theta);
  if (fabs(theta - 90) < 1.0) {
    o.transpose = matrix[3] > 0 ? 0 : 1;
  } else if (fabs(theta - 180) < 1.0) {
    o.hflip = matrix[0] < 0;
    o.vflip = matrix[4] < 0;
  } else if (fabs(theta - 270) < 1.0) {
    o.transpose = matrix[3] < 0 ? 3 : 2;
  } else if (fabs(theta) < 1.0) {
    o.vflip = matrix[4] < 0;
  }
  return o;
}

// MARK: - Reader

struct gv_reader {
  char *path;
  int threads;
  unsigned long long max_pixels;
  AVIOContext *io;
  AVFormatContext *format;
  AVCodecContext *codec;
  const AVCodec *decoder;
  AVStream *stream;
  int stream_index;
  AVPacket *packet;
  AVFrame *frame;
  AVFrame *turned;  // the frame's planes after autorotation
  struct SwsContext *sws;
  uint8_t *sws_buffer;  // aligned RGB rows, as a filter graph's frames are
  int sws_linesize;
  size_t sws_buffer_size;
  orientation turn;
  int rotation;
  int draining;
  int have_frame;
  int64_t skip_before;  // drop frames before this pts after a seek (AV_NOPTS_VALUE: none)
  int64_t corrupt_packets;
  int64_t read_errors;
  int consecutive_errors;
};

static void close_streams(gv_reader *r) {
  if (r->codec) avcodec_free_context(&r->codec);
  if (r->format) avformat_close_input(&r->format);
  if (r->io) avio_closep(&r->io);
  r->stream = NULL;
}

void gv_close(gv_reader *r) {
  if (!r) return;
  close_streams(r);
  av_packet_free(&r->packet);
  av_frame_free(&r->frame);
  av_frame_free(&r->turned);
  sws_freeContext(r->sws);
  av_free(r->sws_buffer);
  free(r->path);
  free(r);
}

// Does anything recognise the first bytes of the file? Tells a cut or damaged container from
// data that is no container at all.
static const AVInputFormat *probe_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t buffer[4096 + AVPROBE_PADDING_SIZE] = {0};
  size_t n = fread(buffer, 1, 4096, f);
  fclose(f);
  if (n == 0) return NULL;
  AVProbeData probe = {.filename = path, .buf = buffer, .buf_size = (int)n, .mime_type = NULL};
  int score = 0;
  // Extensions alone must not count: a text file named .mp4 is not an MP4.
  probe.filename = "";
  const AVInputFormat *format = av_probe_input_format2(&probe, 1, &score);
  return score >= AVPROBE_SCORE_MAX / 4 ? format : NULL;
}

// Opens the container and the decoder of its best video stream.
static gv_status open_streams(gv_reader *r, char *message) {
  last_log[0] = 0;
  FILE *check = fopen(r->path, "rb");
  if (!check) {
    set_message(message, "cannot open the file: %s", strerror(errno));
    return GV_NOT_FOUND;
  }
  fseek(check, 0, SEEK_END);
  long size = ftell(check);
  fclose(check);
  if (size <= 0) {
    set_message(message, "the file is empty");
    return GV_UNRECOGNISED;
  }
  const AVInputFormat *probed = probe_file(r->path);
  if (!probed) {
    set_message(message, "not a video file FFmpeg recognises");
    return GV_UNRECOGNISED;
  }
  // Our own I/O context outlives a failed open, so it can tell where the demuxer stopped.
  int err = avio_open(&r->io, r->path, AVIO_FLAG_READ);
  if (err < 0) {
    set_av_message(message, "cannot open the file", err);
    return GV_NOT_FOUND;
  }
  r->format = avformat_alloc_context();
  if (!r->format) return GV_OUT_OF_MEMORY;
  r->format->pb = r->io;
  err = avformat_open_input(&r->format, r->path, probed, NULL);
  if (err < 0) {
    r->format = NULL;
    if (err == AVERROR(ENOMEM)) return GV_OUT_OF_MEMORY;
    // A recognised container that cannot be opened: cut inside its headers or index (the
    // demuxer ran into the end of the file), or damaged.
    int cut = err == AVERROR_EOF || avio_feof(r->io) || avio_tell(r->io) >= avio_size(r->io) ||
              strstr(last_log, "moov atom not found");
    set_av_message(message, cut ? "the file ends before its headers" : "damaged headers", err);
    return cut ? GV_TRUNCATED : GV_CORRUPT;
  }
  err = avformat_find_stream_info(r->format, NULL);
  if (err < 0 && r->format->nb_streams == 0) {
    set_av_message(message, "cannot read stream information", err);
    return GV_CORRUPT;
  }
  // Reading the headers ran to the end of the file: a file cut inside its headers (an MP4
  // whose moov comes last) leaves no streams, or streams without a codec.
  AVIOContext *pb = r->io;
  int headers_at_end = pb && (avio_feof(pb) || avio_tell(pb) >= avio_size(pb));
  if (r->format->nb_streams == 0) {
    if (headers_at_end && strcmp(r->format->iformat->name, "mov,mp4,m4a,3gp,3g2,mj2") == 0) {
      set_message(message, "the file ends inside its headers: no stream is complete");
      return GV_TRUNCATED;
    }
    set_message(message, "the file has no streams");
    return GV_NO_STREAMS;
  }
  int index = -1;
  for (unsigned i = 0; i < r->format->nb_streams; i++) {
    AVStream *s = r->format->streams[i];
    if (s->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
        !(s->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
      index = (int)i;
      break;
    }
  }
  if (index < 0) {
    // Streams without any codec are what a header cut short (an MP4's moov) leaves behind.
    unsigned typed = 0;
    for (unsigned i = 0; i < r->format->nb_streams; i++)
      typed += r->format->streams[i]->codecpar->codec_id != AV_CODEC_ID_NONE;
    if (typed == 0) {
      int cut = headers_at_end;
      set_message(message, "%s: its %u stream(s) have no codec%s%s",
                  cut ? "the file ends inside its headers" : "damaged headers",
                  r->format->nb_streams, last_log[0] ? "; " : "", last_log);
      return cut ? GV_TRUNCATED : GV_CORRUPT;
    }
    set_message(message, "the file has %u stream(s), none of them video", r->format->nb_streams);
    return GV_NO_VIDEO_STREAM;
  }
  // Prefer FFmpeg's choice among several video streams.
  const AVCodec *decoder = NULL;
  int best = av_find_best_stream(r->format, AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
  if (best >= 0) index = best;
  r->stream_index = index;
  r->stream = r->format->streams[index];
  AVCodecParameters *par = r->stream->codecpar;
  if (!decoder) decoder = avcodec_find_decoder(par->codec_id);
  if (!decoder) {
    char tag[AV_FOURCC_MAX_STRING_SIZE] = {0};
    av_fourcc_make_string(tag, par->codec_tag);
    set_message(message, "no decoder for the video codec '%s' (tag %s)",
                avcodec_get_name(par->codec_id), tag);
    return GV_UNSUPPORTED_CODEC;
  }
  r->decoder = decoder;
  r->codec = avcodec_alloc_context3(decoder);
  if (!r->codec) return GV_OUT_OF_MEMORY;
  err = avcodec_parameters_to_context(r->codec, par);
  if (err < 0) {
    set_av_message(message, "bad codec parameters", err);
    return GV_CORRUPT;
  }
  r->codec->thread_count = r->threads;
  r->codec->pkt_timebase = r->stream->time_base;
  err = avcodec_open2(r->codec, decoder, NULL);
  if (err < 0) {
    set_av_message(message, "cannot open the decoder", err);
    return err == AVERROR(ENOMEM) ? GV_OUT_OF_MEMORY : GV_UNSUPPORTED_CODEC;
  }
  if (r->max_pixels && (unsigned long long)par->width * (unsigned long long)par->height >
                           r->max_pixels) {
    set_message(message, "frames of %dx%d exceed the limit of %llu pixels", par->width,
                par->height, r->max_pixels);
    return GV_TOO_MANY_PIXELS;
  }
  const int32_t *matrix =
      (const int32_t *)av_stream_get_side_data(r->stream, AV_PKT_DATA_DISPLAYMATRIX, NULL);
  r->turn = orientation_of(matrix, &r->rotation);
  r->draining = 0;
  r->have_frame = 0;
  r->consecutive_errors = 0;
  return GV_OK;
}

gv_status gv_open(
    const char *path, int threads, unsigned long long max_pixels, gv_reader **out,
    char *message) {
  if (!path || !out) return GV_INVALID_ARGUMENT;
  *out = NULL;
  pthread_once(&log_once, install_log);
  gv_reader *r = calloc(1, sizeof *r);
  if (!r) return GV_OUT_OF_MEMORY;
  r->path = strdup(path);
  r->threads = threads < 0 ? 0 : threads;
  r->max_pixels = max_pixels;
  r->skip_before = AV_NOPTS_VALUE;
  r->packet = av_packet_alloc();
  r->frame = av_frame_alloc();
  r->turned = av_frame_alloc();
  if (!r->path || !r->packet || !r->frame || !r->turned) {
    gv_close(r);
    return GV_OUT_OF_MEMORY;
  }
  gv_status status = open_streams(r, message);
  if (status != GV_OK) {
    gv_close(r);
    return status;
  }
  *out = r;
  return GV_OK;
}

static double seconds(int64_t ts, AVRational base) {
  return ts == AV_NOPTS_VALUE ? NAN : ts * av_q2d(base);
}

void gv_get_info(const gv_reader *r, gv_info *info) {
  memset(info, 0, sizeof *info);
  if (!r->stream || !r->codec) return;
  AVCodecParameters *par = r->stream->codecpar;
  info->coded_width = par->width;
  info->coded_height = par->height;
  int swap = r->turn.transpose >= 0;
  info->width = swap ? par->height : par->width;
  info->height = swap ? par->width : par->height;
  info->rotation = r->rotation;
  info->frame_count = r->stream->nb_frames > 0 ? r->stream->nb_frames : 0;
  AVRational rate = r->stream->avg_frame_rate;
  if (rate.num <= 0 || rate.den <= 0) rate = r->stream->r_frame_rate;
  info->fps = rate.num > 0 && rate.den > 0 ? av_q2d(rate) : 0;
  if (r->stream->duration != AV_NOPTS_VALUE && r->stream->duration > 0)
    info->duration = seconds(r->stream->duration, r->stream->time_base);
  else if (r->format->duration != AV_NOPTS_VALUE && r->format->duration > 0)
    info->duration = r->format->duration / (double)AV_TIME_BASE;
  else
    info->duration = -1;
  info->start_time = r->stream->start_time == AV_NOPTS_VALUE
                         ? 0
                         : seconds(r->stream->start_time, r->stream->time_base);
  info->stream_index = r->stream_index;
  snprintf(info->codec, sizeof info->codec, "%s", avcodec_get_name(par->codec_id));
  snprintf(info->container, sizeof info->container, "%s", r->format->iformat->name);
  const char *pix = av_get_pix_fmt_name(r->codec->pix_fmt);
  snprintf(info->pixel_format, sizeof info->pixel_format, "%s", pix ? pix : "");
}

int64_t gv_corrupt_packets(const gv_reader *r) { return r->corrupt_packets; }
int64_t gv_read_errors(const gv_reader *r) { return r->read_errors; }

// MARK: - Decoding

static gv_status decode_one(gv_reader *r, char *message) {
  for (;;) {
    int err = avcodec_receive_frame(r->codec, r->frame);
    if (err == 0) {
      r->consecutive_errors = 0;
      return GV_OK;
    }
    if (err == AVERROR_EOF) return GV_END;
    if (err != AVERROR(EAGAIN)) {
      // A frame-threaded decoder reports a bad packet here.
      r->corrupt_packets++;
      if (++r->consecutive_errors > GV_MAX_CONSECUTIVE_ERRORS) {
        set_av_message(message, "too many corrupt packets in a row", err);
        return GV_DECODE_FAILED;
      }
      continue;
    }
    if (r->draining) return GV_END;
    last_log[0] = 0;
    err = av_read_frame(r->format, r->packet);
    if (err < 0) {
      if (err != AVERROR_EOF) r->read_errors++;
      r->draining = 1;
      avcodec_send_packet(r->codec, NULL);
      continue;
    }
    if (r->packet->stream_index != r->stream_index) {
      av_packet_unref(r->packet);
      continue;
    }
    err = avcodec_send_packet(r->codec, r->packet);
    av_packet_unref(r->packet);
    if (err < 0 && err != AVERROR(EAGAIN)) {
      if (err == AVERROR(ENOMEM)) return GV_OUT_OF_MEMORY;
      r->corrupt_packets++;
      if (++r->consecutive_errors > GV_MAX_CONSECUTIVE_ERRORS) {
        set_av_message(message, "too many corrupt packets in a row", err);
        return GV_DECODE_FAILED;
      }
    }
  }
}

gv_status gv_next_frame(gv_reader *r, gv_frame *out, char *message) {
  if (!r || !out || !r->codec) return GV_INVALID_ARGUMENT;
  r->have_frame = 0;
  for (;;) {
    gv_status status = decode_one(r, message);
    if (status != GV_OK) return status;
    int64_t pts = r->frame->best_effort_timestamp;
    if (r->skip_before != AV_NOPTS_VALUE) {
      if (pts != AV_NOPTS_VALUE && pts < r->skip_before) continue;
      r->skip_before = AV_NOPTS_VALUE;
    }
    int w = r->frame->width, h = r->frame->height;
    if (w <= 0 || h <= 0) continue;
    if (r->max_pixels && (unsigned long long)w * (unsigned long long)h > r->max_pixels) {
      set_message(message, "a frame of %dx%d exceeds the limit of %llu pixels", w, h,
                  r->max_pixels);
      return GV_TOO_MANY_PIXELS;
    }
    int swap = r->turn.transpose >= 0;
    out->width = swap ? h : w;
    out->height = swap ? w : h;
    int64_t start = r->stream->start_time == AV_NOPTS_VALUE ? 0 : r->stream->start_time;
    out->time = pts == AV_NOPTS_VALUE ? NAN : seconds(pts - start, r->stream->time_base);
    out->corrupt = (r->frame->flags & AV_FRAME_FLAG_CORRUPT) != 0;
    r->have_frame = 1;
    return GV_OK;
  }
}

// MARK: - Conversion

// Planar formats whose planes vf_transpose / vf_hflip move as they are: 8 bits per sample, one
// byte per sample in each plane, equal horizontal and vertical chroma subsampling.
static int can_turn_planes(enum AVPixelFormat format, int transpose) {
  const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(format);
  if (!d || (d->flags & (AV_PIX_FMT_FLAG_HWACCEL | AV_PIX_FMT_FLAG_PAL |
                         AV_PIX_FMT_FLAG_BITSTREAM | AV_PIX_FMT_FLAG_BE)))
    return 0;
  if (!(d->flags & AV_PIX_FMT_FLAG_PLANAR) && d->nb_components > 1) return 0;
  for (int c = 0; c < d->nb_components; c++) {
    if (d->comp[c].depth != 8 || d->comp[c].step != 1) return 0;
  }
  if (transpose && d->log2_chroma_w != d->log2_chroma_h) return 0;
  return 1;
}

// out[tr & 2 ? W-1-j : j][tr & 1 ? H-1-i : i] = in[i][j] for a transpose; flips otherwise.
static void turn_plane(
    const uint8_t *src, int src_stride, int w, int h, uint8_t *dst, int dst_stride, size_t pixel,
    orientation o) {
  for (int i = 0; i < h; i++) {
    const uint8_t *row = src + (ptrdiff_t)i * src_stride;
    for (int j = 0; j < w; j++) {
      int y, x;
      if (o.transpose >= 0) {
        y = (o.transpose & 2) ? w - 1 - j : j;
        x = (o.transpose & 1) ? h - 1 - i : i;
      } else {
        y = o.vflip ? h - 1 - i : i;
        x = o.hflip ? w - 1 - j : j;
      }
      memcpy(dst + (ptrdiff_t)y * dst_stride + (size_t)x * pixel, row + (size_t)j * pixel, pixel);
    }
  }
}

static int is_turned(orientation o) { return o.transpose >= 0 || o.hflip || o.vflip; }

// The frame with its planes turned for display, in r->turned.
static gv_status turn_frame_planes(gv_reader *r, const AVFrame *in, char *message) {
  const AVPixFmtDescriptor *d = av_pix_fmt_desc_get(in->format);
  int swap = r->turn.transpose >= 0;
  av_frame_unref(r->turned);
  r->turned->format = in->format;
  r->turned->width = swap ? in->height : in->width;
  r->turned->height = swap ? in->width : in->height;
  int err = av_frame_get_buffer(r->turned, 0);
  if (err < 0) {
    set_av_message(message, "cannot allocate a frame", err);
    return GV_OUT_OF_MEMORY;
  }
  av_frame_copy_props(r->turned, in);
  int planes = av_pix_fmt_count_planes(in->format);
  for (int p = 0; p < planes; p++) {
    int chroma = (p == 1 || p == 2) && d->nb_components > 2;
    int pw = chroma ? AV_CEIL_RSHIFT(in->width, d->log2_chroma_w) : in->width;
    int ph = chroma ? AV_CEIL_RSHIFT(in->height, d->log2_chroma_h) : in->height;
    turn_plane(in->data[p], in->linesize[p], pw, ph, r->turned->data[p], r->turned->linesize[p],
               1, r->turn);
  }
  return GV_OK;
}

// vf_scale's parse_yuv_type("auto", colorspace): the frame's matrix, BT.601 when unknown.
static const int *coefficients_for(enum AVColorSpace space) {
  int s = (int)space;
  if (s < 1 || s > 10 || s == 8) s = AVCOL_SPC_BT470BG;
  return sws_getCoefficients(s);
}

gv_status gv_convert(gv_reader *r, uint8_t *rgb, size_t capacity, char *message) {
  if (!r || !rgb) return GV_INVALID_ARGUMENT;
  if (!r->have_frame) {
    set_message(message, "no decoded frame to convert");
    return GV_INVALID_ARGUMENT;
  }
  const AVFrame *frame = r->frame;
  int turn = is_turned(r->turn);
  int planes_turned = turn && can_turn_planes(frame->format, r->turn.transpose >= 0);
  if (planes_turned) {
    gv_status status = turn_frame_planes(r, frame, message);
    if (status != GV_OK) return status;
    frame = r->turned;
  }
  int w = frame->width, h = frame->height;
  int swap_after = turn && !planes_turned && r->turn.transpose >= 0;
  int out_w = swap_after ? h : w, out_h = swap_after ? w : h;
  if (capacity != (size_t)out_w * out_h * 3) {
    set_message(message, "buffer of %zu bytes for a %dx%d frame", capacity, out_w, out_h);
    return GV_INVALID_ARGUMENT;
  }
  r->sws = sws_getCachedContext(r->sws, w, h, frame->format, w, h, AV_PIX_FMT_RGB24, SWS_BICUBIC,
                                NULL, NULL, NULL);
  if (!r->sws) {
    set_message(message, "swscale cannot convert %s to rgb24",
                av_get_pix_fmt_name(frame->format));
    return GV_UNSUPPORTED_CODEC;
  }
  // As vf_scale does for every frame: the frame's matrix, its range when it states one.
  int *inv_table, *table, in_full, out_full, brightness, contrast, saturation;
  sws_getColorspaceDetails(r->sws, &inv_table, &in_full, &table, &out_full, &brightness,
                           &contrast, &saturation);
  const int *matrix = coefficients_for(frame->colorspace);
  if (frame->color_range != AVCOL_RANGE_UNSPECIFIED)
    in_full = frame->color_range == AVCOL_RANGE_JPEG;
  sws_setColorspaceDetails(r->sws, matrix, in_full, matrix, out_full, brightness, contrast,
                           saturation);
  // Aligned destination rows, as the filter graph's frames have: swscale's SIMD paths depend
  // on it, and the numbers must be the command line's.
  int linesize = FFALIGN(w * 3, 64);
  size_t need = (size_t)linesize * h + 64;
  if (need > r->sws_buffer_size) {
    av_free(r->sws_buffer);
    r->sws_buffer = av_malloc(need);
    r->sws_buffer_size = r->sws_buffer ? need : 0;
    if (!r->sws_buffer) return GV_OUT_OF_MEMORY;
  }
  uint8_t *dst[4] = {r->sws_buffer, NULL, NULL, NULL};
  int dst_stride[4] = {linesize, 0, 0, 0};
  int rows = sws_scale(r->sws, (const uint8_t *const *)frame->data, frame->linesize, 0, h, dst,
                       dst_stride);
  if (rows != h) {
    set_message(message, "swscale converted %d of %d rows", rows, h);
    return GV_DECODE_FAILED;
  }
  if (turn && !planes_turned) {
    turn_plane(r->sws_buffer, linesize, w, h, rgb, out_w * 3, 3, r->turn);
  } else {
    for (int y = 0; y < h; y++)
      memcpy(rgb + (size_t)y * w * 3, r->sws_buffer + (size_t)y * linesize, (size_t)w * 3);
  }
  return GV_OK;
}

// MARK: - Seeking and counting

static gv_status reopen(gv_reader *r, char *message) {
  close_streams(r);
  return open_streams(r, message);
}

gv_status gv_seek(gv_reader *r, double secs, char *message) {
  if (!r || !r->format || !(secs >= 0)) return GV_INVALID_ARGUMENT;
  AVRational base = r->stream->time_base;
  int64_t start = r->stream->start_time == AV_NOPTS_VALUE ? 0 : r->stream->start_time;
  int64_t target = start + (int64_t)llround(secs / av_q2d(base));
  int err = av_seek_frame(r->format, r->stream_index, target, AVSEEK_FLAG_BACKWARD);
  if (err >= 0) {
    avcodec_flush_buffers(r->codec);
    r->draining = 0;
  } else {
    // Containers without an index (GIF, some AVI): start over and decode forward.
    if (reopen(r, message) != GV_OK) return GV_SEEK_FAILED;
  }
  r->have_frame = 0;
  r->consecutive_errors = 0;
  r->skip_before = target;
  return GV_OK;
}

gv_status gv_count_packets(gv_reader *r, int64_t *count, char *message) {
  if (!r || !count || !r->format) return GV_INVALID_ARGUMENT;
  int64_t n = 0;
  for (;;) {
    int err = av_read_frame(r->format, r->packet);
    if (err < 0) break;
    if (r->packet->stream_index == r->stream_index) n++;
    av_packet_unref(r->packet);
  }
  *count = n;
  gv_status status = reopen(r, message);
  r->skip_before = AV_NOPTS_VALUE;
  return status;
}

// MARK: - Writing

struct gv_writer {
  AVFormatContext *format;
  AVCodecContext *codec;
  AVStream *stream;
  AVFrame *frame;
  AVPacket *packet;
  struct SwsContext *sws;
  int64_t next_pts;
  int header_written;
};

static void free_writer(gv_writer *w) {
  if (!w) return;
  if (w->format && w->format->pb) avio_closep(&w->format->pb);
  avformat_free_context(w->format);
  avcodec_free_context(&w->codec);
  av_frame_free(&w->frame);
  av_packet_free(&w->packet);
  sws_freeContext(w->sws);
  free(w);
}

// Sends `frame` (NULL: flush) and writes every packet the encoder gives back.
static gv_status write_packets(gv_writer *w, const AVFrame *frame, char *message) {
  int err = avcodec_send_frame(w->codec, frame);
  if (err < 0) {
    set_av_message(message, "the encoder refused a frame", err);
    return GV_DECODE_FAILED;
  }
  for (;;) {
    err = avcodec_receive_packet(w->codec, w->packet);
    if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return GV_OK;
    if (err < 0) {
      set_av_message(message, "encoding failed", err);
      return GV_DECODE_FAILED;
    }
    // One frame per tick of the codec's time base: every packet lasts one frame, the last
    // one included (so the duration and the average rate come out exact).
    if (w->packet->duration <= 0) w->packet->duration = 1;
    av_packet_rescale_ts(w->packet, w->codec->time_base, w->stream->time_base);
    w->packet->stream_index = w->stream->index;
    err = av_interleaved_write_frame(w->format, w->packet);
    if (err < 0) {
      set_av_message(message, "cannot write a packet", err);
      return GV_DECODE_FAILED;
    }
  }
}

gv_status gv_writer_open(
    const char *path, int width, int height, int fps, int crf, gv_writer **out, char *message) {
  if (!path || !out || width <= 0 || height <= 0 || (width | height) & 1 || fps <= 0 ||
      crf < 0 || crf > 51) {
    set_message(message, "need even positive sizes, fps > 0 and crf in 0...51");
    return GV_INVALID_ARGUMENT;
  }
  *out = NULL;
  pthread_once(&log_once, install_log);
  last_log[0] = 0;
  gv_writer *w = calloc(1, sizeof *w);
  if (!w) return GV_OUT_OF_MEMORY;
  int err = avformat_alloc_output_context2(&w->format, NULL, NULL, path);
  if (err < 0 || !w->format) {
    set_av_message(message, "no container for this file name", err);
    free_writer(w);
    return GV_INVALID_ARGUMENT;
  }
  const AVCodec *encoder = avcodec_find_encoder_by_name("libx264");
  if (!encoder) encoder = avcodec_find_encoder(AV_CODEC_ID_MPEG4);
  if (!encoder) {
    set_message(message, "this FFmpeg has neither an H.264 nor an MPEG-4 encoder");
    free_writer(w);
    return GV_UNSUPPORTED_CODEC;
  }
  w->stream = avformat_new_stream(w->format, NULL);
  w->codec = avcodec_alloc_context3(encoder);
  w->frame = av_frame_alloc();
  w->packet = av_packet_alloc();
  if (!w->stream || !w->codec || !w->frame || !w->packet) {
    free_writer(w);
    return GV_OUT_OF_MEMORY;
  }
  w->codec->width = width;
  w->codec->height = height;
  w->codec->pix_fmt = AV_PIX_FMT_YUV420P;
  w->codec->time_base = (AVRational){1, fps};
  w->codec->framerate = (AVRational){fps, 1};
  w->codec->gop_size = fps;
  w->codec->thread_count = 1;
  if (w->format->oformat->flags & AVFMT_GLOBALHEADER)
    w->codec->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary *options = NULL;
  if (strcmp(encoder->name, "libx264") == 0) {
    char value[8];
    snprintf(value, sizeof value, "%d", crf);
    av_dict_set(&options, "crf", value, 0);
    av_dict_set(&options, "preset", "medium", 0);
    // Macroblock-tree rate control reads memory libx264 never wrote, so the same frames gave
    // different bytes from run to run (and a model trained on them learned differently):
    // without it the output depends on the frames alone (CaptionedClipsTests).
    av_dict_set(&options, "x264-params", "mbtree=0", 0);
  } else {
    w->codec->qmin = w->codec->qmax = 2 + crf / 6;
  }
  err = avcodec_open2(w->codec, encoder, &options);
  av_dict_free(&options);
  if (err < 0) {
    set_av_message(message, "cannot open the encoder", err);
    free_writer(w);
    return GV_UNSUPPORTED_CODEC;
  }
  avcodec_parameters_from_context(w->stream->codecpar, w->codec);
  w->stream->time_base = w->codec->time_base;
  w->frame->format = AV_PIX_FMT_YUV420P;
  w->frame->width = width;
  w->frame->height = height;
  if (av_frame_get_buffer(w->frame, 0) < 0) {
    free_writer(w);
    return GV_OUT_OF_MEMORY;
  }
  err = avio_open(&w->format->pb, path, AVIO_FLAG_WRITE);
  if (err < 0) {
    set_av_message(message, "cannot create the file", err);
    free_writer(w);
    return GV_NOT_FOUND;
  }
  AVDictionary *muxer = NULL;
  // The index first, so a cut file still holds its frames.
  av_dict_set(&muxer, "movflags", "+faststart", 0);
  err = avformat_write_header(w->format, &muxer);
  av_dict_free(&muxer);
  if (err < 0) {
    set_av_message(message, "cannot write the header", err);
    free_writer(w);
    return GV_DECODE_FAILED;
  }
  w->header_written = 1;
  w->sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                          SWS_BICUBIC, NULL, NULL, NULL);
  if (!w->sws) {
    free_writer(w);
    return GV_OUT_OF_MEMORY;
  }
  *out = w;
  return GV_OK;
}

gv_status gv_writer_add(gv_writer *w, const uint8_t *rgb, char *message) {
  if (!w || !rgb) return GV_INVALID_ARGUMENT;
  if (av_frame_make_writable(w->frame) < 0) return GV_OUT_OF_MEMORY;
  const uint8_t *src[4] = {rgb, NULL, NULL, NULL};
  int stride[4] = {w->codec->width * 3, 0, 0, 0};
  sws_scale(w->sws, src, stride, 0, w->codec->height, w->frame->data, w->frame->linesize);
  w->frame->pts = w->next_pts++;
  return write_packets(w, w->frame, message);
}

gv_status gv_writer_close(gv_writer *w, char *message) {
  if (!w) return GV_INVALID_ARGUMENT;
  gv_status status = write_packets(w, NULL, message);
  if (w->header_written) {
    int err = av_write_trailer(w->format);
    if (err < 0 && status == GV_OK) {
      set_av_message(message, "cannot write the trailer", err);
      status = GV_DECODE_FAILED;
    }
  }
  free_writer(w);
  return status;
}
