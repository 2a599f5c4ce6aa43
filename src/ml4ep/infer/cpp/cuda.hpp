// ---- ml4ep CUDA runtime (after cpp/prelude.hpp, which defines ML4EP_HD): shared by every model generated for device="cuda" and "cuda-host" ----
// One source, two builds. Under nvcc (__CUDACC__) the kernels run on the GPU: ml4ep_cu::launch starts a
// grid-stride kernel over a __host__ __device__ functor, memory is device memory, matrix products go to cuBLAS
// (loaded with dlopen at run time: building needs nvcc only) and Session replays a CUDA graph per set of
// dimensions. Under g++ (cuda-host) the same code runs on the CPU: launch is a loop over the index, memory is
// host memory, and the matrix products go to a column-major stand-in with cuBLAS's signature, so the operand
// mapping the GPU uses is itself tested.
#ifndef ML4EP_CUDA_V1
#define ML4EP_CUDA_V1
#if defined(__CUDACC__)
#include <cuda_runtime.h>
#include <dlfcn.h>
#define ML4EP_ON_GPU 1
#else
#define ML4EP_ON_GPU 0
#endif
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct CUstream_st;  // cudaStream_t is CUstream_st*; the host build never dereferences one

namespace ml4ep_cu {
using stream_t = CUstream_st*;

// ---------------------------------------------------------------------------------------------------------------
// errors
#if ML4EP_ON_GPU
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
#endif

// ---------------------------------------------------------------------------------------------------------------
// kernels: f(i) for every i in [0, n)
#if ML4EP_ON_GPU
constexpr int kThreads = 256;
// (at least 2 blocks per SM: up to 128 registers a thread; without the minimum, ptxas aims at full occupancy and
// spills in the heavier kernels, a direct convolution's accumulators say)
template <class F>
__global__ void __launch_bounds__(kThreads, 2) each_index(int64_t n, F f) {
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) f(i);
}
template <class F>
inline void launch(stream_t s, int64_t n, F f) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t(1) << 20);
  each_index<<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(n, f);
}
#else
template <class F>
inline void launch(stream_t, int64_t n, F f) {
  for (int64_t i = 0; i < n; ++i) f(i);
}
#endif

// ---------------------------------------------------------------------------------------------------------------
// memory: device memory under nvcc, 64-byte aligned host memory in the host build
inline void* alloc(size_t bytes, const char* what) {
  if (bytes == 0) bytes = 1;
#if ML4EP_ON_GPU
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // cudaMalloc's error is not sticky
    throw std::length_error(std::string("cannot allocate ") + std::to_string(bytes) + " bytes of GPU memory for " + what +
                            " (" + cudaGetErrorString(e) + ")");
  }
  return p;
#else
  try {
    return ::operator new(bytes, std::align_val_t(64));
  } catch (const std::bad_alloc&) {
    throw std::length_error(std::string("cannot allocate ") + std::to_string(bytes) + " bytes for " + what);
  }
#endif
}
inline void release(void* p) {
  if (!p) return;
#if ML4EP_ON_GPU
  (void)cudaFree(p);
#else
  ::operator delete(p, std::align_val_t(64));
#endif
}
// device-to-device copy (within the device's memory), in stream order
inline void copy(void* dst, const void* src, size_t bytes, stream_t s) {
  if (bytes == 0 || dst == src) return;
#if ML4EP_ON_GPU
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "device copy");
#else
  (void)s;
  std::memmove(dst, src, bytes);
#endif
}
inline void zero(void* dst, size_t bytes, stream_t s) {
  if (bytes == 0) return;
#if ML4EP_ON_GPU
  check(cudaMemsetAsync(dst, 0, bytes, s), "device memset");
#else
  (void)s;
  std::memset(dst, 0, bytes);
#endif
}

