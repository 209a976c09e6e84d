/*
 * passwd.c - `uvmq passwd`: adds, updates and deletes the users of a
 * mosquitto password file, and hashes a plaintext one in place (-U).
 *
 * The file is read whole and checked with auth/'s passwd_parse, so a
 * malformed file is refused with its "FILE:LINE: why" and left alone. It
 * is then edited as text, line by line, so that comments, blank lines and
 * the order of the users stay; the new text is parsed again (the user
 * must read back with the hash just made) and written atomically: a
 * mkstemp file beside the old one, mode 0600, fsync, rename over it. A
 * password comes from argv (-b) or is asked twice on /dev/tty with echo
 * off; it is never printed, and the buffers that held it are wiped.
 */
#include "cli/passwd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "auth/auth.h"
#include "common/err.h"
#include "common/xmalloc.h"
#include "packets/pkt.h"

/* Longest password: what a CONNECT carries (a two-byte length). */
#define PASS_MAX 65535
/* Largest file read: ~250 bytes an argon2id user, room for 250,000. */
#define FILE_MAX (64 * 1024 * 1024)
/* Room for a message that names a file. */
#define ERR_MAX (PATH_MAX + 512)
/* parse_args: --help was asked for. */
#define ARGS_HELP 1

/* What the command line asks for. */
struct cmd {
    enum passwd_type type; /* -H */
    unsigned iterations;   /* -I; 0: passwd_hash's default */
    int create;            /* -c */
    int del;               /* -D */
    int batch;             /* -b */
    int upgrade;           /* -U */
    const char *file;      /* as given: messages name it */
    const char *user;      /* NULL with -U */
    const char *pass;      /* -b only: borrowed from argv */
};

/* A growing byte buffer: the file as read, the file to write. */
struct text {
    char *p;
    size_t len, cap;
};

/* The file as it is before the change. */
struct old_file {
    char *path; /* the name to write: a symlink's target, as mosquitto_passwd */
    int exists; /* st is valid: the new file keeps its owner */
    struct stat st;
    struct text text; /* its bytes (not read with -c) */
};

/* The terminal a prompt turned echo off on, for on_fatal_signal. */
static int tty_fd = -1;
static struct termios tty_saved;
static volatile sig_atomic_t tty_quiet;

/* Signals that end the program while the terminal is quiet or a file is
 * being replaced. */
static const int fatal_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define N_FATAL (sizeof fatal_signals / sizeof fatal_signals[0])

/* Writes the message into err[0..errlen); returns rc. */
static int report(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int report(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: uvmq passwd [-H TYPE] [-I N] [-c | -D] FILE USER\n"
            "       uvmq passwd [-H TYPE] [-I N] [-c] -b FILE USER PASSWORD\n"
            "       uvmq passwd [-H TYPE] [-I N] -U FILE\n"
            "\n"
            "Adds or updates USER in the mosquitto password file FILE, asking for the\n"
            "password twice on the terminal; see docs/security.md.\n"
            "\n"
            "  -b         batch: take PASSWORD from the command line (ps and the shell\n"
            "             history show it)\n"
            "  -c         create FILE, replacing any file of that name\n"
            "  -D         delete USER\n"
            "  -H TYPE    hash new passwords with argon2id (default; mosquitto 2.1 reads\n"
            "             it), sha512-pbkdf2 (mosquitto 2.0 reads it) or sha512 (old)\n"
            "  -I N       PBKDF2 iterations for -H sha512-pbkdf2 (default: %d)\n"
            "  -U         hash every plaintext \"user:password\" line of FILE in place\n"
            "  -h, --help print this help and exit\n"
            "\n"
            "FILE is replaced atomically with mode 0600. Exit status: 0, or 1 on error.\n",
            PASSWD_PBKDF2_ITERATIONS);
}

/* ---- the command line ---- */

/* -H NAME into *type. */
static int parse_type(const char *name, enum passwd_type *type, char *err, size_t errlen)
{
    int rc = 0;

    if (strcmp(name, "argon2id") == 0)
        *type = PASSWD_ARGON2ID;
    else if (strcmp(name, "sha512-pbkdf2") == 0)
        *type = PASSWD_PBKDF2;
    else if (strcmp(name, "sha512") == 0)
        *type = PASSWD_SHA512;
    else
        rc = report(UVMQ_ECONFIG, err, errlen,
                    "-H: unknown hash \"%s\" (argon2id, sha512-pbkdf2 or sha512)", name);
    return rc;
}

