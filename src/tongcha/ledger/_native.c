/* The ledger's compiled part: the common NDJSON line of a carrier's file, read at once
 * (FastLine), and the check log's number digests, many at a time (number_digests).
 *
 * FastLine. tongcha.ledger.parse.EventParser is what decides every event. This reads
 * only the shape nearly every line of a carrier's file has, with no room for doubt:
 *
 *   {"event_id":"...","type":"...","number":"+86...","occurred_at":"...",
 *    "holder":{"id_number":"...","name":"..."}}
 *
 * in any order of keys, no spaces, no escapes, an event id of printable ASCII, a plain
 * mobile number, an RFC 3339 time, a compact ID number and a name of CJK Unified
 * Ideographs alone. Such a line it returns as the Event the Python parser makes of it
 * (the tests hold the two equal); any other line, and any line the Python parser would
 * refuse, it returns None for, and the Python parser decides it. So this never refuses
 * an event and never says why: every refusal is the Python parser's.
 *
 * The digests are HMAC-SHA-256 through OpenSSL, from keyed states made once, as
 * tongcha.kit.digests.Digester makes them (the tests hold them equal).
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <datetime.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define PREFIX_MAX 16
#define MAX_NAME_CHARS 100
#define MAX_EVENT_ID 128
#define FIELDS 12 /* Event's fields, in order */

enum { K_ACTIVATED, K_CANCELLED, K_TRANSFERRED, K_SUSPENDED, K_RESUMED, K_COUNT };
static const char *const KIND_NAMES[K_COUNT] = {"activated", "cancelled", "transferred", "suspended", "resumed"};

typedef struct {
    SHA256_CTX inner, outer;
} Keyed;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *event_type;  /* tongcha.ledger.replay.Event */
    PyObject *kinds[K_COUNT];
    PyObject *carrier_id;
    Keyed holder, kyc, tail;
    char prefix[PREFIX_MAX]; /* "k1:" */
    Py_ssize_t prefix_len;
    unsigned char mobile[100000]; /* whether each 6-digit prefix 100000..199999 starts a mobile number */
    int64_t earliest_us, latest_us;   /* the times an event may have, as microseconds since 1970 UTC */
    int64_t steady_since_us;          /* from this moment on the time zone's offset is ... */
    int64_t offset_us;                /* ... this */
    int today_y, today_m, today_d;    /* the day in the time zone: no one is born after it */
} FastLine;

/* ----- days and times ------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, int m, int d) {
    /* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int days_in_month(int y, int m) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return days[m - 1];
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 1;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM) as microseconds since 1970 UTC. */
static int parse_time(const char *s, Py_ssize_t n, int64_t *us) {
    int y, mo, d, h, mi, sec, frac = 0, oh = 0, om = 0;
    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return 0;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) ||
        !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
        return 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59) return 0;
    Py_ssize_t i = 19;
    if (s[i] == '.') {
        int count = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, count++) {
            if (count == 6) return 0;
            frac = frac * 10 + (s[i] - '0');
        }
        if (count == 0) return 0;
        for (; count < 6; count++) frac *= 10;
    }
    int sign = 0;
    if (i + 1 == n && s[i] == 'Z') {
        sign = 0;
    } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59) return 0;
        sign = s[i] == '+' ? 1 : -1;
    } else {
        return 0;
    }
    int64_t seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - sign * (oh * 3600 + om * 60);
    *us = seconds * 1000000 + frac;
    return 1;
}

/* ----- identity ------------------------------------------------------------------- */

/* A compact resident ID number (17 digits and a check character) with its check
 * character right and a birth date that can be, as tongcha.kit.idcard checks it. */
static int id_number_ok(const FastLine *self, const char *s, Py_ssize_t n) {
    if (n != 18) return 0;
    int rest = 0; /* the first 17 digits read in base 13, modulo 11, as stdnum's cn.ric */
    for (int i = 0; i < 17; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        rest = (rest * 13 + (s[i] - '0')) % 11;
    }
    int check = ((1 - 2 * rest) % 11 + 11) % 11;
    if (s[17] != (check == 10 ? 'X' : '0' + check)) return 0;
    int y = 0, m = 0, d = 0;
    digits(s + 6, 4, &y);
    digits(s + 10, 2, &m);
    digits(s + 12, 2, &d);
    if (y < 1880 || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m)) return 0;
    if (y != self->today_y) return y < self->today_y;
    if (m != self->today_m) return m < self->today_m;
    return d <= self->today_d;
}

/* A name of 1 to 100 CJK Unified Ideographs (U+4E00..U+9FFF), which normalising
 * leaves as it is. */
static int plain_han(const unsigned char *s, Py_ssize_t n) {
    if (n == 0 || n % 3 != 0 || n / 3 > MAX_NAME_CHARS) return 0;
    for (Py_ssize_t i = 0; i < n; i += 3) {
        unsigned char a = s[i], b = s[i + 1], c = s[i + 2];
        if (a < 0xE4 || a > 0xE9 || (b & 0xC0) != 0x80 || (c & 0xC0) != 0x80) return 0;
        if (a == 0xE4 && b < 0xB8) return 0;
    }
    return 1;
}

/* The 11 digits of a number written the plain way, +86 and 11 digits from 1 or 11
 * digits from 1, with their value in ``number``; NULL for any other text. */
static const char *plain_number(const char *s, Py_ssize_t len, long long *number) {
    if (len == 14 && memcmp(s, "+86", 3) == 0) {
        s += 3;
        len = 11;
    }
    if (len != 11 || s[0] != '1') return NULL;
    long long value = 0;
    for (int i = 0; i < 11; i++) {
        if (s[i] < '0' || s[i] > '9') return NULL;
        value = value * 10 + (s[i] - '0');
    }
    *number = value;
    return s;
}

static void keyed(Keyed *k, const unsigned char *key, Py_ssize_t key_len, const char *purpose, size_t purpose_len) {
    unsigned char block[64] = {0}, pad[64];
    if (key_len > 64) {
        SHA256(key, (size_t)key_len, block);
    } else {
        memcpy(block, key, (size_t)key_len);
    }
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
    SHA256_Init(&k->inner);
    SHA256_Update(&k->inner, pad, 64);
    SHA256_Update(&k->inner, purpose, purpose_len);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5C;
    SHA256_Init(&k->outer);
    SHA256_Update(&k->outer, pad, 64);
}

