#define _GNU_SOURCE
#include "hdf5_points.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

// Held around every libhdf5 call in this process and around fork, so that a child never starts
// while another thread is inside libhdf5 (its locks and caches would be copied half-updated).
static pthread_mutex_t library_lock = PTHREAD_MUTEX_INITIALIZER;

static void set_message(char *message, const char *format, const char *name) {
  if (message == NULL) return;
  snprintf(message, GH5_MESSAGE_CAPACITY, format, name);
}

// Starts the library if needed and silences its error printing on this thread. Returns 0 on
// failure.
static int quiet_start(char *message) {
  if (H5open() < 0) {
    set_message(message, "%s", "the HDF5 library failed to start");
    return 0;
  }
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  return 1;
}

void gh5_free(void *pointer) { free(pointer); }

static gh5_status open_file(const char *path, int64_t *file, char *message) {
  if (!quiet_start(message)) return GH5_OPEN_FAILED;
  FILE *probe = fopen(path, "rb");
  if (probe == NULL) {
    set_message(message, "cannot open %s", path);
    return GH5_OPEN_FAILED;
  }
  fclose(probe);
  htri_t is_hdf5 = H5Fis_hdf5(path);
  if (is_hdf5 == 0) {
    set_message(message, "%s", "not an HDF5 file (no HDF5 signature)");
    return GH5_NOT_HDF5;
  }
  hid_t id = is_hdf5 > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
  if (id < 0) {
    set_message(message, "%s", "HDF5 could not open the file (corrupt or truncated superblock)");
    return GH5_NOT_HDF5;
  }
  *file = (int64_t)id;
  return GH5_OK;
}

static gh5_status create_memory(int64_t *file, char *message) {
  if (!quiet_start(message)) return GH5_OPEN_FAILED;
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0) {
    if (fapl >= 0) H5Pclose(fapl);
    set_message(message, "%s", "cannot set up an in-memory HDF5 file");
    return GH5_WRITE_FAILED;
  }
  // A name of its own: libhdf5 will not create a file while one of the same name is open, so
  // a shared name failed a second writer alive at the same time. Called under library_lock.
  static unsigned long long created = 0;
  char name[64];
  snprintf(name, sizeof name, "graft-in-memory-%llu.h5", ++created);
  hid_t id = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (id < 0) {
    set_message(message, "%s", "cannot create an in-memory HDF5 file");
    return GH5_WRITE_FAILED;
  }
  *file = (int64_t)id;
  return GH5_OK;
}

gh5_status gh5_create_memory(int64_t *file, char *message) {
  pthread_mutex_lock(&library_lock);
  gh5_status status = create_memory(file, message);
  pthread_mutex_unlock(&library_lock);
  return status;
}

int64_t gh5_open_object_count(void) {
  pthread_mutex_lock(&library_lock);
  int64_t count = (int64_t)H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL);
  pthread_mutex_unlock(&library_lock);
  return count;
}

static void close_file(int64_t file) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  if (file >= 0) H5Fclose((hid_t)file);
}

void gh5_close(int64_t file) {
  pthread_mutex_lock(&library_lock);
  close_file(file);
  pthread_mutex_unlock(&library_lock);
}

// Opens a dataset at the root, distinguishing "missing" from "not a dataset".
static gh5_status open_dataset(int64_t file, const char *name, hid_t *out, char *message) {
  if (!quiet_start(message)) return GH5_OPEN_FAILED;
  if (strchr(name, '/') != NULL || name[0] == '\0') {
    set_message(message, "bad dataset name '%s'", name);
    return GH5_INVALID_ARGUMENT;
  }
  htri_t exists = H5Lexists((hid_t)file, name, H5P_DEFAULT);
  if (exists <= 0) {
    set_message(message, "no dataset '%s'", name);
    return exists == 0 ? GH5_MISSING : GH5_READ_FAILED;
  }
  H5O_info_t object;
  if (H5Oget_info_by_name((hid_t)file, name, &object, H5P_DEFAULT) < 0 ||
      object.type != H5O_TYPE_DATASET) {
    set_message(message, "'%s' is not a dataset", name);
    return GH5_BAD_DATASET;
  }
  hid_t id = H5Dopen2((hid_t)file, name, H5P_DEFAULT);
  if (id < 0) {
    set_message(message, "cannot open dataset '%s'", name);
    return GH5_READ_FAILED;
  }
  *out = id;
  return GH5_OK;
}

