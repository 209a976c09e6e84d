/*
 * passwd.c - mosquitto password files: loading and checking them, finding
 * a user, verifying a password and making new hashes.
 *
 * FORMAT. One "user:hash" a line, as mosquitto_passwd writes it. Blank
 * lines, and lines whose first non-blank is '#', are skipped; blanks
 * around the user name and the hash are trimmed (mosquitto's
 * misc__trimblanks), so CRLF files read fine. The user name is what comes
 * before the first ':': not empty, at most 65535 bytes. The hashes:
 *
 *   $6$SALT$HASH         HASH = SHA-512(password || salt), once. mosquitto
 *                        1.x and 2.0 write a 12-byte salt; any of 1 to 64
 *                        bytes is read.
 *   $7$ITER$SALT$HASH    HASH = PBKDF2-HMAC-SHA512(password, salt, ITER,
 *                        64 bytes). mosquitto 2.0 writes ITER 101 and a
 *                        12-byte salt, 2.1 ITER 210000 and a 64-byte salt;
 *                        ITER from 1 to INT_MAX, salts of 1 to 64 bytes.
 *   $argon2id$v=19$m=KIB,t=PASSES,p=LANES$SALT$HASH
 *                        libargon2's encoded form (mosquitto 2.1, the
 *                        argon2 CLI with -e), verified by argon2id_verify.
 *
 * SALT and HASH of "$6$" and "$7$" are base64 with '=' padding (OpenSSL's
 * BIO encoder, which mosquitto uses); HASH is 64 bytes. argon2id's are
 * base64 without padding. Every line is checked when the file is read,
 * argon2id's shape included (version 19, m from 8*p to 4 GiB, t 1 to 1000,
 * p 1 to 64, salt 8 to 64 bytes, hash 16 to 64 bytes: a line outside
 * these is more likely a mistake than a choice), so a bad line fails the
 * load with its line number instead of failing every login later.
 */
#include "auth.h"

#include <argon2.h>
#include <assert.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth_int.h"
#include "common/err.h"
#include "common/xmalloc.h"

#define DIGEST_LEN  64       /* SHA-512's output, and the PBKDF2 key mosquitto makes */
#define SALT_MAX    64       /* longest salt read ("$6$", "$7$", argon2id) */
#define SHA512_SALT 12       /* salt of a new "$6$" hash, as mosquitto 1.x and 2.0 */
#define FIELD_MAX   128      /* decoded bytes a field may hold before it is "too long" */
#define A2_M_MAX    4194304u /* argon2id m, KiB: 4 GiB */
#define A2_T_MAX    1000u
#define A2_P_MAX    64u
#define A2_SALT_MIN 8 /* libargon2's ARGON2_MIN_SALT_LENGTH */
#define A2_HASH_MIN 16

/* What passwd_verify(NULL, ...) checks a password against, so that an
 * unknown user costs what a user with a new argon2id hash costs (the
 * PASSWD_ARGON2_* parameters). No password is known to match it; made
 * with: printf %s 'no user' | argon2 'uvmq dummy salt: no user has this
 * hash, it only burns the time..' -id -t 1 -k 47104 -p 1 -l 64 -e */
static const char dummy_hash[] =
    "$argon2id$v=19$m=47104,t=1,p=1$dXZtcSBkdW1teSBzYWx0OiBubyB1c2VyIGhhcyB0aGlzIGhhc2gsIGl0IG9u"
    "bHkgYnVybnMgdGhlIHRpbWUuLg$yXr0Osq9/xB+yRoKnirbfmwLjgain5iLXziPx6TFXVRPPlT1+HkVGJgXMJgRWiM"
    "Qbdle4MpdesDi8DkVjt4mUQ";

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

struct passwd_user_s {
    const char *name; /* name_len bytes, a NUL, then the hash: one allocation */
    size_t name_len;
    const char *hash; /* as in the file, NUL-terminated */
    unsigned line;    /* where it was read (duplicate messages) */
    uint32_t iterations;
    uint8_t type; /* enum passwd_type */
    uint8_t salt_len;
    uint8_t salt[SALT_MAX];     /* "$6$", "$7$" */
    uint8_t digest[DIGEST_LEN]; /* "$6$", "$7$"; argon2id verifies from hash */
};

