/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Build-time tool: turns the dashboard's built files (web/dist/) into a C source the console is
 * linked with, so the binary serves its web UI with nothing installed beside it. For every file
 * it writes the bytes, a gzip copy when that is smaller, the content type, an ETag (FNV-1a 64 of
 * the bytes) and whether the name carries a content hash (then it may be cached for good).
 *
 *   embed-assets OUTPUT.c DIST_DIR
 *
 * Files are taken in name order and the gzip header carries no time, so the same dist/ gives
 * the same source. index.html is served at "/", everything else at "/" + its path in dist/.
 */
#include <dirent.h>
#include <errno.h>
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define MAX_FILES 256
#define MAX_FILE_BYTES (8u << 20)

struct file {
    char *url;
    char *path;
};

static struct file files[MAX_FILES];
static size_t n_files;

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "embed-assets: %s: %s\n", what, detail);
    exit(1);
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void walk(const char *dir, const char *rel)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, name_cmp);
    if (n < 0)
        die(dir, strerror(errno));
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (name[0] == '.') {
            free(names[i]);
            continue;
        }
        size_t plen = strlen(dir) + strlen(name) + 2, rlen = strlen(rel) + strlen(name) + 2;
        char *path = malloc(plen), *r = malloc(rlen);
        if (!path || !r)
            die("memory", "out of memory");
        snprintf(path, plen, "%s/%s", dir, name);
        snprintf(r, rlen, "%s/%s", rel, name);
        struct stat st;
        if (stat(path, &st) < 0)
            die(path, strerror(errno));
        if (S_ISDIR(st.st_mode)) {
            walk(path, r);
            free(path);
            free(r);
        } else {
            if (n_files == MAX_FILES)
                die(dir, "too many files");
            files[n_files].path = path;
            files[n_files].url = strcmp(r, "/index.html") == 0 ? strdup("/") : r;
            if (files[n_files].url != r)
                free(r);
            n_files++;
        }
        free(names[i]);
    }
    free(names);
}

static const char *content_type(const char *path)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".txt", "text/plain; charset=utf-8"},
        {".json", "application/json"},
        {".png", "image/png"},
        {".woff2", "font/woff2"},
        {".ico", "image/vnd.microsoft.icon"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(dot, types[i][0]) == 0)
            return types[i][1];
    die(path, "no content type known for this file name");
    return NULL;
}

static unsigned char *read_all(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path, strerror(errno));
    unsigned char *buf = malloc(MAX_FILE_BYTES + 1);
    if (!buf)
        die("memory", "out of memory");
    size_t n = fread(buf, 1, MAX_FILE_BYTES + 1, f);
    if (ferror(f))
        die(path, "read error");
    if (n > MAX_FILE_BYTES)
        die(path, "larger than 8 MiB");
    fclose(f);
    *ret_len = n;
    return buf;
}

/* gzip with the best compression and a header without name or time. */
static unsigned char *gzip(const unsigned char *in, size_t len, size_t *ret_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        die("zlib", "deflateInit2 failed");
    uLong cap = deflateBound(&z, (uLong)len);
    unsigned char *out = malloc(cap);
    if (!out)
        die("memory", "out of memory");
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        die("zlib", "deflate failed");
    *ret_len = z.total_out;
    deflateEnd(&z);
    return out;
}

static uint64_t fnv1a64(const unsigned char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void write_bytes(FILE *out, const char *name, const unsigned char *p, size_t len)
{
    fprintf(out, "static const unsigned char %s[%zu] = {", name, len ? len : 1);
    for (size_t i = 0; i < len; i++)
        fprintf(out, "%s%u,", i % 24 ? "" : "\n    ", p[i]);
    fprintf(out, "%s\n};\n", len ? "" : "0");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: embed-assets OUTPUT.c DIST_DIR\n");
        return 2;
    }
    walk(argv[2], "");
    bool has_index = false;
    for (size_t i = 0; i < n_files; i++) {
        has_index = has_index || strcmp(files[i].url, "/") == 0;
        /* The name goes into a C string and a URL as it is. */
        if (strspn(files[i].url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                 "._-/") != strlen(files[i].url))
            die(files[i].path, "a file name may hold only letters, digits and ._-");
    }
    if (!has_index)
        die(argv[2], "no index.html (build the dashboard: cd web && npm ci && npm run build)");

    /* A name with an esbuild content hash ("main-ABCD1234.js") never changes its bytes. */
    regex_t hashed;
    if (regcomp(&hashed, "^/assets/.*-[A-Z0-9]{8}\\.[a-z0-9]+$", REG_EXTENDED | REG_NOSUB) != 0)
        die("regex", "cannot compile");

    size_t tmp_len = strlen(argv[1]) + 5;
    char *tmp = malloc(tmp_len);
    snprintf(tmp, tmp_len, "%s.tmp", argv[1]);
    FILE *out = fopen(tmp, "w");
    if (!out)
        die(tmp, strerror(errno));
    fprintf(out, "/* Generated by tools/embed-assets.c from web/dist/; do not edit. */\n"
                 "#include \"console/web/web.h\"\n\n");
    for (size_t i = 0; i < n_files; i++) {
        size_t len, gz_len = 0;
        unsigned char *data = read_all(files[i].path, &len);
        unsigned char *gz = gzip(data, len, &gz_len);
        char name[32];
        snprintf(name, sizeof(name), "asset_%zu", i);
        write_bytes(out, name, data, len);
        if (gz_len + 64 < len) {
            snprintf(name, sizeof(name), "asset_%zu_gz", i);
            write_bytes(out, name, gz, gz_len);
        } else {
            gz_len = 0;
        }
        char gz_name[32] = "NULL";
        if (gz_len)
            snprintf(gz_name, sizeof(gz_name), "asset_%zu_gz", i);
        fprintf(out,
                "#define ASSET_%zu {\"%s\", \"%s\", \"\\\"%016llx\\\"\", %s, asset_%zu, %zu, %s, "
                "%zu}\n\n",
                i, files[i].url, content_type(files[i].path),
                (unsigned long long)fnv1a64(data, len),
                regexec(&hashed, files[i].url, 0, NULL, 0) == 0 ? "true" : "false", i, len, gz_name,
                gz_len);
        free(data);
        free(gz);
    }
    fprintf(out, "const struct obx_web_asset obx_web_assets[] = {\n");
    for (size_t i = 0; i < n_files; i++)
        fprintf(out, "    ASSET_%zu,\n", i);
    fprintf(out, "};\nconst size_t obx_web_assets_n = %zu;\n", n_files);
    if (fclose(out) != 0)
        die(tmp, strerror(errno));
    if (rename(tmp, argv[1]) < 0)
        die(argv[1], strerror(errno));
    regfree(&hashed);
    free(tmp);
    return 0;
}
