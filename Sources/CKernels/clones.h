// What every kernel file of this target shares: one build per instruction set level on x86-64
// Linux (target_clones; the loader's ifunc resolver picks one when the library loads) and the
// inlining attribute of the helpers. Private to the target (not under include/).
#ifndef GRAFT_CKERNELS_CLONES_H
#define GRAFT_CKERNELS_CLONES_H

// ThreadSanitizer instruments the ifunc resolvers that target_clones makes, and the loader runs
// them before the sanitizer's runtime is set up (the process crashed at load, found by
// Tools/sanitize.sh thread): under it, one portable build.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GRAFT_NO_CLONES 1
#endif
#endif

#if defined(__x86_64__) && defined(__linux__) && !defined(GRAFT_NO_CLONES)
#define GRAFT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GRAFT_CLONES
#endif

#define INLINE static inline __attribute__((always_inline))

#endif
