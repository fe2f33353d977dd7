/* Compiled as C99 with -Wall -Wextra -Werror -pedantic: the public header must stay clean. */
#include "sageattn.h"

int sage_header_c99_probe(void);
int sage_header_c99_probe(void) {
    sage_args a;
    sage_args_init(&a);
    return (int)sizeof a + SAGE_VERSION_NUMBER + (int)SAGE_OK;
}
