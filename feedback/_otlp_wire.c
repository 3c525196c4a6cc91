/* OTLP trace exports mapped in C: feedback.otlp.otlp_map's answer for a protobuf body, read straight from its bytes.
 *
 * feedback.otlp maps exports in Python (compiled by mypyc): this file maps protobuf bodies the same way, ~3x
 * faster, without a Python object per field, range or intermediate span, attribute keys and short values taken from
 * a cache instead of decoded for every span. The rules stay in feedback.otlp: it hands over its records, helpers and
 * tables (configure), and this file asks its helpers for what is rare (costs, metadata, odd token counts, indexed
 * or logged messages, repairs). It answers None for whatever it does not read itself (an ID a span cannot have, a
 * bytes value, text that is no UTF-8, anything malformed), and the Python maps that body, saying why where it
 * refuses. Built by bin/build-accel beside the compiled mapping, and used only with the sources it was built from.
 *
 *   configure(names) -> config          feedback.otlp's names, checked, once
 *   map(body, config) -> list | None    [(trace dict, [MappedSpan, ...]), ...] as otlp_map answers
 *   spans(body, span_type) -> list | None   the spans as _wire_spans reads them (for the tests)
 *
 * tests/feedback/test_otlp_native.py compares this mapping with the Python's on seeded exports.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

/* Why a reading stops: DECLINE hands the body back to the Python reading; ERROR is a Python exception. */
enum { OK = 0, DECLINE = -1, ERROR = -2 };

typedef struct {
    const uint8_t *at;
    const uint8_t *end;
} Range;

static int varint(const uint8_t **at, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *at;
    uint64_t result = 0;
    int shift = 0;
    while (p < end) {
        uint8_t byte = *p++;
        result |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80) {
            *at = p;
            *out = result;
            return OK;
        }
        shift += 7;
        if (shift > 63) return DECLINE;
    }
    return DECLINE;
}

static int delimited(const uint8_t **at, const uint8_t *end, Range *out) {
    uint64_t size;
    if (varint(at, end, &size) != OK || size > (uint64_t)(end - *at)) return DECLINE;
    out->at = *at;
    out->end = *at + size;
    *at = out->end;
    return OK;
}

static int skip(const uint8_t **at, const uint8_t *end, uint64_t tag, int depth) {
    uint64_t value;
    Range range;
    switch (tag & 7) {
    case 0:
        return varint(at, end, &value);
    case 1:
        if (end - *at < 8) return DECLINE;
        *at += 8;
        return OK;
    case 2:
        return delimited(at, end, &range);
    case 5:
        if (end - *at < 4) return DECLINE;
        *at += 4;
        return OK;
    case 3:
        if (depth > 64) return DECLINE;
        for (;;) {
            uint64_t inner;
            if (varint(at, end, &inner) != OK) return DECLINE;
            if ((inner & 7) == 4) return (inner >> 3) == (tag >> 3) ? OK : DECLINE;
            if (skip(at, end, inner, depth + 1) != OK) return DECLINE;
        }
    default:
        return DECLINE;
    }
}

/* ------------------------------------------------------------------ strings */

/* Attribute keys and short values recur in every span of an export: each is decoded once and shared (str is
 * immutable). A slot holds the last text that hashed to it. */
#define CACHE_SLOTS 4096
#define CACHE_MAX 48
typedef struct {
    Py_ssize_t size;
    char bytes[CACHE_MAX];
    PyObject *text;
} Slot;
static Slot cache[CACHE_SLOTS];

static PyObject *text_of(Range range) {
    Py_ssize_t size = range.end - range.at;
    if (size > CACHE_MAX) return PyUnicode_DecodeUTF8((const char *)range.at, size, NULL);
    uint32_t hash = 2166136261u;
    for (Py_ssize_t i = 0; i < size; i++) hash = (hash ^ range.at[i]) * 16777619u;
    Slot *slot = &cache[hash & (CACHE_SLOTS - 1)];
    if (slot->text != NULL && slot->size == size && memcmp(slot->bytes, range.at, (size_t)size) == 0) {
        Py_INCREF(slot->text);
        return slot->text;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)range.at, size, NULL);
    if (text == NULL) return NULL;
    Py_XDECREF(slot->text);
    Py_INCREF(text);
    slot->text = text;
    slot->size = size;
    memcpy(slot->bytes, range.at, (size_t)size);
    return text;
}

