/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secrets of the console, with libsodium behind this header: argon2id password hashes (slow on
 * purpose: call from a pool thread, never from the HTTP service thread), HMAC-SHA256 hex digests
 * of tokens and session ids keyed by CONSOLE_HASH_KEY, and constant-time comparison.
 */
#ifndef OBX_CONSOLE_AUTH_H
#define OBX_CONSOLE_AUTH_H

#include "common/util.h"

#define OBX_AUTH_HASH_ALGO "argon2id"
#define OBX_AUTH_PWHASH_MAX 128 /* >= crypto_pwhash_STRBYTES */
#define OBX_AUTH_HEX_LEN 64

/* Initialises libsodium; -EIO if it cannot. */
int obx_auth_init(void);

/* argon2id with moderate limits. out receives a NUL-terminated PHC string. */
int obx_auth_password_hash(const char *password, char out[static OBX_AUTH_PWHASH_MAX]);
/* True when password matches an argon2id PHC string. False for any other algorithm. */
bool obx_auth_password_verify(const char *phc, const char *password);
/* The hash algorithm names the store keeps (accounts.hash_algo). */
#define OBX_AUTH_HASH_ALGO_BCRYPT "bcrypt" /* the original console's */

/* True when password matches hash of algorithm algo: argon2id, or bcrypt ($2a$, $2b$, $2y$) as
 * the original console stored it (a password over bcrypt's 72 bytes never matches one). */
bool obx_auth_password_check(const char *algo, const char *hash, const char *password);
/* True for an algorithm that is to be replaced by argon2id at the next sign-in. */
bool obx_auth_password_outdated(const char *algo);

/* Spends about as long as a verification, so an unknown username costs the same as a wrong
 * password. */
void obx_auth_password_dummy_verify(const char *password);

/* HMAC-SHA256(key, msg) as 64 lower-hex characters plus NUL. Any key length (RFC 2104), so the
 * digests match the reference's Go code byte for byte. */
void obx_auth_hmac_hex(const char *key, const char *msg, size_t msg_len,
                       char out[static OBX_AUTH_HEX_LEN + 1]);

/* Constant-time equality of two n-byte buffers. */
bool obx_auth_equal(const void *a, const void *b, size_t n);

/* Lower-hex of n random bytes from libsodium. out holds 2n+1. */
void obx_auth_random_hex(char *out, size_t nbytes);

/* Wipes a NUL-terminated secret in place. */
void obx_auth_wipe(char *secret);

#endif
