#include "backend/cuda/kmeans.h"

#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

// ---- init ---------------------------------------------------------------------------------------

// Block (c, h) copies point seeds[h, c] of head h (the seed is read once, it may be host memory).
__global__ void kmeans_init_kernel(float* centroids, const float* points, const int32_t* seeds, int64_t count,
                                   int64_t clusters, int64_t dim) {
  __shared__ int64_t seed;
  const int64_t c = blockIdx.x, h = blockIdx.y;
  if (threadIdx.x == 0) seed = seeds[h * clusters + c];
  __syncthreads();
  if (seed < 0 || seed >= count) return;  // checked on the host's side of the contract
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    centroids[(h * clusters + c) * dim + i] = points[(h * count + seed) * dim + i];
  }
}

// ---- assign -------------------------------------------------------------------------------------

// A block scores a tile of 64 points against every centroid, 64 centroids at a time, through
// shared-memory slices of 16 channels; each thread accumulates a 4 x 4 patch of dot products
// (and the norms of its 4 centroids) in channel order, then keeps the best centroid of each of
// its points. The 16 threads sharing a point agree on the best (ties: the lower centroid).
constexpr int assign_threads = 256;
constexpr int assign_tile = 64;
constexpr int assign_depth = 16;

__global__ void __launch_bounds__(assign_threads)
    kmeans_assign_kernel(int32_t* assignment, const float* points, const float* centroids, int64_t count,
                         int64_t clusters, int64_t dim) {
  // One column of padding: the 16 threads that store one point's channels hit 16 banks.
  __shared__ float point_tile[assign_depth][assign_tile + 1];
  __shared__ float centroid_tile[assign_depth][assign_tile + 1];
  __shared__ float best_value[assign_tile][16];
  __shared__ int32_t best_index[assign_tile][16];
  const int64_t head = blockIdx.y;
  const int64_t first_point = int64_t(blockIdx.x) * assign_tile;
  const float* head_points = points + head * count * dim;
  const float* head_centroids = centroids + head * clusters * dim;
  const int column = threadIdx.x % 16;  // centroids column * 4 .. + 3 of the tile
  const int line = threadIdx.x / 16;    // points line * 4 .. + 3 of the tile

  float best[4];
  int32_t best_at[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    best[i] = -INFINITY;
    best_at[i] = 0;
  }
  for (int64_t first_centroid = 0; first_centroid < clusters; first_centroid += assign_tile) {
    float dots[4][4] = {}, norms[4] = {};
    for (int64_t depth = 0; depth < dim; depth += assign_depth) {
      // 64 x 16 of each, four elements per thread, transposed so that a channel is one row.
      for (int e = threadIdx.x; e < assign_tile * assign_depth; e += assign_threads) {
        int r = e / assign_depth, d = e % assign_depth;
        int64_t p = first_point + r, c = first_centroid + r, channel = depth + d;
        point_tile[d][r] = p < count && channel < dim ? head_points[p * dim + channel] : 0.0f;
        centroid_tile[d][r] = c < clusters && channel < dim ? head_centroids[c * dim + channel] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int d = 0; d < assign_depth; ++d) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = point_tile[d][line * 4 + i];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = centroid_tile[d][column * 4 + j];
#pragma unroll
        for (int j = 0; j < 4; ++j) norms[j] += b[j] * b[j];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
          for (int j = 0; j < 4; ++j) dots[i][j] += a[i] * b[j];
        }
      }
      __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      int64_t c = first_centroid + column * 4 + j;
      if (c >= clusters) continue;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        float affinity = 2.0f * dots[i][j] - norms[j];
        // Centroids reach a thread in increasing order: a strict > keeps the lower on ties.
        if (affinity > best[i]) {
          best[i] = affinity;
          best_at[i] = int32_t(c);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    best_value[line * 4 + i][column] = best[i];
    best_index[line * 4 + i][column] = best_at[i];
  }
  __syncthreads();
  if (threadIdx.x < assign_tile) {
    const int r = threadIdx.x;
    const int64_t p = first_point + r;
    float value = best_value[r][0];
    int32_t index = best_index[r][0];
    for (int k = 1; k < 16; ++k) {
      float candidate = best_value[r][k];
      int32_t at = best_index[r][k];
      if (candidate > value || (candidate == value && at < index)) {
        value = candidate;
        index = at;
      }
    }
    if (p < count) assignment[head * count + p] = index;
  }
}

// ---- update -------------------------------------------------------------------------------------

