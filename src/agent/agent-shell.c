/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Terminal mode: EXEC {"shell": ...} runs /bin/sh with a fixed wrapper script that restores the
 * state saved under the request's "state" key (working directory and exported variables), evals
 * the user's command in that same shell (so cd, export and exit behave as in a terminal), and on
 * shell exit writes the new state.
 *
 * The user's command is never pasted into the wrapper unquoted. On the cold path it arrives as a
 * positional parameter; a key's persistent shell (agent-warm.c), exec'ed before its requests
 * existed, reads one request id per line from its command pipe (fd 3) and forks a subshell per
 * command, which first points its stdout and stderr at the request's FIFOs, then sources the
 * request's script file: single-quoted assignments only, ending with __obx_go=1, written whole by
 * the agent before the id is sent. Either way the command is run with eval, so quotes, `$` and
 * newlines reach the shell verbatim. The subshell restores the state when its command runs, so a
 * state saved since the shell was started is seen; as it is a fork, nothing a command changes in
 * it reaches the next one except through the saved state, as with a fresh shell. The parent shell
 * reports "<id> <status> <pid>" on its stdout once the subshell is gone.
 *
 * The state is the output of the shell's own `export -p` (re-sourceable by the same shell) plus
 * the working directory, carried in the exported variable __OBX_CWD that the restore step removes
 * again. PWD, SHLVL and _ are dropped before saving; the shell sets them itself.
 *
 * The EXIT trap writes to a per-request file "<key>.<id>.new"; the agent renames it over "<key>"
 * only when the shell ended on its own (agent_shell_finish), so a command killed by timeout or
 * cancel leaves the state of the last completed command. Variables from the request's "env" win
 * over the restored state for that command (and, being exported, are saved with it).
 */
#include "agent-internal.h"

#include <fcntl.h>
#include <sys/stat.h>

/* Cold path: $1 new-state file, $2 state file, $3 command, $4 "1" to keep the request's cwd,
 * $5... names of request env variables to re-apply after the restore. */
#define WRAPPER_COLD                                           \
    "__obx_out=$1 __obx_in=$2 __obx_cmd=$3 __obx_keepcwd=$4\n" \
    "shift 4\n"

/* Persistent shell: $1 state file, $2 workspace, $3 state directory. The subshell's cd makes it
 * start where a cold shell would even if the workspace was replaced since the shell was spawned;
 * cd exports OLDPWD, which a cold shell does not have at this point. */
#define WRAPPER_WARM_HEAD                                            \
    "exec 2>/dev/null\n"                                             \
    "while read -r __obx_id <&3; do\n"                               \
    "(\n"                                                            \
    "exec >\"$3/.z.$__obx_id.out\" 2>\"$3/.z.$__obx_id.err\" 3<&-\n" \
    ". \"$3/.z.$__obx_id.sh\"\n"                                     \
    "[ \"${__obx_go-}\" = 1 ] || exit 125\n"                         \
    "cd -- \"$2\" 2>/dev/null; unset OLDPWD\n"                       \
    "__obx_in=$1 __obx_keepcwd=0\n"                                  \
    "unset __obx_id\n"                                               \
    "set --\n"
#define WRAPPER_WARM_TAIL        \
    ")\n"                        \
    "echo \"$__obx_id $? $$\"\n" \
    "done\n"

#define WRAPPER_BODY                                                                \
    "for __obx_n do eval \"__obx_v_$__obx_n=\\${$__obx_n}\"; done\n"                \
    "if [ -f \"$__obx_in\" ]; then . \"$__obx_in\"; fi\n"                           \
    "for __obx_n do eval \"export $__obx_n=\\\"\\${__obx_v_$__obx_n}\\\"\"; "       \
    "unset \"__obx_v_$__obx_n\"; done\n"                                            \
    "if [ -n \"${__OBX_CWD+x}\" ]; then\n"                                          \
    "  if [ \"$__obx_keepcwd\" != 1 ]; then cd -- \"$__OBX_CWD\" 2>/dev/null; fi\n" \
    "  unset __OBX_CWD\n"                                                           \
    "fi\n"                                                                          \
    "__obx_save() {\n"                                                              \
    "  __OBX_CWD=$PWD; export __OBX_CWD\n"                                          \
    "  unset PWD SHLVL _ 2>/dev/null\n"                                             \
    "  export -p >\"$__obx_out\" 2>/dev/null\n"                                     \
    "}\n"                                                                           \
    "trap __obx_save EXIT\n"                                                        \
    "unset __obx_n __obx_in __obx_keepcwd __obx_go\n"                               \
    "set --\n"                                                                      \
    "eval \"$__obx_cmd\"\n"

static const char wrapper_cold[] = WRAPPER_COLD WRAPPER_BODY;
static const char wrapper_warm[] = WRAPPER_WARM_HEAD WRAPPER_BODY WRAPPER_WARM_TAIL;

