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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
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

static herr_t note_allocation_failure(unsigned n, const H5E_error2_t *error, void *found) {
  (void)n;
  if (error->maj_num == H5E_RESOURCE || error->min_num == H5E_CANTALLOC ||
      error->min_num == H5E_NOSPACE)
    *(int *)found = 1;
  return 0;
}

// Whether the call that just failed on this thread failed for want of memory (in the reading
// child: its address-space limit, see limit_child).
static int failed_for_memory(void) {
  int found = 0;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, note_allocation_failure, &found);
  return found;
}

// Why the libhdf5 call that just failed did: the reading child's memory limit, or `otherwise`.
static const char *failure_reason(const char *otherwise) {
  return failed_for_memory() ? " (libhdf5 reached the reading process's memory limit: it needs "
                               "far more memory than the data it reads)"
                             : otherwise;
}

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
    set_message(message, "HDF5 could not open the file%s",
                failure_reason(" (corrupt or truncated superblock)"));
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
  // A chunked dataset whose chunks have another rank than its shape only comes from a damaged
  // file, and libhdf5 1.10 reading one allocates without end (Fuzz/Regressions/hdf5/
  // unbounded-memory-growth.h5: shape [2], chunks [2, 16, 3]).
  if (H5Pget_layout(plist) == H5D_CHUNKED) {
    hsize_t chunk[GH5_MAX_RANK];
    int chunk_rank = H5Pget_chunk(plist, GH5_MAX_RANK, chunk);
    int zero_chunk = 0;
    for (int i = 0; i < chunk_rank && i < GH5_MAX_RANK; i++) zero_chunk |= chunk[i] == 0;
    if (chunk_rank != rank || zero_chunk) {
      set_message(message, "dataset '%s' is damaged (its chunks do not match its shape)", name);
      status = GH5_READ_FAILED;
      goto done;
    }
  }
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
  // Asked before H5Dclose, which (as every libhdf5 call) empties the error stack.
  const char *why = result < 0 ? failure_reason(" (corrupt or truncated data)") : "";
  H5Dclose(dataset);
  if (result < 0) {
    char format[GH5_MESSAGE_CAPACITY];
    snprintf(format, sizeof format, "reading dataset '%%s' failed%s", why);
    set_message(message, format, name);
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

// What the parent asks of the child.
typedef enum { REQUEST_INFO = 1, REQUEST_READ_FLOAT = 2, REQUEST_READ_INT64 = 3 } request_kind;

typedef struct {
  int32_t kind;
  char name[GH5_NAME_CAPACITY];
  /// Elements to read (the data goes through the reader's shared memory file).
  uint64_t count;
} child_request;

// What the child answers: after opening the file, and after each request.
typedef struct {
  int32_t status;
  char message[GH5_MESSAGE_CAPACITY];
  gh5_dataset_info info;
} child_reply;

struct gh5_reader {
  // One request at a time.
  pthread_mutex_t lock;
  // The child, or -1 once it is reaped.
  pid_t pid;
  // This process's end of the socket pair the requests and replies travel through.
  int socket;
  // A memory file both processes map: the child reads a dataset into it, this process copies it
  // out. Sized per read, emptied after.
  int data;
  // GH5_OK while the child lives; once it has died, what every later call returns.
  gh5_status failure;
  char failure_message[GH5_MESSAGE_CAPACITY];
};

static int send_fully(int fd, const void *data, size_t size) {
  const char *bytes = data;
  while (size > 0) {
    // MSG_NOSIGNAL: a child that has died must give an error here, not SIGPIPE.
    ssize_t n = send(fd, bytes, size, MSG_NOSIGNAL);
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

// Closes every descriptor above stderr except `a` and `b` (a < b): the child keeps no other
// reader's socket open, so each reader's child sees its own parent go.
static void close_other_descriptors(int a, int b) {
  if (a > 3) close_range(3, (unsigned)a - 1, 0);
  if (b > a + 1) close_range((unsigned)a + 1, (unsigned)b - 1, 0);
  close_range((unsigned)b + 1, ~0U, 0);
}

// ---- The reading child's limits ----
//
// A damaged file can make libhdf5 allocate without end (one the fuzzer found grows by about
// 370 MB a second: Fuzz/Regressions/hdf5/unbounded-memory-growth.h5) or, in principle, loop. The
// child therefore runs under an address-space limit and a CPU-time limit, reset before each
// request to what that request can need, so libhdf5's allocations fail (an error) or the kernel
// stops the child (GH5_CRASHED, named) long before the machine's memory or the user's patience
// runs out. Both are measured from what the child had when it started: it is a copy of the
// caller, whose own mappings (a model's weights, a sanitizer's shadow memory) it keeps.

// Address space libhdf5 may use beyond the child's start and the request's own data: its
// metadata and chunk caches (a few MB by default), a compressed chunk being inflated, type
// conversion buffers (1 MB by default).
static const uint64_t child_memory_headroom = 256ull << 20;
// CPU seconds every request may take, plus one per `child_cpu_bytes_per_second` of its data
// (inflating gzip runs at well over 50 MB/s, so this is a damaged file, not a slow one).
static const uint64_t child_cpu_seconds = 60;
static const uint64_t child_cpu_bytes_per_second = 10ull << 20;

// The child's address space when it started, in bytes (0: unknown, no memory limit).
static uint64_t child_start_address_space = 0;
// The process that started the child.
static pid_t child_parent = 0;

static uint64_t address_space_now(void) {
  FILE *statm = fopen("/proc/self/statm", "r");
  if (statm == NULL) return 0;
  unsigned long long pages = 0;
  int read = fscanf(statm, "%llu", &pages);
  fclose(statm);
  long page_size = sysconf(_SC_PAGESIZE);
  return read == 1 && page_size > 0 ? pages * (uint64_t)page_size : 0;
}

// Lowers (or raises back) a soft limit to `value`, never above the hard limit the caller had.
static void set_soft_limit(int resource, uint64_t value) {
  struct rlimit limit;
  if (getrlimit(resource, &limit) != 0) return;
  rlim_t wanted = value >= (uint64_t)RLIM_INFINITY ? RLIM_INFINITY : (rlim_t)value;
  if (limit.rlim_max != RLIM_INFINITY && (wanted == RLIM_INFINITY || wanted > limit.rlim_max))
    wanted = limit.rlim_max;
  limit.rlim_cur = wanted;
  (void)setrlimit(resource, &limit);
}

static uint64_t saturating_add(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

// Limits the child to what a request that moves `bytes` of data can need: its data twice (the
// shared buffer it lands in, and a converted copy), the headroom, and CPU time in proportion.
static void limit_child(uint64_t bytes) {
  if (child_start_address_space > 0) {
    uint64_t doubled = bytes > UINT64_MAX / 2 ? UINT64_MAX : 2 * bytes;
    uint64_t start = saturating_add(child_start_address_space, child_memory_headroom);
    set_soft_limit(RLIMIT_AS, saturating_add(start, doubled));
  }
  struct rusage usage;
  if (getrusage(RUSAGE_SELF, &usage) != 0) return;
  uint64_t used = (uint64_t)usage.ru_utime.tv_sec + (uint64_t)usage.ru_stime.tv_sec + 1;
  set_soft_limit(RLIMIT_CPU, saturating_add(used, child_cpu_seconds +
                                                      bytes / child_cpu_bytes_per_second));
}

// Runs every 200 ms in the child: a child whose parent has gone (killed, crashed) leaves too,
// even in the middle of libhdf5. (PR_SET_PDEATHSIG would fire when the *thread* that forked
// ends, and the caller's threads come and go.) getppid and _exit are async-signal-safe.
static void leave_if_orphaned(int signal_number) {
  (void)signal_number;
  if (getppid() != child_parent) _exit(1);
}

static void watch_parent(pid_t parent) {
  child_parent = parent;
  struct sigaction action;
  memset(&action, 0, sizeof(action));
  action.sa_handler = leave_if_orphaned;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(SIGALRM, &action, NULL);
  struct itimerval every = {{0, 200000}, {0, 200000}};
  setitimer(ITIMER_REAL, &every, NULL);
  // The parent may have gone before the timer was set.
  leave_if_orphaned(SIGALRM);
}

// Serves one request: describes or reads the dataset it names.
static gh5_status serve_request(
    int64_t file, int data, const child_request *request, child_reply *reply) {
  if (request->kind == REQUEST_INFO)
    return dataset_info(file, request->name, &reply->info, reply->message);
  size_t element_size = request->kind == REQUEST_READ_FLOAT ? sizeof(float) : sizeof(int64_t);
  size_t bytes = (size_t)request->count * element_size;
  void *out = NULL;
  if (bytes > 0) {
    out = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, data, 0);
    if (out == MAP_FAILED) {
      set_message(reply->message, "no memory for dataset '%s'", request->name);
      return GH5_OUT_OF_MEMORY;
    }
  }
  gh5_status status =
      request->kind == REQUEST_READ_FLOAT
          ? read_all(file, request->name, H5T_NATIVE_FLOAT, out, request->count, reply->message)
          : read_int64(file, request->name, out, request->count, reply->message);
  if (out != NULL) munmap(out, bytes);
  return status;
}

// The child's whole life: opens the file, answers requests until this process closes its end
// (or kills it), never returns.
static void run_child(int socket, int data, const char *path, pid_t parent) {
  // A crash ends the child by its signal, which the parent reports; handlers the parent
  // installed (a sanitizer's, a fuzzer's) must not run here as if the parent had crashed, and
  // a mask the forking thread had must not hold back the limits' and the watchdog's signals.
  const int own_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGXCPU, SIGALRM};
  sigset_t unblocked;
  sigemptyset(&unblocked);
  for (size_t i = 0; i < sizeof(own_signals) / sizeof(own_signals[0]); i++) {
    signal(own_signals[i], SIG_DFL);
    sigaddset(&unblocked, own_signals[i]);
  }
  sigprocmask(SIG_UNBLOCK, &unblocked, NULL);
  // A child stopped by a limit or a crash leaves no core file behind in the caller's folder.
  struct rlimit no_core = {0, 0};
  (void)setrlimit(RLIMIT_CORE, &no_core);
  watch_parent(parent);
  close_other_descriptors(socket < data ? socket : data, socket < data ? data : socket);
  child_start_address_space = address_space_now();
  limit_child(0);
  child_reply reply;
  memset(&reply, 0, sizeof(reply));
  int64_t file = -1;
  reply.status = (int32_t)open_file(path, &file, reply.message);
  if (!send_fully(socket, &reply, sizeof(reply)) || reply.status != GH5_OK) _exit(0);
  child_request request;
  while (read_fully(socket, &request, sizeof(request)) == sizeof(request)) {
    request.name[GH5_NAME_CAPACITY - 1] = '\0';
    uint64_t element_size = request.kind == REQUEST_INFO         ? 0
                            : request.kind == REQUEST_READ_FLOAT ? sizeof(float)
                                                                 : sizeof(int64_t);
    limit_child(request.count > UINT64_MAX / 8 ? UINT64_MAX : request.count * element_size);
    memset(&reply, 0, sizeof(reply));
    reply.status = (int32_t)serve_request(file, data, &request, &reply);
    if (!send_fully(socket, &reply, sizeof(reply))) break;
  }
  close_file(file);
  _exit(0);
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

// The child stopped answering: reaps it and records why, for this call and every later one.
static gh5_status record_death(gh5_reader *reader) {
  int wait_status = 0;
  pid_t waited;
  do {
    waited = waitpid(reader->pid, &wait_status, 0);
  } while (waited < 0 && errno == EINTR);
  reader->pid = -1;
  reader->failure = GH5_CRASHED;
  if (waited >= 0 && WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGXCPU)
    snprintf(reader->failure_message, GH5_MESSAGE_CAPACITY,
             "libhdf5 ran past the reading process's CPU-time limit (%llu s a request and 1 s "
             "a %llu MB read): the file is damaged",
             (unsigned long long)child_cpu_seconds,
             (unsigned long long)(child_cpu_bytes_per_second >> 20));
  else if (waited >= 0 && WIFSIGNALED(wait_status))
    snprintf(reader->failure_message, GH5_MESSAGE_CAPACITY,
             "libhdf5 crashed reading the file (%s in the reading process): the file is damaged",
             signal_name(WTERMSIG(wait_status)));
  else
    snprintf(reader->failure_message, GH5_MESSAGE_CAPACITY,
             "libhdf5 stopped reading the file (the reading process exited with status %d): "
             "the file is damaged",
             waited >= 0 && WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1);
  return GH5_CRASHED;
}

static void copy_message(char *message, const char *text) {
  if (message == NULL) return;
  memcpy(message, text, GH5_MESSAGE_CAPACITY);
  message[GH5_MESSAGE_CAPACITY - 1] = '\0';
}

void gh5_reader_close(gh5_reader *reader) {
  if (reader == NULL) return;
  if (reader->socket >= 0) close(reader->socket);
  // Killed rather than asked to leave: it holds nothing worth saving, and a child stuck in
  // libhdf5 on a damaged file must not keep this call waiting.
  if (reader->pid > 0) {
    kill(reader->pid, SIGKILL);
    while (waitpid(reader->pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  if (reader->data >= 0) close(reader->data);
  pthread_mutex_destroy(&reader->lock);
  free(reader);
}

gh5_status gh5_reader_open(const char *path, gh5_reader **out, char *message) {
  *out = NULL;
  gh5_reader *reader = calloc(1, sizeof(gh5_reader));
  if (reader == NULL) {
    set_message(message, "%s", "out of memory");
    return GH5_OUT_OF_MEMORY;
  }
  pthread_mutex_init(&reader->lock, NULL);
  reader->pid = -1;
  reader->socket = -1;
  reader->failure = GH5_OK;
  reader->data = memfd_create("graft-hdf5", MFD_CLOEXEC);
  if (reader->data < 0) {
    set_message(message, "cannot start a process to read the file (memfd: %s)", strerror(errno));
    gh5_reader_close(reader);
    return GH5_SPAWN_FAILED;
  }
  // The socket pair is made and this process's copy of the child's end closed under the lock
  // that every fork here takes, so no other reader's child inherits the child's end (which would
  // hide the child's death from this process).
  int fds[2];
  pthread_mutex_lock(&library_lock);
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    int error = errno;
    pthread_mutex_unlock(&library_lock);
    set_message(message, "cannot start a process to read the file (socketpair: %s)",
                strerror(error));
    gh5_reader_close(reader);
    return GH5_SPAWN_FAILED;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    run_child(fds[1], reader->data, path, parent);
  }
  int fork_error = errno;
  close(fds[1]);
  pthread_mutex_unlock(&library_lock);
  reader->socket = fds[0];
  if (pid < 0) {
    set_message(message, "cannot start a process to read the file (fork: %s)",
                strerror(fork_error));
    gh5_reader_close(reader);
    return GH5_SPAWN_FAILED;
  }
  reader->pid = pid;
  child_reply reply;
  if (read_fully(reader->socket, &reply, sizeof(reply)) != sizeof(reply)) {
    gh5_status status = record_death(reader);
    copy_message(message, reader->failure_message);
    gh5_reader_close(reader);
    return status;
  }
  if (reply.status != GH5_OK) {
    copy_message(message, reply.message);
    gh5_reader_close(reader);
    return (gh5_status)reply.status;
  }
  *out = reader;
  return GH5_OK;
}

// Asks the child for `kind` on dataset `name`; a read's `count` elements of `element_size`
// bytes land in `out`.
static gh5_status ask(
    gh5_reader *reader, request_kind kind, const char *name, gh5_dataset_info *info, void *out,
    uint64_t count, size_t element_size, char *message) {
  if (strlen(name) >= GH5_NAME_CAPACITY) {
    set_message(message, "%s", "dataset name too long");
    return GH5_INVALID_ARGUMENT;
  }
  if (count > SIZE_MAX / 16) {
    set_message(message, "dataset '%s' is too large", name);
    return GH5_OUT_OF_MEMORY;
  }
  size_t bytes = (size_t)count * element_size;
  pthread_mutex_lock(&reader->lock);
  gh5_status status;
  if (reader->failure != GH5_OK) {
    copy_message(message, reader->failure_message);
    status = reader->failure;
    goto done;
  }
  if (bytes > 0 && ftruncate(reader->data, (off_t)bytes) != 0) {
    set_message(message, "no memory for dataset '%s'", name);
    status = GH5_OUT_OF_MEMORY;
    goto done;
  }
  child_request request;
  memset(&request, 0, sizeof(request));
  request.kind = (int32_t)kind;
  strcpy(request.name, name);
  request.count = count;
  child_reply reply;
  if (!send_fully(reader->socket, &request, sizeof(request)) ||
      read_fully(reader->socket, &reply, sizeof(reply)) != sizeof(reply)) {
    status = record_death(reader);
    copy_message(message, reader->failure_message);
    goto done;
  }
  status = (gh5_status)reply.status;
  copy_message(message, reply.message);
  if (info != NULL) *info = reply.info;
  if (status == GH5_OK && bytes > 0) {
    void *shared = mmap(NULL, bytes, PROT_READ, MAP_SHARED, reader->data, 0);
    if (shared == MAP_FAILED) {
      set_message(message, "no memory for dataset '%s'", name);
      status = GH5_OUT_OF_MEMORY;
    } else {
      memcpy(out, shared, bytes);
      munmap(shared, bytes);
    }
  }
done:
  // The memory file gives its pages back between reads.
  if (bytes > 0 && reader->data >= 0) (void)ftruncate(reader->data, 0);
  pthread_mutex_unlock(&reader->lock);
  return status;
}

gh5_status gh5_reader_info(
    gh5_reader *reader, const char *name, gh5_dataset_info *info, char *message) {
  return ask(reader, REQUEST_INFO, name, info, NULL, 0, 0, message);
}

gh5_status gh5_reader_read_float(
    gh5_reader *reader, const char *name, float *out, uint64_t count, char *message) {
  return ask(reader, REQUEST_READ_FLOAT, name, NULL, out, count, sizeof(float), message);
}

gh5_status gh5_reader_read_int64(
    gh5_reader *reader, const char *name, int64_t *out, uint64_t count, char *message) {
  return ask(reader, REQUEST_READ_INT64, name, NULL, out, count, sizeof(int64_t), message);
}
