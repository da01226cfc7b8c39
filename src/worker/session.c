/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Session table and reaper. One mutex guards the list; box starts and stops happen outside it (a
 * new session is inserted busy with no box yet, so concurrent callers see session_busy rather
 * than starting a second box; a session taken out of the table drops its box only after the lock
 * is released, since the last reference stops the box and that can take seconds). The reaper thread
 * wakes every second, or when freed.
 */
#include "session.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/thread.h"

#define REAP_INTERVAL_MS 1000
#define INITIAL_LEASE_MS 60000 /* until the first command's release sets the real lease */
/* A session held by a cancelled call is busy until the call has wound down (its processes killed,
 * the agent's answer read): a few ms. A new call waits up to this long for it instead of failing
 * with session_busy, so that "cancel, then run the next command" works. */
#define CANCEL_GRACE_MS 2000
/* Sessions that ended are remembered this long, the newest ENDED_KEEP of them, so that a call
 * naming one learns why it is gone instead of a bare session_not_found. */
#define ENDED_KEEP 64
#define ENDED_KEEP_MS (3600ull * 1000)

struct session {
    char id[129];
    struct obx_box *box; /* NULL while starting */
    bool busy;
    struct obx_call *holder; /* the call that holds it while busy; may be NULL */
    uint64_t lease_until;    /* monotonic ms */
    int64_t lease_until_unix_ms;
    int64_t created_unix_ms, last_used_unix_ms;
    unsigned users; /* file operations in progress (they do not make it busy) */
    enum obx_net net;
    struct session *next;
};

struct ended {
    char id[129];
    uint64_t at; /* monotonic ms; 0: free slot */
    char why[192];
};

struct obx_worker_sessions {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t freed; /* a session stopped being busy */
    struct session *list;
    unsigned count, max;
    bool stopping;
    pthread_t reaper;
    struct obx_worker_session_factory factory;
    struct ended ended[ENDED_KEEP]; /* a ring, oldest overwritten */
    unsigned ended_next;
};

static struct session *find(struct obx_worker_sessions *s, const char *id)
{
    for (struct session *x = s->list; x; x = x->next)
        if (strcmp(x->id, id) == 0)
            return x;
    return NULL;
}

static struct ended *find_ended(struct obx_worker_sessions *s, const char *id)
{
    uint64_t now = obx_now_ms();
    for (unsigned i = 0; i < ENDED_KEEP; i++) {
        struct ended *e = &s->ended[i];
        if (e->at && now - e->at < ENDED_KEEP_MS && strcmp(e->id, id) == 0)
            return e;
    }
    return NULL;
}

/* With the lock held. why: how it ended ("its lease ran out"). */
static void remember_ended(struct obx_worker_sessions *s, const char *id, const char *why)
{
    struct ended *e = find_ended(s, id);
    if (!e) {
        e = &s->ended[s->ended_next];
        s->ended_next = (s->ended_next + 1) % ENDED_KEEP;
    }
    snprintf(e->id, sizeof(e->id), "%s", id);
    snprintf(e->why, sizeof(e->why), "%s", why);
    e->at = obx_now_ms();
}

/* With the lock held: x's box is gone; so is x. */
static void end_dead_session(struct obx_worker_sessions *s, struct session *x)
{
    char reason[160];
    obx_box_end_reason(x->box, reason, sizeof(reason));
    _cleanup_free_ char *why = obx_xasprintf("its box ended: %s", reason);
    remember_ended(s, x->id, why);
}

static void unlink_session(struct obx_worker_sessions *s, struct session *x)
{
    for (struct session **pp = &s->list; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            s->count--;
            return;
        }
}

/* Frees sessions taken out of the table, and their boxes. Without the lock: the last reference to
 * a box stops it, and a runtime's teardown can take seconds (docker removes a container); the
 * table must keep answering meanwhile. */
static void free_removed(struct session *list)
{
    while (list) {
        struct session *x = list;
        list = x->next;
        obx_box_unref(x->box);
        free(x);
    }
}

