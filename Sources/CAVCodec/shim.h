#ifndef GRAFT_CAVCODEC_SHIM_H
#define GRAFT_CAVCODEC_SHIM_H
// FFmpeg's libavcodec, found through pkg-config (libavcodec.pc); CVideo calls it.
#include <libavcodec/avcodec.h>
#endif
