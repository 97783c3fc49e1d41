/* The two byte walks of framing.py, compiled: where the spans of a request lie, and which fields
 * of a span a hit overlaps.
 *
 * Why C: on a request that holds a secret, the pure-Python walk hops over every span before the
 * last hit (about 0.65 us a span on the reference VM, most of a redacted request's cost after the
 * scan). Each function here does exactly what its Python twin in framing.py does for well-formed
 * input, and answers None for anything else (bytes that are not framed as expected, a varint
 * past 64 bits, a field number too large for the table, regions that are not pairs of small
 * ints): the caller then runs the Python twin, which raises the precise FramingError or gives the
 * exact answer. So this module can only be faster, never different; tests run both on the same
 * random and malformed bytes.
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

/* Skip one field's value after its tag; 1 on success, 0: not framed as expected. */
static int
skip_value(const uint8_t *data, Py_ssize_t size, Py_ssize_t *pos, unsigned wire_type,
           Py_ssize_t *value_start)
{
    uint64_t ignored;
    *value_start = -1;
    switch (wire_type) {
    case 0:
        return read_varint(data, size, pos, &ignored);
    case 1:
        *pos += 8;
        return 1;
    case 2: {
        uint64_t length;
        if (!read_varint(data, size, pos, &length))
            return 0;
        if (length > (uint64_t)(size - *pos))
            return 0; /* runs past the bytes, so past its parent too */
        *value_start = *pos;
        *pos += (Py_ssize_t)length;
        return 1;
    }
    case 5:
        *pos += 4;
        return 1;
    default:
        return 0;
    }
}

static PyObject *
triple(Py_ssize_t a, Py_ssize_t b, Py_ssize_t c)
{
    return Py_BuildValue("(nnn)", a, b, c);
}

#define MAX_REGIONS 256

/* A list of (start, end) int pairs into the arrays: its length, or -1 (not such a list: defer). */
static Py_ssize_t
parse_regions(PyObject *list, Py_ssize_t *starts, Py_ssize_t *ends)
{
    if (!PyList_CheckExact(list))
        return -1;
    Py_ssize_t count = PyList_GET_SIZE(list);
    if (count > MAX_REGIONS)
        return -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *region = PyList_GET_ITEM(list, i);
        if (!PyTuple_CheckExact(region) || PyTuple_GET_SIZE(region) != 2)
            return -1;
        PyObject *a = PyTuple_GET_ITEM(region, 0), *b = PyTuple_GET_ITEM(region, 1);
        if (!PyLong_CheckExact(a) || !PyLong_CheckExact(b))
            return -1;
        starts[i] = PyLong_AsSsize_t(a);
        ends[i] = PyLong_AsSsize_t(b);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
    }
    return count;
}

PyDoc_STRVAR(children_doc,
"children(data, start, end, wanted, stop) -> list[tuple[int, int, int]] | None\n\n"
"framing._children_py on well-formed bytes; None: let it decide.");

