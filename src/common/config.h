/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one configuration reader for the ONLYBOXES_*, WORKER_* and CONSOLE_* environment. A command
 * describes its settings in a table, one row per variable (name, the original's alias, type,
 * bounds, default, help), and the same table reads them, prints the Environment part of its
 * --help and shows the effective values in `onlyboxes doctor`. One rule everywhere: an unset or
 * empty variable takes its default; a malformed or out-of-range value is an error naming the
 * variable and what it expects, never a silent fallback.
 */
#ifndef OBX_COMMON_CONFIG_H
#define OBX_COMMON_CONFIG_H

#include <stddef.h>

#include "error.h"

enum obx_config_type {
    OBX_CONFIG_STR,     /* const char * into the environment (or the default literal); with
                           OBX_CONFIG_COPY a char * copy owned by the struct */
    OBX_CONFIG_INT,     /* whole number in [min, max], stored times scale in an integer field */
    OBX_CONFIG_DECIMAL, /* decimal number in [min, max], stored times scale, rounded */
    OBX_CONFIG_BOOL,    /* 1/true/yes/on or 0/false/no/off into a bool */
    OBX_CONFIG_CHOICE,  /* one of choices (case-insensitive); its index into an integer field */
};

enum {
    OBX_CONFIG_SECRET = 1 << 0,   /* never printed: doctor says only whether it is set */
    OBX_CONFIG_EMPTY = 1 << 1,    /* STR: an empty value is a value, not "unset" */
    OBX_CONFIG_COPY = 1 << 2,     /* STR: the field is a char * copy with white space trimmed,
                                     NULL when unset or blank; freed by obx_config_free() */
    OBX_CONFIG_REQUIRED = 1 << 3, /* unset or blank is an error */
    OBX_CONFIG_HIDDEN = 1 << 4,   /* for tests: read, but not listed in --help */
};

struct obx_config_var {
    const char *name;
    const char *alias; /* the original's name for it, read when name is unset; or NULL */
    enum obx_config_type type;
    size_t offset, size;        /* the field: OBX_CONFIG_FIELD(struct, member) */
    const char *def;            /* the default as a user writes it; NULL: none */
    int64_t min, max;           /* INT and DECIMAL bounds, in the unit the user writes */
    int64_t scale;              /* INT and DECIMAL: the field holds value * scale (0 means 1) */
    const char *const *choices; /* CHOICE: NULL-terminated; the first one is written in help */
    unsigned flags;
    const char *help; /* one sentence for --help and doctor */
};

#define OBX_CONFIG_FIELD(type, member) offsetof(type, member), sizeof(((type *)0)->member)

/* Fills the fields of cfg that vars name from the environment (defaults for the unset ones).
 * Returns 0, or -EINVAL with err saying which variable is wrong and what it expects; after a
 * failure the caller still calls obx_config_free(). */
int obx_config_read(const struct obx_config_var *vars, size_t n, void *cfg, struct obx_error *err);

/* Frees the OBX_CONFIG_COPY strings of cfg (wiping secrets) and sets them to NULL. */
void obx_config_free(const struct obx_config_var *vars, size_t n, void *cfg);

/* The variable v was read from (its name or its alias), or NULL when neither is set. */
const char *obx_config_source(const struct obx_config_var *v);

/* Appends the --help lines of vars: the name, then its help and default, wrapped to 100 columns. */
void obx_config_help(FILE *f, const struct obx_config_var *vars, size_t n);

/* Prints "NAME=value" for each variable with the value cfg holds (secrets as "(set)"), and where
 * it came from: "(default)" or the variable's alias. */
void obx_config_print(FILE *f, const struct obx_config_var *vars, size_t n, const void *cfg);

#endif
