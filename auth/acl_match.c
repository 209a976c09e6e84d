/*
 * acl_match.c - MQTT topic matching for the ACL checks: a filter against
 * a topic name (PUBLISH, delivery), and a filter against a filter
 * (SUBSCRIBE: does a deny line cover it, does a grant meet it).
 *
 * auth/ may not include router/, so the rules are written again here, in
 * a form that serves all three questions: two cursors step level by level
 * through two strings, and each question is a few lines over the kinds of
 * the two current levels. The rules (MQTT 3.1.1 and 5.0 section 4.7):
 *
 *   levels split on '/'; empty levels count ("a//b" has three);
 *   '+' matches exactly one level, possibly empty ("a/+" matches "a/");
 *   '#' matches the parent level and any number below it ("a/#" matches
 *       "a", "a/b", "a/b/c");
 *   a filter whose first level is '+' or '#' matches no topic whose first
 *       level starts with '$' [MQTT-4.7.2-1] ("#" does not match "$SYS/x";
 *       "$SYS/#" does).
 *
 * A filter meets another when some topic matches both ("a/+" and "+/b"
 * meet in "a/b"; "#" and "$SYS/#" never meet). A deny filter d covers f
 * when every topic f matches, d matches ("a/#" covers "a/+/c" and "a";
 * "+/#" covers "a" and "#", not "$SYS/a"; "a/+" does not cover "a/#",
 * which also matches "a").
 */
#include "auth_int.h"

#include <string.h>

/* What the current level of a cursor is. */
enum level_kind { LV_END, LV_LIT, LV_PLUS, LV_POUND };

/* A walk over the levels of one filter or name. */
typedef struct cursor_s {
    const char *s;
    size_t n, pos;  /* pos: start of the next level; n + 1 when done */
    int wild;       /* 1: '+' and '#' are wildcards (a filter) */
    int first;      /* 1 while the current level is the first */
    const char *lv; /* the current level */
    size_t lvlen;
} cursor_t;

static void cursor_init(cursor_t *c, const char *s, size_t n, int wild)
{
    *c = (cursor_t){s, n, 0, wild, 0, NULL, 0};
}

/* Steps to the next level and says what it is. */
static enum level_kind cursor_next(cursor_t *c)
{
    if (c->pos > c->n) return LV_END;
    const char *slash = memchr(c->s + c->pos, '/', c->n - c->pos);
    size_t end = slash ? (size_t)(slash - c->s) : c->n;
    c->first = c->pos == 0;
    c->lv = c->s + c->pos;
    c->lvlen = end - c->pos;
    c->pos = end + 1;
    if (c->wild && c->lvlen == 1 && c->lv[0] == '+') return LV_PLUS;
    if (c->wild && c->lvlen == 1 && c->lv[0] == '#') return LV_POUND;
    return LV_LIT;
}

/* 1 when a wildcard level in the first position may stand for the other
 * cursor's literal level: not when that level starts with '$'. */
static int wild_may_meet(const cursor_t *lit)
{
    return !(lit->first && lit->lvlen > 0 && lit->lv[0] == '$');
}

/* 1 when f is a valid filter; see auth_int.h. */
int acl__filter_valid(const char *f, size_t flen)
{
    cursor_t c;
    enum level_kind k;
    if (flen == 0 || flen > AUTH_TOPIC_MAX) return 0;
    cursor_init(&c, f, flen, 1);
    while ((k = cursor_next(&c)) != LV_END) {
        if (k == LV_POUND && c.pos <= flen) return 0; /* MQTT-4.7.1-1: '#' is last */
        if (k == LV_LIT && (memchr(c.lv, '+', c.lvlen) || memchr(c.lv, '#', c.lvlen)))
            return 0; /* MQTT-4.7.1-1, MQTT-4.7.1-2: whole levels only */
    }
    return 1;
}

/* The walk under matching and meeting: 1 when some name matches both a
 * (a filter) and b (a filter, or a name when b_wild is 0). */
static int meet(const char *a, size_t alen, const char *b, size_t blen, int b_wild)
{
    cursor_t ca, cb;
    int empty_first = 0; /* the first level is forced to be empty */
    cursor_init(&ca, a, alen, 1);
    cursor_init(&cb, b, blen, b_wild);
    for (unsigned level = 1;; level++) {
        enum level_kind ka = cursor_next(&ca), kb = cursor_next(&cb);
        if (ka == LV_END && kb == LV_END) return 1;
        if (ka == LV_POUND || kb == LV_POUND) {
            /* '#' takes the rest, and the parent when the other has ended;
             * but not the parent "" ("/#" and "+" do not meet). */
            if (ka == LV_LIT) return wild_may_meet(&ca);
            if (kb == LV_LIT) return wild_may_meet(&cb);
            return !(empty_first && level == 2 && (ka == LV_END || kb == LV_END));
        }
        if (ka == LV_END || kb == LV_END) return 0;
        if (ka == LV_LIT && kb == LV_LIT) {
            if (ca.lvlen != cb.lvlen || memcmp(ca.lv, cb.lv, ca.lvlen) != 0) return 0;
        } else if (ka == LV_LIT || kb == LV_LIT) {
            if (!wild_may_meet(ka == LV_LIT ? &ca : &cb)) return 0;
        }
        if (level == 1)
            empty_first = (ka == LV_LIT && ca.lvlen == 0) || (kb == LV_LIT && cb.lvlen == 0);
    }
}

/* Filter against name; see auth_int.h. */
int acl__matches(const char *f, size_t flen, const char *t, size_t tlen)
{
    return tlen > 0 && meet(f, flen, t, tlen, 0);
}

/* Filter against filter; see auth_int.h. */
int acl__intersects(const char *a, size_t alen, const char *b, size_t blen)
{
    return meet(a, alen, b, blen, 1);
}

/* Containment; see auth_int.h. */
int acl__covers(const char *d, size_t dlen, const char *f, size_t flen)
{
    cursor_t cd, cf;
    int f_empty_first = 0; /* f's first level is "" */
    cursor_init(&cd, d, dlen, 1);
    cursor_init(&cf, f, flen, 1);
    for (unsigned level = 1;; level++) {
        enum level_kind kd = cursor_next(&cd), kf = cursor_next(&cf);
        if (kd == LV_POUND) return kf != LV_LIT || wild_may_meet(&cf);
        if (kd == LV_END || kf == LV_END) return kd == kf;
        /* f's '#' matches the parent too, but for the parent "" (none
         * then: "#" is "+/#", and "/#" is "/+/#"). */
        if (kf == LV_POUND && kd == LV_PLUS && (level == 1 || (level == 2 && f_empty_first)))
            return cursor_next(&cd) == LV_POUND;
        if (kf == LV_POUND) return 0;
        if (kd == LV_PLUS) {
            if (kf == LV_LIT && !wild_may_meet(&cf)) return 0;
        } else if (kf != LV_LIT || cd.lvlen != cf.lvlen || memcmp(cd.lv, cf.lv, cd.lvlen) != 0) {
            return 0;
        }
        if (level == 1) f_empty_first = kf == LV_LIT && cf.lvlen == 0;
    }
}
