#ifndef GRAFT_IMAGE_CODECS_H
#define GRAFT_IMAGE_CODECS_H
// PNG and JPEG decoding and encoding behind error codes instead of longjmp, so Swift can throw.
// (Functions are added by the image-codec work.)
#endif
