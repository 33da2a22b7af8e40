/*
 * hlgateway.server._delivery: the per-client delivery loop's common case in C.
 *
 * The same three things as delivery.py, which is the reference: the C versions
 * take the common case themselves and hand every other case to the Python
 * methods, so behaviour does not depend on which one runs.
 *
 * - OutboxCore: the fields of an Outbox that the loops read and write, as C
 *   fields (Python code sees them as ordinary attributes).
 * - publish(members, frame): Hub.publish's loop. For an outbox of the
 *   registered type that is open, has nothing queued and stays under its byte
 *   bound, the frame is queued and the outbox marked for the loop turn's flush
 *   here; any other subscriber gets its Python `deliver(frame)`.
 * - flush_all(outboxes): FlushScheduler's loop. For an outbox holding exactly
 *   one frame, open, not blocked or replaying, on a plain TCP transport
 *   (`_fd` >= 0) that is not closing and has nothing buffered, the frame's bytes
 *   for the client's compression setting are sent with send(2) here, exactly
 *   what the transport's write() does first when its buffer is empty; whatever
 *   the socket does not take (or an error) goes to transport.write(), so the
 *   transport buffers it or fails the connection as it always does. Any other
 *   outbox gets its Python `flush()`.
 *
 * The outbox's byte count and the shared OutboxStats.queued_bytes change
 * exactly as in Python (the shared counter once per call, by the sum).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef struct {
    PyObject_HEAD
    PyObject *frames;        /* None, one Frame, or a list (the queue) */
    Py_ssize_t bytes;        /* payload bytes queued */
    Py_ssize_t max_bytes;    /* the bound */
    Py_ssize_t replays;      /* replays queued */
    int wbits;               /* permessage-deflate window, 0: none */
    int fd;                  /* the socket, when writing to it directly is allowed; -1 */
    PyObject *retry;         /* the retry timer while blocked, or None */
    PyObject *blocked_since; /* when the transport filled up, or None */
    PyObject *transport;
    PyObject *scheduler;
    PyObject *stats;
    PyObject *closing;
} OutboxCore;

static PyTypeObject *outbox_type;    /* the registered Outbox: the only type taken here */
static PyTypeObject *scheduler_type; /* the registered FlushScheduler: its `dirty` is filled here */

/* What the loops took themselves (delivered, written) and what they handed back to Python. */
static unsigned long long n_delivered, n_written, n_handed_back;

static PyObject *s_open, *s_payload, *s_raw, *s_for_deflate, *s_deliver, *s_flush, *s_mark,
    *s_dirty, *s_queued_bytes, *s_is_closing, *s_get_write_buffer_size, *s_write;

/* ---------------------------------------------------------------- OutboxCore */

static int core_clear(OutboxCore *self) {
    Py_CLEAR(self->frames);
    Py_CLEAR(self->retry);
    Py_CLEAR(self->blocked_since);
    Py_CLEAR(self->transport);
    Py_CLEAR(self->scheduler);
    Py_CLEAR(self->stats);
    Py_CLEAR(self->closing);
    return 0;
}

/* A static base type: a heap subclass's traverse visits its type, and its dealloc releases it. */
static int core_traverse(OutboxCore *self, visitproc visit, void *arg) {
    Py_VISIT(self->frames);
    Py_VISIT(self->retry);
    Py_VISIT(self->blocked_since);
    Py_VISIT(self->transport);
    Py_VISIT(self->scheduler);
    Py_VISIT(self->stats);
    Py_VISIT(self->closing);
    return 0;
}