static const char URLSAFE[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#define MAC_TEXT 43 /* 32 bytes in base64url, no padding */

/* The MAC of ``value`` as base64url with no padding, into ``out`` (MAC_TEXT characters). */
static void mac_b64(const Keyed *k, const unsigned char *value, size_t len, char *out) {
    SHA256_CTX ctx;
    unsigned char inner[32], mac[33];
    memcpy(&ctx, &k->inner, sizeof ctx);
    SHA256_Update(&ctx, value, len);
    SHA256_Final(inner, &ctx);
    memcpy(&ctx, &k->outer, sizeof ctx);
    SHA256_Update(&ctx, inner, 32);
    SHA256_Final(mac, &ctx);
    mac[32] = 0;
    char full[44];
    char *at = full;
    for (int i = 0; i < 33; i += 3) {
        uint32_t v = ((uint32_t)mac[i] << 16) | ((uint32_t)mac[i + 1] << 8) | mac[i + 2];
        *at++ = URLSAFE[(v >> 18) & 63];
        *at++ = URLSAFE[(v >> 12) & 63];
        *at++ = URLSAFE[(v >> 6) & 63];
        *at++ = URLSAFE[v & 63];
    }
    /* 32 bytes are 43 characters; the 44th came from the zero byte added above. */
    memcpy(out, full, MAC_TEXT);
}

/* The digest's text: the key version's prefix and the MAC. */
static PyObject *mac_text(const FastLine *self, const Keyed *k, const unsigned char *value, size_t len) {
    char text[PREFIX_MAX + MAC_TEXT];
    memcpy(text, self->prefix, (size_t)self->prefix_len);
    mac_b64(k, value, len, text + self->prefix_len);
    return PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, text, self->prefix_len + MAC_TEXT);
}

/* ----- the line --------------------------------------------------------------------- */

typedef struct {
    const char *at;
    Py_ssize_t len;
} Text;

/* A JSON string with no escapes and no control characters, from just past its opening
 * quote; ``*p`` is left past its closing quote. */
static int string_at(const char **p, const char *end, Text *out) {
    const char *s = *p;
    const char *q = s;
    while (q < end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c == '\\' || c < 0x20) return 0;
        q++;
    }
    if (q == end) return 0;
    out->at = s;
    out->len = q - s;
    *p = q + 1;
    return 1;
}

static int is_key(const Text *t, const char *name) {
    size_t n = strlen(name);
    return (size_t)t->len == n && memcmp(t->at, name, n) == 0;
}

/* {"key":"value",...} of the given keys, each at most once, from the opening brace. */
static int object_at(const char **p, const char *end, const char *const *keys, int count, Text *values,
                     const char **holder_at) {
    const char *s = *p;
    if (s >= end || *s != '{') return 0;
    s++;
    for (;;) {
        Text key;
        if (s >= end || *s != '"') return 0;
        s++;
        if (!string_at(&s, end, &key)) return 0;
        if (s >= end || *s != ':') return 0;
        s++;
        int which = -1;
        for (int i = 0; i < count; i++) {
            if (is_key(&key, keys[i])) {
                which = i;
                break;
            }
        }
        if (which < 0 || values[which].at != NULL) return 0;
        if (holder_at != NULL && which == count - 1) { /* the holder: an object of its own */
            if (s >= end || *s != '{') return 0;
            *holder_at = s;
            int depth = 0;
            for (; s < end; s++) { /* strings inside hold no braces or quotes: checked again below */
                if (*s == '{') depth++;
                else if (*s == '}' && --depth == 0) break;
            }
            if (s >= end) return 0;
            s++;
            values[which].at = *holder_at;
            values[which].len = s - *holder_at;
        } else {
            if (s >= end || *s != '"') return 0;
            s++;
            if (!string_at(&s, end, &values[which])) return 0;
        }
        if (s < end && *s == ',') {
            s++;
            continue;
        }
        if (s < end && *s == '}') {
            *p = s + 1;
            return 1;
        }
        return 0;
    }
}

static const char *const EVENT_KEYS[] = {"event_id", "type", "number", "occurred_at", "holder"};
static const char *const HOLDER_KEYS[] = {"id_number", "name"};

static int kind_of(const Text *t) {
    for (int i = 0; i < K_COUNT; i++) {
        if (is_key(t, KIND_NAMES[i])) return i;
    }
    return -1;
}

/* The Event of its fields as UTF-8 text (event id, type's ``kind``, number, time, and the
 * holder's ID number and name where the kind has a holder), or None when any check fails. */
