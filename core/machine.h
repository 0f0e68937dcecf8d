/*
 * The machine around the program (machine.c): the memory cgroup, PSI and /proc/meminfo,
 * read into mmt_machine_t (memory.h), and the small parsers the policy engine's pressure
 * triggers share. Nothing here allocates or uses stdio: it runs inside allocations (a
 * policy's checkpoint), where the program's malloc may be the library's own.
 */
#ifndef MMT_CORE_MACHINE_H
#define MMT_CORE_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmt/memory.h"

/* mmt_machine_read with every file looked for under `root` ("" for the real ones):
 * root + "/proc/self/cgroup", root + "/proc/self/mountinfo", and the mount points it
 * names, under root too. Tests point it at recorded trees (tests/data). */
int mmt__machine_read_at(const char *root, mmt_machine_t *out, unsigned parts);

/* The whole path of the PSI file mmt_machine_read reads (its psi.source may be cut), into
 * file (len bytes); false if there is none. */
bool mmt__machine_psi_file(char *file, size_t len);

/* Reads the whole of a small file (a cgroup or /proc file) into buf, NUL-terminated: the
 * length read, or -1 (missing, unreadable, or longer than len - 1 bytes). Opened
 * non-blocking, so a FIFO put in its place returns at once. */
long mmt__read_small(const char *path, char *buf, size_t len);

/* A whole non-negative decimal number at s (surrounding blanks allowed), or "max" (as
 * UINT64_MAX); a number past UINT64_MAX reads as UINT64_MAX. False for anything else. */
bool mmt__parse_u64(const char *s, uint64_t *out);

/* The "some" and "full" lines of a PSI file's text into *psi (source left alone): false
 * unless a "some" line parses (a "full" line may be missing: its figures stay 0). */
bool mmt__parse_psi(const char *text, struct mmt_psi *psi);

#endif