static PyObject *hex_of(Range range) {
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t size = range.end - range.at;
    PyObject *text = PyUnicode_New(size * 2, 127);
    if (text == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (Py_ssize_t i = 0; i < size; i++) {
        out[2 * i] = (Py_UCS1)digits[range.at[i] >> 4];
        out[2 * i + 1] = (Py_UCS1)digits[range.at[i] & 15];
    }
    return text;
}

static int any_set(Range range) {
    for (const uint8_t *p = range.at; p < range.end; p++)
        if (*p) return 1;
    return 0;
}

static int64_t signed_bits(uint64_t value, int bits) {
    if (bits == 32) return (int64_t)(int32_t)(uint32_t)value;
    return (int64_t)value;
}

/* ------------------------------------------------------------------ values */

enum { ANY_NONE = 0, ANY_STRING = 1, ANY_BOOL = 2, ANY_INT = 3, ANY_DOUBLE = 4, ANY_ARRAY = 5, ANY_KVLIST = 6 };

static int key_value_into(Range range, PyObject *out, int depth);

/* An AnyValue read on top of (*kind, *value), an earlier occurrence's: the last case set wins, and an array
 * or kvlist met again in the same case grows. *value is a new reference or NULL (ANY_NONE). */
static int any_value_into(Range range, int *kind, PyObject **value, int depth) {
    const uint8_t *at = range.at;
    if (depth > 32) return DECLINE;
    while (at < range.end) {
        uint64_t tag;
        if (varint(&at, range.end, &tag) != OK) return DECLINE;
        uint64_t field = tag >> 3, wire = tag & 7;
        PyObject *next = NULL;
        int next_kind;
        if (wire == 2 && (field == 1 || field == 5 || field == 6 || field == 7)) {
            Range inner;
            if (delimited(&at, range.end, &inner) != OK) return DECLINE;
            if (field == 7) return DECLINE; /* bytes: base64 in Python */
            if (field == 1) {
                next = text_of(inner);
                if (next == NULL) return ERROR;
                next_kind = ANY_STRING;
            } else if (field == 5) {
                if (*kind == ANY_ARRAY) {
                    next = *value;
                    Py_INCREF(next);
                } else if ((next = PyList_New(0)) == NULL) {
                    return ERROR;
                }
                const uint8_t *item_at = inner.at;
                while (item_at < inner.end) {
                    uint64_t item_tag;
                    int status;
                    if (varint(&item_at, inner.end, &item_tag) != OK) status = DECLINE;
                    else if (item_tag == 0x0A) {
                        Range item;
                        int item_kind = ANY_NONE;
                        PyObject *item_value = NULL;
                        status = delimited(&item_at, inner.end, &item);
                        if (status == OK) status = any_value_into(item, &item_kind, &item_value, depth + 1);
                        if (status == OK) {
                            status = PyList_Append(next, item_value ? item_value : Py_None) == 0 ? OK : ERROR;
                        }
                        Py_XDECREF(item_value);
                    } else {
                        status = skip(&item_at, inner.end, item_tag, 0);
                    }
                    if (status != OK) {
                        Py_DECREF(next);
                        return status;
                    }
                }
                next_kind = ANY_ARRAY;
            } else {
                if (*kind == ANY_KVLIST) {
                    next = *value;
                    Py_INCREF(next);
                } else if ((next = PyDict_New()) == NULL) {
                    return ERROR;
                }
                const uint8_t *pair_at = inner.at;
                while (pair_at < inner.end) {
                    uint64_t pair_tag;
                    int status;
                    if (varint(&pair_at, inner.end, &pair_tag) != OK) status = DECLINE;
                    else if (pair_tag == 0x0A) {
                        Range pair;
                        status = delimited(&pair_at, inner.end, &pair);
                        if (status == OK) status = key_value_into(pair, next, depth + 1);
                    } else {
                        status = skip(&pair_at, inner.end, pair_tag, 0);
                    }
                    if (status != OK) {
                        Py_DECREF(next);
                        return status;
                    }
                }
                next_kind = ANY_KVLIST;
            }
        } else if (wire == 0 && (field == 2 || field == 3)) {
            uint64_t number;
            if (varint(&at, range.end, &number) != OK) return DECLINE;
            if (field == 2) {
                next = PyBool_FromLong(number != 0);
                next_kind = ANY_BOOL;
            } else {
                next = PyLong_FromLongLong(signed_bits(number, 64));
                next_kind = ANY_INT;
            }
            if (next == NULL) return ERROR;
        } else if (wire == 1 && field == 4) {
            double number;
            if (range.end - at < 8) return DECLINE;
            memcpy(&number, at, 8); /* little-endian, as x86-64 and aarch64 are */
            at += 8;
            if ((next = PyFloat_FromDouble(number)) == NULL) return ERROR;
            next_kind = ANY_DOUBLE;
        } else {
            if (skip(&at, range.end, tag, 0) != OK) return DECLINE;
            continue;
        }
        Py_XDECREF(*value);
        *value = next;
        *kind = next_kind;
    }
    return OK;
}

/* A KeyValue into out (later keys win, as a dict built from the repeated field). */
static int key_value_into(Range range, PyObject *out, int depth) {
    const uint8_t *at = range.at;
    Range key = {range.at, range.at};
    int kind = ANY_NONE;
    PyObject *value = NULL;
    int status = OK;
    while (status == OK && at < range.end) {
        uint64_t tag;
        Range inner;
        if (varint(&at, range.end, &tag) != OK) status = DECLINE;
        else if (tag == 0x0A) status = delimited(&at, range.end, &key);
        else if (tag == 0x12) {
            status = delimited(&at, range.end, &inner);
            if (status == OK) status = any_value_into(inner, &kind, &value, depth);
        } else {
            status = skip(&at, range.end, tag, 0);
        }
    }
    if (status == OK) {
        PyObject *text = text_of(key);
        if (text == NULL) status = ERROR;
        else {
            if (PyDict_SetItem(out, text, value ? value : Py_None) != 0) status = ERROR;
            Py_DECREF(text);
        }
    }
    Py_XDECREF(value);
    return status;
}

/* Each length-delimited occurrence of field 1 in range, read into out (Resource.attributes, Event.attributes
 * is field 3: tag says which). */
static int key_values_into(Range range, uint64_t wanted, PyObject *out) {
    const uint8_t *at = range.at;
    while (at < range.end) {
        uint64_t tag;
        Range inner;
        if (varint(&at, range.end, &tag) != OK) return DECLINE;
        if (tag == wanted) {
            if (delimited(&at, range.end, &inner) != OK) return DECLINE;
            int status = key_value_into(inner, out, 0);
            if (status != OK) return status;
        } else if (skip(&at, range.end, tag, 0) != OK) {
            return DECLINE;
        }
    }
    return OK;
}

/* ------------------------------------------------------------------ spans */

static int event_into(Range range, PyObject *events) {
    const uint8_t *at = range.at;
    PyObject *name = NULL, *attrs = PyDict_New();
    int status = attrs ? OK : ERROR;
    while (status == OK && at < range.end) {
        uint64_t tag;
        Range inner;
        if (varint(&at, range.end, &tag) != OK) status = DECLINE;
        else if (tag == 0x12 || tag == 0x1A) {
            status = delimited(&at, range.end, &inner);
            if (status == OK && tag == 0x12) {
                Py_XDECREF(name);
                if ((name = text_of(inner)) == NULL) status = ERROR;
            } else if (status == OK) {
                status = key_value_into(inner, attrs, 0);
            }
        } else {
            status = skip(&at, range.end, tag, 0);
        }
    }
    if (status == OK && name == NULL && (name = PyUnicode_New(0, 0)) == NULL) status = ERROR;
    if (status == OK) {
        PyObject *pair = PyTuple_Pack(2, name, attrs);
        if (pair == NULL || PyList_Append(events, pair) != 0) status = ERROR;
        Py_XDECREF(pair);
    }
    Py_XDECREF(name);
    Py_XDECREF(attrs);
    return status;
}

/* A span as read: the fields of feedback.otlp._Span (references owned), its IDs' bytes, and what mapping adds. */
typedef struct {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    Range parent; /* into the body; empty or all zeros: none */
    PyObject *span_hex, *parent_hex, *name, *attrs, *events, *status_message, *resource, *scope;
    int64_t kind, status_code;
    uint64_t start_ns, end_ns;
    Py_ssize_t order; /* position in the export: ties keep it */
    Py_ssize_t group;
    PyObject *mapped_kind; /* borrowed: one of the kind strings */
} Rec;

typedef struct {
    Rec *recs;
    Py_ssize_t count, capacity;
    PyObject *resource, *scope; /* the current ResourceSpans' and ScopeSpans' */
} Reading;

static void reading_free(Reading *reading) {
    for (Py_ssize_t i = 0; i < reading->count; i++) {
        Rec *r = &reading->recs[i];
        Py_XDECREF(r->span_hex);
        Py_XDECREF(r->parent_hex);
        Py_XDECREF(r->name);
        Py_XDECREF(r->attrs);
        Py_XDECREF(r->events);
        Py_XDECREF(r->status_message);
        Py_XDECREF(r->resource);
        Py_XDECREF(r->scope);
    }
    PyMem_Free(reading->recs);
    Py_CLEAR(reading->resource);
    Py_CLEAR(reading->scope);
}

static int span_into(Reading *reading, Range range) {
    const uint8_t *at = range.at;
    Range trace_id = {at, at}, span_id = {at, at}, parent_id = {at, at}, name = {at, at}, message = {at, at};
    int64_t kind = 0, status_code = 0;
    uint64_t start_ns = 0, end_ns = 0;
    PyObject *attrs = PyDict_New(), *events = PyList_New(0);
    int status = (attrs && events) ? OK : ERROR;
    while (status == OK && at < range.end) {
        uint64_t tag;
        if (varint(&at, range.end, &tag) != OK) {
            status = DECLINE;
            break;
        }
        uint64_t field = tag >> 3, wire = tag & 7;
        if (wire == 2 && (field <= 5 || field == 9 || field == 11 || field == 15)) {
            Range inner;
            if ((status = delimited(&at, range.end, &inner)) != OK) break;
            switch (field) {
            case 9: status = key_value_into(inner, attrs, 0); break;
            case 1: trace_id = inner; break;
            case 2: span_id = inner; break;
            case 4: parent_id = inner; break;
            case 5: name = inner; break;
            case 11: status = event_into(inner, events); break;
            case 15: {
                const uint8_t *in = inner.at;
                while (status == OK && in < inner.end) {
                    uint64_t inner_tag, value = 0;
                    if (varint(&in, inner.end, &inner_tag) != OK) status = DECLINE;
                    else if (inner_tag == 0x12) status = delimited(&in, inner.end, &message);
                    else if (inner_tag == 0x18) {
                        status = varint(&in, inner.end, &value);
                        status_code = signed_bits(value, 32);
                    } else {
                        status = skip(&in, inner.end, inner_tag, 0);
                    }
                }
                break;
            }
            default: break; /* 3 trace_state */
            }
        } else if (wire == 1 && (field == 7 || field == 8)) {
            uint64_t value = 0;
            if (range.end - at < 8) {
                status = DECLINE;
                break;
            }
            for (int i = 7; i >= 0; i--) value = (value << 8) | at[i];
            at += 8;
            if (field == 7) start_ns = value;
            else end_ns = value;
        } else if (wire == 0 && field == 6) {
            uint64_t value = 0;
            status = varint(&at, range.end, &value);
            kind = signed_bits(value, 32);
        } else {
            status = skip(&at, range.end, tag, 0);
        }
    }
    /* An ID the span cannot have: the Python reading refuses it, in its own words. */
    if (status == OK && (trace_id.end - trace_id.at != 16 || !any_set(trace_id) || span_id.end - span_id.at != 8 ||
                         !any_set(span_id)))
        status = DECLINE;
    if (status == OK && reading->count == reading->capacity) {
        Py_ssize_t capacity = reading->capacity ? reading->capacity * 2 : 64;
        Rec *grown = PyMem_Realloc(reading->recs, (size_t)capacity * sizeof(Rec));
        if (grown == NULL) {
            PyErr_NoMemory();
            status = ERROR;
        } else {
            reading->recs = grown;
            reading->capacity = capacity;
        }
    }
    if (status == OK) {
        Rec *r = &reading->recs[reading->count];
        memset(r, 0, sizeof(Rec));
        reading->count++; /* counted at once: reading_free releases whatever it holds */
        memcpy(r->trace_id, trace_id.at, 16);
        memcpy(r->span_id, span_id.at, 8);
        r->parent = parent_id;
        r->kind = kind;
        r->status_code = status_code;
        r->start_ns = start_ns;
        r->end_ns = end_ns;
        r->order = reading->count - 1;
        r->attrs = Py_NewRef(attrs);
        r->events = Py_NewRef(events);
        r->resource = Py_NewRef(reading->resource);
        r->scope = Py_NewRef(reading->scope);
        r->span_hex = hex_of(span_id);
        r->parent_hex = any_set(parent_id) ? hex_of(parent_id) : Py_NewRef(Py_None);
        r->name = PyUnicode_DecodeUTF8((const char *)name.at, name.end - name.at, NULL);
        r->status_message = PyUnicode_DecodeUTF8((const char *)message.at, message.end - message.at, NULL);
        if (!r->span_hex || !r->parent_hex || !r->name || !r->status_message) status = ERROR;
    }
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    return status;
}

/* Each length-delimited occurrence of the field `wanted` tags in range, handed to item in order. */
static int each(Reading *reading, Range range, uint64_t wanted, int (*item)(Reading *, Range)) {
    const uint8_t *at = range.at;
    int status = OK;
    while (status == OK && at < range.end) {
        uint64_t tag;
        Range inner;
        if (varint(&at, range.end, &tag) != OK) status = DECLINE;
        else if (tag == wanted) {
            status = delimited(&at, range.end, &inner);
            if (status == OK) status = item(reading, inner);
        } else {
            status = skip(&at, range.end, tag, 0);
        }
    }
    return status;
}

/* ResourceSpans and ScopeSpans share a shape: field 1 a singular message (its occurrences merge), field 2 a
 * repeated one. The head is read first, wherever it lies: it applies to every item. */
static int scope_spans(Reading *reading, Range range) {
    const uint8_t *at = range.at;
    Range scope = {NULL, NULL};
    int status = OK;
    while (status == OK && at < range.end) { /* InstrumentationScope.name: the last wins */
        uint64_t tag;
        Range head;
        if (varint(&at, range.end, &tag) != OK) return DECLINE;
        if (tag != 0x0A) {
            status = skip(&at, range.end, tag, 0);
            continue;
        }
        if ((status = delimited(&at, range.end, &head)) != OK) break;
        const uint8_t *in = head.at;
        while (status == OK && in < head.end) {
            uint64_t inner_tag;
            if (varint(&in, head.end, &inner_tag) != OK) status = DECLINE;
            else if (inner_tag == 0x0A) status = delimited(&in, head.end, &scope);
            else status = skip(&in, head.end, inner_tag, 0);
        }
    }
    if (status != OK) return status;
    reading->scope = scope.at ? text_of(scope) : PyUnicode_New(0, 0);
    if (reading->scope == NULL) return ERROR;
    status = each(reading, range, 0x12, span_into);
    Py_CLEAR(reading->scope);
    return status;
}

static int resource_head(Reading *reading, Range head) { /* Resource.attributes, merged over its occurrences */
    return key_values_into(head, 0x0A, reading->resource);
}

static int resource_spans(Reading *reading, Range range) {
    if ((reading->resource = PyDict_New()) == NULL) return ERROR;
    int status = each(reading, range, 0x0A, resource_head);
    if (status == OK) status = each(reading, range, 0x12, scope_spans);
    Py_CLEAR(reading->resource);
    return status;
}

/* The export's spans into reading; OK, DECLINE or ERROR (a UnicodeDecodeError is a DECLINE: the Python reading
 * says it). */
static int read_export(Reading *reading, Py_buffer *body) {
    Range whole = {body->buf, (const uint8_t *)body->buf + body->len};
    int status = each(reading, whole, 0x0A, resource_spans);
    if (status == ERROR && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        status = DECLINE;
    }
    return status;
}

static PyObject *spans(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "spans(body, span_type)");
        return NULL;
    }
    Reading reading = {0};
    Py_buffer body;
    if (PyObject_GetBuffer(args[0], &body, PyBUF_SIMPLE) != 0) return NULL;
    int status = read_export(&reading, &body);
    PyObject *out = status == OK ? PyList_New(reading.count) : NULL;
    if (status == OK && out == NULL) status = ERROR;
    for (Py_ssize_t i = 0; status == OK && i < reading.count; i++) {
        Rec *r = &reading.recs[i];
        Range trace_id = {r->trace_id, r->trace_id + 16};
        PyObject *values[13] = {hex_of(trace_id), r->span_hex, r->parent_hex, r->name,
                                PyLong_FromLongLong(r->kind), PyLong_FromUnsignedLongLong(r->start_ns),
                                PyLong_FromUnsignedLongLong(r->end_ns), r->attrs, r->events,
                                PyLong_FromLongLong(r->status_code), r->status_message, r->resource, r->scope};
        PyObject *span = NULL;
        if (values[0] && values[4] && values[5] && values[6] && values[9])
            span = PyObject_Vectorcall(args[1], values, 13, NULL);
        Py_XDECREF(values[0]);
        Py_XDECREF(values[4]);
        Py_XDECREF(values[5]);
        Py_XDECREF(values[6]);
        Py_XDECREF(values[9]);
        if (span == NULL) status = ERROR;
        else PyList_SET_ITEM(out, i, span);
    }
    PyBuffer_Release(&body);
    reading_free(&reading);
    if (status == OK) return out;
    Py_XDECREF(out);
    if (status == ERROR) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ mapping */