/* -I N into *iterations: a decimal 1..INT_MAX (mosquitto reads an int). */
static int parse_iterations(const char *s, unsigned *iterations, char *err, size_t errlen)
{
    char *end = NULL;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < 1 || v > INT_MAX)
        return report(UVMQ_ECONFIG, err, errlen, "-I: must be an integer 1..%d (got %s)", INT_MAX,
                      s);
    *iterations = (unsigned)v;
    return 0;
}

/* 1 when s[0..n) holds a control character. */
static int has_control(const char *s, size_t n)
{
    int found = 0;

    for (size_t i = 0; i < n && !found; i++)
        found = (unsigned char)s[i] < 0x20 || s[i] == 0x7f;
    return found;
}

/* Checks a user name a line of the file will start with; where starts the
 * message ("FILE" or "FILE:LINE"). */
static int check_user(const char *u, size_t n, const char *where, char *err, size_t errlen)
{
    const char *why = NULL;

    if (n == 0)
        why = "is empty";
    else if (n > PASSWD_USER_MAX)
        why = "is longer than 65535 bytes";
    else if (memchr(u, ':', n) != NULL)
        why = "holds a ':'";
    else if (has_control(u, n))
        why = "holds a control character";
    else if (u[0] == '#')
        why = "starts with '#' (the line would be a comment)";
    else if (u[0] == ' ' || u[n - 1] == ' ')
        why = "starts or ends with a space";
    else if (!pkt_utf8_valid((const uint8_t *)u, n))
        why = "is not UTF-8 (MQTT-1.5.4-1)";
    return why == NULL ? 0 : report(UVMQ_ECONFIG, err, errlen, "%s: the user name %s", where, why);
}

/* Checks a password's length. */
static int check_pass(size_t n, const char *where, char *err, size_t errlen)
{
    int rc = 0;

    if (n == 0)
        rc = report(UVMQ_ECONFIG, err, errlen, "%s: the password is empty", where);
    else if (n > PASS_MAX)
        rc = report(UVMQ_ECONFIG, err, errlen, "%s: the password is longer than %d bytes", where,
                    PASS_MAX);
    return rc;
}

/* The flags that exclude one another, as mosquitto_passwd has them. */
static int check_flags(const struct cmd *c, int iterations_given, char *err, size_t errlen)
{
    int rc = 0;

    if (c->create && c->del)
        rc = report(UVMQ_EINVAL, err, errlen, "-c and -D cannot be used together");
    else if (c->upgrade && (c->create || c->del || c->batch))
        rc = report(UVMQ_EINVAL, err, errlen, "-U cannot be used with -c, -D or -b");
    else if (c->batch && c->del)
        rc = report(UVMQ_EINVAL, err, errlen, "-b and -D cannot be used together");
    else if (iterations_given && c->type != PASSWD_PBKDF2)
        rc = report(UVMQ_EINVAL, err, errlen, "-I goes with -H sha512-pbkdf2 only");
    return rc;
}

/* FILE, USER and PASSWORD: how many depends on the flags. */
static int take_operands(struct cmd *c, int n, char **v, char *err, size_t errlen)
{
    int want = c->upgrade ? 1 : c->batch ? 3 : 2;
    int rc = 0;

    if (n != want)
        return report(UVMQ_EINVAL, err, errlen, "expected %s",
                      want == 1   ? "FILE"
                      : want == 2 ? "FILE USER"
                                  : "FILE USER PASSWORD");
    c->file = v[0];
    c->user = want >= 2 ? v[1] : NULL;
    c->pass = want == 3 ? v[2] : NULL;
    if (c->file[0] == '\0') rc = report(UVMQ_ECONFIG, err, errlen, "FILE is empty");
    if (rc == 0 && c->user != NULL) rc = check_user(c->user, strlen(c->user), c->file, err, errlen);
    if (rc == 0 && c->pass != NULL) rc = check_pass(strlen(c->pass), c->file, err, errlen);
    return rc;
}