struct passwd_s {
    atomic_uint refs;
    passwd_user_t *users;
    size_t count, cap;
    auth_index_t index; /* name -> users[] */
};

/* A field of a hash being read. */
typedef struct scan_s {
    const char *p, *end;
} scan_t;

/* ---- base64 ---- */

/* A strict decoder of our own rather than OpenSSL's EVP_DecodeBlock: that
 * one skips blanks, counts padding as zero bytes, knows no unpadded form
 * (argon2id's) and takes any trailing bits, all of which we would have to
 * check around it. This one takes only A-Z a-z 0-9 + /, '=' only as the
 * padding a padded field needs, and requires the unused low bits of the
 * last character to be zero (the one canonical encoding; libargon2's
 * decoder insists on it as well). Decodes s[0..n) into out (cap bytes) and
 * returns the length, or -1. */
static long b64_decode(const char *s, size_t n, int padded, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t len, o = 0;
    if (padded && n % 4 != 0) return -1;
    for (int pad = 0; padded && pad < 2 && n > 0 && s[n - 1] == '='; pad++)
        n--;
    if (n % 4 == 1) return -1; /* six bits make no byte */
    len = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    if (len > cap) return -1;
    for (size_t i = 0; i < n; i++) {
        const char *c = s[i] ? strchr(b64_chars, s[i]) : NULL;
        if (c == NULL) return -1;
        acc = acc << 6 | (uint32_t)(c - b64_chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? (long)len : -1;
}

/* Writes the padded base64 of in[0..n) and a NUL to out (4 * ceil(n / 3)
 * + 1 bytes). */
static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n) v |= in[i + 2];
        *out++ = b64_chars[v >> 18 & 63];
        *out++ = b64_chars[v >> 12 & 63];
        *out++ = i + 1 < n ? b64_chars[v >> 6 & 63] : '=';
        *out++ = i + 2 < n ? b64_chars[v & 63] : '=';
    }
    *out = '\0';
}

/* ---- reading a hash ---- */

/* Takes word from the front of sc; 1 when it was there. */
static int scan_eat(scan_t *sc, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0) return 0;
    sc->p += n;
    return 1;
}

/* Takes a decimal number from 1 to max (no sign, no leading zero). */
static int scan_number(scan_t *sc, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;
    const char *start = sc->p;
    while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9' && v <= max)
        v = v * 10 + (uint64_t)(*sc->p++ - '0');
    if (sc->p == start || *start == '0' || v > max) return 0;
    *out = (uint32_t)v;
    return 1;
}

/* Takes the field up to the next '$' (and the '$' when last is 0) and
 * decodes it into out; returns its decoded length, or -1. */
static long scan_field(scan_t *sc, int last, int padded, uint8_t *out)
{
    const char *d = memchr(sc->p, '$', (size_t)(sc->end - sc->p));
    const char *stop = last ? sc->end : d;
    if (stop == NULL || stop == sc->p) return -1;
    long n = b64_decode(sc->p, (size_t)(stop - sc->p), padded, out, FIELD_MAX);
    sc->p = last ? sc->end : d + 1;
    return n;
}

/* SALT$HASH of "$6$" and "$7$" into u. Returns 0, or auth__fail's error. */
static int read_salt_hash(auth_parse_t *p, passwd_user_t *u, scan_t *sc)
{
    uint8_t buf[FIELD_MAX];
    long n = scan_field(sc, 0, 1, buf);
    if (n < 0) return auth__fail(p, "salt missing, not base64 or too long");
    if (n == 0 || n > SALT_MAX) return auth__fail(p, "salt of %ld bytes (1 to 64)", n);
    memcpy(u->salt, buf, (size_t)n);
    u->salt_len = (uint8_t)n;
    n = scan_field(sc, 1, 1, buf);
    if (n < 0) return auth__fail(p, "hash missing, not base64 or too long");
    if (n != DIGEST_LEN) return auth__fail(p, "hash of %ld bytes (64 expected)", n);
    memcpy(u->digest, buf, DIGEST_LEN);
    return 0;
}

