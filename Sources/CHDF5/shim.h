#ifndef GRAFT_CHDF5_SHIM_H
#define GRAFT_CHDF5_SHIM_H
// libhdf5 (serial), used only by the CHDF5Shim C target; Swift calls the shim, never HDF5 itself.
#include <hdf5.h>
#endif
