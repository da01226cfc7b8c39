/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Host uids for boxes of a root worker. bwrap maps the box's user onto the uid that runs bwrap, so
 * under a root worker the box's user would be the host's root: without capabilities, but owner of
 * every root-owned file should anything let a process out. A root worker therefore runs each
 * box's bwrap as a host uid of its own, taken from ONLYBOXES_BWRAP_HOST_UIDS (FIRST-LAST, by
 * default 1879048192-1879113727, a range no distribution, systemd or useradd hands out); the
 * agent's --exec-as step switches to it between posix_spawn and bwrap, so no code runs in a forked
 * copy of this threaded process. The range must not hold uid 0, 65535, an account or group of this
 * host (/etc/passwd, /etc/group, NSS), the owner of a /home entry or a subordinate range delegated
 * to someone (/etc/subuid, /etc/subgid). A uid is taken with an open-file-description lock on byte
 * <uid> of /run/onlyboxes/host-uids.lock, held while the box lives and released by the kernel when
 * the worker dies, so boxes of every root worker on the host get distinct uids (and distinct
 * RLIMIT_NPROC counts) without any record to clean up. An ordinary user's worker is unchanged:
 * its boxes run as its own uid. Called from any thread; the settings are read-only after start-up.
 */
#include "bwrap-internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/random.h"

#define HOST_UIDS_ENV "ONLYBOXES_BWRAP_HOST_UIDS"
/* OBX_SANDBOX_HOST_UIDS_DEFAULT, as numbers */
#define DEFAULT_FIRST 1879048192u   /* 0x70000000 */
#define DEFAULT_LAST 1879113727u    /* 65536 uids */
#define UID_MAX_ALLOWED 2147483647u /* above 2^31 - 1 some programs and file systems misbehave */
#define LOCK_DIR "/run/onlyboxes"
#define LOCK_FILE LOCK_DIR "/host-uids.lock"
#define LINE_MAX_LEN 4096

static int parse_range(const char *s, uint32_t *first, uint32_t *last)
{
    const char *dash = strchr(s, '-');
    if (!dash || dash == s || dash - s > 10)
        return -EINVAL;
    char a[16];
    snprintf(a, sizeof(a), "%.*s", (int)(dash - s), s);
    int64_t x, y;
    if (obx_parse_int64(a, 1, UID_MAX_ALLOWED, &x) < 0 ||
        obx_parse_int64(dash + 1, 1, UID_MAX_ALLOWED, &y) < 0 || y < x)
        return -EINVAL;
    *first = (uint32_t)x;
    *last = (uint32_t)y;
    return 0;
}

/* The first id of the file's entries (name:x:ID:... for passwd and group, name:START:COUNT for
 * subuid and subgid) that falls into [first, last]; the entry's name in who. */
static bool file_overlaps(const char *path, bool sub, uint32_t first, uint32_t last, char *who,
                          size_t who_size, uint32_t *id)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char line[LINE_MAX_LEN];
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '#')
            continue;
        char *fields[4] = {line, NULL, NULL, NULL};
        for (int i = 1; i < 4 && fields[i - 1]; i++) {
            char *colon = strchr(fields[i - 1], ':');
            if (colon) {
                *colon = '\0';
                fields[i] = colon + 1;
            }
        }
        const char *a = sub ? fields[1] : fields[2];
        int64_t start, count = 1;
        if (!a || obx_parse_int64(a, 0, UINT32_MAX, &start) < 0 ||
            (sub && (!fields[2] || obx_parse_int64(fields[2], 1, UINT32_MAX, &count) < 0)))
            continue;
        const char *name = fields[0];
        if (start <= (int64_t)last && start + count - 1 >= (int64_t)first) {
            size_t n = strnlen(name, who_size - 1);
            memcpy(who, name, n);
            who[n] = '\0';
            *id = (uint32_t)OBX_MAX(start, (int64_t)first);
            return true;
        }
    }
    return false;
}

static int check_range(const char *shown, uint32_t first, uint32_t last, struct obx_error *err)
{
    if (first <= 65535 && last >= 65535)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "%s=%s holds uid 65535, which many programs read as -1", HOST_UIDS_ENV,
                             shown);
    static const struct {
        const char *path;
        bool sub;
        const char *what;
    } files[] = {
        {"/etc/passwd", false, "the account"},
        {"/etc/group", false, "the group"},
        {"/etc/subuid", true, "the subordinate uids of"},
        {"/etc/subgid", true, "the subordinate gids of"},
    };
    char who[256];
    uint32_t id;
    for (size_t i = 0; i < OBX_ARRAY_SIZE(files); i++)
        if (file_overlaps(files[i].path, files[i].sub, first, last, who, sizeof(who), &id))
            return obx_error_set(err, EEXIST, OBX_ERR_INVALID_PAYLOAD,
                                 "%s=%s holds %u, %s %s in %s; a box must never run as an id of "
                                 "this host: set %s to a range nothing here uses",
                                 HOST_UIDS_ENV, shown, id, files[i].what, who, files[i].path,
                                 HOST_UIDS_ENV);
    /* People's files: the owners of /home's entries, whichever database names them. */
    DIR *d = opendir("/home");
    struct dirent *de;
    struct stat st;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            st.st_uid < first || st.st_uid > last)
            continue;
        int r =
            obx_error_set(err, EEXIST, OBX_ERR_INVALID_PAYLOAD,
                          "%s=%s holds %u, the owner of /home/%.200s; set %s to a range nothing "
                          "here uses",
                          HOST_UIDS_ENV, shown, (unsigned)st.st_uid, de->d_name, HOST_UIDS_ENV);
        closedir(d);
        return r;
    }
    if (d)
        closedir(d);
    /* Accounts from elsewhere (LDAP, nss-systemd): the ends of the range, as container managers
     * that hand out whole ranges check theirs. */
    uint32_t ends[] = {first, last};
    for (size_t i = 0; i < OBX_ARRAY_SIZE(ends); i++) {
        char buf[4096];
        struct passwd pw, *pwp = NULL;
        struct group gr, *grp = NULL;
        if ((getpwuid_r(ends[i], &pw, buf, sizeof(buf), &pwp) == 0 && pwp) ||
            (getgrgid_r(ends[i], &gr, buf, sizeof(buf), &grp) == 0 && grp))
            return obx_error_set(err, EEXIST, OBX_ERR_INVALID_PAYLOAD,
                                 "%s=%s holds %u, which names %s %s on this host; set %s to a "
                                 "range nothing here uses",
                                 HOST_UIDS_ENV, shown, ends[i], pwp ? "the account" : "the group",
                                 pwp ? pw.pw_name : gr.gr_name, HOST_UIDS_ENV);
    }
    return 0;
}