// the workspace: grows when a larger set of dimensions is seen; each growth moves it (the generation counts them)
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() { release(data_); }
  unsigned char* reserve(size_t bytes) {
    if (bytes > capacity_) {
#if ML4EP_ON_GPU
      (void)cudaDeviceSynchronize();  // work queued on the old workspace finishes before it is freed
#endif
      release(data_);
      data_ = nullptr;
      capacity_ = 0;
      data_ = static_cast<unsigned char*>(alloc(bytes, "the workspace"));
      capacity_ = bytes;
      ++generation_;
    }
    return data_;
  }
  uint64_t generation() const { return generation_; }

 private:
  unsigned char* data_ = nullptr;
  size_t capacity_ = 0;
  uint64_t generation_ = 0;
};

// the weights: read by ml4ep_rt::Weights (header and model id checked), then copied to the device once
class DeviceWeights {
 public:
  DeviceWeights(const std::string& path, uint64_t model_id, uint64_t payload_bytes, const char* model_name)
      : host_(path, model_id, payload_bytes, model_name) {
#if ML4EP_ON_GPU
    data_ = static_cast<unsigned char*>(alloc(payload_bytes, "the weights"));
    check(cudaMemcpy(data_, host_.data(), payload_bytes, cudaMemcpyHostToDevice), "copying the weights to the GPU");
#endif
  }
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;
  ~DeviceWeights() {
#if ML4EP_ON_GPU
    release(data_);
#endif
  }
#if ML4EP_ON_GPU
  const unsigned char* data() const { return data_; }
#else
  const unsigned char* data() const { return host_.data(); }
#endif

 private:
  ml4ep_rt::Weights host_;
#if ML4EP_ON_GPU
  unsigned char* data_ = nullptr;
#endif
};

// ---------------------------------------------------------------------------------------------------------------
// matrix products: cuBLAS's column-major SGEMM, called with cuBLAS's own signature in both builds
struct BlasContext;
using blas_handle = BlasContext*;
enum : int { kOpN = 0, kOpT = 1 };  // CUBLAS_OP_N, CUBLAS_OP_T
using sgemm_fn = int (*)(blas_handle, int, int, int, int, int, const float*, const float*, int, const float*, int,
                         const float*, float*, int);
using sgemm_batched_fn = int (*)(blas_handle, int, int, int, int, int, const float*, const float*, int, long long,
                                 const float*, int, long long, const float*, float*, int, long long, int);

#if !ML4EP_ON_GPU
// the host stand-in of cublasSgemm_v2: C = alpha op(A) op(B) + beta C, column-major (X(i, j) = X[i + j * ld]);
// C is not read when beta is 0, as in cuBLAS
inline int host_sgemm(blas_handle, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda,
                      const float* b, int ldb, const float* beta, float* c, int ldc) {
  for (int64_t j = 0; j < n; ++j) {
    float* cj = c + j * int64_t(ldc);
    for (int64_t i = 0; i < m; ++i) cj[i] = *beta == 0.0f ? 0.0f : *beta * cj[i];
    for (int64_t p = 0; p < k; ++p) {
      const float bpj = *alpha * (tb == kOpN ? b[p + j * int64_t(ldb)] : b[j + p * int64_t(ldb)]);
      if (ta == kOpN) {
        const float* ap = a + p * int64_t(lda);
        for (int64_t i = 0; i < m; ++i) cj[i] += ap[i] * bpj;
      } else {
        for (int64_t i = 0; i < m; ++i) cj[i] += a[p + i * int64_t(lda)] * bpj;
      }
    }
  }
  return 0;
}
// the host stand-in of cublasSgemmStridedBatched
inline int host_sgemm_batched(blas_handle h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a,
                              int lda, long long sa, const float* b, int ldb, long long sb, const float* beta,
                              float* c, int ldc, long long sc, int count) {
  for (int64_t q = 0; q < count; ++q) host_sgemm(h, ta, tb, m, n, k, alpha, a + q * sa, lda, b + q * sb, ldb, beta, c + q * sc, ldc);
  return 0;
}
#endif