static PyObject *event_of(FastLine *self, const Text *v, int kind, const Text *id, const Text *name,
                          PyObject *arrival) {
    /* event_id: 1 to 128 printable ASCII characters, not all spaces */
    if (v[0].len < 1 || v[0].len > MAX_EVENT_ID) Py_RETURN_NONE;
    int spaces = 1;
    for (Py_ssize_t i = 0; i < v[0].len; i++) {
        unsigned char c = (unsigned char)v[0].at[i];
        if (c < 0x20 || c > 0x7E) Py_RETURN_NONE;
        if (c != ' ') spaces = 0;
    }
    if (spaces) Py_RETURN_NONE;

    /* number: +86 and 11 digits, or 11 digits, a mobile number's */
    long long number;
    const char *num = plain_number(v[2].at, v[2].len, &number);
    if (num == NULL || !self->mobile[number / 100000 - 100000]) Py_RETURN_NONE;

    int64_t us;
    if (!parse_time(v[3].at, v[3].len, &us) || us < self->earliest_us || us > self->latest_us ||
        us < self->steady_since_us)
        Py_RETURN_NONE;

    int has_holder = kind == K_ACTIVATED || kind == K_TRANSFERRED;
    if (has_holder) {
        if (id == NULL || name == NULL || !id_number_ok(self, id->at, id->len) ||
            !plain_han((const unsigned char *)name->at, name->len))
            Py_RETURN_NONE;
    }

    /* Everything is known good: the Event. */
    PyObject *fields[FIELDS] = {NULL};
    PyObject *result = NULL;
    fields[0] = Py_NewRef(self->carrier_id);
    fields[1] = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, v[0].at, v[0].len);
    fields[2] = Py_NewRef(self->kinds[kind]);
    fields[3] = PyLong_FromLongLong(number);
    int64_t secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    int64_t micro = us - secs * 1000000;
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t in_day = secs - days * 86400;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    fields[4] = PyDateTimeAPI->DateTime_FromDateAndTime(y, m, d, (int)(in_day / 3600), (int)(in_day % 3600 / 60),
                                                         (int)(in_day % 60), (int)micro, PyDateTime_TimeZone_UTC,
                                                         PyDateTimeAPI->DateTimeType);
    int64_t local = us + self->offset_us;
    int64_t local_secs = local >= 0 ? local / 1000000 : -((-local + 999999) / 1000000);
    int64_t local_days = local_secs >= 0 ? local_secs / 86400 : -((-local_secs + 86399) / 86400);
    civil_from_days(local_days, &y, &m, &d);
    fields[5] = PyDate_FromDate(y, m, d);
    if (has_holder) {
        unsigned char buf[18 + 1 + 3 * MAX_NAME_CHARS];
        fields[6] = mac_text(self, &self->holder, (const unsigned char *)id->at, 18);
        memcpy(buf, id->at, 18);
        buf[18] = 0;
        memcpy(buf + 19, name->at, (size_t)name->len);
        fields[7] = mac_text(self, &self->kyc, buf, 19 + (size_t)name->len);
        memcpy(buf, num, 11);
        buf[11] = 0;
        memcpy(buf + 12, id->at + 12, 6);
        fields[8] = mac_text(self, &self->tail, buf, 18);
    } else {
        fields[6] = Py_NewRef(Py_None);
        fields[7] = Py_NewRef(Py_None);
        fields[8] = Py_NewRef(Py_None);
    }
    fields[9] = Py_NewRef(Py_None);
    fields[10] = Py_NewRef(Py_None);
    fields[11] = Py_NewRef(arrival);
    for (int i = 0; i < FIELDS; i++) {
        if (fields[i] == NULL) goto done;
    }
    result = PyObject_Vectorcall(self->event_type, fields, FIELDS, NULL);
    /* An Event holds numbers, text, times and None alone, so it can be in no reference
     * cycle: the garbage collector need not know of it. An import's collection after
     * each commit went over every Event parsed ahead (docs/benchmarks.md §1, thirteenth
     * pass). Untracking twice is allowed (the Event's own dealloc does it again). */
    if (result != NULL && PyObject_GC_IsTracked(result)) PyObject_GC_UnTrack(result);
done:
    for (int i = 0; i < FIELDS; i++) Py_XDECREF(fields[i]);
    return result;
}

static int ready(const FastLine *self) {
    if (self->event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FastLine was not initialised");
        return 0;
    }
    return 1;
}

/* FastLine(...)(line, arrival): the Event of one NDJSON line, or None. */
static PyObject *FastLine_call(FastLine *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || kwnames != NULL || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "expected (line: bytes, arrival: int)");
        return NULL;
    }
    if (!ready(self)) return NULL;
    const char *s = PyBytes_AS_STRING(args[0]);
    const char *end = s + PyBytes_GET_SIZE(args[0]);
    if (end > s && end[-1] == '\n') end--;
    if (end > s && end[-1] == '\r') end--;

    Text v[5] = {{0}};
    const char *holder_at = NULL;
    if (!object_at(&s, end, EVENT_KEYS, 5, v, &holder_at) || s != end) Py_RETURN_NONE;
    for (int i = 0; i < 4; i++) {
        if (v[i].at == NULL) Py_RETURN_NONE;
    }
    int kind = kind_of(&v[1]);
    if (kind < 0) Py_RETURN_NONE;
    int has_holder = kind == K_ACTIVATED || kind == K_TRANSFERRED;
    if ((v[4].at != NULL) != has_holder) Py_RETURN_NONE;
    Text h[2] = {{0}};
    if (has_holder) {
        const char *hs = holder_at;
        const char *hend = holder_at + v[4].len;
        if (!object_at(&hs, hend, HOLDER_KEYS, 2, h, NULL) || hs != hend || h[0].at == NULL || h[1].at == NULL)
            Py_RETURN_NONE;
    }
    return event_of(self, v, kind, has_holder ? &h[0] : NULL, has_holder ? &h[1] : NULL, args[1]);
}

/* A str value of ``obj`` as UTF-8 text; 0 when absent, not exactly a str, or not
 * encodable (a lone surrogate, as a CSV file's bytes that are not UTF-8 are read). */
static int text_of(PyObject *obj, const char *key, Text *out) {
    PyObject *value = PyDict_GetItemString(obj, key); /* borrowed */
    if (value == NULL || !PyUnicode_CheckExact(value)) return 0;
    Py_ssize_t len;
    const char *at = PyUnicode_AsUTF8AndSize(value, &len); /* kept by the str itself */
    if (at == NULL) {
        PyErr_Clear();
        return 0;
    }
    out->at = at;
    out->len = len;
    return 1;
}

/* FastLine(...).fields(event, arrival): the Event of an event already decoded (a CSV
 * row's, a JSON array's item), or None. As the Python parser, it reads only the keys it
 * needs, and a holder only for the kinds that have one. */
static PyObject *FastLine_fields(FastLine *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "expected (event: dict, arrival: int)");
        return NULL;
    }
    if (!ready(self)) return NULL;
    PyObject *obj = args[0];
    if (!PyDict_CheckExact(obj)) Py_RETURN_NONE;
    Text v[4] = {{0}};
    for (int i = 0; i < 4; i++) {
        if (!text_of(obj, EVENT_KEYS[i], &v[i])) Py_RETURN_NONE;
    }
    int kind = kind_of(&v[1]);
    if (kind < 0) Py_RETURN_NONE;
    Text h[2] = {{0}};
    if (kind == K_ACTIVATED || kind == K_TRANSFERRED) {
        PyObject *holder = PyDict_GetItemString(obj, "holder"); /* borrowed */
        if (holder == NULL || !PyDict_CheckExact(holder) || !text_of(holder, "id_number", &h[0]) ||
            !text_of(holder, "name", &h[1]))
            Py_RETURN_NONE;
        return event_of(self, v, kind, &h[0], &h[1], args[1]);
    }
    return event_of(self, v, kind, NULL, NULL, args[1]);
}

/* The columns of a CSV file's fields this reads, in EVENT_KEYS' order and then the
 * holder's (-1 where the header has none), and the file's width. */
#define CSV_FIELDS 6
#define CSV_MAX_WIDTH 64