/* The rest of "$argon2id$...": its numbers and field sizes. */
static int read_argon2id(auth_parse_t *p, scan_t *sc)
{
    uint8_t buf[FIELD_MAX];
    uint32_t v, m, t, lanes;
    long n;
    if (!scan_eat(sc, "v=") || !scan_number(sc, 99, &v) || v != 19 || !scan_eat(sc, "$"))
        return auth__fail(p, "argon2id: not version 19 (v=19)");
    if (!scan_eat(sc, "m=") || !scan_number(sc, UINT32_MAX, &m) || !scan_eat(sc, ",t=") ||
        !scan_number(sc, UINT32_MAX, &t) || !scan_eat(sc, ",p=") ||
        !scan_number(sc, UINT32_MAX, &lanes) || !scan_eat(sc, "$"))
        return auth__fail(p, "argon2id: parameters not m=KIB,t=PASSES,p=LANES");
    if (lanes > A2_P_MAX) return auth__fail(p, "argon2id: p=%u is not 1 to 64", lanes);
    if (t > A2_T_MAX) return auth__fail(p, "argon2id: t=%u is not 1 to 1000", t);
    if (m < 8 * lanes || m > A2_M_MAX)
        return auth__fail(p, "argon2id: m=%u is not 8*p to 4194304 (KiB)", m);
    n = scan_field(sc, 0, 0, buf);
    if (n < A2_SALT_MIN || n > SALT_MAX)
        return auth__fail(p, "argon2id: salt not base64 of 8 to 64 bytes");
    n = scan_field(sc, 1, 0, buf);
    if (n < A2_HASH_MIN || n > DIGEST_LEN)
        return auth__fail(p, "argon2id: hash not base64 of 16 to 64 bytes");
    return 0;
}

/* Reads the hash h[0..n) into u's type, salt and digest. Returns 0, or
 * auth__fail's error (whose message never quotes the hash). */
static int read_hash(auth_parse_t *p, passwd_user_t *u, const char *h, size_t n)
{
    scan_t sc = {h, h + n};
    if (n == 0) return auth__fail(p, "no hash after the ':'");
    if (h[0] != '$')
        return auth__fail(p, "not a hash (a plaintext password? uvmq passwd -U "
                             "hashes a plaintext file)");
    if (scan_eat(&sc, "$6$")) {
        u->type = PASSWD_SHA512;
        return read_salt_hash(p, u, &sc);
    }
    if (scan_eat(&sc, "$7$")) {
        u->type = PASSWD_PBKDF2;
        if (!scan_number(&sc, INT_MAX, &u->iterations) || !scan_eat(&sc, "$"))
            return auth__fail(p, "$7$: iterations not a number from 1 to %d", INT_MAX);
        return read_salt_hash(p, u, &sc);
    }
    if (scan_eat(&sc, "$argon2id$")) {
        u->type = PASSWD_ARGON2ID;
        return read_argon2id(p, &sc);
    }
    return auth__fail(p, "unknown hash type (uvmq reads $6$, $7$ and $argon2id$)");
}

/* ---- loading ---- */

/* Appends user name[0..nlen) with hash h[0..hlen) (read into tmp). */
static void add_user(passwd_t *pw, passwd_user_t *tmp, const char *name, size_t nlen, const char *h,
                     size_t hlen)
{
    char *text = xmalloc(nlen + hlen + 2);
    memcpy(text, name, nlen);
    text[nlen] = '\0';
    memcpy(text + nlen + 1, h, hlen);
    text[nlen + 1 + hlen] = '\0';
    tmp->name = text;
    tmp->name_len = nlen;
    tmp->hash = text + nlen + 1;
    if (pw->count == pw->cap) {
        pw->cap = pw->cap ? pw->cap * 2 : 8;
        pw->users = xrealloc(pw->users, pw->cap * sizeof *pw->users);
    }
    pw->users[pw->count] = *tmp;
    auth__index_add(&pw->index, text, nlen, pw->count, NULL);
    pw->count++;
}

