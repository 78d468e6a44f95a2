// The steps of k-means over the points of several KV heads at once (one launch each): initial
// centroids from seed points, assignment by a tiled GEMM with a running argmax, centroid update by
// a reduction in point order (deterministic), and the stable cluster-by-cluster order of points.
//
//   points     f32 [H, N, D]   centroids f32 [H, C, D]   seeds i32 [H, C]
//   assignment i32 [H, N]      sizes     i32 [H, C]      order i32 [H, N]
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

struct KmeansInitParams {
  TensorView centroids, points, seeds;
};
void launch_kmeans_init(const KmeansInitParams& params, cudaStream_t stream);

struct KmeansAssignParams {
  TensorView assignment, points, centroids;
};
void launch_kmeans_assign(const KmeansAssignParams& params, cudaStream_t stream);

struct KmeansUpdateParams {
  TensorView centroids, sizes, points, assignment;
};
void launch_kmeans_update(const KmeansUpdateParams& params, cudaStream_t stream);

struct KmeansOrderParams {
  TensorView order, assignment, sizes;
  int device = 0;
};
void launch_kmeans_order(const KmeansOrderParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
