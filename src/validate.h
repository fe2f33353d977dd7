/* Private: argument validation shared by every entry point (through sage_select_kernel). */
#ifndef SAGE_VALIDATE_H
#define SAGE_VALIDATE_H

#include "internal.h"

/* Check everything about args that does not depend on the backend: pointers, struct size,
 * enums, sizes, strides and extents (no int64 overflow), overlap of o / lse with the inputs
 * and with themselves, sm_scale. Returns SAGE_OK or the first problem found, with a message. */
sage_status sage_validate_args(const sage_args *a, sage_msg msg);

#endif