/* What feedback.otlp hands over (configure): its records, helpers and tables, so that the rules live in one
 * place and this file maps the common shapes in C, asking the Python helpers for the rest. */
static PyObject *mapped_span_type, *h_as_str, *h_feature_key, *h_input_text, *h_output_text, *h_trace_cost,
    *h_as_number, *h_any_bool, *h_metadata, *h_flatten_into, *h_count_or_kept, *h_sum_ints, *h_clip, *h_not_counted,
    *h_as_decimal, *h_json_loads, *h_content_text, *input_message_keys, *output_message_keys, *text_part_types;
static PyObject *string_fields, *model_keys, *provider_keys, *input_token_keys, *output_token_keys,
    *cached_token_keys, *span_cost_keys, *token_keys, *span_field_keys, *provider_aliases, *status_names,
    *span_kind_names;
static PyObject *kind_llm, *kind_retrieval, *kind_tool, *kind_other, *status_ok, *status_error, *feature_guessed,
    *root_missing;
static Py_ssize_t max_text, max_span_name, max_feature;

#define NAMES(X)                                                                                                   \
    X(a_trace_id, "candor.trace_id") X(a_feature, "candor.feature") X(a_service, "service.name")                   \
    X(a_input, "candor.input") X(a_output, "candor.output") X(a_ttft, "candor.ttft_ms")                            \
    X(a_fallback, "candor.fallback") X(a_guardrail, "candor.guardrail_blocked")                                    \
    X(a_operation, "gen_ai.operation.name")                                                                        \
    X(a_oi_kind, "openinference.span.kind") X(a_tool_name, "gen_ai.tool.name") X(a_db, "db.system")                \
    X(a_db_name, "db.system.name") X(a_metadata_prefix, "candor.metadata") X(a_candor_prefix, "candor.")           \
    X(a_retrieval_prefix, "retrieval.") X(a_retriev, "retriev") X(t_trace_id, "trace_id") X(t_feature, "feature")  \
    X(t_model, "model") X(t_provider, "provider") X(t_input_tokens, "input_tokens")                                \
    X(t_output_tokens, "output_tokens") X(t_cached_tokens, "cached_tokens") X(t_input, "input")                    \
    X(t_output, "output") X(t_prompt, "prompt") X(t_cost, "cost_usd") X(t_ttft, "ttft_ms") X(t_status, "status")   \
    X(t_fallback, "fallback") X(t_guardrail, "guardrail_blocked") X(t_metadata, "metadata")                        \
    X(t_started_at, "started_at") X(t_latency, "latency_ms") X(m_otel_trace_id, "otel_trace_id")                   \
    X(m_feature_sent, "candor_feature_sent") X(m_clipped, "candor_clipped") X(m_not_counted, "candor_not_counted")  \
    X(o_status_code, "otel.status_code") X(o_status_message, "otel.status_message") X(o_span_kind, "otel.span_kind") \
    X(o_scope, "otel.scope.name") X(w_lower, "lower") X(w_upper, "upper") X(w_empty, "") X(w_comma, ",")          \
    X(v_embeddings, "embeddings") X(v_embedding, "embedding") X(v_retrieval, "retrieval")                          \
    X(v_retriever, "RETRIEVER") X(v_embedding_upper, "EMBEDDING") X(v_llm, "LLM") X(v_execute_tool, "execute_tool") \
    X(v_tool, "TOOL") X(w_strip, "strip") X(w_lines, "\n") X(w_paragraphs, "\n\n") X(j_message, "message")   \
    X(j_role, "role") X(j_type, "type") X(j_parts, "parts") X(j_content, "content") X(j_text, "text")             \
    X(v_system, "system") X(v_developer, "developer") X(v_user, "user") X(v_assistant, "assistant")
#define DECLARE(name, text) static PyObject *name;
NAMES(DECLARE)

static int present(PyObject *value) {
    return value != NULL && value != Py_None && !(PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) == 0);
}

static int equal(PyObject *text, PyObject *other) { return PyUnicode_Compare(text, other) == 0; }

/* _first(sources, keys): the first non-empty value, sources in order, keys in order; borrowed, NULL for none
 * (and on an error, with *failed set). */
static PyObject *first(PyObject **sources, Py_ssize_t count, PyObject *keys, int *failed) {
    Py_ssize_t n = PyTuple_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < count; i++) {
        for (Py_ssize_t k = 0; k < n; k++) {
            PyObject *value = PyDict_GetItemWithError(sources[i], PyTuple_GET_ITEM(keys, k));
            if (value == NULL && PyErr_Occurred()) {
                *failed = 1;
                return NULL;
            }
            if (present(value)) return value;
        }
    }
    return NULL;
}

static PyObject *first_key(PyObject **sources, Py_ssize_t count, PyObject *key, int *failed) {
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = PyDict_GetItemWithError(sources[i], key);
        if (value == NULL && PyErr_Occurred()) {
            *failed = 1;
            return NULL;
        }
        if (present(value)) return value;
    }
    return NULL;
}

/* _as_str: a new reference, None for nothing. */
static PyObject *as_str(PyObject *value) {
    if (!present(value)) return Py_NewRef(Py_None);
    if (PyUnicode_CheckExact(value)) return Py_NewRef(value);
    return PyObject_CallOneArg(h_as_str, value);
}

static int holds(PyObject **sources, Py_ssize_t count, PyObject *key) {
    for (Py_ssize_t i = 0; i < count; i++) {
        int found = PyDict_Contains(sources[i], key);
        if (found != 0) return found;
    }
    return 0;
}

static int holds_any(PyObject **sources, Py_ssize_t count, PyObject *keys) {
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(keys); k++) {
        int found = holds(sources, count, PyTuple_GET_ITEM(keys, k));
        if (found != 0) return found;
    }
    return 0;
}

static int key_starts(PyObject **sources, Py_ssize_t count, PyObject *prefix) {
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t at = 0;
        PyObject *key, *value;
        while (PyDict_Next(sources[i], &at, &key, &value)) {
            if (!PyUnicode_Check(key)) continue;
            Py_ssize_t found = PyUnicode_Tailmatch(key, prefix, 0, PY_SSIZE_T_MAX, -1);
            if (found != 0) return (int)found;
        }
    }
    return 0;
}

/* str(value or "").lower() (or .upper(), or as it is for no method): a new reference. */
static PyObject *cased(PyObject *value, PyObject *method) {
    if (value == NULL) return Py_NewRef(w_empty);
    int truthy = PyObject_IsTrue(value);
    if (truthy < 0) return NULL;
    if (!truthy) return Py_NewRef(w_empty);
    PyObject *text = PyObject_Str(value);
    if (text == NULL || method == NULL) return text;
    PyObject *out = PyObject_CallMethodNoArgs(text, method);
    Py_DECREF(text);
    return out;
}

/* _span_kind; a borrowed kind string, NULL on an error. */
static PyObject *span_kind(Rec *r) {
    PyObject *attrs = r->attrs, *kind = NULL;
    int failed = 0;
    PyObject *operation = cased(PyDict_GetItemWithError(attrs, a_operation), w_lower);
    PyObject *oi_kind = operation ? cased(PyDict_GetItemWithError(attrs, a_oi_kind), w_upper) : NULL;
    if (oi_kind == NULL) goto done;
    int has_model = first(&attrs, 1, model_keys, &failed) != NULL;
    if (failed) goto done;
    if (equal(operation, v_embeddings) || equal(operation, v_embedding) || equal(operation, v_retrieval) ||
        equal(oi_kind, v_retriever) || equal(oi_kind, v_embedding_upper)) {
        kind = kind_retrieval;
    } else if (has_model || equal(oi_kind, v_llm)) {
        kind = kind_llm;
    } else if (equal(operation, v_execute_tool) || PyDict_Contains(attrs, a_tool_name) == 1 ||
               equal(oi_kind, v_tool)) {
        kind = kind_tool;
    } else if (PyDict_Contains(attrs, a_db) == 1 || PyDict_Contains(attrs, a_db_name) == 1) {
        kind = kind_retrieval;
    } else {
        PyObject *name = PyObject_CallMethodNoArgs(r->name, w_lower);
        if (name == NULL) goto done;
        int found = PySequence_Contains(name, a_retriev);
        Py_DECREF(name);
        if (found < 0) goto done;
        if (!found) found = key_starts(&attrs, 1, a_retrieval_prefix);
        if (found < 0) goto done;
        kind = found ? kind_retrieval : kind_other;
    }
done:
    Py_XDECREF(operation);
    Py_XDECREF(oi_kind);
    return kind;
}

/* _feature_key: a name that is a feature key as it is, else the Python's (its repair, or `empty`, NULL for the
 * default). A new reference. */
static PyObject *feature_key(PyObject *name, PyObject *empty) {
    if (PyUnicode_CheckExact(name) && PyUnicode_IS_ASCII(name)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(name);
        const Py_UCS1 *c = PyUnicode_1BYTE_DATA(name);
        int ok = n >= 1 && n <= max_feature;
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            int alnum = (c[i] >= 'a' && c[i] <= 'z') || (c[i] >= 'A' && c[i] <= 'Z') || (c[i] >= '0' && c[i] <= '9');
            ok = alnum || (i > 0 && (c[i] == '_' || c[i] == '.' || c[i] == ':' || c[i] == '/' || c[i] == '-'));
        }
        if (ok) return Py_NewRef(name);
    }
    if (empty == NULL) return PyObject_CallOneArg(h_feature_key, name);
    return PyObject_CallFunctionObjArgs(h_feature_key, name, empty, NULL);
}

/* A list of str, int, bool and finite floats (and None, left out) as _flatten_into keeps it: a new reference,
 * or NULL without an error for another list. */
static PyObject *plain_list(PyObject *value) {
    Py_ssize_t n = PyList_GET_SIZE(value);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(value, i);
        if (!(item == Py_None || PyUnicode_CheckExact(item) || PyLong_CheckExact(item) || PyBool_Check(item) ||
              (PyFloat_CheckExact(item) && isfinite(PyFloat_AS_DOUBLE(item)))))
            return NULL;
    }
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *item = PyList_GET_ITEM(value, i);
        if (item != Py_None && PyList_Append(out, item) != 0) Py_CLEAR(out);
    }
    return out;
}

