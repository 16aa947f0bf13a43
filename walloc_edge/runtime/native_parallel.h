/* What both C extensions share (the encoder core and the rans loops): work over POSIX
 * threads, and the AVX2 clones of hot loops. Header-only (static), so each module and the
 * C export's program carry their own copy and nothing links across them. */
#ifndef WALLOC_NATIVE_PARALLEL_H
#define WALLOC_NATIVE_PARALLEL_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

/* Hot loops get AVX-512 (x86-64-v4) and AVX2 builds beside the baseline one on x86-64,
 * chosen at load time. ISO C (-std=c99) contracts no multiply-add, so every build computes
 * the same floats. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* A share's work: returns 0, or -1 when memory runs out. */
typedef int (*Work)(void *ctx, int64_t begin, int64_t end, float *scratch);

typedef struct {
    Work work;
    void *ctx;
    int64_t begin, end;
    float *scratch;
    int status;
} Share;

static void *run_share(void *arg) {
    Share *s = arg;
    s->status = s->work(s->ctx, s->begin, s->end, s->scratch);
    return NULL;
}

/* work(ctx, begin, end, scratch) over [0, items) cut into `threads` contiguous shares; each
 * share has `scratch_floats` floats of scratch of its own. Returns -1 when memory runs out
 * (here or in a share). */
static int walloc_parallel(Work work, void *ctx, int64_t items, int threads,
                           int64_t scratch_floats) {
    if (items < 1) return 0;
    if (threads < 1) threads = 1;
    if (threads > items) threads = (int)items;
    float *scratch = malloc((size_t)(threads * scratch_floats + 1) * sizeof(float));
    Share *shares = malloc((size_t)threads * sizeof(Share));
    pthread_t *ids = malloc((size_t)threads * sizeof(pthread_t));
    char *started = calloc((size_t)threads, 1);
    if (!scratch || !shares || !ids || !started) {
        free(scratch); free(shares); free(ids); free(started);
        return -1;
    }
    for (int t = 0; t < threads; t++)
        shares[t] = (Share){work, ctx, items * t / threads, items * (t + 1) / threads,
                            scratch + t * scratch_floats, 0};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_share, &shares[t]) == 0;
    for (int t = 0; t < threads; t++)
        if (!started[t]) run_share(&shares[t]); /* share 0, and any no thread took */
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(ids[t], NULL);
    int status = 0;
    for (int t = 0; t < threads; t++) status |= shares[t].status;
    free(scratch); free(shares); free(ids); free(started);
    return status ? -1 : 0;
}

#endif
