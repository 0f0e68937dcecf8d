/*
 * The library's own descriptors, kept out of the program's way (see fd.h).
 */
#include "fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

mmt__own_fd_t mmt__fd_take(int fd)
{
    mmt__own_fd_t o = {.fd = -1};
    if (fd < 0) return o;
    if (fd < MMT__HIGH_FD) {
        int high = fcntl(fd, F_DUPFD_CLOEXEC, MMT__HIGH_FD);
        if (high >= 0) {
            close(fd);
            fd = high;
        }
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return o;
    }
    return (mmt__own_fd_t){.fd = fd, .dev = st.st_dev, .ino = st.st_ino};
}

bool mmt__fd_is_own(const mmt__own_fd_t *o)
{
    struct stat st;
    return o->fd >= 0 && fstat(o->fd, &st) == 0 && st.st_dev == o->dev && st.st_ino == o->ino;
}

void mmt__fd_release(mmt__own_fd_t *o)
{
    if (mmt__fd_is_own(o)) close(o->fd);
    o->fd = -1;
}

const char *mmt__file_kind(mode_t mode)
{
    return S_ISFIFO(mode)   ? "a FIFO"
           : S_ISSOCK(mode) ? "a socket"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISDIR(mode)  ? "a directory"
                            : "of an unknown kind";
}