// Block (c, h) scans head h's assignment for the points of cluster c and sums them in point order
// (no atomics: the same centroids on every run), in double as the CPU reference does. Each pass
// takes 4 x 128 assignments: the warps' ballots mark the members, then the threads (one per
// channel) add the members' rows in order.
constexpr int update_threads = 128;
constexpr int update_passes = 4;

__global__ void __launch_bounds__(update_threads)
    kmeans_update_kernel(float* centroids, int32_t* sizes, const float* points, const int32_t* assignment,
                         int64_t count, int64_t clusters, int64_t dim) {
  __shared__ uint32_t members[update_passes * update_threads / 32];
  const int64_t c = blockIdx.x, h = blockIdx.y;
  const int32_t* head_assignment = assignment + h * count;
  const float* head_points = points + h * count * dim;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  constexpr int dims_per_thread = 4;  // head_dim <= 512
  double sums[dims_per_thread] = {};
  int64_t size = 0;
  for (int64_t base = 0; base < count; base += update_passes * update_threads) {
#pragma unroll
    for (int pass = 0; pass < update_passes; ++pass) {
      int64_t p = base + pass * update_threads + threadIdx.x;
      bool member = p < count && head_assignment[p] == c;
      uint32_t mask = __ballot_sync(0xffffffffu, member);
      if (lane == 0) members[pass * (update_threads / 32) + warp] = mask;
    }
    __syncthreads();
    for (int word = 0; word < update_passes * update_threads / 32; ++word) {
      uint32_t mask = members[word];
      while (mask) {
        int bit = __ffs(mask) - 1;
        mask &= mask - 1;
        const float* point = head_points + (base + word * 32 + bit) * dim;
#pragma unroll
        for (int k = 0; k < dims_per_thread; ++k) {
          int64_t i = threadIdx.x + k * update_threads;
          if (i < dim) sums[k] += point[i];
        }
        ++size;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) sizes[h * clusters + c] = int32_t(size);
  if (size == 0) return;  // an empty cluster keeps its centroid
  float* centroid = centroids + (h * clusters + c) * dim;
#pragma unroll
  for (int k = 0; k < dims_per_thread; ++k) {
    int64_t i = threadIdx.x + k * update_threads;
    if (i < dim) centroid[i] = float(sums[k] / double(size));
  }
}

// ---- order --------------------------------------------------------------------------------------

// Block h: a stable counting sort of head h's points by cluster. The cursors (the next place of
// each cluster) live in shared memory. Points go 1024 at a time; within a warp, points of one
// cluster find their ranks by matching, and the warps take their places one after the other so
// that earlier points come first.
constexpr int order_threads = 1024;

__global__ void __launch_bounds__(order_threads)
    kmeans_order_kernel(int32_t* order, const int32_t* assignment, const int32_t* sizes, int64_t count,
                        int64_t clusters) {
  extern __shared__ int32_t cursor[];  // [clusters]
  const int64_t h = blockIdx.x;
  const int32_t* head_assignment = assignment + h * count;
  const int32_t* head_sizes = sizes + h * clusters;
  int32_t* head_order = order + h * count;
  for (int64_t c = threadIdx.x; c < clusters; c += order_threads) cursor[c] = head_sizes[c];
  __syncthreads();
  if (threadIdx.x == 0) {  // exclusive prefix sum, in shared memory
    int32_t offset = 0;
    for (int64_t c = 0; c < clusters; ++c) {
      int32_t size = cursor[c];
      cursor[c] = offset;
      offset += size;
    }
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t base = 0; base < count; base += order_threads) {
    const int64_t p = base + threadIdx.x;
    const int32_t c = p < count ? head_assignment[p] : -1;
    const uint32_t peers = __match_any_sync(0xffffffffu, c);
    const int leader = __ffs(peers) - 1;
    const int rank = __popc(peers & ((1u << lane) - 1u));
    for (int turn = 0; turn < order_threads / 32; ++turn) {
      if (warp == turn) {
        int32_t place = 0;
        if (lane == leader && c >= 0) {
          place = cursor[c];
          cursor[c] = place + __popc(peers);
        }
        place = __shfl_sync(0xffffffffu, place, leader);
        if (c >= 0) head_order[place + rank] = int32_t(p);
      }
      __syncthreads();
    }
  }
}

// ---- checks -------------------------------------------------------------------------------------

void require_f32_heads(const TensorView& view, const char* op, const char* name) {
  require_device_accessible(view, op, name);
  require_dtype(view, DType::f32, op, name);
  require_rank(view, 3, op, name);
}

void require_i32(const TensorView& view, int64_t heads, int64_t width, const char* op, const char* name) {
  require_device_accessible(view, op, name);
  require_dtype(view, DType::i32, op, name);
  require_shape(view, {heads, width}, op, name);
}

}  // namespace

void launch_kmeans_init(const KmeansInitParams& params, cudaStream_t stream) {
  const char* op = "kmeans_init";
  require_f32_heads(params.points, op, "points");
  require_f32_heads(params.centroids, op, "centroids");
  const int64_t heads = params.points.dim(0), count = params.points.dim(1), dim = params.points.dim(2);
  const int64_t clusters = params.centroids.dim(1);
  require_shape(params.centroids, {heads, clusters, dim}, op, "centroids");
  require_i32(params.seeds, heads, clusters, op, "seeds");
  if (heads * clusters == 0) return;
  require_grid_dimension(heads, 65535, op, "one block row per head");
  kmeans_init_kernel<<<dim3(unsigned(clusters), unsigned(heads)), 128, 0, stream>>>(
      params.centroids.as<float>(), params.points.as<const float>(), params.seeds.as<const int32_t>(), count,
      clusters, dim);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

void launch_kmeans_assign(const KmeansAssignParams& params, cudaStream_t stream) {
  const char* op = "kmeans_assign";
  require_f32_heads(params.points, op, "points");
  require_f32_heads(params.centroids, op, "centroids");
  const int64_t heads = params.points.dim(0), count = params.points.dim(1), dim = params.points.dim(2);
  const int64_t clusters = params.centroids.dim(1);
  require_shape(params.centroids, {heads, clusters, dim}, op, "centroids");
  require_i32(params.assignment, heads, count, op, "assignment");
  if (heads * count == 0) return;
  LOUISKV_REQUIRE(clusters > 0, op, "no centroid to assign points to");
  require_grid_dimension(heads, 65535, op, "one block row per head");
  const int64_t tiles = (count + assign_tile - 1) / assign_tile;
  kmeans_assign_kernel<<<dim3(unsigned(tiles), unsigned(heads)), assign_threads, 0, stream>>>(
      params.assignment.as<int32_t>(), params.points.as<const float>(), params.centroids.as<const float>(), count,
      clusters, dim);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

void launch_kmeans_update(const KmeansUpdateParams& params, cudaStream_t stream) {
  const char* op = "kmeans_update";
  require_f32_heads(params.points, op, "points");
  require_f32_heads(params.centroids, op, "centroids");
  const int64_t heads = params.points.dim(0), count = params.points.dim(1), dim = params.points.dim(2);
  const int64_t clusters = params.centroids.dim(1);
  require_shape(params.centroids, {heads, clusters, dim}, op, "centroids");
  require_i32(params.assignment, heads, count, op, "assignment");
  require_i32(params.sizes, heads, clusters, op, "sizes");
  LOUISKV_REQUIRE(dim <= 4 * update_threads, op, "head_dim above 512");
  if (heads * clusters == 0) return;
  require_grid_dimension(heads, 65535, op, "one block row per head");
  kmeans_update_kernel<<<dim3(unsigned(clusters), unsigned(heads)), update_threads, 0, stream>>>(
      params.centroids.as<float>(), params.sizes.as<int32_t>(), params.points.as<const float>(),
      params.assignment.as<const int32_t>(), count, clusters, dim);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

void launch_kmeans_order(const KmeansOrderParams& params, cudaStream_t stream) {
  const char* op = "kmeans_order";
  require_rank(params.assignment, 2, op, "assignment");
  require_rank(params.sizes, 2, op, "sizes");
  const int64_t heads = params.assignment.dim(0), count = params.assignment.dim(1), clusters = params.sizes.dim(1);
  require_i32(params.assignment, heads, count, op, "assignment");
  require_i32(params.sizes, heads, clusters, op, "sizes");
  require_i32(params.order, heads, count, op, "order");
  if (heads * count == 0) return;
  int optin = 0;
  LOUISKV_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, params.device));
  const size_t shared = size_t(clusters) * sizeof(int32_t);
  LOUISKV_REQUIRE(shared <= size_t(optin), op,
                  std::to_string(clusters) + " clusters per head; this device keeps at most " +
                      std::to_string(optin / 4) + " cursors in shared memory");
  LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kmeans_order_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
  kmeans_order_kernel<<<unsigned(heads), order_threads, shared, stream>>>(
      params.order.as<int32_t>(), params.assignment.as<const int32_t>(), params.sizes.as<const int32_t>(), count,
      clusters);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
