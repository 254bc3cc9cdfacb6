#ifndef GRAFT_CAVFORMAT_SHIM_H
#define GRAFT_CAVFORMAT_SHIM_H
// FFmpeg's libavformat, found through pkg-config (libavformat.pc); CVideo calls it.
#include <libavformat/avformat.h>
#endif