/* Parses argv (argv[0] is "passwd") into *c. Returns 0, ARGS_HELP,
 * UVMQ_EINVAL for a usage error or UVMQ_ECONFIG for a bad value, with the
 * message in err. */
static int parse_args(int argc, char **argv, struct cmd *c, char *err, size_t errlen)
{
    static const struct option longs[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *iterations = NULL;
    int opt, help = 0, rc = 0;

    memset(c, 0, sizeof *c);
    c->type = PASSWD_ARGON2ID;
    optind = 0; /* glibc: start afresh (a test may call this more than once) */
    opterr = 0; /* the messages are ours */
    /* '+': options end at FILE, so a password may start with '-'. */
    while (rc == 0 && (opt = getopt_long(argc, argv, "+:bcDhH:I:U", longs, NULL)) != -1) {
        switch (opt) {
        case 'b': c->batch = 1; break;
        case 'c': c->create = 1; break;
        case 'D': c->del = 1; break;
        case 'U': c->upgrade = 1; break;
        case 'h': help = 1; break;
        case 'H': rc = parse_type(optarg, &c->type, err, errlen); break;
        case 'I': iterations = optarg; break;
        case ':': rc = report(UVMQ_EINVAL, err, errlen, "-%c needs a value", optopt); break;
        default:
            if (optopt != 0)
                rc = report(UVMQ_EINVAL, err, errlen, "unknown option -%c", optopt);
            else
                rc = report(UVMQ_EINVAL, err, errlen, "unknown option %s", argv[optind - 1]);
            break;
        }
    }
    if (rc == 0 && help) rc = ARGS_HELP;
    if (rc == 0 && iterations != NULL)
        rc = parse_iterations(iterations, &c->iterations, err, errlen);
    if (rc == 0) rc = check_flags(c, iterations != NULL, err, errlen);
    if (rc == 0) rc = take_operands(c, argc - optind, argv + optind, err, errlen);
    return rc;
}

/* ---- text ---- */

/* Makes room for n more bytes in t. */
static void text_reserve(struct text *t, size_t n)
{
    size_t cap = t->cap != 0 ? t->cap : 4096;

    if (t->p != NULL && t->len + n <= t->cap) return;
    while (cap < t->len + n)
        cap *= 2;
    t->p = xrealloc(t->p, cap);
    t->cap = cap;
}

static void text_add(struct text *t, const char *s, size_t n)
{
    text_reserve(t, n);
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

/* Appends the line "user:hash\n". */
static void text_add_user(struct text *t, const char *user, const char *hash)
{
    text_add(t, user, strlen(user));
    text_add(t, ":", 1);
    text_add(t, hash, strlen(hash));
    text_add(t, "\n", 1);
}

/* Wipes (a -U file holds plaintext passwords) and frees t's bytes. */
static void text_dispose(struct text *t)
{
    if (t->p != NULL) explicit_bzero(t->p, t->cap);
    free(t->p);
    memset(t, 0, sizeof *t);
}

/* ---- lines ----
 *
 * A line is the bytes up to its '\n' (the last may have none). It holds a
 * user unless it is blank or its first non-blank byte is '#', the lines
 * passwd_parse skips. Blanks around a user name do not count, as with
 * passwd_parse and mosquitto. Every function below copies
 * the lines it does not change byte for byte, so line N of the new file
 * is line N of the old one up to the first line added or deleted.
 */

/* Offset of the '\n' ending the line that starts at pos, or len. */
static size_t line_end(const char *s, size_t len, size_t pos)
{
    const char *nl = memchr(s + pos, '\n', len - pos);

    return nl != NULL ? (size_t)(nl - s) : len;
}

/* The blanks passwd_parse trims around lines, names and hashes: what
 * isspace means to mosquitto, less the '\n' that ends a line. */
static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Trims blanks off both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_blank(**s))
        (*s)++, (*n)--;
    while (*n > 0 && is_blank((*s)[*n - 1]))
        (*n)--;
}

/* 1 when the line s[0..n) holds a user. */
static int line_has_user(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && is_blank(s[i]))
        i++;
    return i < n && s[i] != '#';
}

