#ifndef GRAFT_CMPI_SHIM_H
#define GRAFT_CMPI_SHIM_H
// Open MPI's C library, used only by the CMPIShim C target; Swift calls the shim, never MPI itself.
#include <mpi.h>
#endif