static gh5_status dataset_info(
    int64_t file, const char *name, gh5_dataset_info *info, char *message) {
  hid_t dataset;
  gh5_status status = open_dataset(file, name, &dataset, message);
  if (status != GH5_OK) return status;
  memset(info, 0, sizeof(*info));
  status = GH5_BAD_DATASET;
  hid_t space = H5Dget_space(dataset);
  hid_t type = H5Dget_type(dataset);
  hid_t plist = H5Dget_create_plist(dataset);
  if (space < 0 || type < 0 || plist < 0) {
    set_message(message, "cannot inspect dataset '%s'", name);
    status = GH5_READ_FAILED;
    goto done;
  }
  H5S_class_t space_class = H5Sget_simple_extent_type(space);
  int rank = H5Sget_simple_extent_ndims(space);
  if ((space_class != H5S_SIMPLE && space_class != H5S_SCALAR) || rank < 0 ||
      rank > GH5_MAX_RANK) {
    set_message(message, "dataset '%s' has no simple shape of rank <= 8", name);
    goto done;
  }
  hsize_t dims[GH5_MAX_RANK];
  if (rank > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
    set_message(message, "cannot read the shape of dataset '%s'", name);
    goto done;
  }
  info->rank = rank;
  for (int i = 0; i < rank; i++) info->dims[i] = (uint64_t)dims[i];
  H5T_class_t type_class = H5Tget_class(type);
  info->type_class = type_class == H5T_FLOAT     ? GH5_CLASS_FLOAT
                     : type_class == H5T_INTEGER ? GH5_CLASS_INTEGER
                                                 : GH5_CLASS_OTHER;
  info->type_size = (int)H5Tget_size(type);
  int filters = H5Pget_nfilters(plist);
  info->filtered = filters > 0;
  info->storage_size = (uint64_t)H5Dget_storage_size(dataset);
  status = GH5_OK;
done:
  if (plist >= 0) H5Pclose(plist);
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  H5Dclose(dataset);
  return status;
}

// Reads a whole dataset into `out` as `memory_type`, after checking the element count.
static gh5_status read_all(
    int64_t file, const char *name, hid_t memory_type, void *out, uint64_t count,
    char *message) {
  gh5_dataset_info info;
  gh5_status status = dataset_info(file, name, &info, message);
  if (status != GH5_OK) return status;
  uint64_t elements = 1;
  for (int i = 0; i < info.rank; i++) elements *= info.dims[i];
  if (elements != count) {
    set_message(message, "buffer size does not match dataset '%s'", name);
    return GH5_INVALID_ARGUMENT;
  }
  if (info.type_class == GH5_CLASS_OTHER) {
    set_message(message, "dataset '%s' does not hold numbers", name);
    return GH5_BAD_DATASET;
  }
  if (count == 0) return GH5_OK;
  hid_t dataset;
  status = open_dataset(file, name, &dataset, message);
  if (status != GH5_OK) return status;
  herr_t result = H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
  H5Dclose(dataset);
  if (result < 0) {
    set_message(message, "reading dataset '%s' failed (corrupt or truncated data)", name);
    return GH5_READ_FAILED;
  }
  return GH5_OK;
}

static gh5_status read_int64(
    int64_t file, const char *name, int64_t *out, uint64_t count, char *message) {
  gh5_dataset_info info;
  gh5_status status = dataset_info(file, name, &info, message);
  if (status != GH5_OK) return status;
  if (info.type_class != GH5_CLASS_INTEGER) {
    set_message(message, "dataset '%s' does not hold integers", name);
    return GH5_BAD_DATASET;
  }
  return read_all(file, name, H5T_NATIVE_INT64, out, count, message);
}