/* 1 when the line s[0..n) is user's: "user:...", blanks around user
 * allowed, as passwd_parse reads it. */
static int line_is_user(const char *s, size_t n, const char *user, size_t ulen)
{
    const char *colon = line_has_user(s, n) ? memchr(s, ':', n) : NULL;
    size_t len = colon != NULL ? (size_t)(colon - s) : 0;

    trim(&s, &len);
    return colon != NULL && len == ulen && memcmp(s, user, ulen) == 0;
}

/* Copies text[0..len) to out with user's line replaced by "user:hash"
 * (hash NULL: left out). With a hash and no line of user's, "user:hash"
 * is appended (after a '\n' the text may lack). Returns how many lines
 * were user's. */
static int edit_user(struct text *out, const char *text, size_t len, const char *user,
                     const char *hash)
{
    size_t ulen = strlen(user);
    int found = 0;

    for (size_t pos = 0, end; pos < len; pos = end < len ? end + 1 : len) {
        end = line_end(text, len, pos);
        if (!line_is_user(text + pos, end - pos, user, ulen)) {
            text_add(out, text + pos, (end < len ? end + 1 : len) - pos);
            continue;
        }
        found++;
        if (hash != NULL) text_add_user(out, user, hash);
    }
    if (hash != NULL && found == 0) {
        if (out->len > 0 && out->p[out->len - 1] != '\n') text_add(out, "\n", 1);
        text_add_user(out, user, hash);
    }
    return found;
}

/* 1 when s[0..n) starts as a hash auth/ reads ($6$, $7$, $argon2id$). */
static int is_hashed(const char *s, size_t n)
{
    static const char *const prefixes[] = {"$6$", "$7$", "$argon2id$"};
    int found = 0;

    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0] && !found; i++)
        found = n >= strlen(prefixes[i]) && memcmp(s, prefixes[i], strlen(prefixes[i])) == 0;
    return found;
}

/* Hashes pass[0..n) as c asks into hash[PASSWD_HASH_MAX]. */
static int hash_pass(const struct cmd *c, const char *pass, size_t n, char *hash, const char *where,
                     char *err, size_t errlen)
{
    int rc = passwd_hash(c->type, pass, n, c->iterations, hash, PASSWD_HASH_MAX);

    if (rc != 0)
        rc = report(rc, err, errlen, "%s: cannot hash the password: %s", where, err_str(rc));
    return rc;
}

/* -U on line number line, s[0..n): a plaintext "user:password" line (its
 * user and password trimmed) becomes "user:hash\n"; another line is
 * copied (passwd_parse judges it later). */
static int upgrade_line(struct text *out, const char *s, size_t n, unsigned line,
                        const struct cmd *c, char *err, size_t errlen)
{
    const char *colon = line_has_user(s, n) ? memchr(s, ':', n) : NULL;
    const char *user = s, *pass = colon != NULL ? colon + 1 : s;
    size_t ulen = colon != NULL ? (size_t)(colon - s) : 0;
    size_t plen = colon != NULL ? n - ulen - 1 : 0;
    char where[ERR_MAX / 2], hash[PASSWD_HASH_MAX], *name;
    int rc;

    trim(&pass, &plen);
    if (colon == NULL || is_hashed(pass, plen)) {
        text_add(out, s, n);
        text_add(out, "\n", 1);
        return 0;
    }
    trim(&user, &ulen);
    snprintf(where, sizeof where, "%s:%u", c->file, line);
    rc = check_user(user, ulen, where, err, errlen);
    if (rc == 0) rc = check_pass(plen, where, err, errlen);
    if (rc == 0) rc = hash_pass(c, pass, plen, hash, where, err, errlen);
    if (rc == 0) {
        name = xstrndup(user, ulen);
        text_add_user(out, name, hash);
        free(name);
    }
    return rc;
}

/* -U: copies text[0..len) to out with every plaintext line hashed; the
 * lines keep their numbers. */
static int upgrade_text(struct text *out, const char *text, size_t len, const struct cmd *c,
                        char *err, size_t errlen)
{
    unsigned line = 1;
    int rc = 0;

    for (size_t pos = 0, end; pos < len && rc == 0; pos = end + 1, line++) {
        end = line_end(text, len, pos);
        rc = upgrade_line(out, text + pos, end - pos, line, c, err, errlen);
    }
    return rc;
}

