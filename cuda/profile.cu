/* profile: see profile.cuh. */
#include "profile.cuh"

#include <vector>

struct prof {
    std::vector<cudaEvent_t> ev; /* a pool reused by every call, grown as needed */
    std::vector<int> kind;       /* kind[i]: what runs from ev[i] to ev[i + 1] */
    size_t n = 0;                /* marks of the current call */
    std::vector<double> ms;      /* by kind */
    double total_ms = 0;
    long calls = 0, events = 0;
};

prof *prof_new(int nkinds) {
    prof *p = new prof;
    p->ms.assign((size_t)nkinds, 0.0);
    return p;
}

void prof_free(prof *p) {
    if (!p) return;
    for (cudaEvent_t e : p->ev) cudaEventDestroy(e);
    delete p;
}

cudaError_t prof_start(prof *p, int kind, cudaStream_t st) {
    p->n = 0;
    return prof_mark(p, kind, st);
}

cudaError_t prof_mark(prof *p, int kind, cudaStream_t st) {
    if (p->n && p->kind[p->n - 1] == kind) return cudaSuccess;
    if (p->n == p->ev.size()) {
        cudaEvent_t e;
        cudaError_t rc = cudaEventCreate(&e);
        if (rc != cudaSuccess) return rc;
        p->ev.push_back(e);
        p->kind.push_back(0);
    }
    cudaError_t rc = cudaEventRecord(p->ev[p->n], st);
    if (rc != cudaSuccess) return rc;
    p->kind[p->n++] = kind;
    p->events++;
    return cudaSuccess;
}

cudaError_t prof_collect(prof *p) {
    size_t n = p->n;
    p->n = 0;
    if (n < 2) return cudaSuccess;
    for (size_t i = 0; i + 1 < n; i++) {
        float ms = 0;
        cudaError_t rc = cudaEventElapsedTime(&ms, p->ev[i], p->ev[i + 1]);
        if (rc != cudaSuccess) return rc;
        if (p->kind[i] >= 0 && (size_t)p->kind[i] < p->ms.size()) p->ms[(size_t)p->kind[i]] += ms;
    }
    float all = 0;
    cudaError_t rc = cudaEventElapsedTime(&all, p->ev[0], p->ev[n - 1]);
    if (rc != cudaSuccess) return rc;
    p->total_ms += all;
    p->calls++;
    return cudaSuccess;
}

void prof_read(const prof *p, double *ms, double *total_ms, long *calls, long *events) {
    for (size_t k = 0; k < p->ms.size(); k++) ms[k] = p->ms[k];
    *total_ms = p->total_ms, *calls = p->calls, *events = p->events;
}
