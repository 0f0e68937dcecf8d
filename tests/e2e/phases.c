/*
 * A program whose memory rises in steps, stays, and falls: test_policytool records it
 * under mmt-run --trace and replays the trace. It uses the C library's malloc, which the
 * preload library counts.
 *
 *   e2e_phases STEP_MIB STEPS STEP_MS HOLD_MS AFTER_MS
 *
 * allocates STEPS blocks of STEP_MIB MiB (each touched) STEP_MS apart, waits HOLD_MS,
 * frees them all, and waits AFTER_MS before it ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fputs("usage: e2e_phases STEP_MIB STEPS STEP_MS HOLD_MS AFTER_MS\n", stderr);
        return 2;
    }
    long mib = atol(argv[1]), steps = atol(argv[2]);
    if (mib <= 0 || steps <= 0 || steps > 1024) return 2;
    char **blocks = calloc((size_t)steps, sizeof *blocks);
    if (!blocks) return 1;
    for (long i = 0; i < steps; i++) {
        blocks[i] = malloc((size_t)mib << 20);
        if (!blocks[i]) return 1;
        memset(blocks[i], (int)i, (size_t)mib << 20);
        sleep_ms(atol(argv[3]));
    }
    sleep_ms(atol(argv[4]));
    for (long i = 0; i < steps; i++) free(blocks[i]);
    free(blocks);
    sleep_ms(atol(argv[5]));
    return 0;
}