static gh5_status write_dataset(
    int64_t file, const char *name, gh5_type type, int rank, const uint64_t *dims,
    const void *data, int gzip_level, char *message) {
  if (!quiet_start(message)) return GH5_OPEN_FAILED;
  if (rank < 1 || rank > GH5_MAX_RANK || gzip_level < 0 || gzip_level > 9) {
    set_message(message, "bad rank or gzip level for dataset '%s'", name);
    return GH5_INVALID_ARGUMENT;
  }
  hid_t file_type, memory_type;
  switch (type) {
    case GH5_F32: file_type = H5T_IEEE_F32LE; memory_type = H5T_NATIVE_FLOAT; break;
    case GH5_F64: file_type = H5T_IEEE_F64LE; memory_type = H5T_NATIVE_DOUBLE; break;
    case GH5_U8: file_type = H5T_STD_U8LE; memory_type = H5T_NATIVE_UINT8; break;
    case GH5_I32: file_type = H5T_STD_I32LE; memory_type = H5T_NATIVE_INT32; break;
    case GH5_I64: file_type = H5T_STD_I64LE; memory_type = H5T_NATIVE_INT64; break;
    default:
      set_message(message, "bad element type for dataset '%s'", name);
      return GH5_INVALID_ARGUMENT;
  }
  hsize_t shape[GH5_MAX_RANK];
  int empty = 0;
  for (int i = 0; i < rank; i++) {
    shape[i] = (hsize_t)dims[i];
    if (dims[i] == 0) empty = 1;
  }
  gh5_status status = GH5_WRITE_FAILED;
  hid_t space = H5Screate_simple(rank, shape, NULL);
  hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
  hid_t dataset = -1;
  if (space < 0 || plist < 0) goto done;
  if (gzip_level > 0 && !empty) {
    if (H5Pset_chunk(plist, rank, shape) < 0 || H5Pset_deflate(plist, (unsigned)gzip_level) < 0)
      goto done;
  }
  dataset = H5Dcreate2((hid_t)file, name, file_type, space, H5P_DEFAULT, plist, H5P_DEFAULT);
  if (dataset < 0) goto done;
  if (!empty && H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    goto done;
  status = GH5_OK;
done:
  if (status != GH5_OK) set_message(message, "writing dataset '%s' failed", name);
  if (dataset >= 0) H5Dclose(dataset);
  if (plist >= 0) H5Pclose(plist);
  if (space >= 0) H5Sclose(space);
  return status;
}

gh5_status gh5_write(
    int64_t file, const char *name, gh5_type type, int rank, const uint64_t *dims,
    const void *data, int gzip_level, char *message) {
  pthread_mutex_lock(&library_lock);
  gh5_status status = write_dataset(file, name, type, rank, dims, data, gzip_level, message);
  pthread_mutex_unlock(&library_lock);
  return status;
}

static gh5_status file_image(int64_t file, uint8_t **out, size_t *size, char *message) {
  if (!quiet_start(message)) return GH5_OPEN_FAILED;
  if (H5Fflush((hid_t)file, H5F_SCOPE_GLOBAL) < 0) {
    set_message(message, "%s", "flushing the in-memory HDF5 file failed");
    return GH5_WRITE_FAILED;
  }
  ssize_t length = H5Fget_file_image((hid_t)file, NULL, 0);
  if (length <= 0) {
    set_message(message, "%s", "cannot size the in-memory HDF5 file");
    return GH5_WRITE_FAILED;
  }
  uint8_t *buffer = malloc((size_t)length);
  if (buffer == NULL) {
    set_message(message, "%s", "out of memory");
    return GH5_OUT_OF_MEMORY;
  }
  if (H5Fget_file_image((hid_t)file, buffer, (size_t)length) != length) {
    free(buffer);
    set_message(message, "%s", "copying the in-memory HDF5 file failed");
    return GH5_WRITE_FAILED;
  }
  *out = buffer;
  *size = (size_t)length;
  return GH5_OK;
}

gh5_status gh5_image(int64_t file, uint8_t **out, size_t *size, char *message) {
  pthread_mutex_lock(&library_lock);
  gh5_status status = file_image(file, out, size, message);
  pthread_mutex_unlock(&library_lock);
  return status;
}

// ---- Files from disk, read in a child process ----

// What a child does with the file.
typedef enum { JOB_CHECK, JOB_INFO, JOB_READ_FLOAT, JOB_READ_INT64 } job_kind;

// What a child sends back through the pipe; the data of a read goes through a shared mapping.
typedef struct {
  int32_t status;
  char message[GH5_MESSAGE_CAPACITY];
  gh5_dataset_info info;
} child_reply;

static int write_fully(int fd, const void *data, size_t size) {
  const char *bytes = data;
  while (size > 0) {
    ssize_t n = write(fd, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    bytes += n;
    size -= (size_t)n;
  }
  return 1;
}

// Reads up to `size` bytes, stopping early only at end of file or an error; returns the count.
static size_t read_fully(int fd, void *data, size_t size) {
  char *bytes = data;
  size_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, bytes + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += (size_t)n;
  }
  return done;
}

// The child's whole life: never returns. `out` is a mapping shared with the parent.
static void run_child(
    int fd, job_kind kind, const char *path, const char *name, void *out, uint64_t count) {
  // A crash ends the child by its signal, which the parent reports; handlers the parent
  // installed (a sanitizer's, a fuzzer's) must not run here as if the parent had crashed.
  const int crash_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP};
  for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
    signal(crash_signals[i], SIG_DFL);
  child_reply reply;
  memset(&reply, 0, sizeof(reply));
  int64_t file = -1;
  gh5_status status = open_file(path, &file, reply.message);
  if (status == GH5_OK) {
    switch (kind) {
      case JOB_CHECK: break;
      case JOB_INFO: status = dataset_info(file, name, &reply.info, reply.message); break;
      case JOB_READ_FLOAT:
        status = read_all(file, name, H5T_NATIVE_FLOAT, out, count, reply.message);
        break;
      case JOB_READ_INT64: status = read_int64(file, name, out, count, reply.message); break;
    }
    close_file(file);
  }
  reply.status = (int32_t)status;
  _exit(write_fully(fd, &reply, sizeof(reply)) ? 0 : 1);
}

