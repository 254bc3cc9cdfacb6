#ifndef GRAFT_HDF5_POINTS_H
#define GRAFT_HDF5_POINTS_H
// The few HDF5 calls that point-cloud datasets need, behind status codes and messages.
//
// HDF5 prints an error stack to stderr by default and some builds abort on misuse; every
// function here turns automatic error printing off on the calling thread (HDF5's error state is
// per thread in thread-safe builds), checks every return value and reports a gh5_status plus a
// message instead. Nothing is ever printed.
//
// Files from disk are read in a child process: libhdf5 1.10 dereferences a null pointer inside
// H5Fopen and H5Dopen2 on some damaged files (found by Tools/fuzz.sh hdf5; the input is in
// Fuzz/Regressions/hdf5), and a crash there must not take the caller with it. gh5_reader_open
// forks one child per file, which opens it and then answers requests (describe a dataset, read
// one) through a socket pair, the data through a memory file both map, until gh5_reader_close;
// a child that dies gives GH5_CRASHED, then and on every later request. libhdf5 itself runs in
// this process only on the in-memory files that gh5_create_memory makes.

#include <stddef.h>
#include <stdint.h>

/// What a call achieved.
typedef enum {
  GH5_OK = 0,
  /// The file is not an HDF5 file.
  GH5_NOT_HDF5 = 1,
  /// The file could not be opened (missing, unreadable) or the library failed to start.
  GH5_OPEN_FAILED = 2,
  /// No object of that name exists at the file's root.
  GH5_MISSING = 3,
  /// The object exists but is not a dataset of numbers with a simple shape of rank <= 8.
  GH5_BAD_DATASET = 4,
  /// Reading the data failed (corrupt or truncated file, failed decompression).
  GH5_READ_FAILED = 5,
  /// Creating or writing a dataset failed.
  GH5_WRITE_FAILED = 6,
  /// Bad arguments (a buffer whose size does not match the dataset, a rank out of range).
  GH5_INVALID_ARGUMENT = 7,
  GH5_OUT_OF_MEMORY = 8,
  /// libhdf5 crashed (or was killed) in the child process reading the file: a damaged file.
  GH5_CRASHED = 9,
  /// The child process could not be started (fork, socketpair or memfd_create failed).
  GH5_SPAWN_FAILED = 10,
} gh5_status;

/// Room for a message; longer ones are cut.
#define GH5_MESSAGE_CAPACITY 256
/// Room for a dataset name, its terminating NUL included.
#define GH5_NAME_CAPACITY 256
/// The largest rank a dataset may have.
#define GH5_MAX_RANK 8

/// The kind of numbers a dataset holds.
typedef enum {
  GH5_CLASS_FLOAT = 1,
  GH5_CLASS_INTEGER = 2,
  /// Strings, compounds, references, ...
  GH5_CLASS_OTHER = 3,
} gh5_class;

/// The element types the writer can store (little endian in the file).
typedef enum {
  GH5_F32 = 1,
  GH5_F64 = 2,
  GH5_U8 = 3,
  GH5_I32 = 4,
  GH5_I64 = 5,
} gh5_type;

/// Shape, element type and stored size of one dataset.
typedef struct {
  int rank;
  uint64_t dims[GH5_MAX_RANK];
  /// A gh5_class.
  int type_class;
  /// Bytes per element in the file.
  int type_size;
  /// Whether the data passes through filters (compression); then storage_size is the
  /// compressed size.
  int filtered;
  /// Bytes the data occupies in the file (0 when none was ever written).
  uint64_t storage_size;
} gh5_dataset_info;

/// A file from disk open in a child process (see above).
typedef struct gh5_reader gh5_reader;

/// Starts a child process that opens the file at `path` read-only as HDF5; on success `*reader`
/// serves the calls below until gh5_reader_close. Requests on one reader are serialised.
gh5_status gh5_reader_open(const char *path, gh5_reader **reader, char *message);

/// Ends the child process and releases the reader (NULL is allowed).
void gh5_reader_close(gh5_reader *reader);

/// Describes the dataset `name` at the root of the file.
gh5_status gh5_reader_info(
    gh5_reader *reader, const char *name, gh5_dataset_info *info, char *message);

/// Reads the whole dataset `name`, converted to float; `count` must equal its element count.
gh5_status gh5_reader_read_float(
    gh5_reader *reader, const char *name, float *out, uint64_t count, char *message);

/// Reads the whole integer dataset `name`, converted to int64; `count` must equal its element
/// count.
gh5_status gh5_reader_read_int64(
    gh5_reader *reader, const char *name, int64_t *out, uint64_t count, char *message);

/// Creates an empty file in memory (HDF5's core driver, no backing file); write datasets with
/// gh5_write and take the bytes with gh5_image.
gh5_status gh5_create_memory(int64_t *file, char *message);

/// Closes a handle from gh5_create_memory.
void gh5_close(int64_t file);

/// How many HDF5 objects (files, datasets, dataspaces, types, property lists opened through
/// files) are open in this process: 0 once every handle is closed. For tests that check that
/// the shim closes what it opens, on success and on every error path.
int64_t gh5_open_object_count(void);

/// Writes the dataset `name` of shape `dims[0..<rank]` and file type `type` from `data`, which
/// holds the matching C type (float, double, uint8_t, int32_t, int64_t), row-major. With
/// `gzip_level` 1...9 the data is chunked (one chunk) and deflated.
gh5_status gh5_write(
    int64_t file, const char *name, gh5_type type, int rank, const uint64_t *dims,
    const void *data, int gzip_level, char *message);

/// Flushes an in-memory file and copies its bytes; on success `*out` (release with gh5_free)
/// holds `*size` bytes.
gh5_status gh5_image(int64_t file, uint8_t **out, size_t *size, char *message);

/// Releases memory returned by gh5_image.
void gh5_free(void *pointer);

#endif
