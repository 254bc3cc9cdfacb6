#ifndef GRAFT_CZLIB_SHIM_H
#define GRAFT_CZLIB_SHIM_H
// zlib's inflate, for the deflate-compressed members of .npz archives.
#include <zlib.h>
#endif
