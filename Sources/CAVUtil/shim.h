#ifndef GRAFT_CAVUTIL_SHIM_H
#define GRAFT_CAVUTIL_SHIM_H
// FFmpeg's libavutil, found through pkg-config (libavutil.pc); CVideo calls it.
#include <libavutil/avutil.h>
#endif
