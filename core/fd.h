/*
 * Descriptors the library makes inside someone else's process (the engine's wake-up pair
 * and inotify instance, the trace's file). A program may close descriptors it does not
 * know of (daemons close all but 0 to 2) and open its own on the same numbers, or assume
 * the lowest numbers are free for it: the library's go high, and are checked for their
 * identity before every use, so that the library never reads, writes or closes a file
 * the program opened.
 */
#ifndef MMT_CORE_FD_H
#define MMT_CORE_FD_H

#include <stdbool.h>
#include <sys/types.h>

#define MMT__HIGH_FD 512 /* where the library's descriptors go, where RLIMIT_NOFILE allows */

/* A descriptor with its identity (fstat) when the library made it. */
typedef struct mmt__own_fd {
    int fd; /* -1: none, or no longer the library's */
    dev_t dev;
    ino_t ino;
} mmt__own_fd_t;

/* Takes `fd` (close-on-exec already) as the library's: moved to MMT__HIGH_FD or above
 * (fcntl refuses where RLIMIT_NOFILE does not reach that far: it then stays where it is),
 * with its identity recorded. fd < 0, or one fstat refuses (then closed): fd -1. */
mmt__own_fd_t mmt__fd_take(int fd);

/* True if o's descriptor is still the one the library made. An inotify instance or an
 * eventfd shares its identity with every other of its kind (one anonymous inode), so
 * this tells it from a program's file, pipe or socket, not from the program's own
 * instance on the same number: the high numbers make that unlikely. */
bool mmt__fd_is_own(const mmt__own_fd_t *o);

/* Closes o's descriptor if it is still the library's; forgets it either way. */
void mmt__fd_release(mmt__own_fd_t *o);

/* What a file that is not a regular one is, for messages: "a FIFO", "a socket",
 * "a character device", "a block device", "a directory". */
const char *mmt__file_kind(mode_t mode);

#endif