/* The fields of a CSV line without its line ending, when it is simple (parse.csv_plain_row):
 * each field either holds no quote and no carriage return, or is quoted whole, holding
 * no quote and no carriage return, with a comma or the line's end right after its
 * closing quote. The csv module reads such a line so: the text of each field, its
 * quotes taken off. Writes the first ``room`` fields' text into ``field`` (none when
 * ``room`` is 0); their count, or -1 for a line that is not simple. */
static Py_ssize_t csv_fields(const char *s, Py_ssize_t n, Text *field, Py_ssize_t room) {
    Py_ssize_t count = 0, i = 0;
    for (;;) {
        const char *at;
        Py_ssize_t len;
        if (i < n && s[i] == '"') {
            const char *close = memchr(s + i + 1, '"', (size_t)(n - i - 1));
            if (close == NULL) return -1; /* a quoted field running on past the line */
            at = s + i + 1;
            len = close - at;
            if (memchr(at, '\r', (size_t)len) != NULL) return -1;
            i = close - s + 1;
            if (i < n && s[i] != ',') return -1; /* text after the closing quote */
        } else {
            at = s + i;
            while (i < n && s[i] != ',') {
                if (s[i] == '"' || s[i] == '\r') return -1;
                i++;
            }
            len = s + i - at;
        }
        if (count < room) {
            field[count].at = at;
            field[count].len = len;
        }
        count++;
        if (i >= n) return count;
        i++; /* past the comma */
    }
}

static int csv_shape(PyObject *shape, Py_ssize_t *columns, Py_ssize_t *width) {
    /* shape: (index, width, columns), parse.CsvShape */
    if (!PyTuple_Check(shape) || PyTuple_GET_SIZE(shape) != 3) return 0;
    PyObject *w = PyTuple_GET_ITEM(shape, 1), *c = PyTuple_GET_ITEM(shape, 2);
    if (!PyLong_Check(w) || !PyTuple_Check(c) || PyTuple_GET_SIZE(c) != CSV_FIELDS) return 0;
    *width = PyLong_AsSsize_t(w);
    if (*width < 1 || *width > CSV_MAX_WIDTH) {
        PyErr_Clear();
        return 0;
    }
    for (int i = 0; i < CSV_FIELDS; i++) {
        PyObject *one = PyTuple_GET_ITEM(c, i);
        if (!PyLong_Check(one)) return 0;
        columns[i] = PyLong_AsSsize_t(one);
        if (columns[i] < -1 || columns[i] >= *width || (i < 4 && columns[i] < 0)) {
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* The Event of a plain CSV line (parse.csv_plain_row: its fields lie between its
 * commas) of the file whose ``shape`` is given, or None, as ``fields`` reads the event
 * the line's row makes (parse.csv_event). */
static PyObject *csv_event_of(FastLine *self, PyObject *line, PyObject *shape, PyObject *arrival) {
    Py_ssize_t columns[CSV_FIELDS], width;
    if (!PyBytes_Check(line) || !csv_shape(shape, columns, &width)) Py_RETURN_NONE;
    const char *s = PyBytes_AS_STRING(line);
    Py_ssize_t n = PyBytes_GET_SIZE(line);
    if (n > 0 && s[n - 1] == '\r') n--;
    if (memchr(s, '\n', (size_t)n) != NULL) Py_RETURN_NONE; /* not one line */
    Text field[CSV_MAX_WIDTH];
    /* Not simple, or not the header's width: the Python way. */
    if (csv_fields(s, n, field, width) != width) Py_RETURN_NONE;
    Text v[4];
    for (int i = 0; i < 4; i++) v[i] = field[columns[i]];
    int kind = kind_of(&v[1]);
    if (kind < 0) Py_RETURN_NONE;
    if (kind != K_ACTIVATED && kind != K_TRANSFERRED) return event_of(self, v, kind, NULL, NULL, arrival);
    /* A holder is there when either of its fields is: both must be, for the event. */
    if (columns[4] < 0 || columns[5] < 0) Py_RETURN_NONE;
    return event_of(self, v, kind, &field[columns[4]], &field[columns[5]], arrival);
}

/* FastLine(...).csv(line, shape, arrival): the Event of a plain CSV line, or None. */
static PyObject *FastLine_csv(FastLine *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0]) || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "expected (line: bytes, shape: tuple, arrival: int)");
        return NULL;
    }
    if (!ready(self)) return NULL;
    return csv_event_of(self, args[0], args[1], args[2]);
}

static PyObject *EVENT_ID; /* "event_id", interned */

/* FastLine(...).many(items, start, arrival, seen, events) -> (stop, duplicates): the
 * items of the list ``items`` from ``start`` on, in order, each read as the call reads
 * a numbered line (lineno, line), ``csv`` a plain CSV line (lineno, line, shape) and
 * ``fields`` a decoded event, the first as arrival
 * + 1, until one neither reads: ``stop`` is its index (the list's length when every
 * item was read). An event whose id is in the set ``seen`` is a duplicate, counted;
 * any other is appended to the list ``events`` and its id added to ``seen``. So a
 * chunk of thousands of lines is one call, as EventParser.parse_many reads it. */
static PyObject *FastLine_many(FastLine *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_Check(args[0]) || !PyLong_Check(args[1]) || !PyLong_Check(args[2]) ||
        !PySet_Check(args[3]) || !PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "expected (items: list, start: int, arrival: int, seen: set, events: list)");
        return NULL;
    }
    if (!ready(self)) return NULL;
    PyObject *items = args[0], *seen = args[3], *events = args[4];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    long long arrival = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (start < 0) start = 0;
    Py_ssize_t at = start, duplicates = 0;
    for (; at < PyList_GET_SIZE(items); at++) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(items, at));
        PyObject *number = PyLong_FromLongLong(arrival + (at - start) + 1);
        PyObject *event = NULL;
        if (number != NULL) {
            if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2 && PyBytes_Check(PyTuple_GET_ITEM(item, 1))) {
                PyObject *call[2] = {PyTuple_GET_ITEM(item, 1), number};
                event = FastLine_call(self, call, 2, NULL);
            } else if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 3) {
                event = csv_event_of(self, PyTuple_GET_ITEM(item, 1), PyTuple_GET_ITEM(item, 2), number);
            } else if (PyDict_CheckExact(item)) {
                PyObject *call[2] = {item, number};
                event = FastLine_fields(self, call, 2);
            } else {
                event = Py_NewRef(Py_None);
            }
            Py_DECREF(number);
        }
        Py_DECREF(item);
        if (event == NULL) return NULL;
        if (event == Py_None) {
            Py_DECREF(event);
            break;
        }
        PyObject *id = PyObject_GetAttr(event, EVENT_ID);
        int held = id == NULL ? -1 : PySet_Contains(seen, id);
        if (held == 0) held = PySet_Add(seen, id) < 0 || PyList_Append(events, event) < 0 ? -1 : 0;
        else if (held == 1) duplicates++;
        Py_XDECREF(id);
        Py_DECREF(event);
        if (held < 0) return NULL;
    }
    return Py_BuildValue("(nn)", at, duplicates);
}

