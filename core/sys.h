/*
 * What the library asks of the system, in one place: the monotonic clock, the resident set
 * size, and one line on stderr. None of them allocates, so each may run anywhere: inside an
 * allocation, a fork handler, an abort.
 */
#ifndef MMT_CORE_SYS_H
#define MMT_CORE_SYS_H

/* Seconds on CLOCK_MONOTONIC. */
double mmt__now(void);

/* The process's resident set in bytes, from /proc/self/statm; 0 if unknown. */
double mmt__read_rss(void);

/* Writes one line on stderr with a single write(2), so that lines from threads writing at
 * once do not interleave: the text as printf formats it, cut to 2 KiB, ending in exactly
 * one newline (added if the text has none, kept if cutting took it). */
void mmt__say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