// the cuBLAS entry points, loaded once per process
struct BlasLibrary {
  int (*create)(blas_handle*) = nullptr;
  int (*destroy)(blas_handle) = nullptr;
  int (*set_stream)(blas_handle, stream_t) = nullptr;
  int (*set_workspace)(blas_handle, void*, size_t) = nullptr;
  sgemm_fn sgemm = nullptr;
  sgemm_batched_fn sgemm_batched = nullptr;

  static const BlasLibrary& get() {
    static const BlasLibrary lib = load();
    return lib;
  }

 private:
  static BlasLibrary load() {
    BlasLibrary l;
#if ML4EP_ON_GPU
    std::string tried;
    void* h = nullptr;
    const char* env = std::getenv("ML4EP_CUBLAS");
    for (const char* name : {env, "libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
      if (!name || !*name) continue;
      h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
      if (h) break;
      tried += std::string(tried.empty() ? "" : ", ") + name;
    }
    if (!h)
      throw std::runtime_error("cannot load cuBLAS (tried " + tried + "): install it (pip install nvidia-cublas, which "
                               "PyTorch's CUDA wheels bring) or set ML4EP_CUBLAS to the library's path");
    auto sym = [h](const char* s) {
      void* p = dlsym(h, s);
      if (!p) throw std::runtime_error(std::string("cuBLAS has no symbol ") + s);
      return p;
    };
    l.create = reinterpret_cast<int (*)(blas_handle*)>(sym("cublasCreate_v2"));
    l.destroy = reinterpret_cast<int (*)(blas_handle)>(sym("cublasDestroy_v2"));
    l.set_stream = reinterpret_cast<int (*)(blas_handle, stream_t)>(sym("cublasSetStream_v2"));
    l.set_workspace = reinterpret_cast<int (*)(blas_handle, void*, size_t)>(sym("cublasSetWorkspace_v2"));
    l.sgemm = reinterpret_cast<sgemm_fn>(sym("cublasSgemm_v2"));
    l.sgemm_batched = reinterpret_cast<sgemm_batched_fn>(sym("cublasSgemmStridedBatched"));
#else
    l.sgemm = host_sgemm;
    l.sgemm_batched = host_sgemm_batched;
#endif
    return l;
  }
};

// one session's cuBLAS handle with its own workspace (so that products can be captured in a CUDA graph)
class Blas {
 public:
  Blas() = default;
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;
  ~Blas() {
#if ML4EP_ON_GPU
    if (handle_) BlasLibrary::get().destroy(handle_);
    release(workspace_);
#endif
  }
  // the handle, bound to stream s
  blas_handle on(stream_t s) {
#if ML4EP_ON_GPU
    const BlasLibrary& l = BlasLibrary::get();
    if (!handle_) {
      if (l.create(&handle_) != 0) throw std::runtime_error("cublasCreate failed");
      workspace_ = alloc(kWorkspace, "cuBLAS's workspace");
      if (l.set_workspace(handle_, workspace_, kWorkspace) != 0) throw std::runtime_error("cublasSetWorkspace failed");
    }
    if (s != stream_) {
      if (l.set_stream(handle_, s) != 0) throw std::runtime_error("cublasSetStream failed");
      stream_ = s;
    }
#else
    (void)s;
#endif
    return handle_;
  }

