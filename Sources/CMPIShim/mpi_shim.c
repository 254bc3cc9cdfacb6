#include "mpi_shim.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// MPI counts are ints: longer buffers go in chunks of at most this many elements.
static const size_t chunk = (size_t)1 << 30;

int graft_mpi_init(int *rank, int *size) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return rc;
  }
  int rc = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (rc != MPI_SUCCESS) return rc;
  rc = MPI_Comm_rank(MPI_COMM_WORLD, rank);
  if (rc != MPI_SUCCESS) return rc;
  return MPI_Comm_size(MPI_COMM_WORLD, size);
}

// Whether MPI has been initialised and not finalised.
static int graft_mpi_is_active(void) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

static int allreduce(void *values, size_t count, size_t width, MPI_Datatype type, MPI_Op op) {
  char *p = values;
  while (count > 0) {
    size_t n = count < chunk ? count : chunk;
    int rc = MPI_Allreduce(MPI_IN_PLACE, p, (int)n, type, op, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return rc;
    p += n * width;
    count -= n;
  }
  return MPI_SUCCESS;
}

int graft_mpi_allreduce_sum_f32(float *values, size_t count) {
  return allreduce(values, count, sizeof(float), MPI_FLOAT, MPI_SUM);
}

int graft_mpi_iallreduce_sum_f32(float *values, size_t count, void **request) {
  *request = NULL;
  if (count > INT_MAX) return MPI_ERR_COUNT;
  MPI_Request *r = malloc(sizeof *r);
  if (r == NULL) return MPI_ERR_NO_MEM;
  int rc = MPI_Iallreduce(MPI_IN_PLACE, values, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, r);
  if (rc != MPI_SUCCESS) {
    free(r);
    return rc;
  }
  *request = r;
  return MPI_SUCCESS;
}

int graft_mpi_test(void *request, int *done) {
  return MPI_Test((MPI_Request *)request, done, MPI_STATUS_IGNORE);
}

int graft_mpi_wait(void *request) {
  int rc = MPI_Wait((MPI_Request *)request, MPI_STATUS_IGNORE);
  free(request);
  return rc;
}

int graft_mpi_allreduce_sum_f64(double *values, size_t count) {
  return allreduce(values, count, sizeof(double), MPI_DOUBLE, MPI_SUM);
}

int graft_mpi_allgatherv_f32(const float *send, int send_count, float *received, const int *counts) {
  int size = 0;
  int rc = MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rc != MPI_SUCCESS) return rc;
  int displacements[size];
  long offset = 0;
  for (int r = 0; r < size; r++) {
    if (offset > INT_MAX) return MPI_ERR_COUNT;
    displacements[r] = (int)offset;
    offset += counts[r];
  }
  return MPI_Allgatherv(
    send, send_count, MPI_FLOAT, received, counts, displacements, MPI_FLOAT, MPI_COMM_WORLD);
}

int graft_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

void graft_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

int graft_mpi_finalize(void) {
  if (!graft_mpi_is_active()) return MPI_SUCCESS;
  return MPI_Finalize();
}

void graft_mpi_error_string(int code, char *buffer, int length) {
  if (length <= 0) return;
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) {
    snprintf(buffer, (size_t)length, "MPI error %d", code);
    return;
  }
  snprintf(buffer, (size_t)length, "%s", text);
}