static const char *signal_name(int signal_number) {
  switch (signal_number) {
    case SIGSEGV: return "a segmentation fault";
    case SIGBUS: return "a bus error";
    case SIGFPE: return "an arithmetic fault";
    case SIGILL: return "an illegal instruction";
    case SIGABRT: return "an abort";
    case SIGKILL: return "SIGKILL (out of memory?)";
    default: return "a signal";
  }
}

// Runs `kind` on the file at `path` in a child process and collects its reply; `out` receives
// `count` elements of `element_size` bytes for the reads.
static gh5_status run_in_child(
    job_kind kind, const char *path, const char *name, gh5_dataset_info *info, void *out,
    uint64_t count, size_t element_size, char *message) {
  if (count > SIZE_MAX / 16) {
    set_message(message, "dataset '%s' is too large", name);
    return GH5_OUT_OF_MEMORY;
  }
  // The child reads straight into pages it shares with this process.
  size_t bytes = (size_t)count * element_size;
  void *shared = NULL;
  if (bytes > 0) {
    shared = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
      set_message(message, "no memory for dataset '%s'", name);
      return GH5_OUT_OF_MEMORY;
    }
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    if (shared != NULL) munmap(shared, bytes);
    set_message(message, "cannot start a process to read the file (pipe: %s)", strerror(errno));
    return GH5_SPAWN_FAILED;
  }
  pthread_mutex_lock(&library_lock);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    run_child(fds[1], kind, path, name, shared, count);
  }
  int fork_error = errno;
  pthread_mutex_unlock(&library_lock);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    if (shared != NULL) munmap(shared, bytes);
    set_message(message, "cannot start a process to read the file (fork: %s)",
                strerror(fork_error));
    return GH5_SPAWN_FAILED;
  }
  child_reply reply;
  int complete = read_fully(fds[0], &reply, sizeof(reply)) == sizeof(reply);
  close(fds[0]);
  int wait_status = 0;
  pid_t waited;
  do {
    waited = waitpid(pid, &wait_status, 0);
  } while (waited < 0 && errno == EINTR);
  int crashed = waited == pid && WIFSIGNALED(wait_status);
  int exited_cleanly =
      complete && (waited != pid || (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0));
  if (shared != NULL) {
    if (exited_cleanly && reply.status == GH5_OK) memcpy(out, shared, bytes);
    munmap(shared, bytes);
  }
  if (crashed || !exited_cleanly) {
    if (message == NULL) return GH5_CRASHED;
    if (crashed)
      snprintf(message, GH5_MESSAGE_CAPACITY,
               "libhdf5 crashed reading the file (%s in the reading process): the file is "
               "damaged",
               signal_name(WTERMSIG(wait_status)));
    else
      snprintf(message, GH5_MESSAGE_CAPACITY,
               "libhdf5 stopped reading the file (the reading process exited with status %d): "
               "the file is damaged",
               waited == pid && WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
    return GH5_CRASHED;
  }
  if (message != NULL) {
    memcpy(message, reply.message, GH5_MESSAGE_CAPACITY);
    message[GH5_MESSAGE_CAPACITY - 1] = '\0';
  }
  if (info != NULL) *info = reply.info;
  return (gh5_status)reply.status;
}

gh5_status gh5_file_check(const char *path, char *message) {
  return run_in_child(JOB_CHECK, path, "", NULL, NULL, 0, 0, message);
}

gh5_status gh5_file_info(
    const char *path, const char *name, gh5_dataset_info *info, char *message) {
  return run_in_child(JOB_INFO, path, name, info, NULL, 0, 0, message);
}

gh5_status gh5_file_read_float(
    const char *path, const char *name, float *out, uint64_t count, char *message) {
  return run_in_child(JOB_READ_FLOAT, path, name, NULL, out, count, sizeof(float), message);
}

gh5_status gh5_file_read_int64(
    const char *path, const char *name, int64_t *out, uint64_t count, char *message) {
  return run_in_child(JOB_READ_INT64, path, name, NULL, out, count, sizeof(int64_t), message);
}