 private:
  static constexpr size_t kWorkspace = size_t(32) << 20;  // what cuBLAS asks for on Hopper
  blas_handle handle_ = nullptr;
  stream_t stream_ = nullptr;
  void* workspace_ = nullptr;
};

inline void blas_check(int status, const char* what) {
  if (status != 0) throw std::runtime_error(std::string(what) + ": cuBLAS status " + std::to_string(status));
}

// Row-major C[M, N] = alpha op(A)[M, K] op(B)[K, N] + beta C through column-major SGEMM: a row-major matrix is its
// transpose in column-major order, so C^T = op(B)^T op(A)^T: the operands swap places, each keeps its own op, and
// the leading dimensions are the row-major row lengths
inline void gemm(blas_handle h, int64_t M, int64_t N, int64_t K, float alpha, const float* a, bool ta, const float* b,
                 bool tb, float beta, float* c) {
  if (M <= 0 || N <= 0) return;
  blas_check(BlasLibrary::get().sgemm(h, tb ? kOpT : kOpN, ta ? kOpT : kOpN, int(N), int(M), int(K), &alpha, b,
                                      int(tb ? K : N), a, int(ta ? M : K), &beta, c, int(N)),
             "sgemm");
}
// the same over `count` products, operand q at a + q * sa (a stride of 0 repeats an operand)
inline void gemm_batched(blas_handle h, int64_t M, int64_t N, int64_t K, float alpha, const float* a, bool ta,
                         int64_t sa, const float* b, bool tb, int64_t sb, float beta, float* c, int64_t sc,
                         int64_t count) {
  if (M <= 0 || N <= 0 || count <= 0) return;
  blas_check(BlasLibrary::get().sgemm_batched(h, tb ? kOpT : kOpN, ta ? kOpT : kOpN, int(N), int(M), int(K), &alpha, b,
                                              int(tb ? K : N), sb, a, int(ta ? M : K), sa, &beta, c, int(N), sc,
                                              int(count)),
             "sgemm (strided batched)");
}

// ---------------------------------------------------------------------------------------------------------------
// errors found inside kernels (an index out of range, which the CPU code throws): a kernel cannot throw, so it
// reports a code (the first one wins) into a word of device memory and does something safe instead; after each call
// the word is copied to pinned host memory, and Model::infer raises it: at the end of the same call in the host build
// and for calls with host arrays (which wait for the GPU anyway), at the next call otherwise
ML4EP_HD inline void report(int* word, int code) {
#if defined(__CUDA_ARCH__)
  atomicCAS(word, 0, code);
#else
  if (*word == 0) *word = code;
#endif
}

class Status {
 public:
  Status() = default;
  Status(const Status&) = delete;
  Status& operator=(const Status&) = delete;
#if ML4EP_ON_GPU
  ~Status() {
    if (device_) (void)cudaFree(device_);
    if (host_) (void)cudaFreeHost(const_cast<int*>(host_));
  }
  // the device word the kernels report into (allocated on the first call, which runs directly)
  int* device() {
    if (!device_) {
      void* h = nullptr;
      check(cudaMallocHost(&h, sizeof(int)), "cudaMallocHost");
      host_ = static_cast<volatile int*>(h);
      *host_ = 0;
      device_ = static_cast<int*>(alloc(sizeof(int), "the error word"));
      check(cudaMemset(device_, 0, sizeof(int)), "cudaMemset");
    }
    return device_;
  }
  // queued after a call's kernels: the word to the host
  void after(stream_t s) { check(cudaMemcpyAsync(const_cast<int*>(host_), device_, sizeof(int), cudaMemcpyDeviceToHost, s), "error word"); }
  // the code reported by a call that has finished (0: none), cleared
  int take(stream_t s) {
    if (!host_ || *host_ == 0) return 0;
    const int code = *host_;
    *host_ = 0;
    check(cudaMemsetAsync(device_, 0, sizeof(int), s), "cudaMemsetAsync");
    return code;
  }

 private:
  int* device_ = nullptr;
  volatile int* host_ = nullptr;
#else
  int* device() { return &word_; }
  void after(stream_t) {}
  int take(stream_t) {
    const int code = word_;
    word_ = 0;
    return code;
  }

