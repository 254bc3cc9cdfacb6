#ifndef GRAFT_CBLAS_SHIM_H
#define GRAFT_CBLAS_SHIM_H
// OpenBLAS's CBLAS interface, with its thread and kernel queries
// (openblas_set_num_threads, openblas_get_corename, openblas_get_config).
#include <cblas.h>
#endif