/* ------------------------------------------------------------------ text */

/* text.strip() or None: a new reference. */
static PyObject *stripped_or_none(PyObject *text) {
    PyObject *out = PyObject_CallMethodNoArgs(text, w_strip);
    if (out != NULL && PyUnicode_GET_LENGTH(out) == 0) Py_SETREF(out, Py_NewRef(Py_None));
    return out;
}

/* "sep".join(parts) or None: a new reference. */
static PyObject *joined_or_none(PyObject *separator, PyObject *parts) {
    if (PyList_GET_SIZE(parts) == 0) return Py_NewRef(Py_None);
    PyObject *out = PyUnicode_Join(separator, parts);
    if (out != NULL && PyUnicode_GET_LENGTH(out) == 0) Py_SETREF(out, Py_NewRef(Py_None));
    return out;
}

/* _content_text: a new reference (None for no text). Deep nesting goes to the Python (as deep as it goes). */
static PyObject *content_text(PyObject *message, int depth) {
    if (depth > 50) return PyObject_CallOneArg(h_content_text, message);
    if (message == Py_None) return Py_NewRef(Py_None);
    if (PyUnicode_Check(message)) return stripped_or_none(message);
    if (PyList_Check(message)) {
        PyObject *parts = PyList_New(0);
        if (parts == NULL) return NULL;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(message); i++) {
            PyObject *text = content_text(PyList_GET_ITEM(message, i), depth + 1);
            if (text == NULL || (present(text) && PyList_Append(parts, text) != 0)) {
                Py_XDECREF(text);
                Py_DECREF(parts);
                return NULL;
            }
            Py_DECREF(text);
        }
        PyObject *out = joined_or_none(w_lines, parts);
        Py_DECREF(parts);
        return out;
    }
    if (PyDict_Check(message)) {
        PyObject *part_type = PyDict_GetItemWithError(message, j_type);
        if (part_type == NULL && PyErr_Occurred()) return NULL;
        if (part_type != NULL && PyUnicode_Check(part_type)) {
            int text_part = PySet_Contains(text_part_types, part_type);
            if (text_part < 0) return NULL;
            if (!text_part) return Py_NewRef(Py_None); /* tool calls, images, reasoning, ...: not display text */
        }
        PyObject *keys[4] = {j_parts, j_content, j_text, j_message};
        for (int k = 0; k < 4; k++) {
            PyObject *inner = PyDict_GetItemWithError(message, keys[k]);
            if (inner == NULL) {
                if (PyErr_Occurred()) return NULL;
                continue;
            }
            PyObject *text = content_text(inner, depth + 1);
            if (text == NULL || present(text)) return text;
            Py_DECREF(text);
        }
        return Py_NewRef(Py_None);
    }
    return as_str(message);
}

/* _role: a new reference. */
static PyObject *role_of(PyObject *message) {
    if (!PyDict_Check(message)) return Py_NewRef(w_empty);
    PyObject *role = PyDict_GetItemWithError(message, j_role);
    if (role == NULL && PyErr_Occurred()) return NULL;
    int truthy = role ? PyObject_IsTrue(role) : 0;
    if (truthy < 0) return NULL;
    if (!truthy) {
        PyObject *inner = PyDict_GetItemWithError(message, j_message);
        if (inner == NULL && PyErr_Occurred()) return NULL;
        role = inner != NULL && PyDict_Check(inner) ? PyDict_GetItemWithError(inner, j_role) : NULL;
        if (role == NULL && PyErr_Occurred()) return NULL;
    }
    return cased(role, NULL);
}

/* _messages_text: a new reference (None for no text). */
static PyObject *messages_text(PyObject *value, PyObject *want_role) {
    PyObject *owned = NULL, *roles = NULL, *parts = NULL, *out = NULL;
    if (PyUnicode_Check(value)) {
        PyObject *stripped = PyObject_CallMethodNoArgs(value, w_strip);
        if (stripped == NULL) return NULL;
        Py_UCS4 lead = PyUnicode_GET_LENGTH(stripped) ? PyUnicode_READ_CHAR(stripped, 0) : 0;
        if (lead != '[' && lead != '{') {
            if (PyUnicode_GET_LENGTH(stripped) == 0) Py_SETREF(stripped, Py_NewRef(Py_None));
            return stripped;
        }
        owned = PyObject_CallOneArg(h_json_loads, stripped);
        if (owned == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
                Py_DECREF(stripped);
                return NULL;
            }
            PyErr_Clear();
            return stripped; /* plain text that happens to start with a bracket */
        }
        Py_DECREF(stripped);
        value = owned;
    }
    if (PyDict_Check(value)) {
        PyObject *one = PyList_New(1);
        if (one == NULL) goto done;
        PyList_SET_ITEM(one, 0, Py_NewRef(value));
        Py_XSETREF(owned, one);
        value = owned;
    }
    if (!PyList_Check(value)) {
        out = as_str(value);
        goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(value);
    if ((roles = PyList_New(n)) == NULL || (parts = PyList_New(0)) == NULL) goto done;
    int wanted = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *role = role_of(PyList_GET_ITEM(value, i));
        if (role == NULL) goto done;
        wanted |= equal(role, want_role);
        PyList_SET_ITEM(roles, i, role);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *role = PyList_GET_ITEM(roles, i);
        int keep = wanted ? equal(role, want_role) : !equal(role, v_system) && !equal(role, v_developer);
        if (!keep) continue;
        PyObject *text = content_text(PyList_GET_ITEM(value, i), 0);
        if (text == NULL) goto done;
        int failed = present(text) && PyList_Append(parts, text) != 0;
        Py_DECREF(text);
        if (failed) goto done;
    }
    out = joined_or_none(w_paragraphs, parts);
done:
    Py_XDECREF(owned);
    Py_XDECREF(roles);
    Py_XDECREF(parts);
    return out;
}

/* _input_text / _output_text: the message attributes read here; anything else (OpenLLMetry's indexed messages,
 * events) by the Python. A new reference. */
static PyObject *span_text(Rec *r, PyObject *keys, PyObject *role, PyObject *helper) {
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(keys); k++) {
        PyObject *value = PyDict_GetItemWithError(r->attrs, PyTuple_GET_ITEM(keys, k));
        if (value == NULL) {
            if (PyErr_Occurred()) return NULL;
            continue;
        }
        PyObject *text = messages_text(value, role);
        if (text == NULL || present(text)) return text;
        Py_DECREF(text);
    }
    return PyObject_CallFunctionObjArgs(helper, r->attrs, r->events, NULL);
}

/* Civil date of a day count since 1970-01-01 (H. Hinnant's algorithm). */
static void civil(int64_t days, int *year, int *month, int *day) {
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = (int)(yoe + era * 400 + (*month <= 2));
}

/* _iso: RFC 3339 in UTC with microseconds, as datetime.isoformat writes it; None when unset. */
static PyObject *iso(uint64_t unix_nano) {
    if (unix_nano == 0) return Py_NewRef(Py_None);
    uint64_t seconds = unix_nano / 1000000000u, nanos = unix_nano % 1000000000u;
    uint64_t days = seconds / 86400, second = seconds % 86400;
    int year, month, day;
    civil((int64_t)days, &year, &month, &day);
    /* YYYY-MM-DDTHH:MM:SS.ffffffZ (years from 1970 to 2554: four digits) */
    PyObject *text = PyUnicode_New(27, 127);
    if (text == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    unsigned parts[7] = {(unsigned)year, (unsigned)month, (unsigned)day, (unsigned)(second / 3600),
                         (unsigned)(second / 60 % 60), (unsigned)(second % 60), (unsigned)(nanos / 1000)};
    static const int widths[7] = {4, 2, 2, 2, 2, 2, 6};
    static const char after[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    for (int i = 0, at = 0; i < 7; i++) {
        for (int digit = widths[i] - 1; digit >= 0; digit--) {
            out[at + digit] = (Py_UCS1)('0' + parts[i] % 10);
            parts[i] /= 10;
        }
        at += widths[i];
        out[at++] = (Py_UCS1)after[i];
    }
    return text;
}

/* _clip: a new reference. */
static PyObject *clip(PyObject *text, Py_ssize_t limit) {
    if (text == Py_None || PyUnicode_GET_LENGTH(text) <= limit) return Py_NewRef(text);
    PyObject *size = PyLong_FromSsize_t(limit);
    PyObject *out = size ? PyObject_CallFunctionObjArgs(h_clip, text, size, NULL) : NULL;
    Py_XDECREF(size);
    return out;
}

/* A count the usual way (an int from 0 to 10^12): 1 with *count set, 0 for another value, -1 on an error. */
static int plain_count(PyObject *value, long long *count) {
    if (!PyLong_CheckExact(value)) return 0;
    int overflow;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (number == -1 && PyErr_Occurred()) return -1;
    if (overflow || number < 0 || number > 1000000000000LL) return 0;
    *count = number;
    return 1;
}

/* _count_or_kept: a new reference. */
static PyObject *count_or_kept(PyObject *attrs, PyObject *keys, PyObject *attributes) {
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(keys); k++) {
        PyObject *value = PyDict_GetItemWithError(attrs, PyTuple_GET_ITEM(keys, k));
        if (value == NULL && PyErr_Occurred()) return NULL;
        if (!present(value)) continue;
        long long count;
        int plain = plain_count(value, &count);
        if (plain < 0) return NULL;
        if (plain) return Py_NewRef(value);
        return PyObject_CallFunctionObjArgs(h_count_or_kept, attrs, keys, attributes, NULL);
    }
    return Py_NewRef(Py_None);
}

/* _sum_ints over the LLM spans' attributes: a new reference. */
static PyObject *sum_ints(PyObject *llm_attrs, PyObject *keys) {
    long long total = 0;
    int any = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(llm_attrs); i++) {
        int failed = 0;
        PyObject *attrs = PyList_GET_ITEM(llm_attrs, i);
        PyObject *value = first(&attrs, 1, keys, &failed);
        if (failed) return NULL;
        if (value == NULL) continue;
        long long count;
        int plain = plain_count(value, &count);
        if (plain < 0) return NULL;
        if (!plain) return PyObject_CallFunctionObjArgs(h_sum_ints, llm_attrs, keys, NULL);
        total += count; /* at most 10^12 a span */
        any = 1;
    }
    return any ? PyLong_FromLongLong(total) : Py_NewRef(Py_None);
}

