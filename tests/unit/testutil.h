/* Helpers shared by the unit tests (cmocka). */
#ifndef BYOAI_TESTUTIL_H
#define BYOAI_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "byoai/base.h"

/* Path of a file under ../shared (from $BYOAI_SHARED), in a static buffer
 * per call slot (up to 8 live at once). */
const char *tu_shared(const char *rel);
/* A fresh empty temporary directory (removed by tu_rmtree). */
const char *tu_tmpdir(void);
void tu_rmtree(const char *dir);
/* Deterministic pseudo-random numbers for test data. */
uint64_t tu_rand_u64(uint64_t *state);
float tu_rand_float(uint64_t *state); /* uniform in [-1, 1) */
/* Relative difference |a-b| / max(|a|,|b|,floor). */
double tu_rel_diff(double a, double b, double floor_);

#endif
