/* framing.py's two byte walks, compiled: where the children of a request, resource or scope lie
 * (``walk``), and which fields of one span or record a hit overlaps (``parts_hit``).
 *
 * Why C: on a request that holds a secret, the pure-Python walk hops over every span before the
 * hit (about 0.65 us a span on the bench VM) and reads every field of the span hit. Each function
 * here does what its Python twin in framing.py does for well-formed input, and answers None for
 * anything else (bytes not framed as expected, a varint past 64 bits, a field number past the
 * table, regions that are not a list of (int, int) tuples, data that is not bytes): the caller then runs the twin, which
 * raises the precise FramingError or gives the answer. Integer arguments must fit a Py_ssize_t
 * (the callers pass offsets into the bytes). Tests run both on the same random and broken bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* A varint at *pos (bounded by size): 1 and its value, or 0 (truncated, or over 64 bits). */
static int
read_varint(const uint8_t *data, Py_ssize_t size, Py_ssize_t *pos, uint64_t *value)
{
    uint64_t result = 0;
    int shift = 0;
    Py_ssize_t p = *pos;
    for (;;) {
        if (p >= size)
            return 0;
        uint8_t byte = data[p++];
        if (shift == 63 && (byte & 0x7E))
            return 0; /* bits past 64: the Python twin decides */
        result |= (uint64_t)(byte & 0x7F) << shift;
        if (byte < 0x80)
            break;
        shift += 7;
        if (shift > 63)
            return 0;
    }
    *pos = p;
    *value = result;
    return 1;
}

/* Skip one field's value after its tag: 1, with *value_start set for a length-delimited field
 * (-1 otherwise), or 0 when the value runs past the bytes or the wire type is unknown. */
static int
skip_value(const uint8_t *data, Py_ssize_t size, Py_ssize_t *pos, unsigned wire_type,
           Py_ssize_t *value_start)
{
    uint64_t skipped;
    *value_start = -1;
    switch (wire_type) {
    case 0:
        return read_varint(data, size, pos, &skipped);
    case 1:
    case 5: {
        Py_ssize_t width = wire_type == 1 ? 8 : 4;
        if (size - *pos < width)
            return 0;
        *pos += width;
        return 1;
    }
    case 2:
        if (!read_varint(data, size, pos, &skipped) || skipped > (uint64_t)(size - *pos))
            return 0;
        *value_start = *pos;
        *pos += (Py_ssize_t)skipped;
        return 1;
    default:
        return 0;
    }
}

/* Byte ranges, copied out of a list of (int, int) tuples. */
typedef struct {
    Py_ssize_t count;
    Py_ssize_t *starts, *ends;
} Regions;

/* 1: ``list`` read into ``out`` (free with regions_free); 0: not such a list (defer);
 * -1: out of memory (an exception is set). */