/* _mapped_span: a new reference. */
static PyObject *mapped_span(Rec *r, int *kept_tokens) {
    PyObject *attrs = r->attrs, *model_key = NULL, *attributes = NULL, *out = NULL;
    PyObject *values[11] = {NULL};
    int complete = 1;
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(model_keys); k++) {
        PyObject *value = PyDict_GetItemWithError(attrs, PyTuple_GET_ITEM(model_keys, k));
        if (value == NULL && PyErr_Occurred()) return NULL;
        if (present(value)) {
            model_key = PyTuple_GET_ITEM(model_keys, k);
            break;
        }
    }
    if ((attributes = PyDict_New()) == NULL) return NULL;
    Py_ssize_t at = 0;
    PyObject *key, *value;
    int fields = 0, flattened = 0;
    PyObject *plain;
    while (PyDict_Next(attrs, &at, &key, &value)) {
        int skipped = model_key != NULL && equal(key, model_key);
        if (!skipped) {
            int field = PySet_Contains(span_field_keys, key);
            if (field < 0) goto fail;
            fields |= field;
            skipped = field || PyUnicode_Tailmatch(key, a_candor_prefix, 0, PY_SSIZE_T_MAX, -1) == 1;
        } else {
            fields |= PySet_Contains(span_field_keys, key) == 1;
        }
        if (skipped) continue;
        if (PyUnicode_CheckExact(value) || PyLong_CheckExact(value) || PyBool_Check(value) ||
            (PyFloat_CheckExact(value) && isfinite(PyFloat_AS_DOUBLE(value)))) {
            if (PyDict_SetItem(attributes, key, value) != 0) goto fail;
        } else if (PyList_CheckExact(value) && (plain = plain_list(value)) != NULL) {
            int failed = PyDict_SetItem(attributes, key, plain) != 0;
            Py_DECREF(plain);
            if (failed) goto fail;
        } else {
            if (PyErr_Occurred()) goto fail;
            PyObject *done = PyObject_CallFunctionObjArgs(h_flatten_into, attributes, key, value, NULL);
            if (done == NULL) goto fail;
            Py_DECREF(done);
            flattened = 1;
        }
    }
    {
        PyObject *code = PyLong_FromLongLong(r->status_code);
        PyObject *status_name = code ? PyDict_GetItemWithError(status_names, code) : NULL;
        Py_XDECREF(code);
        if (status_name == NULL && PyErr_Occurred()) goto fail;
        if (status_name != NULL) {
            if (PyDict_SetItem(attributes, o_status_code, status_name) != 0) goto fail;
            if (PyUnicode_GET_LENGTH(r->status_message) &&
                PyDict_SetItem(attributes, o_status_message, r->status_message) != 0)
                goto fail;
        }
        PyObject *kind = PyLong_FromLongLong(r->kind);
        PyObject *kind_name = kind ? PyDict_GetItemWithError(span_kind_names, kind) : NULL;
        Py_XDECREF(kind);
        if (kind_name == NULL && PyErr_Occurred()) goto fail;
        if (kind_name != NULL && PyDict_SetItem(attributes, o_span_kind, kind_name) != 0) goto fail;
        if (PyUnicode_GET_LENGTH(r->scope) && PyDict_SetItem(attributes, o_scope, r->scope) != 0) goto fail;
    }
    if (!fields) { /* most spans: no tokens, no cost */
        values[7] = Py_NewRef(Py_None);
        values[8] = Py_NewRef(Py_None);
        values[9] = Py_NewRef(Py_None);
    } else {
        int failed = 0;
        values[7] = count_or_kept(attrs, input_token_keys, attributes);
        values[8] = values[7] ? count_or_kept(attrs, output_token_keys, attributes) : NULL;
        PyObject *cost = values[8] ? first(&attrs, 1, span_cost_keys, &failed) : NULL;
        if (values[8] && !failed)
            values[9] = cost ? PyObject_CallOneArg(h_as_decimal, cost) : Py_NewRef(Py_None);
    }
    values[0] = Py_NewRef(r->span_hex);
    values[1] = Py_NewRef(r->parent_hex);
    values[2] = clip(r->name, max_span_name);
    values[3] = Py_NewRef(r->mapped_kind);
    values[4] = iso(r->start_ns);
    values[5] = iso(r->end_ns);
    values[6] = model_key ? as_str(PyDict_GetItem(attrs, model_key)) : Py_NewRef(Py_None);
    values[10] = Py_NewRef(attributes);
    if (fields || flattened) { /* a token count that was no count stays there (_count_or_kept), or a flattened one */
        PyObject *view = attributes;
        int kept = holds_any(&view, 1, token_keys);
        if (kept < 0) complete = 0;
        *kept_tokens |= kept > 0;
    }
    for (int i = 0; i < 11; i++) complete &= values[i] != NULL;
    if (complete) out = PyObject_Vectorcall(mapped_span_type, values, 11, NULL);
    for (int i = 0; i < 11; i++) Py_XDECREF(values[i]);
fail:
    Py_XDECREF(attributes);
    return out;
}