static void core_dealloc(OutboxCore *self) {
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *core_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    (void)args;
    (void)kwds;
    OutboxCore *self = (OutboxCore *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    PyObject **objects[] = {&self->frames, &self->retry, &self->blocked_since, &self->transport,
                            &self->scheduler, &self->stats, &self->closing};
    for (size_t i = 0; i < sizeof objects / sizeof objects[0]; i++) *objects[i] = Py_NewRef(Py_None);
    self->fd = -1;
    return (PyObject *)self;
}

/* Object fields are never NULL (None instead): T_OBJECT reads them as they are. Deleting one
   would make it NULL, which the loops below treat like None. */
static PyMemberDef core_members[] = {
    {"_frames", T_OBJECT, offsetof(OutboxCore, frames), 0, NULL},
    {"_bytes", T_PYSSIZET, offsetof(OutboxCore, bytes), 0, NULL},
    {"_max_bytes", T_PYSSIZET, offsetof(OutboxCore, max_bytes), 0, NULL},
    {"_replays", T_PYSSIZET, offsetof(OutboxCore, replays), 0, NULL},
    {"_wbits", T_INT, offsetof(OutboxCore, wbits), 0, NULL},
    {"_fd", T_INT, offsetof(OutboxCore, fd), 0, NULL},
    {"_retry", T_OBJECT, offsetof(OutboxCore, retry), 0, NULL},
    {"_blocked_since", T_OBJECT, offsetof(OutboxCore, blocked_since), 0, NULL},
    {"_transport", T_OBJECT, offsetof(OutboxCore, transport), 0, NULL},
    {"_scheduler", T_OBJECT, offsetof(OutboxCore, scheduler), 0, NULL},
    {"_stats", T_OBJECT, offsetof(OutboxCore, stats), 0, NULL},
    {"closing", T_OBJECT, offsetof(OutboxCore, closing), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject OutboxCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "hlgateway.server._delivery.OutboxCore",
    .tp_basicsize = sizeof(OutboxCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fields of an Outbox that the delivery loops read and write.",
    .tp_new = core_new,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_members = core_members,
};

/* ---------------------------------------------------------------- helpers */

/* `obj.open is True`: 1, 0, or -1 with an exception set. */
static int is_open(PyObject *closing) {
    PyObject *value = PyObject_GetAttr(closing, s_open);
    if (value == NULL) return -1;
    int open = PyObject_IsTrue(value);
    Py_DECREF(value);
    return open;
}

/* The OutboxStats.queued_bytes of several outboxes, changed once per stats object. */
typedef struct {
    PyObject *stats; /* borrowed: the outboxes hold it */
    Py_ssize_t delta;
} stats_sum_t;

static int stats_apply(stats_sum_t *sum) {
    if (sum->stats == NULL || sum->delta == 0) {
        sum->delta = 0;
        return 0;
    }
    PyObject *old = PyObject_GetAttr(sum->stats, s_queued_bytes);
    if (old == NULL) return -1;
    PyObject *delta = PyLong_FromSsize_t(sum->delta);
    PyObject *value = delta ? PyNumber_Add(old, delta) : NULL;
    Py_DECREF(old);
    Py_XDECREF(delta);
    if (value == NULL) return -1;
    int rc = PyObject_SetAttr(sum->stats, s_queued_bytes, value);
    Py_DECREF(value);
    sum->delta = 0;
    return rc;
}

/* After an error: keep the count true for what was done, and raise what was raised. */
static PyObject *stats_apply_raising(stats_sum_t *sum) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (stats_apply(sum) < 0) PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    return NULL;
}

static int stats_add(stats_sum_t *sum, PyObject *stats, Py_ssize_t delta) {
    if (stats != sum->stats) {
        if (stats_apply(sum) < 0) return -1;
        sum->stats = stats;
    }
    sum->delta += delta;
    return 0;
}

/* ---------------------------------------------------------------- publish */

PyDoc_STRVAR(publish_doc,
             "publish(members, frame) -> int\n\n"
             "Give `frame` to every subscriber in the dict `members` (in its order); returns "
             "len(members).");

static PyObject *publish(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "publish(members: dict, frame)");
        return NULL;
    }
    PyObject *members = args[0], *frame = args[1];
    /* A copy, as `list(members)`: a subscriber's deliver() may change the dict. */
    PyObject *subscribers = PyDict_Keys(members);
    if (subscribers == NULL) return NULL;
    Py_ssize_t size = -1; /* len(frame.payload), read once for everyone */
    PyObject *scheduler = NULL, *dirty = NULL; /* the registered scheduler's `dirty`, once marked */
    stats_sum_t sum = {NULL, 0};
    int failed = 0;
    Py_ssize_t n = PyList_GET_SIZE(subscribers);
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        PyObject *sub = PyList_GET_ITEM(subscribers, i);
        if (outbox_type != NULL && Py_TYPE(sub) == outbox_type) {
            OutboxCore *o = (OutboxCore *)sub;
            if (size < 0) {
                PyObject *payload = PyObject_GetAttr(frame, s_payload);
                if (payload == NULL) {
                    failed = 1;
                    break;
                }
                size = PyObject_Size(payload);
                Py_DECREF(payload);
                if (size < 0) {
                    failed = 1;
                    break;
                }
            }
            int open = (o->frames == Py_None && o->replays == 0 && o->bytes + size <= o->max_bytes)
                           ? is_open(o->closing)
                           : 0;
            if (open < 0) {
                failed = 1;
                break;
            }
            if (open) {
                n_delivered++;
                Py_SETREF(o->frames, Py_NewRef(frame));
                o->bytes += size;
                if (stats_add(&sum, o->stats, size) < 0) {
                    failed = 1;
                    break;
                }
                if (o->scheduler == scheduler && dirty != NULL) {
                    if (PyDict_SetItem(dirty, sub, Py_None) < 0) failed = 1;
                    continue;
                }
                /* The first outbox of this scheduler: mark() also schedules the flush. */
                PyObject *r = PyObject_CallMethodOneArg(o->scheduler, s_mark, sub);
                if (r == NULL) {
                    failed = 1;
                    break;
                }
                Py_DECREF(r);
                Py_CLEAR(dirty);
                scheduler = o->scheduler;
                if (scheduler_type != NULL && Py_TYPE(scheduler) == scheduler_type) {
                    dirty = PyObject_GetAttr(scheduler, s_dirty);
                    if (dirty == NULL) {
                        failed = 1;
                    } else if (!PyDict_CheckExact(dirty)) {
                        Py_CLEAR(dirty);
                    }
                }
                continue;
            }
        }
        /* Anything else: the subscriber's own deliver(). It may mark, flush or close. */
        n_handed_back++;
        PyObject *r = PyObject_CallMethodOneArg(sub, s_deliver, frame);
        if (r == NULL) {
            failed = 1;
            break;
        }
        Py_DECREF(r);
        Py_CLEAR(dirty);
        scheduler = NULL;
    }
    Py_XDECREF(dirty);
    Py_DECREF(subscribers);
    if (failed) return stats_apply_raising(&sum);
    if (stats_apply(&sum) < 0) return NULL;
    return PyLong_FromSsize_t(PyDict_GET_SIZE(members));
}

