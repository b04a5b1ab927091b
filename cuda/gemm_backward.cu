/* gemm_backward: see gemm_backward.h.
 *
 * cuBLAS is column-major: a row-major (M, N) matrix is the column-major
 * (N, M) matrix of the same bytes, its transpose. So row-major
 * C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T: cublasGemmEx
 * with B and A swapped, m = N and n = M, each keeping its own transpose
 * flag. */
#include "common.cuh"
#include "dropout.h"
#include "gemm_backward.h"

#include <stdio.h>

void *blas_create(void *stream) {
    cublasHandle_t h;
    cublasStatus_t s = cublasCreate(&h);
    if (s != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublas: cublasCreate: status %d\n", (int)s);
        return 0;
    }
    if ((s = cublasSetStream(h, (cudaStream_t)stream)) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cublas: cublasSetStream: status %d\n", (int)s);
        cublasDestroy(h);
        return 0;
    }
    return (void *)h;
}

void blas_destroy(void *blas) {
    if (blas) cublasDestroy((cublasHandle_t)blas);
}

int k_gemm_f32(void *blas, int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc) {
    if (M < 1 || N < 1) return 0;
    return (int)cublasGemmEx((cublasHandle_t)blas, tB ? CUBLAS_OP_T : CUBLAS_OP_N, tA ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                             M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F, ldc,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

int k_gemm_bf16(void *blas, int tA, int tB, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                const uint16_t *B, int ldb, float beta, float *C, int ldc) {
    if (M < 1 || N < 1) return 0;
    return (int)cublasGemmEx((cublasHandle_t)blas, tB ? CUBLAS_OP_T : CUBLAS_OP_N, tA ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                             M, K, &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C, CUDA_R_32F, ldc,
                             CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

int k_matmul_backward(void *blas, float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                      int IC, int OC) {
    int rc = 0;
    if (dinp) /* (N, OC) x (OC, IC) */
        rc = k_gemm_f32(blas, 0, 0, N, IC, OC, 1.0f, dout, OC, w, IC, 1.0f, dinp, IC);
    if (!rc && dw) /* (OC, N) x (N, IC) */
        rc = k_gemm_f32(blas, 1, 0, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dw, IC);
    return rc;
}

int k_lora_backward(void *blas, float *dinp, float *gA, float *gB, float *du, const float *dout, const float *x,
                    const float *u, const float *A, const float *B, int N, int IC, int OC, int r, float scale) {
    int rc = k_gemm_f32(blas, 0, 0, N, r, OC, scale, dout, OC, B, r, 0.0f, du, r);
    if (!rc && gB) rc = k_gemm_f32(blas, 1, 0, OC, r, N, scale, dout, OC, u, r, 1.0f, gB, r);
    if (!rc && gA) rc = k_gemm_f32(blas, 1, 0, r, IC, N, 1.0f, du, r, x, IC, 1.0f, gA, IC);
    if (!rc && dinp) rc = k_gemm_f32(blas, 0, 0, N, IC, r, 1.0f, du, r, A, IC, 1.0f, dinp, IC);
    return rc;
}

int k_lora_backward_dropout(void *blas, float *dinp, float *gA, float *gB, float *du, float *xd, float *dxd,
                            const float *dout, const float *inp, const float *u, const float *A, const float *B, int N,
                            int IC, int OC, int r, float scale, float p, uint64_t key, void *stream) {
    size_t n = (size_t)N * IC;
    k_dropout(xd, inp, n, p, key, stream);
    int rc = k_lora_backward(blas, NULL, gA, gB, du, dout, xd, u, A, B, N, IC, OC, r, scale);
    if (!rc && dinp) { /* dxd = du A, then through the mask */
        rc = k_gemm_f32(blas, 0, 0, N, IC, r, 1.0f, du, r, A, IC, 0.0f, dxd, IC);
        if (!rc) k_dropout_backward(dinp, dxd, n, p, key, stream);
    }
    return rc;
}

__global__ void gather_rows_kernel(float *out, const float *in, const int *rows, int n, int C) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < (size_t)n * C) out[e] = in[(size_t)rows[e / C] * C + e % C];
}

__global__ void scatter_add_rows_kernel(float *out, const float *in, const int *rows, int n, int C) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < (size_t)n * C) out[(size_t)rows[e / C] * C + e % C] += in[e];
}

void k_gather_rows(float *out, const float *in, const int *rows, int n, int C, void *stream) {
    if (n > 0 && C > 0)
        LAUNCH(gather_rows_kernel, cdiv((size_t)n * C, 256), 256, 0, (cudaStream_t)stream, out, in, rows, n, C);
}

void k_scatter_add_rows(float *out, const float *in, const int *rows, int n, int C, void *stream) {
    if (n > 0 && C > 0)
        LAUNCH(scatter_add_rows_kernel, cdiv((size_t)n * C, 256), 256, 0, (cudaStream_t)stream, out, in, rows, n, C);
}
