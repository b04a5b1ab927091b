/* kvpage: where a cached key or value row lives on the device (the paged KV
 * cache, kernels.h kv_pages). Every kernel that reads or writes the cache
 * finds rows through kv_row, so a change of layout is one function here.
 *
 * Layout of one layer's cache: pages of kv.page positions, each holding all
 * NKV heads, (pages, NKV, page, HD) bf16; position p of slot s is row p %
 * page of page ptab[s * mp + p / page]. ptab NULL is the contiguous layout
 * (page = Tmax, one page per slot, page s for slot s): (B, NKV, Tmax, HD). A
 * key tile of ATT_TK positions starting at a multiple of ATT_TK stays in one
 * page when page is a multiple of ATT_TK (or there is one page per slot),
 * so a tile's base is looked up once and its rows are contiguous. */
#ifndef LR_CUDA_KVPAGE_CUH
#define LR_CUDA_KVPAGE_CUH

#include "kernels.h"

/* The element offset of (slot, KV head h, position pos)'s HD values. */
__device__ inline size_t kv_row(const kv_pages &kv, int slot, int NKV, int h, int pos, int HD) {
    size_t pg = kv.ptab ? (size_t)kv.ptab[(size_t)slot * kv.mp + pos / kv.page] : (size_t)slot;
    return ((pg * NKV + h) * kv.page + pos % kv.page) * HD;
}

#endif