/* ---------------------------------------------------------------- flush_all */

/* The frame's bytes for a window size, remembered for the next outbox (the same frame, as a
   rule: one broadcast). Returns a new reference. */
typedef struct {
    PyObject *frame;
    int wbits;
    PyObject *data;
} frame_memo_t;

static void memo_clear(frame_memo_t *memo) {
    Py_CLEAR(memo->frame);
    Py_CLEAR(memo->data);
}

static PyObject *frame_bytes(frame_memo_t *memo, PyObject *frame, int wbits) {
    if (memo->data != NULL && memo->frame == frame && memo->wbits == wbits) return Py_NewRef(memo->data);
    PyObject *data;
    if (wbits) {
        PyObject *w = PyLong_FromLong(wbits);
        if (w == NULL) return NULL;
        data = PyObject_CallMethodOneArg(frame, s_for_deflate, w);
        Py_DECREF(w);
    } else {
        data = PyObject_GetAttr(frame, s_raw);
    }
    if (data == NULL) return NULL;
    if (!PyBytes_Check(data)) {
        Py_DECREF(data);
        PyErr_SetString(PyExc_TypeError, "a frame's bytes must be bytes");
        return NULL;
    }
    Py_XSETREF(memo->data, Py_NewRef(data));
    Py_XSETREF(memo->frame, Py_NewRef(frame));
    memo->wbits = wbits;
    return data;
}

/* 1: the transport is open with nothing buffered; 0: not; -1: error. */
static int transport_idle(PyObject *transport) {
    PyObject *r = PyObject_CallMethodNoArgs(transport, s_is_closing);
    if (r == NULL) return -1;
    int closing = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (closing != 0) return closing < 0 ? -1 : 0;
    r = PyObject_CallMethodNoArgs(transport, s_get_write_buffer_size);
    if (r == NULL) return -1;
    Py_ssize_t buffered = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    if (buffered < 0 && PyErr_Occurred()) return -1;
    return buffered == 0;
}

