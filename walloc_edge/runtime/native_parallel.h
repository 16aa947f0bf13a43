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
#define WALLOC_X86_CLONES 1
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* A share's work: returns 0, or -1 when memory runs out. */
typedef int (*Work)(void *ctx, int64_t begin, int64_t end, float *scratch);

/* The items still to hand out, shared by the threads of one call. */
typedef struct {
    pthread_mutex_t lock;
    int64_t next, items, chunk;
    int status;
} Queue;

typedef struct {
    Work work;
    void *ctx;
    Queue *queue;
    float *scratch;
} Share;

/* A thread's loop: the next chunk of items until none is left. */
static void *run_share(void *arg) {
    Share *s = arg;
    Queue *q = s->queue;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        const int64_t begin = q->status ? q->items : q->next;
        q->next = begin + q->chunk;
        pthread_mutex_unlock(&q->lock);
        if (begin >= q->items) return NULL;
        const int64_t end = begin + q->chunk < q->items ? begin + q->chunk : q->items;
        if (s->work(s->ctx, begin, end, s->scratch)) {
            pthread_mutex_lock(&q->lock);
            q->status = -1;
            pthread_mutex_unlock(&q->lock);
        }
    }
}

/* Items a chunk for `threads`: `per_thread` chunks each (a thread held up by a busy core
 * hands its later chunks to the others), the whole for one thread. */
static inline int64_t walloc_chunk(int64_t items, int threads, int64_t per_thread) {
    if (threads <= 1 || items <= 1) return items > 1 ? items : 1;
    const int64_t chunks = threads * per_thread;
    return (items + chunks - 1) / chunks;
}

/* work(ctx, begin, end, scratch) over [0, items) in chunks of `chunk` items, handed to
 * `threads` threads as they come free (so the work is ordered by nothing but the chunks:
 * each chunk's results must not depend on which thread ran it); each thread has
 * `scratch_floats` floats of scratch of its own. Returns -1 when memory runs out (here or
 * in a chunk). */
static int walloc_parallel(Work work, void *ctx, int64_t items, int64_t chunk, int threads,
                           int64_t scratch_floats) {
    if (items < 1) return 0;
    if (chunk < 1) chunk = 1;
    if (threads < 1) threads = 1;
    if (threads > (items + chunk - 1) / chunk) threads = (int)((items + chunk - 1) / chunk);
    float *scratch = malloc((size_t)(threads * scratch_floats + 1) * sizeof(float));
    Share *shares = malloc((size_t)threads * sizeof(Share));
    pthread_t *ids = malloc((size_t)threads * sizeof(pthread_t));
    char *started = calloc((size_t)threads, 1);
    Queue queue = {.next = 0, .items = items, .chunk = chunk, .status = 0};
    if (!scratch || !shares || !ids || !started || pthread_mutex_init(&queue.lock, NULL)) {
        free(scratch); free(shares); free(ids); free(started);
        return -1;
    }
    for (int t = 0; t < threads; t++)
        shares[t] = (Share){work, ctx, &queue, scratch + t * scratch_floats};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_share, &shares[t]) == 0;
    run_share(&shares[0]); /* this thread works too; any a thread was not started for, the
                              others take */
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(ids[t], NULL);
    pthread_mutex_destroy(&queue.lock);
    free(scratch); free(shares); free(ids); free(started);
    return queue.status;
}

#endif