static PyMethodDef FastLine_methods[] = {
    {"fields", (PyCFunction)(void (*)(void))FastLine_fields, METH_FASTCALL,
     "fields(event, arrival): the Event of a decoded event, or None."},
    {"csv", (PyCFunction)(void (*)(void))FastLine_csv, METH_FASTCALL,
     "csv(line, shape, arrival): the Event of a plain CSV line, or None."},
    {"many", (PyCFunction)(void (*)(void))FastLine_many, METH_FASTCALL,
     "many(items, start, arrival, seen, events): (stop, duplicates), reading items until one it leaves."},
    {NULL, NULL, 0, NULL},
};

/* ----- the type --------------------------------------------------------------------- */

static int FastLine_init(FastLine *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"event_type", "kinds", "carrier_id", "key", "prefix", "mobile", "earliest_us",
                            "latest_us", "steady_since_us", "offset_us", "today", NULL};
    PyObject *event_type, *kinds, *carrier_id;
    Py_buffer key, prefix, mobile;
    long long earliest, latest, since, offset;
    int ty, tm, td;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!O!y*y*y*LLLL(iii)", names, &event_type, &PyTuple_Type, &kinds,
                                     &PyLong_Type, &carrier_id, &key, &prefix, &mobile, &earliest, &latest, &since,
                                     &offset, &ty, &tm, &td))
        return -1;
    int ok = 0;
    if (PyTuple_GET_SIZE(kinds) != K_COUNT) {
        PyErr_SetString(PyExc_ValueError, "kinds: one per kind, in KIND_NAMES' order");
    } else if (prefix.len >= PREFIX_MAX) {
        PyErr_SetString(PyExc_ValueError, "prefix too long");
    } else if (mobile.len != (Py_ssize_t)sizeof self->mobile) {
        PyErr_SetString(PyExc_ValueError, "mobile: one byte per prefix 100000..199999, in order");
    } else {
        ok = 1;
    }
    if (ok) {
        Py_XSETREF(self->event_type, Py_NewRef(event_type));
        for (int i = 0; i < K_COUNT; i++) Py_XSETREF(self->kinds[i], Py_NewRef(PyTuple_GET_ITEM(kinds, i)));
        Py_XSETREF(self->carrier_id, Py_NewRef(carrier_id));
        keyed(&self->holder, key.buf, key.len, "holder", 7);
        keyed(&self->kyc, key.buf, key.len, "kyc", 4);
        keyed(&self->tail, key.buf, key.len, "tail", 5);
        memcpy(self->prefix, prefix.buf, (size_t)prefix.len);
        self->prefix_len = prefix.len;
        memcpy(self->mobile, mobile.buf, sizeof self->mobile);
        self->earliest_us = earliest;
        self->latest_us = latest;
        self->steady_since_us = since;
        self->offset_us = offset;
        self->today_y = ty;
        self->today_m = tm;
        self->today_d = td;
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&mobile);
    return ok ? 0 : -1;
}

static PyObject *FastLine_vectorcall_entry(PyObject *callable, PyObject *const *args, size_t nargsf,
                                           PyObject *kwnames) {
    return FastLine_call((FastLine *)callable, args, nargsf, kwnames);
}

static PyObject *FastLine_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    FastLine *self = (FastLine *)type->tp_alloc(type, 0); /* zeroed */
    if (self != NULL) self->vectorcall = FastLine_vectorcall_entry;
    return (PyObject *)self;
}

static int FastLine_traverse(FastLine *self, visitproc visit, void *arg) {
    Py_VISIT(self->event_type);
    for (int i = 0; i < K_COUNT; i++) Py_VISIT(self->kinds[i]);
    Py_VISIT(self->carrier_id);
    return 0;
}

static int FastLine_clear(FastLine *self) {
    Py_CLEAR(self->event_type);
    for (int i = 0; i < K_COUNT; i++) Py_CLEAR(self->kinds[i]);
    Py_CLEAR(self->carrier_id);
    return 0;
}

static void FastLine_dealloc(FastLine *self) {
    PyObject_GC_UnTrack(self);
    FastLine_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *FastLine_tp_call(PyObject *self, PyObject *args, PyObject *kw) {
    return PyVectorcall_Call(self, args, kw);
}

static PyTypeObject FastLineType;

static PyObject *kind_names(PyObject *module, PyObject *unused) {
    PyObject *names = PyTuple_New(K_COUNT);
    if (names == NULL) return NULL;
    for (int i = 0; i < K_COUNT; i++) {
        PyObject *name = PyUnicode_FromString(KIND_NAMES[i]);
        if (name == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, name);
    }
    return names;
}

/* number_digests(key, prefix, numbers): Digester(key, v).number(n) for each int64 n of
 * ``numbers`` (a contiguous buffer), ``prefix`` being "k{v}:". The MACs are made with
 * the interpreter lock let go: the check log writes on a thread of its own. */
static PyObject *number_digests(PyObject *module, PyObject *args) {
    Py_buffer key, prefix, numbers;
    if (!PyArg_ParseTuple(args, "y*y*y*", &key, &prefix, &numbers)) return NULL;
    PyObject *result = NULL;
    char *texts = NULL;
    Py_ssize_t count = numbers.len / (Py_ssize_t)sizeof(int64_t);
    if (numbers.len % (Py_ssize_t)sizeof(int64_t) != 0 || prefix.len >= PREFIX_MAX) {
        PyErr_SetString(PyExc_ValueError, "numbers: 8-byte integers; prefix: a key version's");
        goto done;
    }
    texts = PyMem_RawMalloc(count > 0 ? (size_t)count * MAC_TEXT : 1);
    if (texts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Keyed k;
    keyed(&k, key.buf, key.len, "number", 7);
    const char *raw = numbers.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        int64_t n;
        memcpy(&n, raw + i * (Py_ssize_t)sizeof n, sizeof n);
        char decimal[24];
        int len = snprintf(decimal, sizeof decimal, "%lld", (long long)n);
        mac_b64(&k, (const unsigned char *)decimal, (size_t)len, texts + i * MAC_TEXT);
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(count);
    if (result == NULL) goto done;
    char text[PREFIX_MAX + MAC_TEXT];
    memcpy(text, prefix.buf, (size_t)prefix.len);
    for (Py_ssize_t i = 0; i < count; i++) {
        memcpy(text + prefix.len, texts + i * MAC_TEXT, MAC_TEXT);
        PyObject *one = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, text, prefix.len + MAC_TEXT);
        if (one == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, one);
    }
done:
    PyMem_RawFree(texts);
    PyBuffer_Release(&key);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&numbers);
    return result;
}

