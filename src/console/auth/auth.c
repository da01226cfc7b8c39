/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libsodium for the console. Password hashing uses crypto_pwhash_str with argon2id at the
 * "interactive" limits (2 passes, 64 MiB): fast enough for a login, expensive for an attacker.
 * At most two hashes run at once so a burst of logins cannot take 64 MiB per pool thread.
 */
#include "auth.h"

#include <crypt.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <strings.h>

#define PWHASH_OPS crypto_pwhash_OPSLIMIT_INTERACTIVE
#define PWHASH_MEM crypto_pwhash_MEMLIMIT_INTERACTIVE
#define PWHASH_CONCURRENCY 2

_Static_assert(OBX_AUTH_PWHASH_MAX >= crypto_pwhash_STRBYTES, "PHC buffer too small");

static sem_t pwhash_slots;

int obx_auth_init(void)
{
    if (sodium_init() < 0)
        return -EIO;
    static bool once;
    if (!once) {
        sem_init(&pwhash_slots, 0, PWHASH_CONCURRENCY);
        once = true;
    }
    return 0;
}

static void slot_take(void)
{
    while (sem_wait(&pwhash_slots) < 0 && errno == EINTR)
        ;
}

int obx_auth_password_hash(const char *password, char out[static OBX_AUTH_PWHASH_MAX])
{
    slot_take();
    int r = crypto_pwhash_str_alg(out, password, strlen(password), PWHASH_OPS, PWHASH_MEM,
                                  crypto_pwhash_ALG_ARGON2ID13);
    sem_post(&pwhash_slots);
    return r == 0 ? 0 : -ENOMEM;
}

bool obx_auth_password_verify(const char *phc, const char *password)
{
    if (strncmp(phc, "$argon2id$", 10) != 0)
        return false;
    slot_take();
    int r = crypto_pwhash_str_verify(phc, password, strlen(password));
    sem_post(&pwhash_slots);
    return r == 0;
}

/* bcrypt through libcrypt: crypt_rn() with the stored hash as its setting gives the hash of the
 * password under the same salt and cost; equal hashes mean the password is right. */
static bool bcrypt_check(const char *hash, const char *password)
{
    if (strlen(password) > 72 || strlen(hash) != 60 || hash[0] != '$' || hash[1] != '2' ||
        !strchr("aby", hash[2]) || hash[3] != '$')
        return false;
    struct crypt_data *cd = sodium_malloc(sizeof(*cd));
    if (!cd)
        return false;
    memset(cd, 0, sizeof(*cd));
    slot_take();
    const char *out = crypt_rn(password, hash, cd, (int)sizeof(*cd));
    sem_post(&pwhash_slots);
    bool ok = out && strlen(out) == 60 && sodium_memcmp(out, hash, 60) == 0;
    sodium_free(cd); /* wiped */
    return ok;
}

bool obx_auth_password_check(const char *algo, const char *hash, const char *password)
{
    if (strcasecmp(algo, OBX_AUTH_HASH_ALGO) == 0)
        return obx_auth_password_verify(hash, password);
    if (strcasecmp(algo, OBX_AUTH_HASH_ALGO_BCRYPT) == 0)
        return bcrypt_check(hash, password);
    return false;
}

bool obx_auth_password_outdated(const char *algo)
{
    return strcasecmp(algo, OBX_AUTH_HASH_ALGO) != 0;
}

static char dummy_phc[OBX_AUTH_PWHASH_MAX];

static void dummy_init(void)
{
    char pw[33];
    obx_auth_random_hex(pw, 16);
    if (obx_auth_password_hash(pw, dummy_phc) < 0)
        dummy_phc[0] = '\0';
}

void obx_auth_password_dummy_verify(const char *password)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, dummy_init);
    obx_auth_password_verify(dummy_phc, password);
}

void obx_auth_hmac_hex(const char *key, const char *msg, size_t msg_len,
                       char out[static OBX_AUTH_HEX_LEN + 1])
{
    crypto_auth_hmacsha256_state st;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key, strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)msg, msg_len);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_bin2hex(out, OBX_AUTH_HEX_LEN + 1, mac, sizeof(mac));
    sodium_memzero(&st, sizeof(st));
}

bool obx_auth_equal(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0;
}

void obx_auth_random_hex(char *out, size_t nbytes)
{
    unsigned char buf[64];
    size_t done = 0;
    while (done < nbytes) {
        size_t n = OBX_MIN(nbytes - done, sizeof(buf));
        randombytes_buf(buf, n);
        sodium_bin2hex(out + 2 * done, 2 * n + 1, buf, n);
        done += n;
    }
    out[2 * nbytes] = '\0';
    sodium_memzero(buf, sizeof(buf));
}

void obx_auth_wipe(char *secret)
{
    if (secret)
        sodium_memzero(secret, strlen(secret));
}