 private:
  int word_ = 0;
#endif
};

// ---------------------------------------------------------------------------------------------------------------
// a session: one thread's workspace, cuBLAS handle, and CUDA graphs (one per set of dimensions, at most
// ML4EP_CUDA_GRAPHS, the least recently used dropped). The first call at a set of dimensions runs the kernels directly and
// captures them; later calls copy their inputs into the graph's buffers, replay it and copy the outputs out.
#ifndef ML4EP_CUDA_GRAPHS
#define ML4EP_CUDA_GRAPHS 8
#endif
// graphs replay calls whose inputs and outputs total at most this many bytes (they are copied into the graph's own
// buffers); larger calls launch their kernels directly, where the launches cost little against the work
#ifndef ML4EP_GRAPH_MAX_IO_BYTES
#define ML4EP_GRAPH_MAX_IO_BYTES (size_t(16) << 20)
#endif

class Session {
 public:
  Arena arena;
  Blas blas;
  Status status;
  Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
#if ML4EP_ON_GPU
  ~Session() {
    for (Graph& g : graphs_) drop(g);
    if (capture_) (void)cudaStreamDestroy(capture_);
  }
#endif

  // run(ins, outs, stream) for the dimensions `key`: replayed from a CUDA graph when one was captured for them
  template <class Run>
  void infer(const int64_t* key, int nkey, const void* const* ins, const size_t* in_bytes, int nin, void* const* outs,
             const size_t* out_bytes, int nout, stream_t stream, Run run) {
#if ML4EP_ON_GPU
    size_t io = 0;
    for (int k = 0; k < nin; ++k) io += in_bytes[k];
    for (int k = 0; k < nout; ++k) io += out_bytes[k];
    if (ML4EP_CUDA_GRAPHS <= 0 || io > ML4EP_GRAPH_MAX_IO_BYTES) {
      run(ins, outs, stream);
      return;
    }
    if (arena.generation() != generation_) {  // the workspace moved: graphs that point into it are stale
      for (Graph& g : graphs_) drop(g);
      graphs_.clear();
      generation_ = arena.generation();
    }
    // (no allocation on this path once a graph exists: the keys are compared in place)
    auto same = [key, nkey](const std::vector<int64_t>& k) { return k.size() == size_t(nkey) && std::equal(k.begin(), k.end(), key); };
    Graph* g = nullptr;
    for (Graph& c : graphs_)
      if (same(c.key)) g = &c;
    if (!g) {
      // the first call at these dimensions runs directly (the workspace grows, cuBLAS settles: the call's result), then
      // captures its kernels into a graph for the next calls, so that no later call allocates
      run(ins, outs, stream);
      if (arena.generation() != generation_) {
        for (Graph& gr : graphs_) drop(gr);
        graphs_.clear();
        generation_ = arena.generation();
      }
      capture(std::vector<int64_t>(key, key + nkey), in_bytes, nin, out_bytes, nout, run);
      return;
    }
    g->last_use = ++clock_;
    for (int k = 0; k < nin; ++k) copy(g->ins[k], ins[k], in_bytes[k], stream);
    check(cudaGraphLaunch(g->exec, stream), "cudaGraphLaunch");
    for (int k = 0; k < nout; ++k) copy(outs[k], g->outs[k], out_bytes[k], stream);
#else
    (void)key, (void)nkey, (void)in_bytes, (void)nin, (void)out_bytes, (void)nout;
    run(ins, outs, stream);
#endif
  }

  // the CUDA graphs held (0 in the host build)
  size_t graphs() const {
#if ML4EP_ON_GPU
    return graphs_.size();
#else
    return 0;
#endif
  }