static void *reaper_main(void *arg)
{
    struct obx_worker_sessions *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec ts = obx_ms_to_timespec(obx_now_ms() + REAP_INTERVAL_MS);
        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
        uint64_t now = obx_now_ms();
        struct session *expired = NULL;
        for (struct session **pp = &s->list; *pp;) {
            struct session *x = *pp;
            if (!x->busy && !x->users && x->box &&
                (x->lease_until <= now || !obx_box_alive(x->box))) {
                if (!obx_box_alive(x->box))
                    end_dead_session(s, x);
                else
                    remember_ended(s, x->id, "its lease ran out");
                *pp = x->next;
                s->count--;
                x->next = expired;
                expired = x;
            } else {
                pp = &x->next;
            }
        }
        pthread_mutex_unlock(&s->lock);
        for (struct session *x = expired; x; x = x->next)
            obx_info("session %s: lease expired; removing its box", x->id);
        free_removed(expired);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

struct obx_worker_sessions *
obx_worker_sessions_new(unsigned max_sessions, const struct obx_worker_session_factory *factory)
{
    struct obx_worker_sessions *s = obx_xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    obx_cond_init_monotonic(&s->wake);
    obx_cond_init_monotonic(&s->freed);
    s->max = max_sessions ? max_sessions : 64;
    s->factory = *factory;
    if (pthread_create(&s->reaper, NULL, reaper_main, s) != 0)
        abort();
    return s;
}

void obx_worker_sessions_free(struct obx_worker_sessions *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->wake);
    pthread_cond_broadcast(&s->freed);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->reaper, NULL);
    /* Calls still running hold their own box references; their release() finds no session. */
    while (s->list) {
        struct session *x = s->list;
        s->list = x->next;
        if (x->box) {
            obx_box_kill(x->box);
            obx_box_unref(x->box);
        }
        free(x);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_cond_destroy(&s->freed);
    free(s);
}

/* How a session's network reads in a message. */
static const char *net_words(enum obx_net net)
{
    switch (net) {
    case OBX_NET_FULL:
        return "with network true";
    case OBX_NET_ALLOWLIST:
        return "with network \"allowlist\"";
    default:
        return "without network access";
    }
}

/* With the lock held: the session named id, or NULL. One whose box died while it was idle (killed
 * from outside) is taken out of the table, as the reaper would, and put on *removed. */
static struct session *find_live(struct obx_worker_sessions *s, const char *id,
                                 struct session **removed)
{
    struct session *x = find(s, id);
    if (x && x->box && !x->busy && !x->users && !obx_box_alive(x->box)) {
        end_dead_session(s, x);
        unlink_session(s, x);
        x->next = *removed;
        *removed = x;
        return NULL;
    }
    return x;
}

/* With the lock held: x is busy because of a cancelled call that is still winding down, and the
 * grace period has time left: the caller waits for it instead of answering session_busy. */
static bool wait_for_cancelled(struct obx_worker_sessions *s, struct session *x,
                               uint64_t grace_until)
{
    if (!x->busy || !x->holder || !obx_call_is_cancelled(x->holder) || obx_now_ms() >= grace_until)
        return false;
    struct timespec ts = obx_ms_to_timespec(grace_until);
    pthread_cond_timedwait(&s->freed, &s->lock, &ts);
    return true;
}

/* With the lock held: takes the existing session x for call. */
static int take_existing(struct session *x, enum obx_net net, struct obx_call *call,
                         struct obx_worker_session_lease *ret, struct obx_error *err)
{
    if (x->busy)
        return obx_error_set(err, EBUSY, OBX_ERR_SESSION_BUSY, "session is busy");
    if (net != OBX_NET_NONE && net != x->net)
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "network: session %s was started %s; network is chosen when a "
                             "session starts: start a new session %s",
                             x->id, net_words(x->net), net_words(net));
    x->busy = true;
    x->holder = call;
    x->last_used_unix_ms = obx_unix_ms();
    ret->box = obx_box_ref(x->box);
    return 0;
}

/* With the lock held: a new entry for id, busy and without a box yet (so that concurrent callers
 * see session_busy rather than start a second box), in *ret_x; or why there is none. */
static int insert_new(struct obx_worker_sessions *s, const char *id, unsigned flags,
                      enum obx_net net, struct obx_call *call, struct session **ret_x,
                      struct obx_error *err)
{
    if (!(flags & OBX_WORKER_SESSION_CREATE)) {
        const struct ended *e = find_ended(s, id);
        if (!e)
            return obx_error_set(err, ENOENT, OBX_ERR_SESSION_NOT_FOUND, "session not found");
        return obx_error_set(err, ENOENT, OBX_ERR_SESSION_NOT_FOUND,
                             "session not found: it ended %llu s ago (%s); its files are gone; "
                             "create_if_missing starts a new one",
                             (unsigned long long)((obx_now_ms() - e->at) / 1000), e->why);
    }
    if (s->count >= s->max)
        return obx_error_set(err, EAGAIN, OBX_ERR_NO_CAPACITY,
                             "this worker already runs %u sessions, its limit "
                             "(ONLYBOXES_MAX_SESSIONS); wait for idle ones to expire",
                             s->max);
    struct session *x = obx_xcalloc(1, sizeof(*x));
    snprintf(x->id, sizeof(x->id), "%s", id);
    x->busy = true;
    x->holder = call;
    x->net = net;
    x->lease_until = obx_now_ms() + INITIAL_LEASE_MS;
    x->created_unix_ms = x->last_used_unix_ms = obx_unix_ms();
    x->next = s->list;
    s->list = x;
    s->count++;
    struct ended *e = find_ended(s, id);
    if (e)
        e->at = 0; /* the id names a new session now */
    *ret_x = x;
    return 0;
}

