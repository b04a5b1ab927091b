/* gemm_backward: the backward's matrix products on the device, float32
 * GEMMs through cublasGemmEx (CUDA_R_32F operands, CUBLAS_COMPUTE_32F; bf16
 * operands for the bf16 trainer's base weights, k_gemm_bf16), the
 * twins of lib/nn's matmul_backward and of the LoRA part of the trainer's
 * projection backward; and the row gather/scatter that restricts lm_head's
 * backward to the rows that carry a loss (the trainer's lnf_g / dlnf_g).
 *
 * Matrices are row-major as on the CPU; gradients are ACCUMULATED (+=), a
 * NULL gradient is skipped. `blas` is a cublasHandle_t (bound to the stream
 * the caller uses; its math mode left at the default, so float32 GEMMs
 * are not rounded through TF32). The cuBLAS calls return their status:
 * 0 is success. Tested on the emulated device by
 * tests/unit/test_gpu_gemm_backward.c against OpenBLAS and the CPU trainer. */
#ifndef LR_CUDA_GEMM_BACKWARD_H
#define LR_CUDA_GEMM_BACKWARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A cuBLAS handle on `stream` (a cudaStream_t, NULL the default stream),
 * or 0 after one stderr line. */
void *blas_create(void *stream);
void blas_destroy(void *blas);

/* Row-major C (M, N) = alpha op(A) op(B) + beta C, op(X) = X^T when tX;
 * lda, ldb, ldc row strides as stored. */
int k_gemm_f32(void *blas, int tA, int tB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
               int ldb, float beta, float *C, int ldc);
/* The same with bf16 operands (raw bits), float32 accumulation and a
 * float32 C (CUDA_R_16BF inputs, CUBLAS_COMPUTE_32F): the bf16 trainer's
 * base-weight products, tensor cores on a card. */
int k_gemm_bf16(void *blas, int tA, int tB, int M, int N, int K, float alpha, const uint16_t *A, int lda,
                const uint16_t *B, int ldb, float beta, float *C, int ldc);

/* matmul_backward for out = inp W^T: dinp (N, IC) += dout W, dw (OC, IC) +=
 * dout^T inp; dout (N, OC), w (OC, IC). lm_head's backward on the loss rows
 * is this with inp the gathered final-norm rows (N = loss rows, OC = V). */
int k_matmul_backward(void *blas, float *dinp, float *dw, const float *dout, const float *inp, const float *w, int N,
                      int IC, int OC);

/* The LoRA term s B (A x) of a projection (lora.h, s = alpha / r), no
 * dropout (x the module input), u = A x (N, r) as the forward kept it;
 * A (r, IC), B (OC, r), dout (N, OC):
 *   du = s dout B (N, r), into the caller's du (overwritten);
 *   gB (OC, r) += s dout^T u;  gA (r, IC) += du^T x;  dinp (N, IC) += du A.
 * gA and gB both NULL or both set; dinp NULL skips it. */
int k_lora_backward(void *blas, float *dinp, float *gA, float *gB, float *du, const float *dout, const float *x,
                    const float *u, const float *A, const float *B, int N, int IC, int OC, int r, float scale);
/* The same with LoRA dropout p on the module input inp (N, IC), mask key
 * (forward.h's fwd_lora_drop_key, dropout.h): the dropped-out input is
 * regenerated into xd (N, IC), the input gradient made in dxd (N, IC) and
 * passed back through the mask into dinp. stream: the one blas is bound
 * to. */
int k_lora_backward_dropout(void *blas, float *dinp, float *gA, float *gB, float *du, float *xd, float *dxd,
                            const float *dout, const float *inp, const float *u, const float *A, const float *B, int N,
                            int IC, int OC, int r, float scale, float p, uint64_t key, void *stream);

/* out (n, C) = rows rows[0..n) of in (*, C). */
void k_gather_rows(float *out, const float *in, const int *rows, int n, int C, void *stream);
/* out row rows[i] += in row i (i < n), rows distinct (one writer a row). */
void k_scatter_add_rows(float *out, const float *in, const int *rows, int n, int C, void *stream);

#ifdef __cplusplus
}
#endif

#endif