/* ----- binary COPY ---------------------------------------------------------------- */

/* copy_rows(rows, columns): the whole of a binary COPY (signature, one tuple a row,
 * trailer) of ``rows``, as psycopg's Copy.write_row would write it for the same values
 * one row at a time. Each column is (type, source): its type is PostgreSQL's name of it
 * (int8, int4, bool, date, timestamptz or text), and its value for each row is the
 * row's attribute of that name where the source is a str, the row's item where it is a
 * list or tuple as long as ``rows``, and the source itself for every row otherwise.
 * None is NULL. A value of the wrong kind is a TypeError naming its column. */

enum { C_INT8, C_INT4, C_BOOL, C_DATE, C_TIMESTAMPTZ, C_TEXT };
enum { S_ATTR, S_ITEMS, S_CONST };

typedef struct {
    int type, source;
    PyObject *from; /* the attribute's name, the items (a list or tuple), or the value */
} CopyColumn;

typedef struct {
    char *at;
    size_t len, size;
} Out;

static int out_room(Out *o, size_t more) {
    if (o->len + more <= o->size) return 1;
    size_t size = o->size ? o->size : 1 << 16;
    while (size < o->len + more) size *= 2;
    char *grown = PyMem_Realloc(o->at, size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    o->at = grown;
    o->size = size;
    return 1;
}

static void put_be(Out *o, uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) o->at[o->len++] = (char)(v >> (8 * i) & 0xFF);
}

/* Days and microseconds since 2000-01-01, PostgreSQL's epoch. */
#define PG_EPOCH_DAYS 10957

