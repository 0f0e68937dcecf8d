/*
 * The designed crashes: an allocation that cannot be satisfied, and a pointer that is not
 * a live mmt block. Both write one line to stderr and abort().
 */
#ifndef MMT_CORE_OOM_H
#define MMT_CORE_OOM_H

#include <stddef.h>

/* `call` is the public function ("mmt_malloc"), `size` what it was asked for and `why`
 * the cause ("out of memory", "size too large"). Runs the OOM handler first. */
_Noreturn void mmt__oom(const char *call, size_t size, const char *why);

/* call(count, size), mmt_calloc's or mmt_calloc_in's, whose product overflows. */
_Noreturn void mmt__oom_overflow(const char *call, size_t count, size_t size);

/* `call` was handed `ptr`, which failed the header check for reason `why`. */
_Noreturn void mmt__bad_pointer(const char *call, const void *ptr, const char *why);

/* `call` was handed a tag id that no mmt_tag_new returned. */
_Noreturn void mmt__bad_tag(const char *call, unsigned tag);

#endif