/* Without the lock: starts the box of the new entry x; on failure the entry goes away. */
static int start_box(struct obx_worker_sessions *s, struct session *x, enum obx_net net,
                     struct obx_call *call, struct obx_worker_session_lease *ret,
                     struct obx_error *err)
{
    struct obx_box *box = NULL;
    int r = s->factory.start(s->factory.userdata, x->id, net, call, &box, err);
    pthread_mutex_lock(&s->lock);
    if (r < 0) {
        unlink_session(s, x);
        pthread_cond_broadcast(&s->freed);
        pthread_mutex_unlock(&s->lock);
        free(x);
        return r;
    }
    x->box = box;
    ret->box = obx_box_ref(box);
    ret->created = true;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* An empty lease naming id; -EINVAL for an id too long. */
static int lease_init(struct obx_worker_session_lease *ret, const char *id, struct obx_error *err)
{
    memset(ret, 0, sizeof(*ret));
    if (strlen(id) >= sizeof(ret->id))
        return obx_error_set(err, EINVAL, OBX_ERR_INVALID_PAYLOAD,
                             "session_id is longer than %zu characters", sizeof(ret->id) - 1);
    snprintf(ret->id, sizeof(ret->id), "%s", id);
    return 0;
}

int obx_worker_sessions_acquire(struct obx_worker_sessions *s, const char *id, unsigned flags,
                                enum obx_net net, struct obx_call *call,
                                struct obx_worker_session_lease *ret, struct obx_error *err)
{
    int r = lease_init(ret, id, err);
    if (r < 0)
        return r;