static PyObject *
children(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end, wanted, stop;
    if (!PyArg_ParseTuple(args, "y*nnnn", &view, &start, &end, &wanted, &stop))
        return NULL;
    const uint8_t *data = view.buf;
    Py_ssize_t size = view.len;
    PyObject *out = NULL;
    if (start < 0 || end > size || wanted <= 0 || wanted > (1 << 28))
        goto defer;
    out = PyList_New(0);
    if (out == NULL)
        goto fail;
    Py_ssize_t pos = start;
    while (pos < end && pos <= stop) {
        Py_ssize_t length_start, value_start;
        uint64_t tag;
        if (!read_varint(data, size, &pos, &tag))
            goto defer;
        unsigned wire_type = (unsigned)(tag & 7);
        uint64_t field = tag >> 3;
        if (field == (uint64_t)wanted && wire_type != 2)
            goto defer;
        length_start = pos;
        if (!skip_value(data, size, &pos, wire_type, &value_start))
            goto defer;
        if (pos > end)
            goto defer;
        if (field == (uint64_t)wanted) {
            PyObject *item = triple(length_start, value_start, pos);
            if (item == NULL || PyList_Append(out, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
        }
    }
    PyBuffer_Release(&view);
    return out;
defer:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

PyDoc_STRVAR(children_hit_doc,
"children_hit(data, start, end, wanted, stop, regions) -> list[tuple[int, int, int, int]] | None\n\n"
"framing._children_hit_py on well-formed bytes; None: let it decide.");

static PyObject *
children_hit(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end, wanted, stop;
    PyObject *regions_obj;
    if (!PyArg_ParseTuple(args, "y*nnnnO", &view, &start, &end, &wanted, &stop, &regions_obj))
        return NULL;
    const uint8_t *data = view.buf;
    Py_ssize_t size = view.len;
    Py_ssize_t region_start[MAX_REGIONS], region_end[MAX_REGIONS];
    PyObject *out = NULL;
    Py_ssize_t count = parse_regions(regions_obj, region_start, region_end);
    if (count < 0 || start < 0 || end > size || wanted <= 0 || wanted > (1 << 28))
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
        uint64_t field = tag >> 3;
        if (field == (uint64_t)wanted && wire_type != 2)
            goto defer;
        length_start = pos;
        if (!skip_value(data, size, &pos, wire_type, &value_start))
            goto defer;
        if (pos > end)
            goto defer;
        if (field != (uint64_t)wanted)
            continue;
        for (Py_ssize_t i = 0; i < count; i++) {
            Py_ssize_t a = region_start[i], b = region_end[i];
            if (a <= pos && b >= value_start) { /* touches: as framing._touched, ends included */
                PyObject *item = Py_BuildValue("(nnnn)", index, length_start, value_start, pos);
                if (item == NULL || PyList_Append(out, item) < 0) {
                    Py_XDECREF(item);
                    goto fail;
                }
                Py_DECREF(item);
                break;
            }
        }
        index++;
    }
    PyBuffer_Release(&view);
    return out;
defer:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&view);
    return NULL;
}

#define MAX_FIELD 64   /* field numbers counted in a table; a larger one defers to Python */

PyDoc_STRVAR(parts_hit_doc,
"parts_hit(data, start, end, regions) -> dict[int, set[int]] | None\n\n"
"framing._parts_hit_py on well-formed bytes; None: let it decide.");

static PyObject *
parts_hit(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t start, end;
    PyObject *regions_obj;
    if (!PyArg_ParseTuple(args, "y*nnO", &view, &start, &end, &regions_obj))
        return NULL;
    const uint8_t *data = view.buf;
    Py_ssize_t size = view.len;
    PyObject *parts = NULL;
    Py_ssize_t region_start[MAX_REGIONS], region_end[MAX_REGIONS];
    Py_ssize_t seen[MAX_FIELD + 1] = {0};
    if (start < 0 || end > size)
        goto defer;
    Py_ssize_t count = parse_regions(regions_obj, region_start, region_end);
    if (count < 0)
        goto defer;
    parts = PyDict_New();
    if (parts == NULL)
        goto fail;
    Py_ssize_t pos = start;
    while (pos < end) {
        Py_ssize_t counted_from = pos, value_start;
        uint64_t tag;
        if (!read_varint(data, size, &pos, &tag))
            goto defer;
        uint64_t field = tag >> 3;
        if (field > MAX_FIELD)
            goto defer;
        if (!skip_value(data, size, &pos, (unsigned)(tag & 7), &value_start))
            goto defer;
        if (pos > size)
            goto defer; /* (the Python twin raises on the next read) */
        if (value_start >= 0)
            counted_from = value_start;
        Py_ssize_t index = seen[field]++;
        for (Py_ssize_t i = 0; i < count; i++) {
            if (region_start[i] < pos && region_end[i] > counted_from) {
                PyObject *key = PyLong_FromUnsignedLongLong(field);
                PyObject *indexes = key ? PyDict_GetItemWithError(parts, key) : NULL;
                if (key == NULL || (indexes == NULL && PyErr_Occurred())) {
                    Py_XDECREF(key);
                    goto fail;
                }
                if (indexes == NULL) {
                    indexes = PySet_New(NULL);
                    if (indexes == NULL || PyDict_SetItem(parts, key, indexes) < 0) {
                        Py_XDECREF(indexes);
                        Py_DECREF(key);
                        goto fail;
                    }
                    Py_DECREF(indexes); /* the dict holds it */
                }
                Py_DECREF(key);
                PyObject *number = PyLong_FromSsize_t(index);
                if (number == NULL || PySet_Add(indexes, number) < 0) {
                    Py_XDECREF(number);
                    goto fail;
                }
                Py_DECREF(number);
                break;
            }
        }
    }
    if (pos != end)
        goto defer;
    PyBuffer_Release(&view);
    return parts;
defer:
    Py_XDECREF(parts);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(parts);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"children", children, METH_VARARGS, children_doc},
    {"children_hit", children_hit, METH_VARARGS, children_hit_doc},
    {"parts_hit", parts_hit, METH_VARARGS, parts_hit_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_framing",
    "framing.py's byte walks, compiled (None: the Python twin decides).", -1, methods,
};

PyMODINIT_FUNC
PyInit__framing(void)
{
    return PyModule_Create(&module_def);
}