static int put_value(Out *o, int type, PyObject *v) {
    if (v == Py_None) {
        if (!out_room(o, 4)) return 0;
        put_be(o, 0xFFFFFFFFu, 4);
        return 1;
    }
    switch (type) {
    case C_INT8:
    case C_INT4: {
        if (!PyLong_Check(v) || PyBool_Check(v)) break; /* a bool is no number here */
        long long n = PyLong_AsLongLong(v);
        if (n == -1 && PyErr_Occurred()) return 0;
        int size = type == C_INT8 ? 8 : 4;
        if (size == 4 && (n < INT32_MIN || n > INT32_MAX)) {
            PyErr_SetString(PyExc_OverflowError, "a value out of int4's range");
            return 0;
        }
        if (!out_room(o, 4 + (size_t)size)) return 0;
        put_be(o, (uint64_t)size, 4);
        put_be(o, (uint64_t)n, size);
        return 1;
    }
    case C_BOOL:
        if (!PyBool_Check(v)) break;
        if (!out_room(o, 5)) return 0;
        put_be(o, 1, 4);
        o->at[o->len++] = v == Py_True;
        return 1;
    case C_DATE: {
        if (!PyDate_Check(v) || PyDateTime_Check(v)) break;
        int64_t days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
        if (!out_room(o, 8)) return 0;
        put_be(o, 4, 4);
        put_be(o, (uint64_t)(days - PG_EPOCH_DAYS), 4);
        return 1;
    }
    case C_TIMESTAMPTZ: {
        if (!PyDateTime_Check(v)) break;
        PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
        int64_t offset_us = 0;
        if (tz == Py_None) break; /* a naive time says no moment */
        if (tz != PyDateTime_TimeZone_UTC) {
            PyObject *delta = PyObject_CallMethod(v, "utcoffset", NULL);
            if (delta == NULL) return 0;
            if (!PyDelta_Check(delta)) {
                Py_DECREF(delta);
                break;
            }
            offset_us = ((int64_t)PyDateTime_DELTA_GET_DAYS(delta) * 86400 + PyDateTime_DELTA_GET_SECONDS(delta)) *
                            1000000 +
                        PyDateTime_DELTA_GET_MICROSECONDS(delta);
            Py_DECREF(delta);
        }
        int64_t days = days_from_civil(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
        int64_t secs = (days - PG_EPOCH_DAYS) * 86400 + PyDateTime_DATE_GET_HOUR(v) * 3600 +
                       PyDateTime_DATE_GET_MINUTE(v) * 60 + PyDateTime_DATE_GET_SECOND(v);
        int64_t us = secs * 1000000 + PyDateTime_DATE_GET_MICROSECOND(v) - offset_us;
        if (!out_room(o, 12)) return 0;
        put_be(o, 8, 4);
        put_be(o, (uint64_t)us, 8);
        return 1;
    }
    case C_TEXT: {
        if (!PyUnicode_Check(v)) break;
        Py_ssize_t len;
        const char *text = PyUnicode_AsUTF8AndSize(v, &len);
        if (text == NULL) return 0;
        if ((uint64_t)len > INT32_MAX) {
            PyErr_SetString(PyExc_OverflowError, "a text too long for one field");
            return 0;
        }
        if (!out_room(o, 4 + (size_t)len)) return 0;
        put_be(o, (uint64_t)len, 4);
        memcpy(o->at + o->len, text, (size_t)len);
        o->len += (size_t)len;
        return 1;
    }
    }
    return -1; /* not of the column's type */
}

static const char *const COPY_TYPES[] = {"int8", "int4", "bool", "date", "timestamptz", "text"};
static const char COPY_SIGNATURE[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0"; /* and flags, extension */
#define COPY_SIGNATURE_LEN 19

static PyObject *copy_rows(PyObject *module, PyObject *args) {
    PyObject *rows_in, *columns_in;
    if (!PyArg_ParseTuple(args, "OO", &rows_in, &columns_in)) return NULL;
    PyObject *rows = PySequence_Fast(rows_in, "rows: a sequence");
    if (rows == NULL) return NULL;
    PyObject *columns = PySequence_Fast(columns_in, "columns: a sequence of (type, source)");
    if (columns == NULL) {
        Py_DECREF(rows);
        return NULL;
    }
    PyObject *result = NULL;
    Out out = {NULL, 0, 0};
    Py_ssize_t count = PySequence_Fast_GET_SIZE(rows);
    Py_ssize_t width = PySequence_Fast_GET_SIZE(columns);
    CopyColumn *spec = PyMem_Calloc(width > 0 ? (size_t)width : 1, sizeof *spec);
    if (spec == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (width < 1 || width > 1600) {
        PyErr_SetString(PyExc_ValueError, "columns: 1 to 1600 of them");
        goto done;
    }
    for (Py_ssize_t c = 0; c < width; c++) {
        PyObject *column = PySequence_Fast_GET_ITEM(columns, c);
        if (!PyTuple_Check(column) || PyTuple_GET_SIZE(column) != 2) {
            PyErr_Format(PyExc_TypeError, "column %zd: a (type, source) tuple", c);
            goto done;
        }
        PyObject *type = PyTuple_GET_ITEM(column, 0), *source = PyTuple_GET_ITEM(column, 1);
        spec[c].type = -1;
        for (int t = 0; t < (int)(sizeof COPY_TYPES / sizeof *COPY_TYPES); t++)
            if (PyUnicode_Check(type) && PyUnicode_CompareWithASCIIString(type, COPY_TYPES[t]) == 0) spec[c].type = t;
        if (spec[c].type < 0) {
            PyErr_Format(PyExc_ValueError, "column %zd: no binary COPY of type %R", c, type);
            goto done;
        }
        if (PyUnicode_Check(source)) {
            spec[c].source = S_ATTR;
        } else if (PyList_Check(source) || PyTuple_Check(source)) {
            spec[c].source = S_ITEMS;
            if (PySequence_Fast_GET_SIZE(source) != count) {
                PyErr_Format(PyExc_ValueError, "column %zd: %zd items for %zd rows", c,
                             PySequence_Fast_GET_SIZE(source), count);
                goto done;
            }
        } else {
            spec[c].source = S_CONST;
        }
        spec[c].from = source;
    }
    if (!out_room(&out, COPY_SIGNATURE_LEN + 2)) goto done;
    memcpy(out.at, COPY_SIGNATURE, COPY_SIGNATURE_LEN);
    out.len = COPY_SIGNATURE_LEN;
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *row = PySequence_Fast_GET_ITEM(rows, r);
        if (!out_room(&out, 2)) goto done;
        put_be(&out, (uint64_t)width, 2);
        for (Py_ssize_t c = 0; c < width; c++) {
            PyObject *value;
            if (spec[c].source == S_ATTR) {
                value = PyObject_GetAttr(row, spec[c].from);
                if (value == NULL) goto done;
            } else if (spec[c].source == S_ITEMS) {
                value = Py_NewRef(PySequence_Fast_GET_ITEM(spec[c].from, r));
            } else {
                value = Py_NewRef(spec[c].from);
            }
            int put = put_value(&out, spec[c].type, value);
            if (put < 0)
                PyErr_Format(PyExc_TypeError, "row %zd, column %zd: %.50s is not COPYed as %s", r, c,
                             Py_TYPE(value)->tp_name, COPY_TYPES[spec[c].type]);
            Py_DECREF(value);
            if (put <= 0) goto done;
        }
    }
    if (!out_room(&out, 2)) goto done;
    put_be(&out, 0xFFFF, 2);
    result = PyBytes_FromStringAndSize(out.at, (Py_ssize_t)out.len);
done:
    PyMem_Free(out.at);
    PyMem_Free(spec);
    Py_DECREF(columns);
    Py_DECREF(rows);
    return result;
}

/* ----- a parallel import's lines, each to its job ---------------------------------- */

#define UNTOLD (-1)

/* What telling a line's job needs: the jobs and the ledger's partitions, and for a CSV
 * file's lines the number's column and the file's width. */
typedef struct {
    long long jobs, partitions;
    Py_ssize_t column, width;
} JobRule;

typedef int64_t (*TellJob)(const char *line, Py_ssize_t n, const JobRule *rule);

/* The job of an NDJSON line whose text says its number for certain, as
 * tongcha.ledger.importer._number_in_text tells it by its plain way: a line starting
 * with a brace, with no backslash and one "number", which has one brace and no closing
 * brace or bracket before it and right after it :" then a number written the plain way
 * (plain_number) and a quote. UNTOLD for any other line: the importing process tells
 * it in Python. */
static int64_t line_job(const char *line, Py_ssize_t n, const JobRule *rule) {
    static const char KEY[] = "\"number\"";
    const Py_ssize_t key_len = 8;
    if (n < 1 || line[0] != '{' || memchr(line, '\\', (size_t)n) != NULL) return UNTOLD;
    Py_ssize_t at = -1;
    for (Py_ssize_t i = 0; i + key_len <= n; i++) {
        if (line[i] == '"' && memcmp(line + i, KEY, (size_t)key_len) == 0) {
            if (at >= 0) return UNTOLD; /* a second "number" */
            at = i;
            i += key_len - 1;
        }
    }
    if (at < 0) return UNTOLD;
    int opened = 0;
    for (Py_ssize_t i = 0; i < at; i++) {
        if (line[i] == '{') opened++;
        else if (line[i] == '}' || line[i] == '[') return UNTOLD;
    }
    if (opened != 1) return UNTOLD;
    Py_ssize_t p = at + key_len;
    if (p + 2 > n || line[p] != ':' || line[p + 1] != '"') return UNTOLD;
    p += 2;
    const char *close = memchr(line + p, '"', (size_t)(n - p));
    long long number;
    if (close == NULL || plain_number(line + p, close - (line + p), &number) == NULL) return UNTOLD;
    return number % rule->partitions % rule->jobs;
}

/* The job of a plain CSV line (parse.csv_plain_row) of the rule's width whose field in
 * the rule's column is a number written the plain way (plain_number):
 * importer._routing_number's own answer for such text. UNTOLD for any other line. */
static int64_t csv_line_job(const char *line, Py_ssize_t n, const JobRule *rule) {
    if (n > 0 && line[n - 1] == '\r') n--;
    Text field[CSV_MAX_WIDTH];
    Py_ssize_t room = rule->column + 1;
    if (room > CSV_MAX_WIDTH || csv_fields(line, n, field, room) != rule->width) return UNTOLD;
    long long number;
    if (plain_number(field[rule->column].at, field[rule->column].len, &number) == NULL) return UNTOLD;
    return number % rule->partitions % rule->jobs;
}

/* csv_simple(block) -> bool: whether every line of ``block`` (split at each newline, a
 * carriage return before it left out) is simple, as csv_fields takes a line. */
static PyObject *csv_simple(PyObject *module, PyObject *arg) {
    Py_buffer block;
    if (PyObject_GetBuffer(arg, &block, PyBUF_SIMPLE) < 0) return NULL;
    const char *at = block.buf, *end = at + block.len;
    int simple = 1;
    while (simple) {
        const char *newline = memchr(at, '\n', (size_t)(end - at));
        const char *stop = newline == NULL ? end : newline;
        Py_ssize_t n = stop - at;
        if (n > 0 && at[n - 1] == '\r') n--;
        simple = csv_fields(at, n, NULL, 0) >= 0;
        if (newline == NULL) break;
        at = newline + 1;
    }
    PyBuffer_Release(&block);
    return PyBool_FromLong(simple);
}

/* Where each line of ``block`` that ends in a newline starts and ends (past its
 * newline), and its job as ``tell`` tells it, written into the three int64 buffers
 * given; the number of lines, or NULL with an error: a ValueError saying ``invalid``
 * when the caller found its arguments so (NULL when they are not). The buffers are
 * released. */
static PyObject *lines_and_jobs(Py_buffer *block, Py_buffer *job, Py_buffer *starts, Py_buffer *ends, TellJob tell,
                                const JobRule *rule, const char *invalid) {
    PyObject *result = NULL;
    if (invalid != NULL) {
        PyErr_SetString(PyExc_ValueError, invalid);
        goto done;
    }
    Py_ssize_t room = job->len;
    if (starts->len < room) room = starts->len;
    if (ends->len < room) room = ends->len;
    room /= (Py_ssize_t)sizeof(int64_t);
    const char *base = block->buf, *at = base, *end = base + block->len;
    Py_ssize_t count = 0;
    int64_t *job_out = job->buf, *starts_out = starts->buf, *ends_out = ends->buf;
    while (at < end) {
        const char *newline = memchr(at, '\n', (size_t)(end - at));
        if (newline == NULL) break;
        if (count == room) {
            PyErr_SetString(PyExc_ValueError, "more lines than room for them");
            goto done;
        }
        int64_t value = tell(at, newline - at, rule);
        memcpy(job_out + count, &value, sizeof value);
        value = at - base;
        memcpy(starts_out + count, &value, sizeof value);
        value = newline + 1 - base;
        memcpy(ends_out + count, &value, sizeof value);
        count++;
        at = newline + 1;
    }
    result = PyLong_FromSsize_t(count);
done:
    PyBuffer_Release(block);
    PyBuffer_Release(job);
    PyBuffer_Release(starts);
    PyBuffer_Release(ends);
    return result;
}

/* line_jobs(block, jobs, partitions, job, starts, ends) -> lines: lines_and_jobs of an
 * NDJSON block, each line's job as line_job tells it. */
static PyObject *line_jobs(PyObject *module, PyObject *args) {
    Py_buffer block, job, starts, ends;
    JobRule rule = {0};
    if (!PyArg_ParseTuple(args, "y*LLw*w*w*", &block, &rule.jobs, &rule.partitions, &job, &starts, &ends))
        return NULL;
    const char *invalid = rule.jobs < 1 || rule.partitions < 1 ? "jobs and partitions: at least one" : NULL;
    return lines_and_jobs(&block, &job, &starts, &ends, line_job, &rule, invalid);
}

/* csv_line_jobs(block, column, width, jobs, partitions, job, starts, ends) -> lines:
 * lines_and_jobs of a block of plain CSV lines, each line's job as csv_line_job tells it. */
static PyObject *csv_line_jobs(PyObject *module, PyObject *args) {
    Py_buffer block, job, starts, ends;
    JobRule rule = {0};
    if (!PyArg_ParseTuple(args, "y*nnLLw*w*w*", &block, &rule.column, &rule.width, &rule.jobs, &rule.partitions, &job,
                          &starts, &ends))
        return NULL;
    const char *invalid = rule.jobs < 1 || rule.partitions < 1 || rule.column < 0 || rule.width <= rule.column
                              ? "jobs and partitions: at least one; column: one of the width's"
                              : NULL;
    return lines_and_jobs(&block, &job, &starts, &ends, csv_line_job, &rule, invalid);
}

static PyMethodDef module_methods[] = {
    {"kind_names", kind_names, METH_NOARGS, "The event types this reads, in the order FastLine's kinds take."},
    {"number_digests", number_digests, METH_VARARGS, "Digester.number of each int64 of a buffer, at once."},
    {"copy_rows", copy_rows, METH_VARARGS, "A binary COPY of rows' attributes and given values, whole."},
    {"line_jobs", line_jobs, METH_VARARGS, "Each NDJSON line's bounds, and its job where its text tells it."},
    {"csv_line_jobs", csv_line_jobs, METH_VARARGS, "Each plain CSV line's bounds, and its job where its number tells it."},
    {"csv_simple", csv_simple, METH_O, "Whether every line of a block is a simple CSV line (quoted fields whole, if any)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_native",
    .m_doc = "The ledger's compiled part: the common NDJSON line, and number digests.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    EVENT_ID = PyUnicode_InternFromString("event_id");
    if (EVENT_ID == NULL) return NULL;
    FastLineType.tp_name = "tongcha.ledger._native.FastLine";
    FastLineType.tp_basicsize = sizeof(FastLine);
    FastLineType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL;
    FastLineType.tp_doc = "FastLine(...)(line, arrival) -> Event or None";
    FastLineType.tp_new = FastLine_new;
    FastLineType.tp_init = (initproc)FastLine_init;
    FastLineType.tp_dealloc = (destructor)FastLine_dealloc;
    FastLineType.tp_traverse = (traverseproc)FastLine_traverse;
    FastLineType.tp_clear = (inquiry)FastLine_clear;
    FastLineType.tp_call = FastLine_tp_call;
    FastLineType.tp_methods = FastLine_methods;
    FastLineType.tp_vectorcall_offset = offsetof(FastLine, vectorcall);
    if (PyType_Ready(&FastLineType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "FastLine", (PyObject *)&FastLineType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