/* One line of the file (an auth_line_cb). */
static int parse_line(auth_parse_t *p, void *state, const char *s, size_t n)
{
    passwd_t *pw = state;
    passwd_user_t tmp = {0};
    size_t nlen, hlen, first;
    const char *colon = memchr(s, ':', n);
    if (colon == NULL) return auth__fail(p, "no ':' between user name and hash");
    nlen = (size_t)(colon - s);
    const char *name = auth__trim(s, &nlen);
    hlen = n - (size_t)(colon + 1 - s);
    const char *h = auth__trim(colon + 1, &hlen);
    if (nlen == 0) return auth__fail(p, "empty user name");
    if (nlen > PASSWD_USER_MAX)
        return auth__fail(p, "user name longer than %u bytes", PASSWD_USER_MAX);
    if ((first = auth__index_find(&pw->index, name, nlen)) != AUTH_NONE)
        return auth__fail(p, "user already defined on line %u", pw->users[first].line);
    if (read_hash(p, &tmp, h, hlen) != 0) return UVMQ_ECONFIG;
    tmp.line = p->line;
    add_user(pw, &tmp, name, nlen, h, hlen);
    return 0;
}

static void passwd_free(passwd_t *pw)
{
    for (size_t i = 0; i < pw->count; i++)
        free((char *)pw->users[i].name);
    if (pw->users) OPENSSL_cleanse(pw->users, pw->count * sizeof *pw->users);
    free(pw->users);
    auth__index_dispose(&pw->index);
    free(pw);
}

/* Parses text[0..len); see auth.h. On failure nothing is kept. */
int passwd_parse(passwd_t **out, const char *text, size_t len, const char *name, char *err,
                 size_t errlen)
{
    passwd_t *pw = xcalloc(1, sizeof *pw);
    auth_parse_t p = {name, 0, err, errlen};
    atomic_init(&pw->refs, 1);
    int rc = auth__parse_lines(&p, text, len, parse_line, pw);
    if (rc != 0) {
        passwd_free(pw);
        pw = NULL;
    }
    *out = pw;
    return rc;
}

/* Reads and parses the file at path; see auth.h. */
int passwd_load(passwd_t **out, const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc = auth__read_file(path, &text, &len, err, errlen);
    *out = NULL;
    if (rc == 0) rc = passwd_parse(out, text, len, path, err, errlen);
    free(text);
    return rc;
}

/* Adds a reference; any thread. */
void passwd_retain(passwd_t *pw)
{
    auth__ref_retain(&pw->refs);
}

/* Drops *pwp's reference, freeing the file on the last; *pwp is NULL. */
void passwd_release(passwd_t **pwp)
{
    passwd_t *pw = *pwp;
    *pwp = NULL;
    if (pw && auth__ref_release(&pw->refs)) passwd_free(pw);
}

size_t passwd_count(const passwd_t *pw)
{
    return pw->count;
}

/* The first user: see auth.h. */
const passwd_user_t *passwd_decoy(const passwd_t *pw)
{
    return pw->count > 0 ? &pw->users[0] : NULL;
}

/* Finds a user by exact bytes; see auth.h. */
const passwd_user_t *passwd_find(const passwd_t *pw, const char *user, size_t len)
{
    size_t i = auth__index_find(&pw->index, user, len);
    return i == AUTH_NONE ? NULL : &pw->users[i];
}

const char *passwd_user_hash(const passwd_user_t *u)
{
    return u->hash;
}

/* ---- verifying and hashing ---- */

/* The "$6$" or "$7$" digest of pass[0..len) with salt into out. Returns
 * 0, UVMQ_EINVAL for a password over INT_MAX bytes (PBKDF2 takes an
 * int), or UVMQ_ENOMEM when OpenSSL cannot allocate. */
static int derive(uint8_t type, const char *pass, size_t len, const uint8_t *salt, size_t salt_len,
                  uint32_t iterations, uint8_t out[DIGEST_LEN])
{
    int rc = UVMQ_ENOMEM;
    EVP_MD_CTX *ctx = NULL;
    if (len > INT_MAX) return UVMQ_EINVAL;
    if (type == PASSWD_PBKDF2) {
        if (PKCS5_PBKDF2_HMAC(pass, (int)len, salt, (int)salt_len, (int)iterations, EVP_sha512(),
                              DIGEST_LEN, out) == 1)
            rc = 0;
    } else if ((ctx = EVP_MD_CTX_new()) != NULL && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) &&
               EVP_DigestUpdate(ctx, pass, len) && EVP_DigestUpdate(ctx, salt, salt_len) &&
               EVP_DigestFinal_ex(ctx, out, NULL)) {
        rc = 0;
    }
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* argon2id_verify's answer as ours. */
static int verify_argon2id(const char *encoded, const char *pass, size_t len)
{
    int rc = argon2id_verify(encoded, pass, len);
    if (rc == ARGON2_OK) return 0;
    return rc == ARGON2_MEMORY_ALLOCATION_ERROR ? UVMQ_ENOMEM : UVMQ_EAUTH;
}