/* Creates /run/onlyboxes and the lock file, refusing what another user could have planted. */
static int prepare_lock(struct obx_error *err)
{
    if (mkdir(LOCK_DIR, 0755) < 0 && errno != EEXIST)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot create %s: %s",
                             LOCK_DIR, strerror(errno));
    struct stat st;
    if (lstat(LOCK_DIR, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
        return obx_error_set(err, EPERM, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "%s is not a directory that only root can write; refusing it",
                             LOCK_DIR);
    _cleanup_close_ int fd = open(LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0)
        return obx_error_set(err, fd < 0 ? errno : EPERM, OBX_ERR_RUNTIME_UNAVAILABLE,
                             "cannot use %s as the lock of box uids%s%s", LOCK_FILE,
                             fd < 0 ? ": " : " (not a root-owned file)",
                             fd < 0 ? strerror(errno) : "");
    return 0;
}

/* The configured range (NULL or "" for the default) into first and last. */
static int parse_setting(const char *configured, uint32_t *first, uint32_t *last,
                         struct obx_error *err)
{
    *first = DEFAULT_FIRST;
    *last = DEFAULT_LAST;
    if (obx_str_empty(configured) || parse_range(configured, first, last) == 0)
        return 0;
    return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                         "%s=%s is invalid: expected FIRST-LAST, two uids from 1 to %u with "
                         "FIRST <= LAST",
                         HOST_UIDS_ENV, configured, UID_MAX_ALLOWED);
}

int obx_sandbox_host_uids_check(const char *configured, struct obx_error *err)
{
    uint32_t first, last;
    return parse_setting(configured, &first, &last, err);
}

int obx_bwrap_uids_init(struct obx_bwrap_runtime *b, const char *configured, struct obx_error *err)
{
    uint32_t first, last;
    char shown[64];
    int r = parse_setting(configured, &first, &last, err);
    if (r < 0)
        return r;
    if (!obx_str_empty(configured))
        snprintf(shown, sizeof(shown), "%s", configured);
    else
        snprintf(shown, sizeof(shown), "%u-%u (the default)", first, last);
    if (geteuid() != 0) {
        if (!obx_str_empty(configured))
            obx_debug("sandbox: %s applies to a root worker only; boxes run as uid %u",
                      HOST_UIDS_ENV, (unsigned)geteuid());
        return 0;
    }
    r = check_range(shown, first, last, err);
    if (r >= 0)
        r = prepare_lock(err);
    if (r < 0)
        return r;
    b->host_uid_first = first;
    b->host_uid_count = last - first + 1;
    return 0;
}

int obx_bwrap_uid_acquire(struct obx_bwrap_runtime *b, uid_t *ret, int *ret_lock,
                          struct obx_error *err)
{
    if (!b->host_uid_count) {
        *ret = 0;
        *ret_lock = -1;
        return 0;
    }
    /* A description of our own per box: OFD locks of one description never conflict. */
    _cleanup_close_ int fd = open(LOCK_FILE, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot open %s: %s",
                             LOCK_FILE, strerror(errno));
    uint32_t start;
    obx_random_bytes(&start, sizeof(start));
    start %= b->host_uid_count;
    for (uint32_t i = 0; i < b->host_uid_count; i++) {
        uint32_t uid = b->host_uid_first + (start + i) % b->host_uid_count;
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = uid, .l_len = 1};
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
            *ret = uid;
            *ret_lock = TAKE_FD(fd);
            return 0;
        }
        if (errno != EAGAIN && errno != EACCES)
            return obx_error_set(err, errno, OBX_ERR_RUNTIME_UNAVAILABLE, "cannot lock %s: %s",
                                 LOCK_FILE, strerror(errno));
    }
    return obx_error_set(err, EAGAIN, OBX_ERR_NO_CAPACITY,
                         "all %u host uids of %s are taken by running boxes", b->host_uid_count,
                         HOST_UIDS_ENV);
}

bool obx_bwrap_path_public(const char *path)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return false;
    struct stat st;
    for (char *p = real + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        bool ok = stat(real, &st) == 0 && (st.st_mode & S_IXOTH);
        *p = c;
        if (!ok)
            return false;
        if (!c)
            return S_ISREG(st.st_mode);
    }
}

void obx_bwrap_describe_uids(const struct obx_bwrap_runtime *b, char *buf, size_t size)
{
    if (b->host_uid_count)
        snprintf(buf, size, "host uids %u-%u, one per box", b->host_uid_first,
                 b->host_uid_first + b->host_uid_count - 1);
    else
        snprintf(buf, size, "the worker's uid %u", (unsigned)geteuid());
}