/* Write one frame's bytes: send(2) what the socket takes, the rest through the transport. */
static int write_frame(OutboxCore *o, PyObject *data) {
    const char *p = PyBytes_AS_STRING(data);
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    ssize_t sent;
    do {
        sent = send(o->fd, p, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent == len) return 0;
    /* The rest, or everything after an error: the transport buffers it (EAGAIN), or meets the
       error itself and fails the connection as it would have on its own first write. */
    PyObject *rest;
    if (sent <= 0) {
        rest = Py_NewRef(data);
    } else {
        rest = PyBytes_FromStringAndSize(p + sent, len - sent);
        if (rest == NULL) return -1;
    }
    PyObject *r = PyObject_CallMethodOneArg(o->transport, s_write, rest);
    Py_DECREF(rest);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

PyDoc_STRVAR(flush_all_doc,
             "flush_all(outboxes) -> None\n\n"
             "Flush every outbox of the iterable `outboxes` (a dict: its keys), in order.");

static PyObject *flush_all(PyObject *module, PyObject *outboxes) {
    (void)module;
    PyObject *items = PySequence_List(outboxes);
    if (items == NULL) return NULL;
    frame_memo_t memo = {NULL, 0, NULL};
    stats_sum_t sum = {NULL, 0};
    int failed = 0;
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if (outbox_type != NULL && Py_TYPE(item) == outbox_type) {
            OutboxCore *o = (OutboxCore *)item;
            PyObject *frame = o->frames;
            int fast = o->fd >= 0 && o->retry == Py_None && o->blocked_since == Py_None &&
                       o->replays == 0 && frame != NULL && frame != Py_None && !PyList_Check(frame);
            if (fast) fast = is_open(o->closing);
            if (fast > 0) fast = transport_idle(o->transport);
            if (fast > 0 && o->frames != frame) fast = 0; /* changed meanwhile: Python's turn */
            if (fast < 0) {
                failed = 1;
                break;
            }
            if (fast) {
                /* As Python does: the queue is taken, its bytes written, the count zeroed. */
                n_written++;
                frame = o->frames; /* the reference the queue held is now ours */
                o->frames = Py_NewRef(Py_None);
                PyObject *data = frame_bytes(&memo, frame, o->wbits);
                int rc = data != NULL ? write_frame(o, data) : -1;
                Py_XDECREF(data);
                Py_DECREF(frame);
                Py_ssize_t bytes = o->bytes;
                o->bytes = 0;
                if (rc < 0 || stats_add(&sum, o->stats, -bytes) < 0) {
                    failed = 1;
                    break;
                }
                continue;
            }
        }
        n_handed_back++;
        PyObject *r = PyObject_CallMethodNoArgs(item, s_flush);
        if (r == NULL) {
            failed = 1;
            break;
        }
        Py_DECREF(r);
    }
    memo_clear(&memo);
    Py_DECREF(items);
    if (failed) return stats_apply_raising(&sum);
    if (stats_apply(&sum) < 0) return NULL;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- register */

PyDoc_STRVAR(register_doc,
             "register(outbox_type, scheduler_type) -> None\n\n"
             "The Outbox class (a subclass of OutboxCore) whose common case the loops take "
             "here, and the FlushScheduler class whose `dirty` dict they fill. Instances of "
             "other classes (subclasses included) always get their Python methods.");

static PyObject *register_types(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyType_Check(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "register(outbox_type, scheduler_type)");
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)args[0], &OutboxCoreType)) {
        PyErr_SetString(PyExc_TypeError, "the outbox type must subclass OutboxCore");
        return NULL;
    }
    Py_XSETREF(outbox_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(scheduler_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(counters_doc,
             "counters() -> dict\n\n"
             "Since the module was loaded: frames the loops queued (`delivered`) and wrote "
             "(`written`) themselves, and calls handed to the Python methods (`handed_back`).");

static PyObject *counters(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return Py_BuildValue("{sKsKsK}", "delivered", n_delivered, "written", n_written, "handed_back",
                         n_handed_back);
}

/* ---------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"publish", (PyCFunction)(void (*)(void))publish, METH_FASTCALL, publish_doc},
    {"flush_all", (PyCFunction)flush_all, METH_O, flush_all_doc},
    {"register", (PyCFunction)(void (*)(void))register_types, METH_FASTCALL, register_doc},
    {"counters", counters, METH_NOARGS, counters_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "hlgateway.server._delivery",
    .m_doc = "The per-client delivery loop's common case in C (see delivery.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__delivery(void) {
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_open, "open"},
        {&s_payload, "payload"},
        {&s_raw, "raw"},
        {&s_for_deflate, "for_deflate"},
        {&s_deliver, "deliver"},
        {&s_flush, "flush"},
        {&s_mark, "mark"},
        {&s_dirty, "dirty"},
        {&s_queued_bytes, "queued_bytes"},
        {&s_is_closing, "is_closing"},
        {&s_get_write_buffer_size, "get_write_buffer_size"},
        {&s_write, "write"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL) return NULL;
    }
    if (PyType_Ready(&OutboxCoreType) < 0) return NULL;
    PyObject *module = PyModule_Create(&moduledef);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "OutboxCore", (PyObject *)&OutboxCoreType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