static int by_start(const void *a, const void *b) {
    const Rec *x = *(Rec *const *)a, *y = *(Rec *const *)b;
    if (x->start_ns != y->start_ns) return x->start_ns < y->start_ns ? -1 : 1;
    int order = memcmp(x->span_id, y->span_id, 8);
    if (order) return order;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int by_id(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    PyObject *object;
    Py_ssize_t first_use;
} Seen;

static int by_address(const void *a, const void *b) {
    const Seen *x = a, *y = b;
    if (x->object != y->object) return (uintptr_t)x->object < (uintptr_t)y->object ? -1 : 1;
    return (x->first_use > y->first_use) - (x->first_use < y->first_use);
}

static int by_first_use(const void *a, const void *b) {
    const Seen *x = a, *y = b;
    return (x->first_use > y->first_use) - (x->first_use < y->first_use);
}

static int set(PyObject *trace, PyObject *key, PyObject *value) {
    /* Takes the value's reference; a None is left out (a missing key must not null what another export set). */
    if (value == NULL) return -1;
    int failed = value != Py_None && PyDict_SetItem(trace, key, value) != 0;
    Py_DECREF(value);
    return failed ? -1 : 0;
}

/* _build_trace over one trace's spans (in export order): a new (trace, spans) tuple; *root_start set. */
static PyObject *build_trace(Rec **group, Py_ssize_t n, uint64_t *root_start) {
    PyObject *trace = NULL, *spans = NULL, *sources_list = NULL, *llm_attrs = NULL, *metadata = NULL;
    PyObject *otel_id = NULL, *sent_feature = NULL, *feature = NULL, *out = NULL;
    PyObject **sources = PyMem_Malloc(sizeof(PyObject *) * (size_t)(2 * n + 1));
    Rec **ordered = PyMem_Malloc(sizeof(Rec *) * (size_t)(n + 1));
    int failed = 0;
    if (sources == NULL || ordered == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    qsort(group, (size_t)n, sizeof(Rec *), by_start);
    Rec *root = NULL;
    for (Py_ssize_t i = 0; i < n && root == NULL; i++)
        if (group[i]->parent_hex == Py_None) root = group[i];
    if (root == NULL) { /* the earliest whose parent is not in the group: span IDs sorted, each parent looked up */
        uint64_t *ids = PyMem_Malloc(sizeof(uint64_t) * (size_t)n);
        if (ids == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) memcpy(&ids[i], group[i]->span_id, 8);
        qsort(ids, (size_t)n, sizeof(uint64_t), by_id);
        for (Py_ssize_t i = 0; i < n && root == NULL; i++) {
            Range parent = group[i]->parent;
            uint64_t id;
            if (parent.end - parent.at == 8) memcpy(&id, parent.at, 8);
            if (parent.end - parent.at != 8 || !bsearch(&id, ids, (size_t)n, sizeof(uint64_t), by_id)) root = group[i];
        }
        PyMem_Free(ids);
    }
    if (root == NULL) root = group[0]; /* a parent cycle: malformed, but still take the earliest */
    *root_start = root->start_ns;
    /* Precedence: root span, then the other spans in start order, then resources. */
    Py_ssize_t count = 0, first_resource;
    ordered[0] = root;
    for (Py_ssize_t i = 0, k = 1; i < n; i++)
        if (group[i] != root) ordered[k++] = group[i];
    for (Py_ssize_t i = 0; i < n; i++) sources[count++] = ordered[i]->attrs;
    first_resource = count;
    /* Each resource once, in the order of first use: by address, then by that order. */
    Seen *seen = PyMem_Malloc(sizeof(Seen) * (size_t)n);
    if (seen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) seen[i] = (Seen){ordered[i]->resource, i};
    qsort(seen, (size_t)n, sizeof(Seen), by_address);
    Py_ssize_t unique = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (i == 0 || seen[i].object != seen[i - 1].object) seen[unique++] = seen[i];
    qsort(seen, (size_t)unique, sizeof(Seen), by_first_use);
    for (Py_ssize_t i = 0; i < unique; i++) sources[count++] = seen[i].object;
    PyMem_Free(seen);
    PyObject **resources = sources + first_resource;
    Py_ssize_t resource_count = count - first_resource;

    Range trace_range = {root->trace_id, root->trace_id + 16};
    if ((trace = PyDict_New()) == NULL || (otel_id = hex_of(trace_range)) == NULL) goto done;
    PyObject *trace_id = as_str(first_key(sources, count, a_trace_id, &failed));
    if (trace_id == NULL || failed) {
        Py_XDECREF(trace_id);
        goto done;
    }
    if (trace_id == Py_None) {
        Py_DECREF(trace_id);
        trace_id = Py_NewRef(otel_id);
    }
    if (set(trace, t_trace_id, trace_id) != 0) goto done;
    sent_feature = as_str(first_key(sources, count, a_feature, &failed));
    if (sent_feature == NULL || failed) goto done;
    if (sent_feature != Py_None) feature = feature_key(sent_feature, w_empty);
    else feature = Py_NewRef(w_empty);
    if (feature == NULL) goto done;
    if (PyUnicode_GET_LENGTH(feature)) {
        if (PyDict_SetItem(trace, t_feature, feature) != 0) goto done;
    } else {
        PyObject *service = as_str(first_key(resources, resource_count, a_service, &failed));
        PyObject *guess = service && !failed ? feature_key(service, NULL) : NULL;
        Py_XDECREF(service);
        if (set(trace, t_feature, guess) != 0) goto done;
        if (PyDict_SetItem(trace, feature_guessed, Py_True) != 0) goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(string_fields); i++) {
        PyObject *field = PyList_GET_ITEM(string_fields, i); /* (name, primary keys, fallback keys) */
        PyObject *value = as_str(first(sources, count, PyTuple_GET_ITEM(field, 1), &failed));
        if (value == Py_None && !failed && PyTuple_GET_SIZE(PyTuple_GET_ITEM(field, 2))) {
            Py_DECREF(value);
            value = as_str(first(sources, count, PyTuple_GET_ITEM(field, 2), &failed));
        }
        if (failed || set(trace, PyTuple_GET_ITEM(field, 0), value) != 0) goto done;
    }

    Rec *first_llm = NULL, *last_llm = NULL;
    if ((llm_attrs = PyList_New(0)) == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((group[i]->mapped_kind = span_kind(group[i])) == NULL) goto done;
        if (group[i]->mapped_kind == kind_llm) {
            if (first_llm == NULL) first_llm = group[i];
            last_llm = group[i];
            if (PyList_Append(llm_attrs, group[i]->attrs) != 0) goto done;
        }
    }
    if (first_llm != NULL) {
        if (set(trace, t_model, as_str(first(&first_llm->attrs, 1, model_keys, &failed))) != 0 || failed) goto done;
        PyObject *provider = as_str(first(&first_llm->attrs, 1, provider_keys, &failed));
        if (provider == NULL || failed) {
            Py_XDECREF(provider);
            goto done;
        }
        if (provider != Py_None) {
            PyObject *lowered = PyObject_CallMethodNoArgs(provider, w_lower);
            Py_DECREF(provider);
            if (lowered == NULL) goto done;
            PyObject *alias = PyDict_GetItemWithError(provider_aliases, lowered);
            if (alias == NULL && PyErr_Occurred()) {
                Py_DECREF(lowered);
                goto done;
            }
            provider = Py_NewRef(alias ? alias : lowered);
            Py_DECREF(lowered);
        }
        if (set(trace, t_provider, provider) != 0) goto done;
        if (set(trace, t_input_tokens, sum_ints(llm_attrs, input_token_keys)) != 0) goto done;
        if (set(trace, t_output_tokens, sum_ints(llm_attrs, output_token_keys)) != 0) goto done;
        if (set(trace, t_cached_tokens, sum_ints(llm_attrs, cached_token_keys)) != 0) goto done;
        if (set(trace, t_input, span_text(first_llm, input_message_keys, v_user, h_input_text)) != 0) goto done;
        if (set(trace, t_output, span_text(last_llm, output_message_keys, v_assistant, h_output_text)) != 0) goto done;
    }
    /* Explicit Candor display text wins over what the GenAI attributes say. */
    if (set(trace, t_input, as_str(first_key(sources, count, a_input, &failed))) != 0 || failed) goto done;
    if (set(trace, t_output, as_str(first_key(sources, count, a_output, &failed))) != 0 || failed) goto done;
    PyObject *clipped[3] = {NULL};
    Py_ssize_t clipped_count = 0;
    PyObject *clip_names[3] = {t_input, t_output, t_prompt};
    for (int i = 0; i < 3; i++) {
        PyObject *value = PyDict_GetItemWithError(trace, clip_names[i]);
        if (value == NULL) {
            if (PyErr_Occurred()) goto done;
            continue;
        }
        if (PyUnicode_GET_LENGTH(value) <= max_text) continue;
        if (set(trace, clip_names[i], clip(value, max_text)) != 0) goto done;
        clipped[clipped_count++] = clip_names[i];
    }

    int costs = 0;
    for (Py_ssize_t i = 0; i < n && !costs; i++) costs = holds_any(&group[i]->attrs, 1, span_cost_keys);
    if (costs < 0) goto done;
    if (costs) {
        PyObject *all = PyList_New(n);
        if (all == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) PyList_SET_ITEM(all, i, Py_NewRef(group[i]->attrs));
        PyObject *cost = PyObject_CallFunctionObjArgs(h_trace_cost, root->attrs, all, NULL);
        Py_DECREF(all);
        if (set(trace, t_cost, cost) != 0) goto done;
    }
    PyObject *ttft = first_key(sources, count, a_ttft, &failed);
    if (failed) goto done;
    if (ttft != NULL) {
        PyObject *number = PyObject_CallOneArg(h_as_number, ttft);
        if (number == NULL) goto done;
        if (number != Py_None && PyFloat_AsDouble(number) < 0) Py_SETREF(number, Py_NewRef(Py_None));
        if (set(trace, t_ttft, number) != 0) goto done;
    }
    int error = 0;
    for (Py_ssize_t i = 0; i < n; i++) error |= group[i]->status_code == 2;
    if (PyDict_SetItem(trace, t_status, error ? status_error : status_ok) != 0) goto done;
    PyObject *flags[2][2] = {{a_fallback, t_fallback}, {a_guardrail, t_guardrail}};
    int wants_metadata = key_starts(sources, count, a_metadata_prefix);
    if (wants_metadata < 0) goto done;
    for (int i = 0; i < 2; i++) {
        int found = holds(sources, count, flags[i][0]);
        if (found < 0) goto done;
        if (!found) continue;
        if (sources_list == NULL) {
            if ((sources_list = PyList_New(count)) == NULL) goto done;
            for (Py_ssize_t j = 0; j < count; j++) PyList_SET_ITEM(sources_list, j, Py_NewRef(sources[j]));
        }
        if (set(trace, flags[i][1], PyObject_CallFunctionObjArgs(h_any_bool, sources_list, flags[i][0], NULL)))
            goto done;
    }
    if (wants_metadata) {
        if (sources_list == NULL) {
            if ((sources_list = PyList_New(count)) == NULL) goto done;
            for (Py_ssize_t j = 0; j < count; j++) PyList_SET_ITEM(sources_list, j, Py_NewRef(sources[j]));
        }
        metadata = PyObject_CallOneArg(h_metadata, sources_list);
    } else {
        metadata = PyDict_New();
    }
    if (metadata == NULL || PyDict_SetDefault(metadata, m_otel_trace_id, otel_id) == NULL) goto done;
    if (sent_feature != Py_None) {
        PyObject *stored = PyDict_GetItem(trace, t_feature);
        if (stored == NULL || !equal(sent_feature, stored)) {
            PyObject *cut = PyUnicode_Substring(sent_feature, 0, max_feature * 2);
            if (set(metadata, m_feature_sent, cut) != 0) goto done;
        }
    }
    if (clipped_count) {
        PyObject *names = PyList_New(clipped_count);
        if (names == NULL) goto done;
        for (Py_ssize_t i = 0; i < clipped_count; i++) PyList_SET_ITEM(names, i, Py_NewRef(clipped[i]));
        PyObject *joined = PyUnicode_Join(w_comma, names);
        Py_DECREF(names);
        if (set(metadata, m_clipped, joined) != 0) goto done;
    }
    if (PyDict_SetItem(trace, t_metadata, metadata) != 0) goto done;
    if (set(trace, t_started_at, iso(root->start_ns)) != 0) goto done;
    if (root->parent_hex != Py_None && PyDict_SetItem(trace, root_missing, Py_True) != 0) goto done;
    if (root->start_ns > 0 && root->end_ns >= root->start_ns &&
        set(trace, t_latency, PyFloat_FromDouble((double)(root->end_ns - root->start_ns) / 1e6)) != 0)
        goto done;
    if ((spans = PyList_New(n)) == NULL) goto done;
    int kept_tokens = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *span = mapped_span(group[i], &kept_tokens);
        if (span == NULL) goto done;
        PyList_SET_ITEM(spans, i, span);
    }
    if (kept_tokens) {
        /* Never silent: the trace says which token counts were no count, and the OTLP answer too. */
        PyObject *names = PyObject_CallOneArg(h_not_counted, spans);
        PyObject *joined = names ? PyUnicode_Join(w_comma, names) : NULL;
        Py_XDECREF(names);
        if (set(metadata, m_not_counted, joined) != 0) goto done;
    }
    out = PyTuple_Pack(2, trace, spans);
done:
    Py_XDECREF(trace);
    Py_XDECREF(spans);
    Py_XDECREF(sources_list);
    Py_XDECREF(llm_attrs);
    Py_XDECREF(metadata);
    Py_XDECREF(otel_id);
    Py_XDECREF(sent_feature);
    Py_XDECREF(feature);
    PyMem_Free(sources);
    PyMem_Free(ordered);
    return out;
}

typedef struct {
    uint64_t root_start;
    PyObject *trace_id; /* borrowed from the built trace */
    Py_ssize_t index;
} Built;

static int by_root(const void *a, const void *b) {
    const Built *x = a, *y = b;
    if (x->root_start != y->root_start) return x->root_start < y->root_start ? -1 : 1;
    int order = PyUnicode_Compare(x->trace_id, y->trace_id);
    if (order) return order;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int load(PyObject *config);

/* map(body, config): otlp_map's answer for a protobuf body upb has accepted, or None to let the Python map it. */
static PyObject *map(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "map(body, config)");
        return NULL;
    }
    if (load(args[1]) != 0) return NULL;
    PyObject *body_object = args[0];
    Reading reading = {0};
    Py_buffer body;
    if (PyObject_GetBuffer(body_object, &body, PyBUF_SIMPLE) != 0) return NULL;
    int status = read_export(&reading, &body);
    PyObject *out = NULL;
    Rec **by_group = NULL;
    Py_ssize_t *starts = NULL, groups = 0;
    Built *built = NULL;
    if (status != OK) goto done;
    /* Spans sharing a trace ID, in the order their traces first appear. */
    by_group = PyMem_Malloc(sizeof(Rec *) * (size_t)(reading.count + 1));
    starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(reading.count + 2));
    Py_ssize_t slots = 64;
    while (slots < 2 * reading.count) slots *= 2;
    Py_ssize_t *table = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)slots);
    Py_ssize_t *sizes = PyMem_Calloc((size_t)reading.count + 1, sizeof(Py_ssize_t));
    if (by_group == NULL || starts == NULL || table == NULL || sizes == NULL) {
        PyMem_Free(table);
        PyMem_Free(sizes);
        PyErr_NoMemory();
        status = ERROR;
        goto done;
    }
    Py_ssize_t *head_of = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(reading.count + 1));
    if (head_of == NULL) {
        PyMem_Free(table);
        PyMem_Free(sizes);
        PyErr_NoMemory();
        status = ERROR;
        goto done;
    }
    for (Py_ssize_t i = 0; i < slots; i++) table[i] = -1;
    for (Py_ssize_t i = 0; i < reading.count; i++) {
        Rec *r = &reading.recs[i];
        uint64_t hash;
        memcpy(&hash, r->trace_id, 8);
        hash ^= hash >> 29;
        Py_ssize_t slot = (Py_ssize_t)(hash * 0x9E3779B97F4A7C15ull >> 7) & (slots - 1);
        for (;;) {
            Py_ssize_t group = table[slot];
            if (group < 0) {
                table[slot] = groups;
                head_of[groups] = i;
                r->group = groups++;
                break;
            }
            if (memcmp(reading.recs[head_of[group]].trace_id, r->trace_id, 16) == 0) {
                r->group = group;
                break;
            }
            slot = (slot + 1) & (slots - 1);
        }
        sizes[r->group]++;
    }
    starts[0] = 0;
    for (Py_ssize_t g = 0; g < groups; g++) starts[g + 1] = starts[g] + sizes[g];
    for (Py_ssize_t g = 0; g < groups; g++) sizes[g] = 0;
    for (Py_ssize_t i = 0; i < reading.count; i++) {
        Rec *r = &reading.recs[i];
        by_group[starts[r->group] + sizes[r->group]++] = r;
    }
    PyMem_Free(table);
    PyMem_Free(sizes);
    PyMem_Free(head_of);
    built = PyMem_Malloc(sizeof(Built) * (size_t)(groups + 1));
    PyObject *items = PyList_New(groups);
    if (built == NULL || items == NULL) {
        Py_XDECREF(items);
        if (built == NULL) PyErr_NoMemory();
        status = ERROR;
        goto done;
    }
    for (Py_ssize_t g = 0; g < groups; g++) {
        PyObject *item = build_trace(by_group + starts[g], starts[g + 1] - starts[g], &built[g].root_start);
        if (item == NULL) {
            Py_DECREF(items);
            status = ERROR;
            goto done;
        }
        PyList_SET_ITEM(items, g, item);
        built[g].trace_id = PyDict_GetItem(PyTuple_GET_ITEM(item, 0), t_trace_id);
        built[g].index = g;
    }
    /* Stable order: by root start time, then by trace id. */
    qsort(built, (size_t)groups, sizeof(Built), by_root);
    if (PyErr_Occurred()) {
        Py_DECREF(items);
        status = ERROR;
        goto done;
    }
    out = PyList_New(groups);
    if (out == NULL) {
        Py_DECREF(items);
        status = ERROR;
        goto done;
    }
    for (Py_ssize_t g = 0; g < groups; g++) PyList_SET_ITEM(out, g, Py_NewRef(PyList_GET_ITEM(items, built[g].index)));
    Py_DECREF(items);
