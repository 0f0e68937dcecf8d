/*
 * The library's version and the text of its error codes.
 */
#include "mmt/memory.h"

const char *mmt_version(void)
{
    return MMT_VERSION_STRING;
}

const char *mmt_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case MMT_EINVAL: return "invalid argument";
    case MMT_ENOENT: return "no such listener or tag";
    case MMT_ENOSPC: return "no room left";
    case MMT_ENOMEM: return "out of memory for bookkeeping";
    case MMT_EBUSY: return "called from inside the policy code it would wait for";
    case MMT_ELOAD: return "the policy did not load";
    case MMT_EIO: return "writing the output failed";
    default: return "unknown error";
    }
}