/* ---- the password from the terminal ---- */

/* A fatal signal at a prompt: echo back on, then die of the signal
 * (SA_RESETHAND put back its default action). */
static void on_fatal_signal(int sig)
{
    if (tty_quiet) tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
    raise(sig);
}

/* Reads one line from the terminal fd into buf[0..cap) and strips its
 * '\n'. Returns 0, UVMQ_ELIMIT when the line fills buf, or -errno. */
static int read_line(int fd, char *buf, size_t cap, size_t *len)
{
    size_t n = 0;
    ssize_t r = 1;
    int rc = 0;

    /* Canonical mode: each read returns at most one line; ^D on an empty
     * line returns 0. */
    while (r > 0 && (n == 0 || buf[n - 1] != '\n') && n < cap) {
        r = read(fd, buf + n, cap - n);
        if (r > 0) n += (size_t)r;
        if (r < 0 && errno == EINTR) r = 1;
    }
    if (r < 0)
        rc = -errno;
    else if (n > 0 && buf[n - 1] == '\n')
        n--;
    else if (n == cap)
        rc = UVMQ_ELIMIT;
    *len = n;
    return rc;
}

/* Writes the prompt on the terminal fd and reads a line with echo off. */
static int prompt(int fd, const char *text, char *buf, size_t cap, size_t *len)
{
    struct termios quiet;
    ssize_t w;
    int rc = 0;

    if (tcgetattr(fd, &tty_saved) != 0) return -errno;
    quiet = tty_saved;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tty_fd = fd;
    tty_quiet = 1;
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) rc = -errno;
    w = write(fd, text, strlen(text));
    if (rc == 0) rc = read_line(fd, buf, cap, len);
    tcsetattr(fd, TCSAFLUSH, &tty_saved);
    tty_quiet = 0;
    w = write(fd, "\n", 1); /* the one echo did not write */
    (void)w;
    return rc;
}

/* Asks for the password twice on /dev/tty into pass[0..PASS_MAX + 1),
 * its length in *len. Fails when there is no terminal, when a line is too
 * long and when the two differ. */
static int ask_password(const char *file, char *pass, size_t *len, char *err, size_t errlen)
{
    struct sigaction sa, old[N_FATAL];
    char *again = xmalloc(PASS_MAX + 1);
    size_t alen = 0;
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : 0;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_FATAL && fd >= 0; i++)
        sigaction(fatal_signals[i], &sa, &old[i]);
    if (rc == 0) rc = prompt(fd, "Password: ", pass, PASS_MAX + 1, len);
    if (rc == 0) rc = prompt(fd, "Reenter password: ", again, PASS_MAX + 1, &alen);
    for (size_t i = 0; i < N_FATAL && fd >= 0; i++)
        sigaction(fatal_signals[i], &old[i], NULL);
    if (fd < 0)
        rc = report(UVMQ_EIO, err, errlen,
                    "%s: cannot open /dev/tty to ask for the password (%s); -b takes it as an "
                    "argument",
                    file, strerror(-rc));
    else if (rc == UVMQ_ELIMIT)
        rc = report(UVMQ_ECONFIG, err, errlen, "%s: the password is longer than %d bytes", file,
                    PASS_MAX);
    else if (rc != 0)
        rc = report(UVMQ_EIO, err, errlen, "%s: cannot read the password from /dev/tty: %s", file,
                    strerror(-rc));
    else if (alen != *len || memcmp(pass, again, alen) != 0)
        rc = report(UVMQ_ECONFIG, err, errlen, "%s: the passwords do not match", file);
    if (fd >= 0) close(fd);
    explicit_bzero(again, PASS_MAX + 1);
    free(again);
    return rc;
}

/* ---- the file ---- */

/* Fills f->path, f->exists and, when it exists, f->st. A missing file is
 * an error when must_exist. */
