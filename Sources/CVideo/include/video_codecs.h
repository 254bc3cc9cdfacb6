#ifndef GRAFT_VIDEO_CODECS_H
#define GRAFT_VIDEO_CODECS_H
// Video decoding with FFmpeg's libraries (libavformat, libavcodec, libswscale, libavutil) behind
// status codes, so Swift can throw named errors.
//
// FFmpeg's macros (AVERROR, AV_NOPTS_VALUE, ...) do not import into Swift and its log goes to
// stderr; every call into FFmpeg happens here. Nothing is ever printed: FFmpeg's last error line
// is kept per thread and returned in `message`.

#include <stddef.h>
#include <stdint.h>

/// What a call achieved.
typedef enum {
  GV_OK = 0,
  /// No more frames (gv_next_frame).
  GV_END = 1,
  /// The file does not exist or cannot be read.
  GV_NOT_FOUND = 2,
  /// The data is not a container FFmpeg recognises (a text file named .mp4).
  GV_UNRECOGNISED = 3,
  /// The container is recognised but ends before its headers or index (a cut file).
  GV_TRUNCATED = 4,
  /// The container is recognised but its headers are damaged.
  GV_CORRUPT = 5,
  /// The file has no streams at all.
  GV_NO_STREAMS = 6,
  /// The file has streams, none of them video.
  GV_NO_VIDEO_STREAM = 7,
  /// The video codec has no decoder in this FFmpeg (or no codec id at all).
  GV_UNSUPPORTED_CODEC = 8,
  /// Decoding failed beyond recovery (too many corrupt packets in a row).
  GV_DECODE_FAILED = 9,
  GV_OUT_OF_MEMORY = 10,
  /// Bad arguments (null pointers, a buffer of the wrong size).
  GV_INVALID_ARGUMENT = 11,
  /// A frame has more pixels than the limit.
  GV_TOO_MANY_PIXELS = 12,
  /// Seeking (or reopening to seek) failed.
  GV_SEEK_FAILED = 13,
} gv_status;

/// Room for a message; longer ones are cut.
#define GV_MESSAGE_CAPACITY 256

/// An open video stream of a file.
typedef struct gv_reader gv_reader;

/// What the container says about the chosen video stream.
typedef struct {
  /// Size of the decoded frames (before rotation).
  int coded_width;
  int coded_height;
  /// Size of the frames as displayed (rotation applied): what gv_convert writes.
  int width;
  int height;
  /// Clockwise rotation applied for display, in degrees (0, 90, 180 or 270; other angles in the
  /// metadata are reported here but not applied).
  int rotation;
  /// Frame count from the container (0 when it gives none; may be wrong for cut files).
  int64_t frame_count;
  /// Average frame rate (frames per second), 0 when unknown.
  double fps;
  /// Duration in seconds, negative when unknown.
  double duration;
  /// Start time of the stream in seconds (0 when unknown).
  double start_time;
  /// Index of the stream in the container.
  int stream_index;
  /// Codec name as FFmpeg names it ("h264", "vp9", "mjpeg", "gif", ...).
  char codec[32];
  /// Container name as FFmpeg names it ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", ...).
  char container[64];
  /// Pixel format of the decoder's output ("yuv420p", ...), empty before the first frame.
  char pixel_format[32];
} gv_info;

/// One decoded frame: its timestamp and its displayed size.
typedef struct {
  /// Presentation time in seconds from the stream's start (NaN when the frame has none).
  double time;
  /// Displayed size of this frame (rotation applied).
  int width;
  int height;
  /// Nonzero when the decoder flagged the frame as corrupt.
  int corrupt;
} gv_frame;

/// Opens `path`, picks its best video stream and its decoder (`threads` decoding threads, 0 for
/// FFmpeg's automatic choice). Frames with more than `max_pixels` pixels are refused (0: no
/// limit). On failure `*out` is NULL and `message` says why.
gv_status gv_open(
    const char *path, int threads, unsigned long long max_pixels, gv_reader **out, char *message);

/// The stream's facts.
void gv_get_info(const gv_reader *reader, gv_info *info);

/// Decodes the next frame into the reader (not yet converted). GV_END after the last frame.
/// Corrupt packets are skipped and counted (gv_corrupt_packets); only a long run of them fails.
gv_status gv_next_frame(gv_reader *reader, gv_frame *frame, char *message);

/// Converts the frame gv_next_frame returned to packed RGB24 as displayed, exactly as FFmpeg's
/// command line does for `-pix_fmt rgb24` (its autorotation, swscale with bicubic flags, the
/// frame's colour matrix and range). `rgb` holds `width * height * 3` bytes of the frame.
gv_status gv_convert(gv_reader *reader, uint8_t *rgb, size_t capacity, char *message);

/// Positions the reader so that the next frame is the first one whose presentation time is at or
/// after `seconds` from the stream's start (FFmpeg's accurate `-ss`): seeks to the key frame
/// before and drops the frames before the target; reopens the file when the container cannot
/// seek.
gv_status gv_seek(gv_reader *reader, double seconds, char *message);

/// Counts the stream's packets by reading the file without decoding, then rewinds to the start.
gv_status gv_count_packets(gv_reader *reader, int64_t *count, char *message);

/// Packets the decoder rejected so far.
int64_t gv_corrupt_packets(const gv_reader *reader);
/// Read errors met before the end of the file (a cut or damaged file).
int64_t gv_read_errors(const gv_reader *reader);

/// Closes the file and frees everything.
void gv_close(gv_reader *reader);

// MARK: - Writing

/// A video file being written.
typedef struct gv_writer gv_writer;

/// Creates `path` (container from its extension: .mp4, .mkv, ...) with one H.264 stream
/// (libx264 through libavcodec, yuv420p, single-threaded and without
/// macroblock-tree rate control, which reads memory libx264 never wrote, so the same frames give
/// the same bytes;
/// MPEG-4 part 2 when this FFmpeg has no H.264 encoder) of `width` x `height` (even) frames at
/// `fps`, quality `crf` (x264's scale, 0-51). On failure `*out` is NULL.
gv_status gv_writer_open(
    const char *path, int width, int height, int fps, int crf, gv_writer **out, char *message);

/// Encodes one frame of packed RGB24 (`width * height * 3` bytes).
gv_status gv_writer_add(gv_writer *writer, const uint8_t *rgb, char *message);

/// Flushes the encoder, writes the container's trailer, closes the file and frees the writer
/// (always, even on failure).
gv_status gv_writer_close(gv_writer *writer, char *message);

#endif