done:
    PyMem_Free(by_group);
    PyMem_Free(starts);
    PyMem_Free(built);
    reading_free(&reading);
    PyBuffer_Release(&body);
    if (status == OK) return out;
    if (status == ERROR) return NULL;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ span rows for COPY */

/* span_copy(spans, trace_id, limit_us, max_id, encode) -> bytes | None: the spans of one trace as rows of a binary
 * COPY into feedback_span (SPAN_COPY_COLUMNS in feedback.otlp), ordered by span_id, exactly as psycopg writes
 * feedback.otlp.span_rows_of's rows; None where that Python says otherwise or might (a span it would refuse, a
 * cost, a span_id twice, a time or value this does not read): the caller takes the rows path then. */

typedef struct {
    char *data;
    Py_ssize_t size, capacity;
} Out;

static int out_room(Out *out, Py_ssize_t more) {
    if (out->size + more <= out->capacity) return OK;
    Py_ssize_t capacity = out->capacity ? out->capacity : 4096;
    while (capacity < out->size + more) capacity *= 2;
    char *data = PyMem_Realloc(out->data, (size_t)capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return ERROR;
    }
    out->data = data;
    out->capacity = capacity;
    return OK;
}

static void put_be(Out *out, uint64_t value, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) out->data[out->size++] = (char)((value >> (8 * i)) & 0xFF);
}

static int put_field(Out *out, const char *data, Py_ssize_t size) {
    if (size > INT32_MAX - 1 || out_room(out, 4 + size) != OK) return size > INT32_MAX - 1 ? DECLINE : ERROR;
    put_be(out, (uint64_t)size, 4);
    memcpy(out->data + out->size, data, (size_t)size);
    out->size += size;
    return OK;
}

static int put_null(Out *out) {
    if (out_room(out, 4) != OK) return ERROR;
    put_be(out, 0xFFFFFFFFu, 4);
    return OK;
}

/* A str's UTF-8 (what PostgreSQL's text takes); DECLINE for anything else, or text with no UTF-8 form. */
static int utf8_of(PyObject *text, const char **data, Py_ssize_t *size) {
    if (!PyUnicode_CheckExact(text)) return DECLINE;
    *data = PyUnicode_AsUTF8AndSize(text, size);
    if (*data == NULL) {
        PyErr_Clear();
        return DECLINE;
    }
    return OK;
}

static int put_text(Out *out, PyObject *text) {
    const char *data;
    Py_ssize_t size;
    if (utf8_of(text, &data, &size) != OK) return DECLINE;
    return put_field(out, data, size);
}

static int put_bigint(Out *out, PyObject *value) {
    if (value == Py_None) return put_null(out);
    if (!PyLong_CheckExact(value)) return DECLINE;
    int overflow;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (number == -1 && PyErr_Occurred()) return ERROR;
    if (overflow) return DECLINE;
    if (out_room(out, 12) != OK) return ERROR;
    put_be(out, 8, 4);
    put_be(out, (uint64_t)number, 8);
    return OK;
}

static int digits(const char *at, int count, int *value) {
    *value = 0;
    for (int i = 0; i < count; i++) {
        if (at[i] < '0' || at[i] > '9') return DECLINE;
        *value = *value * 10 + (at[i] - '0');
    }
    return OK;
}

/* Days since 1970-01-01 of a civil date (H. Hinnant's algorithm, civil's inverse). */
static int64_t days_of(int year, int month, int day) {
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t yoe = year - era * 400;
    int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* A time as iso writes it (YYYY-MM-DDTHH:MM:SS.ffffffZ) in microseconds since 2000-01-01 UTC, PostgreSQL's
 * timestamptz; DECLINE for any other text (the REST decoding reads those). */
static int micros_of(PyObject *text, int64_t *micros) {
    const char *s;
    Py_ssize_t size;
    if (utf8_of(text, &s, &size) != OK || size != 27) return DECLINE;
    if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[26] != 'Z')
        return DECLINE;
    int year, month, day, hour, minute, second, fraction;
    if (digits(s, 4, &year) || digits(s + 5, 2, &month) || digits(s + 8, 2, &day) || digits(s + 11, 2, &hour) ||
        digits(s + 14, 2, &minute) || digits(s + 17, 2, &second) || digits(s + 20, 6, &fraction))
        return DECLINE;
    static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
        (month == 2 && day == 29 && !leap) || hour > 23 || minute > 59 || second > 59)
        return DECLINE;
    int64_t seconds = days_of(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    *micros = (seconds - 946684800) * 1000000 + fraction;
    return OK;
}

typedef struct {
    PyObject *id_text; /* the span_id, held: id points into its UTF-8 */
    const char *id;
    Py_ssize_t id_size, at, size;
} Row;

static int by_span_id(const void *a, const void *b) {
    const Row *x = a, *y = b;
    int order = memcmp(x->id, y->id, (size_t)(x->id_size < y->id_size ? x->id_size : y->id_size));
    return order ? order : (x->id_size > y->id_size) - (x->id_size < y->id_size);
}

static PyObject *s_span_id, *s_parent_span_id, *s_name, *s_kind, *s_start, *s_end, *s_model, *s_input_tokens,
    *s_output_tokens, *s_cost_usd, *s_attributes;

/* One span's row: OK, DECLINE or ERROR. */
static int span_row(Out *out, Row *row, PyObject *span, const char *trace_id, Py_ssize_t trace_size,
                    int64_t limit, Py_ssize_t max_id, PyObject *encode) {
    PyObject *names[11] = {s_span_id, s_parent_span_id, s_name, s_kind, s_start, s_end, s_model, s_input_tokens,
                           s_output_tokens, s_cost_usd, s_attributes};
    PyObject *v[11] = {NULL}, *json = NULL;
    int status = ERROR;
    for (int i = 0; i < 11; i++)
        if ((v[i] = PyObject_GetAttr(span, names[i])) == NULL) goto done;
    PyObject *span_id = v[0], *parent = v[1], *name = v[2], *kind = v[3], *start = v[4], *end = v[5], *model = v[6];
    status = DECLINE;
    if (v[9] != Py_None || !PyDict_CheckExact(v[10])) goto done; /* a cost: the rows path writes its numeric */
    int64_t start_us = 0, end_us = 0;
    if (start != Py_None && (micros_of(start, &start_us) != OK || start_us > limit)) goto done;
    if (end != Py_None && (micros_of(end, &end_us) != OK || end_us > limit)) goto done;
    if (start != Py_None && end != Py_None && end_us < start_us) goto done;
    const char *text;
    Py_ssize_t size;
    if (model != Py_None && (utf8_of(model, &text, &size) != OK || PyUnicode_GET_LENGTH(model) > max_id ||
                             memchr(text, 0, (size_t)size) != NULL))
        goto done;
    if (utf8_of(name, &text, &size) != OK || memchr(text, 0, (size_t)size) != NULL) goto done;
    if ((json = PyObject_CallOneArg(encode, v[10])) == NULL) {
        status = ERROR;
        goto done;
    }
    if (!PyBytes_CheckExact(json)) goto done;
    const char *json_text = PyBytes_AS_STRING(json);
    Py_ssize_t json_size = PyBytes_GET_SIZE(json);
    for (Py_ssize_t i = 0; i + 6 <= json_size; i++)
        if (json_text[i] == '\\' && memcmp(json_text + i, "\\u0000", 6) == 0) goto done; /* PostgreSQL refuses it */
    if (utf8_of(span_id, &row->id, &row->id_size) != OK) goto done;
    row->id_text = Py_NewRef(span_id);
    row->at = out->size;
    if ((status = out_room(out, 2)) != OK) goto done;
    put_be(out, 12, 2);
    /* span_id, parent_span_id, name, kind, start, end, model, input_tokens, output_tokens, trace_id, cost_usd,
     * attributes: SPAN_COPY_COLUMNS, NOT NULL defaults filled in as span_rows_of fills them. */
    if ((status = put_text(out, span_id)) != OK) goto done;
    if ((status = parent == Py_None ? put_field(out, "", 0) : put_text(out, parent)) != OK) goto done;
    if ((status = put_text(out, name)) != OK || (status = put_text(out, kind)) != OK) goto done;
    for (int i = 0; i < 2; i++) {
        if ((i ? end : start) == Py_None) {
            if ((status = put_null(out)) != OK) goto done;
        } else {
            if ((status = out_room(out, 12)) != OK) goto done;
            put_be(out, 8, 4);
            put_be(out, (uint64_t)(i ? end_us : start_us), 8);
        }
    }
    if ((status = model == Py_None ? put_field(out, "", 0) : put_text(out, model)) != OK) goto done;
    if ((status = put_bigint(out, v[7])) != OK || (status = put_bigint(out, v[8])) != OK) goto done;
    if ((status = put_field(out, trace_id, trace_size)) != OK || (status = put_null(out)) != OK) goto done;
    if (json_size > INT32_MAX - 2) {
        status = DECLINE;
        goto done;
    }
    if ((status = out_room(out, 5 + json_size)) != OK) goto done;
    put_be(out, (uint64_t)(json_size + 1), 4);
    out->data[out->size++] = 1; /* jsonb's binary format: version 1, then the text */
    memcpy(out->data + out->size, json_text, (size_t)json_size);
    out->size += json_size;
    row->size = out->size - row->at;
    status = OK;
done:
    for (int i = 0; i < 11; i++) Py_XDECREF(v[i]);
    Py_XDECREF(json);
    return status;
}

