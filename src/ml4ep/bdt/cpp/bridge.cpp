// CPython extension around @NAME@.hpp: predict(x, y, n, threads), x float32 or float64, y float64, both
// C-contiguous buffers whose sizes the Python caller has checked against n.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "@NAME@.hpp"

namespace {
PyObject* predict(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "predict(x, y, n, threads)");
    return nullptr;
  }
  const long long n = PyLong_AsLongLong(args[2]);
  const long threads = PyLong_AsLong(args[3]);
  if (PyErr_Occurred()) return nullptr;
  Py_buffer x, y;
  if (PyObject_GetBuffer(args[0], &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return nullptr;
  if (PyObject_GetBuffer(args[1], &y, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE | PyBUF_FORMAT) < 0) {
    PyBuffer_Release(&x);
    return nullptr;
  }
  const bool f32 = x.itemsize == 4 && x.format && x.format[0] == 'f' && !x.format[1];
  const bool f64 = x.itemsize == 8 && x.format && x.format[0] == 'd' && !x.format[1];
  const bool ok = (f32 || f64) && y.itemsize == 8 &&
                  x.len >= Py_ssize_t(n) * @NAME@::N_FEATURES * x.itemsize &&
                  y.len >= Py_ssize_t(n) * @NAME@::OUTPUTS_PER_ROW * 8;
  if (ok) {
    Py_BEGIN_ALLOW_THREADS
    if (f32) {
      @NAME@::predict(static_cast<const float*>(x.buf), n, static_cast<double*>(y.buf), int(threads));
    } else {
      @NAME@::predict(static_cast<const double*>(x.buf), n, static_cast<double*>(y.buf), int(threads));
    }
    Py_END_ALLOW_THREADS
  }
  PyBuffer_Release(&x);
  PyBuffer_Release(&y);
  if (!ok) {
    PyErr_SetString(PyExc_ValueError, "predict: x must be float32 or float64 and x, y large enough for n rows");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"predict", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(predict)), METH_FASTCALL,
     "predict(x, y, n, threads)"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "@MODULE@", "ml4ep.bdt forest @NAME@", -1, methods,
                          nullptr, nullptr, nullptr, nullptr};
}  // namespace

PyMODINIT_FUNC PyInit_@MODULE@(void) {
  PyObject* m = PyModule_Create(&module_def);
  if (m && PyModule_AddIntConstant(m, "OUTPUTS_PER_ROW", @NAME@::OUTPUTS_PER_ROW) < 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