 private:
#if ML4EP_ON_GPU
  struct Graph {
    std::vector<int64_t> key;
    cudaGraphExec_t exec = nullptr;
    std::vector<void*> ins, outs;
    uint64_t last_use = 0;
  };
  static void drop(Graph& g) {
    if (g.exec) (void)cudaGraphExecDestroy(g.exec);
    for (void* p : g.ins) release(p);
    for (void* p : g.outs) release(p);
    g.exec = nullptr;
    g.ins.clear();
    g.outs.clear();
  }
  template <class Run>
  Graph* capture(const std::vector<int64_t>& key, const size_t* in_bytes, int nin, const size_t* out_bytes, int nout,
                 Run& run) {
    if (graphs_.size() >= size_t(ML4EP_CUDA_GRAPHS)) {  // the least recently used one goes
      auto lru = std::min_element(graphs_.begin(), graphs_.end(),
                                  [](const Graph& a, const Graph& b) { return a.last_use < b.last_use; });
      drop(*lru);
      graphs_.erase(lru);
    }
    if (!capture_) check(cudaStreamCreateWithFlags(&capture_, cudaStreamNonBlocking), "cudaStreamCreate");
    Graph g;
    g.key = key;
    for (int k = 0; k < nin; ++k) g.ins.push_back(alloc(in_bytes[k], "a graph's input"));
    for (int k = 0; k < nout; ++k) g.outs.push_back(alloc(out_bytes[k], "a graph's output"));
    cudaGraph_t graph = nullptr;
    check(cudaStreamBeginCapture(capture_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      run(const_cast<const void* const*>(g.ins.data()), g.outs.data(), capture_);
    } catch (...) {
      (void)cudaStreamEndCapture(capture_, &graph);
      if (graph) (void)cudaGraphDestroy(graph);
      drop(g);
      throw;
    }
    const cudaError_t e = cudaStreamEndCapture(capture_, &graph);
    if (e != cudaSuccess) {
      drop(g);
      check(e, "cudaStreamEndCapture");
    }
    const cudaError_t i = cudaGraphInstantiate(&g.exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    if (i != cudaSuccess) {
      drop(g);
      check(i, "cudaGraphInstantiate");
    }
    graphs_.push_back(std::move(g));
    return &graphs_.back();
  }
  std::vector<Graph> graphs_;
  stream_t capture_ = nullptr;
  uint64_t clock_ = 0, generation_ = 0;
#endif
};

// the device the session's weights live on; calls run there
inline int current_device() {
#if ML4EP_ON_GPU
  int d = 0;
  check(cudaGetDevice(&d), "cudaGetDevice");
  return d;
#else
  return 0;
#endif
}
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
#if ML4EP_ON_GPU
    check(cudaGetDevice(&old_), "cudaGetDevice");
    if (old_ != device) check(cudaSetDevice(device), "cudaSetDevice");
    device_ = device;
#else
    (void)device;
#endif
  }
  ~DeviceGuard() {
#if ML4EP_ON_GPU
    if (old_ != device_) (void)cudaSetDevice(old_);
#endif
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int old_ = 0, device_ = 0;
};

// errors of the kernels launched so far (launch configuration; faults inside kernels surface at the next sync)
inline void launched(const char* model) {
#if ML4EP_ON_GPU
  check(cudaGetLastError(), model);
#else
  (void)model;
#endif
}

// host staging for calls with host arrays (NumPy): device buffers grown to the largest call, copied in and out
class Staging {
 public:
  Staging() = default;
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  ~Staging() {
    for (auto& b : bufs_) release(b.first);
  }
  // device buffer k of at least `bytes`
  void* buffer(size_t k, size_t bytes) {
    if (bufs_.size() <= k) bufs_.resize(k + 1, {nullptr, 0});
    if (bufs_[k].second < bytes) {
      release(bufs_[k].first);
      bufs_[k] = {nullptr, 0};
      bufs_[k] = {alloc(bytes, "staging"), bytes};
    }
    return bufs_[k].first;
  }

 private:
  std::vector<std::pair<void*, size_t>> bufs_;
};

inline void to_device(void* dst, const void* src, size_t bytes, stream_t s) {
#if ML4EP_ON_GPU
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "copy to the GPU");
#else
  (void)s;
  if (bytes && dst != src) std::memcpy(dst, src, bytes);
#endif
}
inline void to_host(void* dst, const void* src, size_t bytes, stream_t s) {
#if ML4EP_ON_GPU
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "copy from the GPU");
#else
  (void)s;
  if (bytes && dst != src) std::memcpy(dst, src, bytes);
#endif
}
inline void synchronize(stream_t s) {
#if ML4EP_ON_GPU
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
#else
  (void)s;
#endif
}

}  // namespace ml4ep_cu
#endif  // ML4EP_CUDA_V1