static PyObject *span_copy(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 5 || !PyList_CheckExact(args[0]) || !PyLong_Check(args[2]) || !PyLong_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "span_copy(spans: list, trace_id: str, limit_us: int, max_id: int, encode)");
        return NULL;
    }
    if (s_span_id == NULL) { /* set together, once every name is interned */
        const char *texts[11] = {"span_id", "parent_span_id", "name", "kind", "start", "end", "model",
                                 "input_tokens", "output_tokens", "cost_usd", "attributes"};
        PyObject *names[11] = {NULL};
        for (int i = 0; i < 11; i++) {
            if ((names[i] = PyUnicode_InternFromString(texts[i])) == NULL) {
                for (int j = 0; j < i; j++) Py_DECREF(names[j]);
                return NULL;
            }
        }
        s_parent_span_id = names[1], s_name = names[2], s_kind = names[3], s_start = names[4], s_end = names[5];
        s_model = names[6], s_input_tokens = names[7], s_output_tokens = names[8], s_cost_usd = names[9];
        s_attributes = names[10], s_span_id = names[0];
    }
    const char *trace_id;
    Py_ssize_t trace_size;
    if (utf8_of(args[1], &trace_id, &trace_size) != OK) Py_RETURN_NONE;
    int64_t limit = PyLong_AsLongLong(args[2]);
    if (limit == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t max_id = PyLong_AsSsize_t(args[3]);
    if (max_id == -1 && PyErr_Occurred()) return NULL;
    /* The spans as they are now, held (whatever code an attribute or the encoder runs, no span goes meanwhile). */
    PyObject *spans = PyList_AsTuple(args[0]);
    if (spans == NULL) return NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(spans);
    Out out = {NULL, 0, 0};
    Row *rows = PyMem_Calloc((size_t)(count ? count : 1), sizeof(Row));
    PyObject *answer = NULL;
    int status = rows == NULL ? (PyErr_NoMemory(), ERROR) : OK;
    for (Py_ssize_t i = 0; i < count && status == OK; i++)
        status = span_row(&out, &rows[i], PyTuple_GET_ITEM(spans, i), trace_id, trace_size, limit, max_id, args[4]);
    if (status == OK) {
        qsort(rows, (size_t)count, sizeof(Row), by_span_id);
        for (Py_ssize_t i = 1; i < count && status == OK; i++)
            if (by_span_id(&rows[i - 1], &rows[i]) == 0) status = DECLINE; /* merged by the rows path */
    }
    if (status == OK && (answer = PyBytes_FromStringAndSize(NULL, out.size)) != NULL) {
        char *at = PyBytes_AS_STRING(answer);
        for (Py_ssize_t i = 0; i < count; i++) {
            memcpy(at, out.data + rows[i].at, (size_t)rows[i].size);
            at += rows[i].size;
        }
    }
    for (Py_ssize_t i = 0; rows != NULL && i < count; i++) Py_XDECREF(rows[i].id_text);
    PyMem_Free(rows);
    PyMem_Free(out.data);
    Py_DECREF(spans);
    if (status == DECLINE) Py_RETURN_NONE;
    return answer;
}

/* What configure takes from feedback.otlp's names, in the order of the tuple it answers. */
#define CONFIG(X)                                                                                                  \
    X(mapped_span_type, "MappedSpan") X(h_as_str, "_as_str") X(h_feature_key, "_feature_key")                      \
    X(h_input_text, "_input_text") X(h_output_text, "_output_text") X(h_trace_cost, "_trace_cost")                 \
    X(h_as_number, "_as_number") X(h_any_bool, "_any_bool") X(h_metadata, "_metadata")                             \
    X(h_flatten_into, "_flatten_into") X(h_count_or_kept, "_count_or_kept") X(h_sum_ints, "_sum_ints")             \
    X(h_clip, "_clip") X(h_not_counted, "_not_counted") X(h_as_decimal, "_as_decimal")                             \
    X(h_json_loads, "_json_loads") X(h_content_text, "_content_text") X(input_message_keys, "_INPUT_MESSAGE_KEYS") \
    X(output_message_keys, "_OUTPUT_MESSAGE_KEYS") X(text_part_types, "_TEXT_PART_TYPES")                          \
    X(model_keys, "_MODEL_KEYS") X(provider_keys, "_PROVIDER_KEYS") X(input_token_keys, "_INPUT_TOKEN_KEYS")       \
    X(output_token_keys, "_OUTPUT_TOKEN_KEYS") X(cached_token_keys, "CACHED_TOKEN_KEYS")                           \
    X(span_cost_keys, "_SPAN_COST_KEYS") X(token_keys, "_TOKEN_KEYS") X(span_field_keys, "_SPAN_FIELD_KEYS")       \
    X(provider_aliases, "_PROVIDER_ALIASES") X(status_names, "_STATUS_NAMES")                                      \
    X(span_kind_names, "_SPAN_KIND_NAMES") X(kind_llm, "_LLM") X(kind_retrieval, "_RETRIEVAL")                     \
    X(kind_tool, "_TOOL") X(kind_other, "_OTHER") X(status_ok, "_TRACE_OK") X(status_error, "_TRACE_ERROR")        \
    X(feature_guessed, "FEATURE_GUESSED") X(root_missing, "ROOT_MISSING")
#define COUNT(variable, name) +1
enum { CONFIG_OBJECTS = 0 CONFIG(COUNT), CONFIG_SIZE = CONFIG_OBJECTS + 4 };
#undef COUNT

/* configure(names) -> config: feedback.otlp's records, helpers and tables, checked, for map(body, config). Each
 * module that hands them over (the shipped one, a test's second copy) maps with its own. */
static PyObject *configure(PyObject *module, PyObject *names) {
    (void)module;
    if (!PyDict_Check(names)) {
        PyErr_SetString(PyExc_TypeError, "configure(names: dict)");
        return NULL;
    }
    if (a_trace_id == NULL) {
#define INTERN(variable, text)                                                                                     \
    if ((variable = PyUnicode_InternFromString(text)) == NULL) return NULL;
        NAMES(INTERN)
#undef INTERN
    }
    PyObject *config = PyTuple_New(CONFIG_SIZE);
    if (config == NULL) return NULL;
    Py_ssize_t at = 0;
#define TAKE(variable, name)                                                                                       \
    {                                                                                                              \
        PyObject *value = PyDict_GetItemString(names, name);                                                       \
        if (value == NULL) {                                                                                       \
            Py_DECREF(config);                                                                                     \
            return PyErr_Format(PyExc_KeyError, "configure: %s is missing", name);                                \
        }                                                                                                          \
        PyTuple_SET_ITEM(config, at++, Py_NewRef(value));                                                          \
    }
    CONFIG(TAKE)
#undef TAKE
    PyObject *fields = PyDict_GetItemString(names, "_STRING_FIELDS");
    PyObject *listed = fields && PyDict_Check(fields) ? PyList_New(0) : NULL;
    Py_ssize_t next = 0;
    PyObject *name, *keys;
    while (listed && PyDict_Next(fields, &next, &name, &keys)) {
        PyObject *field = PyTuple_Check(keys) && PyTuple_GET_SIZE(keys) == 2
                              ? PyTuple_Pack(3, name, PyTuple_GET_ITEM(keys, 0), PyTuple_GET_ITEM(keys, 1))
                              : NULL;
        if (field == NULL || PyList_Append(listed, field) != 0) Py_CLEAR(listed);
        Py_XDECREF(field);
    }
    if (listed == NULL) {
        Py_DECREF(config);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "configure: _STRING_FIELDS is missing or malformed");
        return NULL;
    }
    PyTuple_SET_ITEM(config, at++, listed);
    const char *limits[3] = {"MAX_TEXT_CHARS", "MAX_SPAN_NAME_CHARS", "MAX_FEATURE_CHARS"};
    for (int i = 0; i < 3; i++) {
        PyObject *limit = PyDict_GetItemString(names, limits[i]);
        if (limit == NULL || !PyLong_Check(limit)) {
            Py_DECREF(config);
            return PyErr_Format(PyExc_KeyError, "configure: %s is missing", limits[i]);
        }
        PyTuple_SET_ITEM(config, at++, Py_NewRef(limit));
    }
    return config;
}

/* The configuration map works with: config's objects as this file's names (borrowed: current holds them). */
static PyObject *current;

static int load(PyObject *config) {
    if (config == current) return 0;
    if (!PyTuple_CheckExact(config) || PyTuple_GET_SIZE(config) != CONFIG_SIZE) {
        PyErr_SetString(PyExc_TypeError, "map(body, config): config is what configure() answered");
        return -1;
    }
    Py_ssize_t at = 0;
#define LOAD(variable, name) variable = PyTuple_GET_ITEM(config, at++);
    CONFIG(LOAD)
#undef LOAD
    string_fields = PyTuple_GET_ITEM(config, at++);
    Py_ssize_t *limits[3] = {&max_text, &max_span_name, &max_feature};
    for (int i = 0; i < 3; i++)
        if ((*limits[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(config, at++))) == -1 && PyErr_Occurred()) return -1;
    Py_XSETREF(current, Py_NewRef(config));
    return 0;
}

static PyMethodDef methods[] = {
    {"spans", (PyCFunction)(void (*)(void))spans, METH_FASTCALL,
     "spans(body, span_type): the export's spans as _wire_spans reads them, or None to let it read them."},
    {"map", (PyCFunction)(void (*)(void))map, METH_FASTCALL,
     "map(body, config): otlp_map's answer for a protobuf body, or None to let it map it."},
    {"span_copy", (PyCFunction)(void (*)(void))span_copy, METH_FASTCALL,
     "span_copy(spans, trace_id, limit_us, max_id, encode): the spans as binary COPY rows, or None for the rows path."},
    {"configure", (PyCFunction)configure, METH_O,
     "configure(names) -> config: feedback.otlp's records, helpers and tables, for map."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_otlp_wire", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__otlp_wire(void) { return PyModule_Create(&module); }