static int find_old(struct old_file *f, const char *name, int must_exist, char *err, size_t errlen)
{
    int rc = 0;

    f->path = realpath(name, NULL);
    if (f->path == NULL && errno == ENOENT && !must_exist)
        f->path = xstrdup(name);
    else if (f->path == NULL)
        rc = report(UVMQ_EIO, err, errlen, "%s: %s%s", name, strerror(errno),
                    errno == ENOENT ? " (-c creates it)" : "");
    else if (stat(f->path, &f->st) != 0)
        rc = report(UVMQ_EIO, err, errlen, "%s: %s", name, strerror(errno));
    else
        f->exists = 1;
    return rc;
}

/* Reads the regular file at f->path, at most FILE_MAX bytes, into
 * f->text. */
static int read_old(struct old_file *f, const char *name, char *err, size_t errlen)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    ssize_t n = 1;
    int rc = 0;

    if (fd < 0) return report(UVMQ_EIO, err, errlen, "%s: %s", name, strerror(errno));
    if (fstat(fd, &f->st) != 0 || !S_ISREG(f->st.st_mode))
        rc = report(UVMQ_EIO, err, errlen, "%s: not a regular file", name);
    while (rc == 0 && n > 0) {
        text_reserve(&f->text, 65536);
        n = read(fd, f->text.p + f->text.len, f->text.cap - f->text.len);
        if (n > 0) f->text.len += (size_t)n;
        if (n < 0 && errno == EINTR) n = 1;
        if (n < 0) rc = report(UVMQ_EIO, err, errlen, "%s: cannot read: %s", name, strerror(errno));
        if (f->text.len > FILE_MAX)
            rc = report(UVMQ_EIO, err, errlen, "%s: larger than %d MiB", name, FILE_MAX >> 20);
    }
    close(fd);
    return rc;
}

/* Checks the text of a password file with passwd_parse: "FILE:LINE: why".
 * With user, it must hold user with exactly that hash (hash NULL: not at
 * all). */
static int check_text(const struct text *t, const char *name, const char *user, const char *hash,
                      char *err, size_t errlen)
{
    passwd_t *pw = NULL;
    const passwd_user_t *u;
    int rc = passwd_parse(&pw, t->p != NULL ? t->p : "", t->len, name, err, errlen);

    if (rc == 0 && user != NULL) {
        u = passwd_find(pw, user, strlen(user));
        if (hash != NULL ? u == NULL || strcmp(passwd_user_hash(u), hash) != 0 : u != NULL)
            rc = report(UVMQ_EINVAL, err, errlen, "%s: the new file would not hold \"%s\" as meant",
                        name, user);
    }
    passwd_release(&pw);
    return rc;
}

/* Best effort after a rename: fsync the directory holding path, so the
 * new name survives a crash. A filesystem that cannot (EINVAL) still
 * has the file. */
static void sync_dir(const char *path)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    int fd;

    if (slash == dir)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    fd = open(slash != NULL ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

/* Mode 0600, the old owner when st (best effort: only root may give a
 * file away), the bytes, fsync. */
static int fill(int fd, const struct text *t, const struct stat *st, const char *name, char *err,
                size_t errlen)
{
    size_t off = 0;
    ssize_t n = 0;
    int rc = 0;

    if (fchmod(fd, 0600) != 0)
        rc = report(UVMQ_EIO, err, errlen, "%s: cannot chmod the new file: %s", name,
                    strerror(errno));
    if (rc == 0 && st != NULL && fchown(fd, st->st_uid, st->st_gid) != 0) {
        /* Not ours to give: the new file is the caller's, still 0600. */
    }
    while (rc == 0 && off < t->len) {
        n = write(fd, t->p + off, t->len - off);
        if (n > 0) off += (size_t)n;
        if (n < 0 && errno != EINTR)
            rc = report(UVMQ_EIO, err, errlen, "%s: cannot write: %s", name, strerror(errno));
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = report(UVMQ_EIO, err, errlen, "%s: cannot fsync: %s", name, strerror(errno));
    return rc;
}

/* Replaces the file at path with t: a mkstemp file beside it ("PATH.XXXXXX"),
 * filled, then renamed over path, with the fatal signals held off. On
 * failure the old file is untouched and the temporary one removed. */
static int write_atomic(const char *path, const char *name, const struct text *t,
                        const struct stat *st, char *err, size_t errlen)
{
    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + sizeof ".XXXXXX");
    sigset_t block, old;
    int fd, rc;

    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".XXXXXX", sizeof ".XXXXXX");
    sigemptyset(&block);
    for (size_t i = 0; i < N_FATAL; i++)
        sigaddset(&block, fatal_signals[i]);
    sigprocmask(SIG_BLOCK, &block, &old);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = report(UVMQ_EIO, err, errlen, "%s: cannot create a temporary file beside it: %s", name,
                    strerror(errno));
    } else {
        rc = fill(fd, t, st, name, err, errlen);
        if (close(fd) != 0 && rc == 0)
            rc = report(UVMQ_EIO, err, errlen, "%s: cannot write: %s", name, strerror(errno));
        if (rc == 0 && rename(tmp, path) != 0)
            rc = report(UVMQ_EIO, err, errlen, "%s: cannot rename %s over it: %s", name, tmp,
                        strerror(errno));
        if (rc != 0) unlink(tmp);
    }
    if (rc == 0) sync_dir(path);
    sigprocmask(SIG_SETMASK, &old, NULL);
    free(tmp);
    return rc;
}

