/*
 * A program that uses the room its allocator gives (malloc_usable_size), as Redis does,
 * run under libmmtmem-preload.so by test_preload:
 *
 *   e2e_usable          blocks of 1..2000 bytes, each filled to its usable size; the
 *                       counters (mmt_meminfo, found with dlsym) must move by the usable
 *                       sizes exactly, and back to where they were once all are freed. If
 *                       jemalloc is underneath, its own statistics must see the blocks.
 *                       Prints "allocator NAME" (mmt_backend) on success.
 *   e2e_usable fork     allocates and frees 60,000 bytes, holds 1 MiB, forks; the child
 *                       allocates 100,000 bytes in 10 blocks and ends with _exit, the parent
 *                       waits and exits: test_preload reads their reports (the child's peak
 *                       must not be the parent's 60,000-byte high point).
 *   e2e_usable race     two threads ask malloc_usable_size of the same 100,000 fresh blocks
 *                       at once: no abort, and in_use back where it was once they are freed.
 *   e2e_usable sigexit  reads the counters in a loop until a timer's signal handler calls
 *                       _exit: the process must end (its report is written or skipped, never
 *                       waited for).
 *
 * Exit status 1 reports a failed check, with a line on stderr.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct meminfo {
    uint64_t allocated, freed, in_use, peak, allocations, frees, reallocs;
} meminfo_t;

enum { BLOCKS = 2000 };

static int failed(const char *what, unsigned long long got, unsigned long long want)
{
    fprintf(stderr, "usable: %s: %llu, expected %llu\n", what, got, want);
    return 1;
}

/* jemalloc's bytes allocated (its epoch refreshed first); 0 if it is not underneath. */
static uint64_t jemalloc_allocated(void)
{
    int (*mallctl)(const char *, void *, size_t *, void *, size_t) = NULL;
    void *f = dlsym(RTLD_DEFAULT, "mallctl");
    if (!f) return 0;
    memcpy(&mallctl, &f, sizeof f);
    uint64_t epoch = 1;
    size_t len = sizeof epoch;
    mallctl("epoch", &epoch, &len, &epoch, len);
    size_t allocated = 0;
    len = sizeof allocated;
    return mallctl("stats.allocated", &allocated, &len, NULL, 0) == 0 ? allocated : 0;
}

static int room(void)
{
    void (*meminfo)(meminfo_t *) = NULL;
    const char *(*backend)(void) = NULL;
    void *f = dlsym(RTLD_DEFAULT, "mmt_meminfo"), *b = dlsym(RTLD_DEFAULT, "mmt_backend");
    if (!f || !b) {
        fprintf(stderr, "usable: not under libmmtmem-preload.so\n");
        return 1;
    }
    memcpy(&meminfo, &f, sizeof f);
    memcpy(&backend, &b, sizeof b);
    static unsigned char *blocks[BLOCKS];
    meminfo_t before, grown, after;
    uint64_t je_before = jemalloc_allocated();
    meminfo(&before);
    uint64_t requested = 0, usable = 0;
    for (int k = 0; k < BLOCKS; k++) {
        size_t n = (size_t)k + 1;
        blocks[k] = malloc(n);
        size_t u = malloc_usable_size(blocks[k]);
        if (u < n) return failed("usable size below the request", u, n);
        if (malloc_usable_size(blocks[k]) != u) return failed("usable size changed", u, u);
        memset(blocks[k], 0xab, u); /* the whole room is the program's */
        requested += n;
        usable += u;
    }
    meminfo(&grown);
    uint64_t je_grown = jemalloc_allocated();
    for (int k = 0; k < BLOCKS; k++) free(blocks[k]);
    meminfo(&after);
    if (grown.in_use - before.in_use != usable)
        return failed("in use after the blocks grew to their room", grown.in_use - before.in_use, usable);
    if (grown.allocations - before.allocations != BLOCKS)
        return failed("allocation calls", grown.allocations - before.allocations, BLOCKS);
    if (after.in_use != before.in_use)
        return failed("in use once all are freed", after.in_use, before.in_use);
    if (usable <= requested) return failed("room beyond the requests", usable, requested + 1);
    /* Each block's room comes from the allocator underneath: its own statistics see at
     * least the blocks and mmt's headers. */
    if (je_before && je_grown - je_before < usable)
        return failed("jemalloc's stats.allocated growth", je_grown - je_before, usable);
    printf("allocator %s\n", backend());
    return 0;
}

static int forked(void)
{
    void *before = malloc(60000);
    memset(before, 3, 60000);
    free(before);
    void *held = malloc(1 << 20);
    memset(held, 1, 1 << 20);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return failed("fork", 0, 1);
    if (pid == 0) {
        static void *kept[10];
        for (int k = 0; k < 10; k++) {
            kept[k] = malloc(10000);
            memset(kept[k], 2, 10000);
        }
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return failed("child's status", (unsigned long long)status, 0);
    printf("child %ld\n", (long)pid);
    free(held);
    return 0;
}

enum { RACED = 100000 };
static unsigned char *raced[RACED];
static pthread_barrier_t raced_start;

static void *ask_usable(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&raced_start);
    for (int k = 0; k < RACED; k++) (void)malloc_usable_size(raced[k]);
    return NULL;
}

static int race(void)
{
    void (*meminfo)(meminfo_t *) = NULL;
    void *f = dlsym(RTLD_DEFAULT, "mmt_meminfo");
    if (!f) return failed("not under libmmtmem-preload.so", 0, 1);
    memcpy(&meminfo, &f, sizeof f);
    /* Two threads started and ended first: glibc keeps what it allocates for them (their
     * descriptors) for the next ones, which then allocate nothing. */
    pthread_t t[2];
    pthread_barrier_init(&raced_start, NULL, 2);
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, ask_usable, NULL);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    meminfo_t before, after;
    meminfo(&before);
    for (int k = 0; k < RACED; k++) raced[k] = malloc(1 + (size_t)k % 40);
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, ask_usable, NULL);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int k = 0; k < RACED; k++) free(raced[k]);
    meminfo(&after);
    if (after.in_use != before.in_use) return failed("in use once all are freed", after.in_use, before.in_use);
    printf("raced\n");
    return 0;
}

static void leave(int sig)
{
    (void)sig;
    _exit(0); /* the async-signal-safe way out of a handler */
}

static int sigexit(void)
{
    void (*meminfo)(meminfo_t *) = NULL;
    void *f = dlsym(RTLD_DEFAULT, "mmt_meminfo");
    if (!f) return failed("not under libmmtmem-preload.so", 0, 1);
    memcpy(&meminfo, &f, sizeof f);
    signal(SIGALRM, leave);
    struct itimerval it = {{0, 0}, {0, 20000}};
    setitimer(ITIMER_REAL, &it, NULL);
    for (;;) {
        meminfo_t m;
        meminfo(&m); /* the handler lands inside it, more often than not */
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "fork") == 0) return forked();
    if (argc > 1 && strcmp(argv[1], "race") == 0) return race();
    if (argc > 1 && strcmp(argv[1], "sigexit") == 0) return sigexit();
    return room();
}