/* Checks a password against u's hash (u NULL: the dummy); see auth.h. A
 * NULL pass with len 0 is the empty password. */
int passwd_verify(const passwd_user_t *u, const char *pass, size_t len)
{
    uint8_t got[DIGEST_LEN];
    int rc;
    if (pass == NULL) pass = "", len = 0;
    if (u == NULL) {
        verify_argon2id(dummy_hash, pass, len); /* for the time it takes */
        rc = UVMQ_EAUTH;
    } else if (u->type == PASSWD_ARGON2ID) {
        rc = verify_argon2id(u->hash, pass, len);
    } else {
        rc = derive(u->type, pass, len, u->salt, u->salt_len, u->iterations, got);
        if (rc == UVMQ_EINVAL || (rc == 0 && CRYPTO_memcmp(got, u->digest, DIGEST_LEN) != 0))
            rc = UVMQ_EAUTH;
        OPENSSL_cleanse(got, sizeof got);
    }
    return rc;
}

/* A new "$6$" or "$7$" hash into out. */
static int hash_salted(uint8_t type, const char *pass, size_t len, unsigned iterations, char *out,
                       size_t outlen)
{
    uint8_t salt[SALT_MAX], digest[DIGEST_LEN];
    char salt64[4 * ((SALT_MAX + 2) / 3) + 1], digest64[4 * ((DIGEST_LEN + 2) / 3) + 1];
    size_t salt_len = type == PASSWD_PBKDF2 ? PASSWD_PBKDF2_SALT : SHA512_SALT;
    int rc = 0, n;
    if (iterations == 0) iterations = PASSWD_PBKDF2_ITERATIONS;
    if (iterations > INT_MAX) rc = UVMQ_EINVAL;
    if (rc == 0 && RAND_bytes(salt, (int)salt_len) != 1) rc = UVMQ_EIO;
    if (rc == 0) rc = derive(type, pass, len, salt, salt_len, iterations, digest);
    if (rc == 0) {
        b64_encode(salt, salt_len, salt64);
        b64_encode(digest, DIGEST_LEN, digest64);
        if (type == PASSWD_PBKDF2)
            n = snprintf(out, outlen, "$7$%u$%s$%s", iterations, salt64, digest64);
        else
            n = snprintf(out, outlen, "$6$%s$%s", salt64, digest64);
        if (n < 0 || (size_t)n >= outlen) rc = UVMQ_EINVAL;
    }
    OPENSSL_cleanse(digest, sizeof digest);
    return rc;
}

/* A new argon2id hash with mosquitto 2.1's parameters into out. */
static int hash_argon2id(const char *pass, size_t len, char *out, size_t outlen)
{
    uint8_t salt[PASSWD_ARGON2_SALT];
    int rc;
    if (RAND_bytes(salt, sizeof salt) != 1) return UVMQ_EIO;
    rc = argon2id_hash_encoded(PASSWD_ARGON2_T, PASSWD_ARGON2_M_KIB, PASSWD_ARGON2_P, pass, len,
                               salt, sizeof salt, PASSWD_ARGON2_HASH, out, outlen);
    if (rc == ARGON2_OK) return 0;
    return rc == ARGON2_MEMORY_ALLOCATION_ERROR ? UVMQ_ENOMEM : UVMQ_EINVAL;
}

/* Makes a new encoded hash; see auth.h. An out too small for it is
 * UVMQ_EINVAL. */
int passwd_hash(enum passwd_type type, const char *pass, size_t len, unsigned iterations, char *out,
                size_t outlen)
{
    int rc = UVMQ_EINVAL;
    if (pass == NULL) pass = "", len = 0;
    if (outlen > 0) out[0] = '\0';
    if (type == PASSWD_ARGON2ID)
        rc = hash_argon2id(pass, len, out, outlen);
    else if (type == PASSWD_PBKDF2 || type == PASSWD_SHA512)
        rc = hash_salted((uint8_t)type, pass, len, iterations, out, outlen);
    return rc;
}