static int
regions_read(PyObject *list, Regions *out)
{
    out->count = 0;
    out->starts = out->ends = NULL;
    if (!PyList_CheckExact(list))
        return 0;
    Py_ssize_t count = PyList_GET_SIZE(list);
    out->starts = PyMem_New(Py_ssize_t, count ? count : 1);
    out->ends = PyMem_New(Py_ssize_t, count ? count : 1);
    if (out->starts == NULL || out->ends == NULL) {
        PyMem_Free(out->starts);
        PyMem_Free(out->ends);
        out->starts = out->ends = NULL;
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *region = PyList_GET_ITEM(list, i);
        if (!PyTuple_CheckExact(region) || PyTuple_GET_SIZE(region) != 2)
            return 0;
        PyObject *a = PyTuple_GET_ITEM(region, 0), *b = PyTuple_GET_ITEM(region, 1);
        if (!PyLong_CheckExact(a) || !PyLong_CheckExact(b))
            return 0;
        Py_ssize_t start = PyLong_AsSsize_t(a);
        if (start == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        Py_ssize_t end = PyLong_AsSsize_t(b);
        if (end == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        out->starts[i] = start;
        out->ends[i] = end;
        out->count = i + 1;
    }
    return 1;
}

static void
regions_free(Regions *regions)
{
    PyMem_Free(regions->starts);
    PyMem_Free(regions->ends);
}

/* Whether any region meets [start, end] (ends included), as framing._touched. */
static int
regions_touch(const Regions *regions, Py_ssize_t start, Py_ssize_t end)
{
    for (Py_ssize_t i = 0; i < regions->count; i++)
        if (regions->starts[i] <= end && regions->ends[i] >= start)
            return 1;
    return 0;
}

/* Whether any region overlaps (start, end) (ends excluded), as framing._parts_hit_py counts. */
static int
regions_overlap(const Regions *regions, Py_ssize_t start, Py_ssize_t end)
{
    for (Py_ssize_t i = 0; i < regions->count; i++)
        if (regions->starts[i] < end && regions->ends[i] > start)
            return 1;
    return 0;
}

/* How a walk ends: with its answer, deferring to the Python twin, or failing with an exception set. */
typedef enum { ANSWER, DEFER, FAILED } Outcome;

/* The walk's result for ``outcome`` (``made`` is its answer, or dropped), with ``regions`` freed. */
static PyObject *
finish(Outcome outcome, PyObject *made, Regions *regions)
{
    regions_free(regions);
    if (outcome == ANSWER)
        return made;
    Py_XDECREF(made);
    if (outcome == DEFER)
        Py_RETURN_NONE;
    return NULL;
}

PyDoc_STRVAR(walk_doc,
"walk(data, start, end, wanted, stop, regions) -> list[tuple[int, int, int, int]] | None\n\n"
"framing._walk_py on well-formed bytes; None: let it decide.");

static PyObject *
walk(PyObject *module, PyObject *args)
{
    PyObject *bytes, *regions_obj;
    Py_ssize_t start, end, wanted, stop;
    (void)module;
    if (!PyArg_ParseTuple(args, "OnnnnO", &bytes, &start, &end, &wanted, &stop, &regions_obj))
        return NULL;
    if (!PyBytes_CheckExact(bytes))
        Py_RETURN_NONE; /* other buffers: the twin reads them as it reads them */
    const uint8_t *data = (const uint8_t *)PyBytes_AS_STRING(bytes);
    Py_ssize_t size = PyBytes_GET_SIZE(bytes);
    Regions regions = {0, NULL, NULL};
    int all = regions_obj == Py_None;
    PyObject *out = NULL;
    if (!all) {
        int read = regions_read(regions_obj, &regions);
        if (read < 0)
            goto fail;
        if (read == 0)
            goto defer;
    }
    /* wanted: 1 or 2 (request levels), 6 or 9 (an item's attributes); the twin's one-byte tag
       check holds for fields below 16 only */
    if (start < 0 || end > size || wanted < 1 || wanted > 15)
        goto defer;
    out = PyList_New(0);
    if (out == NULL)
        goto fail;
    Py_ssize_t pos = start, index = 0;
    while (pos < end && pos <= stop) {
        Py_ssize_t length_start, value_start;
        uint64_t tag;
        if (!read_varint(data, size, &pos, &tag))
            goto defer;
        unsigned wire_type = (unsigned)(tag & 7);
        int is_wanted = (tag >> 3) == (uint64_t)wanted;
        if (is_wanted && wire_type != 2)
            goto defer;
        length_start = pos;
        if (!skip_value(data, size, &pos, wire_type, &value_start) || pos > end)
            goto defer;
        if (!is_wanted)
            continue;
        if (all || regions_touch(&regions, value_start, pos)) {
            PyObject *item = Py_BuildValue("(nnnn)", index, length_start, value_start, pos);
            if (item == NULL || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
        index++;
    }
    return finish(ANSWER, out, &regions);
defer:
    return finish(DEFER, out, &regions);
fail:
    return finish(FAILED, out, &regions);
}

#define MAX_FIELD 64 /* field numbers counted in a table; a larger one defers to Python */

/* parts[field].add(index), creating the set on first use; -1 with an exception set on failure. */
static int
parts_add(PyObject *parts, uint64_t field, Py_ssize_t index)
{
    PyObject *key = PyLong_FromUnsignedLongLong(field);
    if (key == NULL)
        return -1;
    PyObject *indexes = PyDict_GetItemWithError(parts, key); /* borrowed */
    if (indexes == NULL) {
        if (PyErr_Occurred() || (indexes = PySet_New(NULL)) == NULL) {
            Py_DECREF(key);
            return -1;
        }
        int stored = PyDict_SetItem(parts, key, indexes);
        Py_DECREF(indexes); /* the dict holds it, or it is gone */
        if (stored < 0) {
            Py_DECREF(key);
            return -1;
        }
    }
    Py_DECREF(key);
    PyObject *number = PyLong_FromSsize_t(index);
    if (number == NULL)
        return -1;
    int added = PySet_Add(indexes, number);
    Py_DECREF(number);
    return added;
}

PyDoc_STRVAR(parts_hit_doc,
"parts_hit(data, start, end, regions) -> dict[int, set[int]] | None\n\n"
"framing._parts_hit_py on well-formed bytes; None: let it decide.");

static PyObject *
parts_hit(PyObject *module, PyObject *args)
{
    PyObject *bytes, *regions_obj;
    Py_ssize_t start, end;
    (void)module;
    if (!PyArg_ParseTuple(args, "OnnO", &bytes, &start, &end, &regions_obj))
        return NULL;
    if (!PyBytes_CheckExact(bytes))
        Py_RETURN_NONE;
    const uint8_t *data = (const uint8_t *)PyBytes_AS_STRING(bytes);
    Py_ssize_t size = PyBytes_GET_SIZE(bytes);
    Regions regions = {0, NULL, NULL};
    PyObject *parts = NULL;
    Py_ssize_t seen[MAX_FIELD + 1] = {0};
    int read = regions_read(regions_obj, &regions);
    if (read < 0)
        goto fail;
    if (read == 0 || start < 0 || end > size)
        goto defer;
    parts = PyDict_New();
    if (parts == NULL)
        goto fail;
    Py_ssize_t pos = start;
    while (pos < end) {
        Py_ssize_t counted_from = pos, value_start;
        uint64_t tag;
        if (!read_varint(data, size, &pos, &tag) || (tag >> 3) > MAX_FIELD)
            goto defer;
        uint64_t field = tag >> 3;
        if (!skip_value(data, size, &pos, (unsigned)(tag & 7), &value_start))
            goto defer;
        if ((tag & 7) != 2)
            continue; /* protobuf keeps it apart, as an unknown field: no index (see _parts_hit_py) */
        counted_from = value_start; /* a region must reach the value, not only its tag */
        Py_ssize_t index = seen[field]++;
        if (regions_overlap(&regions, counted_from, pos) && parts_add(parts, field, index) < 0)
            goto fail;
    }
    if (pos != end)
        goto defer;
    return finish(ANSWER, parts, &regions);
defer:
    return finish(DEFER, parts, &regions);
fail:
    return finish(FAILED, parts, &regions);
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, walk_doc},
    {"parts_hit", parts_hit, METH_VARARGS, parts_hit_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_framing",
    "framing.py's byte walks, compiled (None: the Python twin decides).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__framing(void)
{
    return PyModule_Create(&module_def);
}