    uint64_t grace_until = obx_now_ms() + CANCEL_GRACE_MS;
    struct session *removed = NULL, *created = NULL, *x;
    pthread_mutex_lock(&s->lock);
    do {
        x = s->stopping ? NULL : find_live(s, id, &removed);
    } while (x && wait_for_cancelled(s, x, grace_until));
    if (s->stopping)
        r = obx_error_set(err, ESHUTDOWN, OBX_ERR_EXECUTION_FAILED, "the worker is stopping");
    else if (x)
        r = take_existing(x, net, call, ret, err);
    else
        r = insert_new(s, id, flags, net, call, &created, err);
    pthread_mutex_unlock(&s->lock);
    free_removed(removed);
    if (r < 0 || !created)
        return r;
    return start_box(s, created, net, call, ret, err);
}

int64_t obx_worker_sessions_release(struct obx_worker_sessions *s,
                                    struct obx_worker_session_lease *lease, int extend_sec)
{
    int64_t expiry = 0;
    struct session *removed = NULL;
    pthread_mutex_lock(&s->lock);
    struct session *x = find(s, lease->id);
    if (x && x->box == lease->box) {
        if (extend_sec > 0) {
            uint64_t until = obx_now_ms() + (uint64_t)extend_sec * 1000;
            if (until > x->lease_until || x->lease_until_unix_ms == 0) {
                x->lease_until_unix_ms = obx_unix_ms() + (int64_t)extend_sec * 1000;
                x->lease_until = until;
            }
        }
        if (x->lease_until_unix_ms == 0)
            x->lease_until_unix_ms = obx_unix_ms() + (int64_t)(x->lease_until - obx_now_ms());
        expiry = x->lease_until_unix_ms;
        x->busy = false;
        x->holder = NULL;
        x->last_used_unix_ms = obx_unix_ms();
        pthread_cond_broadcast(&s->freed);
        if (!obx_box_alive(x->box) && !x->users) {
            end_dead_session(s, x);
            unlink_session(s, x);
            x->next = NULL;
            removed = x;
        }
    }
    pthread_mutex_unlock(&s->lock);
    free_removed(removed);
    obx_box_unref(lease->box);
    lease->box = NULL;
    return expiry;
}

unsigned obx_worker_sessions_count(struct obx_worker_sessions *s)
{
    pthread_mutex_lock(&s->lock);
    unsigned n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* With the lock held. */
static void session_info(const struct session *x, struct obx_worker_session_info *out)
{
    snprintf(out->id, sizeof(out->id), "%s", x->id);
    out->lease_until_unix_ms = x->lease_until_unix_ms;
    if (!out->lease_until_unix_ms) /* the first command runs: the lease it has until it ends */
        out->lease_until_unix_ms = obx_unix_ms() + (int64_t)(x->lease_until - obx_now_ms());
    out->busy = x->busy;
    out->created_unix_ms = x->created_unix_ms;
    out->last_used_unix_ms = x->last_used_unix_ms;
}

size_t obx_worker_sessions_list(struct obx_worker_sessions *s, struct obx_worker_session_info *out,
                                size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    for (struct session *x = s->list; x && n < max; x = x->next) {
        if (!x->box)
            continue;
        session_info(x, &out[n]);
        n++;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* With the lock held: the session id names that has a box, or an error saying why there is
 * none (session_not_found with how it ended, or session_busy while it starts). One whose box
 * died is taken out onto *removed. */
static struct session *find_started(struct obx_worker_sessions *s, const char *id,
                                    struct session **removed, struct obx_error *err)
{
    struct session *x = s->stopping ? NULL : find_live(s, id, removed);
    if (x && !x->box) {
        obx_error_set(err, EBUSY, OBX_ERR_SESSION_BUSY,
                      "session is starting (its first command runs); try again when it returns");
        return NULL;
    }
    if (!x) {
        const struct ended *e = find_ended(s, id);
        if (e)
            obx_error_set(err, ENOENT, OBX_ERR_SESSION_NOT_FOUND,
                          "session not found: it ended %llu s ago (%s); its files are gone",
                          (unsigned long long)((obx_now_ms() - e->at) / 1000), e->why);
        else
            obx_error_set(err, ENOENT, OBX_ERR_SESSION_NOT_FOUND, "session not found");
    }
    return x;
}

int obx_worker_sessions_use(struct obx_worker_sessions *s, const char *id,
                            struct obx_worker_session_lease *ret, struct obx_error *err)
{
    int r = lease_init(ret, id, err);
    if (r < 0)
        return r;
    struct session *removed = NULL;
    pthread_mutex_lock(&s->lock);
    struct session *x = find_started(s, id, &removed, err);
    if (x) {
        x->users++;
        x->last_used_unix_ms = obx_unix_ms();
        ret->box = obx_box_ref(x->box);
    }
    pthread_mutex_unlock(&s->lock);
    free_removed(removed);
    return x ? 0 : -err->errnum;
}

void obx_worker_sessions_unuse(struct obx_worker_sessions *s,
                               struct obx_worker_session_lease *lease, int extend_sec)
{
    pthread_mutex_lock(&s->lock);
    struct session *x = find(s, lease->id);
    if (x && x->box == lease->box && x->users > 0) {
        x->users--;
        x->last_used_unix_ms = obx_unix_ms();
        uint64_t until = obx_now_ms() + (uint64_t)OBX_MAX(extend_sec, 0) * 1000;
        if (extend_sec > 0 && until > x->lease_until && x->lease_until_unix_ms) {
            x->lease_until = until;
            x->lease_until_unix_ms = obx_unix_ms() + (int64_t)extend_sec * 1000;
        }
    }
    pthread_mutex_unlock(&s->lock);
    obx_box_unref(lease->box);
    lease->box = NULL;
}

int obx_worker_sessions_info(struct obx_worker_sessions *s, const char *id,
                             struct obx_worker_session_info *ret, struct obx_error *err)
{
    struct session *removed = NULL;
    pthread_mutex_lock(&s->lock);
    struct session *x = find_started(s, id, &removed, err);
    if (x)
        session_info(x, ret);
    pthread_mutex_unlock(&s->lock);
    free_removed(removed);
    return x ? 0 : -err->errnum;
}

int obx_worker_sessions_renew(struct obx_worker_sessions *s, const char *id, int sec,
                              struct obx_worker_session_info *ret, struct obx_error *err)
{
    struct session *removed = NULL;
    pthread_mutex_lock(&s->lock);
    struct session *x = find_started(s, id, &removed, err);
    if (x) {
        uint64_t until = obx_now_ms() + (uint64_t)sec * 1000;
        if (until > x->lease_until || !x->lease_until_unix_ms) {
            x->lease_until = until;
            x->lease_until_unix_ms = obx_unix_ms() + (int64_t)sec * 1000;
        }
        x->last_used_unix_ms = obx_unix_ms();
        session_info(x, ret);
    }
    pthread_mutex_unlock(&s->lock);
    free_removed(removed);
    return x ? 0 : -err->errnum;
}

int obx_worker_sessions_close(struct obx_worker_sessions *s, const char *id, struct obx_error *err)
{
    struct session *removed = NULL;
    pthread_mutex_lock(&s->lock);
    struct session *x = find_started(s, id, &removed, err);
    if (x) {
        unlink_session(s, x);
        remember_ended(s, x->id, "it was closed");
        x->next = removed;
        removed = x;
        pthread_cond_broadcast(&s->freed);
    }
    pthread_mutex_unlock(&s->lock);
    /* Its processes die with the box now; a command still running in it fails. */
    if (x)
        obx_box_kill(x->box);
    if (x)
        obx_info("session %s: closed; its box is removed", x->id);
    free_removed(removed);
    return x ? 0 : -err->errnum;
}