/* ---- the commands ---- */

/* Adds or updates c->user (-c: in an empty file) with a new hash, which
 * is left in hash[PASSWD_HASH_MAX]. */
static int set_user(struct text *out, const struct text *old, const struct cmd *c, char *hash,
                    char *err, size_t errlen)
{
    char *asked = c->batch ? NULL : xmalloc(PASS_MAX + 1);
    size_t len = c->batch ? strlen(c->pass) : 0;
    int rc = 0;

    if (asked != NULL) rc = ask_password(c->file, asked, &len, err, errlen);
    if (rc == 0) rc = check_pass(len, c->file, err, errlen);
    if (rc == 0)
        rc = hash_pass(c, asked != NULL ? asked : c->pass, len, hash, c->file, err, errlen);
    if (rc == 0) edit_user(out, old->p, old->len, c->user, hash);
    if (asked != NULL) explicit_bzero(asked, PASS_MAX + 1);
    free(asked);
    return rc;
}

/* Runs the parsed command: read and check, edit, check, write. */
static int run(const struct cmd *c, char *err, size_t errlen)
{
    struct old_file f;
    struct text out = {0};
    char hash[PASSWD_HASH_MAX] = "";
    int rc;

    memset(&f, 0, sizeof f);
    rc = find_old(&f, c->file, !c->create, err, errlen);
    if (rc == 0 && !c->create) rc = read_old(&f, c->file, err, errlen);
    /* -U reads plaintext, which passwd_parse refuses: it judges the result. */
    if (rc == 0 && !c->create && !c->upgrade)
        rc = check_text(&f.text, c->file, NULL, NULL, err, errlen);
    if (rc == 0 && c->upgrade) {
        rc = upgrade_text(&out, f.text.p, f.text.len, c, err, errlen);
    } else if (rc == 0 && c->del) {
        if (edit_user(&out, f.text.p, f.text.len, c->user, NULL) == 0)
            rc = report(UVMQ_ENOTFOUND, err, errlen, "%s: no user \"%s\" in it", c->file, c->user);
    } else if (rc == 0) {
        rc = set_user(&out, &f.text, c, hash, err, errlen);
    }
    if (rc == 0) rc = check_text(&out, c->file, c->user, c->del ? NULL : hash, err, errlen);
    if (rc == 0) rc = write_atomic(f.path, c->file, &out, f.exists ? &f.st : NULL, err, errlen);
    free(f.path);
    text_dispose(&f.text);
    text_dispose(&out);
    return rc;
}

int cli_passwd(int argc, char **argv)
{
    char *err = xmalloc(ERR_MAX);
    struct cmd c;
    int rc;

    err[0] = '\0';
    rc = parse_args(argc, argv, &c, err, ERR_MAX);
    if (rc == ARGS_HELP) {
        usage(stdout);
        rc = 0;
    } else if (rc == UVMQ_EINVAL) {
        fprintf(stderr, "uvmq passwd: %s\n", err);
        usage(stderr);
    } else {
        if (rc == 0) rc = run(&c, err, ERR_MAX);
        if (rc != 0) fprintf(stderr, "uvmq passwd: %s\n", err);
    }
    free(err);
    return rc == 0 ? 0 : 1;
}
