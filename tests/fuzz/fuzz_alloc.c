/*
 * libFuzzer harness: the input is a program of malloc, calloc, realloc, strdup and free
 * on 16 slots, run against a model that knows every live block's size and contents. After
 * each step the touched block must hold what the model says (realloc keeps the common
 * prefix, calloc zeroes), and after the program mmt's counters must match the model to the
 * byte before everything is freed. Sizes stay below what would overflow: an overflowing
 * size is the designed abort, tested elsewhere.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmt/memory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { SLOTS = 16 };

typedef struct slot {
    unsigned char *p;
    size_t size;
    unsigned char tag; /* the block's bytes are tag + index */
} slot_t;

/* Byte i of a block is the byte i % 8 of word(tag, i / 8): every 8-byte stretch differs,
 * so a copy that lands shifted or short is caught, and the work goes a word at a time. */
static uint64_t word(unsigned char tag, size_t k)
{
    return (tag + 1) * 0x9e3779b97f4a7c15ull ^ (uint64_t)k * 0xbf58476d1ce4e5b9ull;
}

static void fill(slot_t *s, size_t from)
{
    for (size_t i = from; i < s->size;) {
        uint64_t w = word(s->tag, i / 8);
        size_t off = i % 8, n = 8 - off < s->size - i ? 8 - off : s->size - i;
        memcpy(s->p + i, (unsigned char *)&w + off, n);
        i += n;
    }
}

/* Checks bytes [i, i + 8) of the pattern, cut at `upto`; i is a multiple of 8. */
static void check_word(const slot_t *s, size_t i, size_t upto)
{
    uint64_t w = word(s->tag, i / 8);
    if (memcmp(s->p + i, &w, upto - i < 8 ? upto - i : 8) != 0) abort();
}

/* Checks the first `upto` bytes: every word up to 4 KiB; beyond, one word in 16 and the
 * last one (a copy that is shifted or cut short still shows). */
static void check(const slot_t *s, size_t upto)
{
    if (upto > s->size) upto = s->size;
    if (upto == 0) return;
    size_t step = upto > 4096 ? 128 : 8;
    for (size_t i = 0; i < upto; i += step) check_word(s, i, upto);
    check_word(s, (upto - 1) & ~(size_t)7, upto);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    slot_t slots[SLOTS] = {{0}};
    mmt_meminfo_t base;
    mmt_meminfo(&base);
    uint64_t live_bytes = 0, live_blocks = 0;

    for (size_t at = 0; at + 3 <= size; at += 3) {
        uint8_t op = data[at] % 5;
        slot_t *s = &slots[(data[at] >> 3) % SLOTS];
        /* 0 .. 4095, and one step in 32 up to 64 KiB: big blocks are rarer, since each
         * is filled word by word. */
        size_t n = (size_t)data[at + 1] | (size_t)(data[at + 2] & 0x0f) << 8;
        if ((data[at + 2] & 0xf8) == 0xf8) n <<= 4;
        unsigned char tag = (unsigned char)(data[at] ^ data[at + 1]);
        switch (op) {
        case 0: /* malloc */
        case 1: /* calloc */
            if (s->p) {
                check(s, s->size);
                live_bytes -= mmt_size(s->p);
                live_blocks--;
                mmt_free(s->p);
            }
            if (op == 0) {
                s->p = mmt_malloc(n);
            } else {
                size_t count = 1 + n % 7;
                s->p = mmt_calloc(count, n / 7);
                n = count * (n / 7);
                static const unsigned char zeros[4096];
                for (size_t i = 0; i < n; i += sizeof zeros)
                    if (memcmp(s->p + i, zeros, n - i < sizeof zeros ? n - i : sizeof zeros))
                        abort();
            }
            s->size = n;
            s->tag = tag;
            fill(s, 0);
            live_bytes += n;
            live_blocks++;
            break;
        case 2: { /* realloc, from NULL too: the common prefix must survive */
            size_t old = s->p ? s->size : 0;
            if (s->p) {
                live_bytes -= old;
            } else {
                live_blocks++;
                s->tag = tag;
            }
            s->p = mmt_realloc(s->p, n);
            size_t kept = old < n ? old : n;
            s->size = n;
            check(s, kept);
            fill(s, kept);
            live_bytes += n;
            break;
        }
        case 3: /* free */
            if (s->p) {
                check(s, s->size);
                live_bytes -= s->size;
                live_blocks--;
            }
            mmt_free(s->p);
            s->p = NULL;
            s->size = 0;
            break;
        case 4: /* strdup of a string of n % 200 bytes */
            if (s->p) {
                live_bytes -= s->size;
                live_blocks--;
                mmt_free(s->p);
            }
            {
                char text[200];
                size_t len = n % 200;
                memset(text, 'a' + tag % 26, len);
                text[len] = '\0';
                s->p = (unsigned char *)mmt_strdup(text);
                if (strcmp((char *)s->p, text) != 0) abort();
                s->size = len + 1;
                s->tag = tag;
                fill(s, 0);
            }
            live_bytes += s->size;
            live_blocks++;
            break;
        }
        if (s->p && mmt_size(s->p) != s->size) abort();
    }

    mmt_meminfo_t m;
    mmt_meminfo(&m);
    if (m.in_use - base.in_use != live_bytes) abort();
    if ((m.allocations - m.frees) - (base.allocations - base.frees) != live_blocks) abort();
    if (m.allocated - m.freed != m.in_use || m.peak < m.in_use) abort();
    for (int i = 0; i < SLOTS; i++) mmt_free(slots[i].p);
    mmt_meminfo(&m);
    if (m.in_use != base.in_use) abort();
    return 0;
}
