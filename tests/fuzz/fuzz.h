/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every fuzz target shares: the libFuzzer entry points (declared here because the project
 * builds with -Wmissing-prototypes) and a check that stops the run with a message when a target
 * sees something no input may cause. The same entry points link against replay.c in the normal
 * build, which runs a corpus through them as an ordinary test.
 */
#ifndef OBX_FUZZ_H
#define OBX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: one-time set-up before the first input. replay.c calls it when the target has it. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

/* A property that must hold for every input; a violation is a finding, like a crash. */
#define FUZZ_CHECK(cond, ...)                                                               \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                   \
            fputc('\n', stderr);                                                            \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

#endif
