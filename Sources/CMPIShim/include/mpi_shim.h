#ifndef GRAFT_MPI_SHIM_H
#define GRAFT_MPI_SHIM_H
// MPI behind functions that return status codes: 0 on success, otherwise an MPI error code whose
// text graft_mpi_error_string gives. MPI_COMM_WORLD reports errors to the caller
// (MPI_ERRORS_RETURN) instead of aborting inside the library, so Graft can name what failed.
// Collectives are called from one thread only (MPI_THREAD_FUNNELED).

#include <stddef.h>

/// Initialises MPI (once) and fills this process's rank and the world size.
int graft_mpi_init(int *rank, int *size);
/// Sums `count` floats over every rank, in place.
int graft_mpi_allreduce_sum_f32(float *values, size_t count);
/// Starts summing `count` floats (at most INT_MAX) over every rank, in place, without waiting;
/// `*request` receives a handle for graft_mpi_test and graft_mpi_wait. The buffer must stay
/// untouched until the wait.
int graft_mpi_iallreduce_sum_f32(float *values, size_t count, void **request);
/// Lets a started collective progress; `*done` becomes 1 once it is complete.
int graft_mpi_test(void *request, int *done);
/// Waits for a started collective to complete and frees its handle.
int graft_mpi_wait(void *request);
/// Sums `count` doubles over every rank, in place.
int graft_mpi_allreduce_sum_f64(double *values, size_t count);
/// Gathers every rank's `send_count` floats into `received`, in rank order; `counts` holds every
/// rank's count (the same array on every rank).
int graft_mpi_allgatherv_f32(const float *send, int send_count, float *received, const int *counts);
/// Waits until every rank has called it.
int graft_mpi_barrier(void);
/// Ends every rank of the job with `code` (does not return).
void graft_mpi_abort(int code);
/// Finalises MPI (once; later calls do nothing).
int graft_mpi_finalize(void);
/// The text of MPI error `code`, written to `buffer` (NUL-terminated, at most `length` bytes).
void graft_mpi_error_string(int code, char *buffer, int length);

#endif
