/*
 * A multithreaded program that knows nothing of mmt: four threads allocate with every
 * function the preload library replaces (malloc, calloc, realloc, reallocarray, free,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size), check
 * alignment and contents, and free blocks other threads allocated. It leaks exactly 12345
 * bytes on purpose. Its output is the same with and without LD_PRELOAD.
 *
 * Run under libmmtmem-preload.so, it finds mmt_meminfo and checks that the counters moved
 * by exactly its leak; exit status 1 reports any failed check.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { THREADS = 4, OPS = 20000, SLOTS = 64 };

typedef struct meminfo {
    uint64_t allocated, freed, in_use, peak, allocations, frees, reallocs;
} meminfo_t;

static _Atomic(void *) shared[SLOTS]; /* blocks handed between threads */
static atomic_int failures;

static void fail(const char *what)
{
    fprintf(stderr, "threads: %s\n", what);
    failures++;
}

static void *aligned_any(unsigned r, size_t size, size_t *align)
{
    void *p = NULL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    switch (r % 5) {
    case 0: *align = 64; if (posix_memalign(&p, 64, size) != 0) p = NULL; break;
    case 1: *align = 256; p = aligned_alloc(256, size); break;
    case 2: *align = 128; p = memalign(100, size); break; /* rounded up to 128 */
    case 3: *align = page; p = valloc(size); break;
    default: *align = page; p = pvalloc(size); break;
    }
    return p;
}

static void *worker(void *arg)
{
    unsigned r = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    char *mine[SLOTS] = {0};
    for (int i = 0; i < OPS; i++) {
        r = r * 1103515245u + 12345u;
        size_t k = (r >> 8) % SLOTS, size = 1 + (r >> 16) % 3000;
        switch (i % 6) {
        case 0: free(mine[k]); mine[k] = malloc(size); memset(mine[k], (int)k, size); break;
        case 1: free(mine[k]); mine[k] = calloc(size, 1);
            for (size_t j = 0; j < size; j++) if (mine[k][j]) { fail("calloc not zero"); break; }
            break;
        case 2:
            if (mine[k]) {
                size_t old = malloc_usable_size(mine[k]);
                mine[k] = realloc(mine[k], size);
                if (malloc_usable_size(mine[k]) < size) fail("usable size below the request");
                (void)old;
            }
            break;
        case 3: mine[k] = reallocarray(mine[k], size, 2); break;
        case 4: {
            size_t align;
            void *p = aligned_any(r >> 4, size, &align);
            if (!p || (uintptr_t)p % align) fail("misaligned block");
            free(p);
            break;
        }
        default: /* hand a block over; free what another thread left */
            free(atomic_exchange(&shared[k], mine[k]));
            mine[k] = NULL;
            break;
        }
    }
    for (int k = 0; k < SLOTS; k++) free(mine[k]);
    return NULL;
}

static void run_threads(int rounds)
{
    for (int round = 0; round < rounds; round++) {
        pthread_t t[THREADS];
        for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + round));
        for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    }
}

static void *volatile leaked[3]; /* volatile: the compiler must not drop the leak */

int main(void)
{
    void (*mmt_meminfo)(meminfo_t *) = (void (*)(meminfo_t *))dlsym(RTLD_DEFAULT, "mmt_meminfo");
    run_threads(1); /* warm-up: the threads' stacks and their bookkeeping are cached after */
    for (int k = 0; k < SLOTS; k++) free(atomic_exchange(&shared[k], NULL));
    meminfo_t before = {0}, after = {0};
    if (mmt_meminfo) mmt_meminfo(&before);

    run_threads(3);
    for (int k = 0; k < SLOTS; k++) free(atomic_exchange(&shared[k], NULL));
    leaked[0] = malloc(1000);
    leaked[1] = calloc(2, 1000);
    leaked[2] = aligned_alloc(4096, 9345);

    if (mmt_meminfo) {
        mmt_meminfo(&after);
        if (after.in_use - before.in_use != 12345) {
            fprintf(stderr, "threads: in use moved by %llu bytes, not 12345\n",
                    (unsigned long long)(after.in_use - before.in_use));
            failures++;
        }
    }
    printf("threads: %d threads x %d operations x 3 rounds, %d failures\n", THREADS, OPS,
           (int)failures);
    return failures ? 1 : 0;
}
