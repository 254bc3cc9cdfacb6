#ifndef GRAFT_CSWSCALE_SHIM_H
#define GRAFT_CSWSCALE_SHIM_H
// FFmpeg's libswscale, found through pkg-config (libswscale.pc); CVideo calls it.
#include <libswscale/swscale.h>
#endif