int agent_mkdir_p(const char *path, mode_t mode)
{
    /* Usually it exists (every terminal request asks): one syscall then. */
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -errno;
    _cleanup_free_ char *p = obx_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

bool agent_shell_key_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > 128 || k[0] == '.')
        return false;
    for (const char *c = k; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-' || *c == '.'))
            return false;
    return true;
}

static bool shell_name(const char *k)
{
    if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_'))
        return false;
    for (const char *c = k + 1; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_'))
            return false;
    return true;
}

int agent_shell_paths(struct agent *a, struct agent_request *r, const char *key, char *errbuf,
                      size_t errlen)
{
    if (!agent_shell_key_valid(key)) {
        snprintf(errbuf, errlen,
                 "\"state\" must be 1-128 characters of [A-Za-z0-9._-] not starting with '.'");
        return -EINVAL;
    }
    int rr = agent_mkdir_p(a->cfg.state_dir, 0700);
    if (rr < 0) {
        snprintf(errbuf, errlen, "cannot create state directory %s: %s", a->cfg.state_dir,
                 strerror(-rr));
        return rr;
    }
    (void)chmod(a->cfg.state_dir, 0700);
    r->state_key = obx_xstrdup(key);
    r->state_new = obx_xasprintf("%s/%s.%u.new", a->cfg.state_dir, key, r->id);
    r->state_file = obx_xasprintf("%s/%s", a->cfg.state_dir, key);
    (void)unlink(r->state_new);
    return 0;
}

char **agent_shell_argv(const struct agent_request *r, const char *command, bool keep_cwd,
                        json_t *env)
{
    size_t n_env = env ? json_object_size(env) : 0;
    char **argv = obx_xcalloc(9 + n_env, sizeof(char *)); /* 8 fixed + names + NULL */
    size_t i = 0;
    argv[i++] = obx_xstrdup("/bin/sh");
    argv[i++] = obx_xstrdup("-c");
    argv[i++] = obx_xstrdup(wrapper_cold);
    argv[i++] = obx_xstrdup("sh");
    argv[i++] = obx_xstrdup(r->state_new);
    argv[i++] = obx_xstrdup(r->state_file);
    argv[i++] = obx_xstrdup(command);
    argv[i++] = obx_xstrdup(keep_cwd ? "1" : "0");
    const char *name;
    json_t *v;
    json_object_foreach(env, name, v)
    {
        if (shell_name(name))
            argv[i++] = obx_xstrdup(name);
    }
    argv[i] = NULL;
    return argv;
}

char **agent_shell_warm_argv(const struct agent *a, const char *key)
{
    char **argv = obx_xcalloc(8, sizeof(char *));
    argv[0] = obx_xstrdup("/bin/sh");
    argv[1] = obx_xstrdup("-c");
    argv[2] = obx_xstrdup(wrapper_warm);
    argv[3] = obx_xstrdup("sh");
    argv[4] = obx_xasprintf("%s/%s", a->cfg.state_dir, key);
    argv[5] = obx_xstrdup(a->cfg.workspace);
    argv[6] = obx_xstrdup(a->cfg.state_dir);
    return argv;
}

/* Appends name='value' and a newline; a ' in value becomes '\'' (close, escaped quote, reopen),
 * the only character single quotes cannot hold. */
static size_t put_assignment(char *out, const char *name, const char *value)
{
    size_t o = 0;
    for (const char *c = name; *c; c++)
        out[o++] = *c;
    out[o++] = '=';
    out[o++] = '\'';
    for (const char *c = value; *c; c++) {
        if (*c == '\'') {
            memcpy(out + o, "'\\''", 4);
            o += 4;
        } else {
            out[o++] = *c;
        }
    }
    out[o++] = '\'';
    out[o++] = '\n';
    return o;
}

char *agent_shell_warm_script(const struct agent_request *r, const char *command, size_t *ret_len)
{
    static const char go[] = "__obx_go=1\n";
    size_t n = strlen(r->state_new), m = strlen(command);
    /* Every byte may quadruple; plus names, quotes and newlines. */
    char *s = obx_xmalloc(4 * (n + m) + 64 + sizeof(go));
    size_t o = put_assignment(s, "__obx_out", r->state_new);
    o += put_assignment(s + o, "__obx_cmd", command);
    memcpy(s + o, go, sizeof(go) - 1);
    o += sizeof(go) - 1;
    *ret_len = o;
    return s;
}

void agent_shell_finish(struct agent_request *r)
{
    if (!r->state_new)
        return;
    struct stat st;
    if (!r->timed_out && !r->canceled && !r->shell_died && lstat(r->state_new, &st) == 0 &&
        S_ISREG(st.st_mode)) {
        if (rename(r->state_new, r->state_file) < 0)
            agent_log("cannot save terminal state %s: %s", r->state_file, strerror(errno));
    } else {
        (void)unlink(r->state_new);
    }
}
