/* torch-sa's CPU kernel compiled ahead of time: the moves of the numba kernel
 * (ising_qubo/solvers/_sa_cpu.py: sweeps_plain, fields_csr without low-rank terms, and
 * sweeps_blocks / fields_blocks for one dense problem), move for move and draw for draw.
 *
 * Why C next to the numba kernel: numba's JIT alone (LLVM, loaded on import) holds about
 * 150 MiB of memory, twice a whole neal run; this file is built into a shared library when
 * the package is installed (setup.py; optional: without a C compiler the numba kernel
 * runs), and ising_qubo/solvers/_sa_native.py calls it through ctypes, which releases the
 * GIL, so Python threads run blocks of replicas side by side for a whole call.
 *
 * Results equal the numba kernel's: the same splitmix64 streams, the same double-precision
 * arithmetic in the same order (no fused multiply-add: built with -ffp-contract=off), and
 * the same libm exp. The tests compare the two move for move.
 *
 * Model (spin form): E(s) = h.s + 1/2 s^T J s, J symmetric with zero diagonal; the local
 * field of spin i is f_i = h_i + sum_j J_ij s_j, and flipping it changes E by -2 s_i f_i.
 * Arrays are C-contiguous; spins and fields are (reps, n), replica-major.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>

#if defined(_MSC_VER)
#define __attribute__(x)
#endif

/* The kernel's functions are called by name through ctypes: exported on every platform. */
#if defined(_WIN32)
#define IQ_EXPORT __declspec(dllexport)
#else
#define IQ_EXPORT __attribute__((visibility("default")))
#endif

/* exp(-40) ~ 4e-18: a move this costly is never accepted in a double-precision draw. */
#define MAX_EXPONENT 40.0

/* splitmix64 step on *state; a double in [0, 1). */
static inline double uniform(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ULL;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z = z ^ (z >> 31);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* Metropolis at inverse temperature beta, or strict descent when greedy. */
static inline int accept(double de, double beta, int greedy, uint64_t *rng) {
    if (greedy) return de < 0.0;
    if (de <= 0.0) return 1;
    double x = beta * de;
    return x < MAX_EXPONENT && uniform(rng) < exp(-x);
}

/* The test of flipping spin i: on acceptance flips it and returns the step its
 * neighbours' fields take per unit coupling (2 s_i, never 0); 0.0 when rejected. */
static inline double try_flip(double *s, const double *f, int64_t i, double beta, int greedy,
                              uint64_t *rng) {
    if (!accept(-2.0 * s[i] * f[i], beta, greedy, rng)) return 0.0;
    s[i] = -s[i];
    return 2.0 * s[i];
}

/* Fields F = h + J s of replicas [0, reps), J in CSR. */
IQ_EXPORT void iq_fields_csr(int64_t reps, int64_t n, const double *spins, const double *h,
                   const int64_t *indptr, const int32_t *indices, const double *data,
                   double *fields) {
    for (int64_t r = 0; r < reps; r++) {
        const double *s = spins + r * n;
        double *f = fields + r * n;
        for (int64_t i = 0; i < n; i++) {
            double acc = h[i];
            for (int64_t k = indptr[i]; k < indptr[i + 1]; k++) acc += data[k] * s[indices[k]];
            f[i] = acc;
        }
    }
}

/* Fields F = h + J s of replicas [0, reps), J dense (n * n, row-major). */
IQ_EXPORT void iq_fields_dense(int64_t reps, int64_t n, const double *spins, const double *h,
                     const double *couplings, double *fields) {
    for (int64_t r = 0; r < reps; r++) {
        const double *s = spins + r * n;
        double *f = fields + r * n;
        for (int64_t i = 0; i < n; i++) {
            double acc = h[i];
            const double *row = couplings + i * n;
            for (int64_t j = 0; j < n; j++) acc += row[j] * s[j];
            f[i] = acc;
        }
    }
}

/* num_sweeps sweeps of replicas [0, reps); sweep t runs at betas[t * beta_stride];
 * replica r draws from rng[r]. With greedy, strict descent that stops once a sweep flips
 * nothing. last_flips[r]: flips in replica r's last sweep. The couplings are CSR
 * (indptr, indices, data) or, where dense is not NULL, dense rows (n * n, row-major).
 * Inlined into each exported function with dense a constant, so the layout test is
 * compiled away. */
static inline __attribute__((always_inline)) void sweeps(
    int64_t reps, int64_t n, double *spins, double *fields, const int64_t *indptr,
    const int32_t *indices, const double *data, const double *dense, int64_t num_sweeps,
    const double *betas, int64_t beta_stride, uint64_t *rng, int32_t greedy,
    int64_t *last_flips) {
    for (int64_t r = 0; r < reps; r++) {
        double *s = spins + r * n;
        double *f = fields + r * n;
        last_flips[r] = 0;
        for (int64_t t = 0; t < num_sweeps; t++) {
            double beta = betas[t * beta_stride];
            int64_t flips = 0;
            for (int64_t i = 0; i < n; i++) {
                double step = try_flip(s, f, i, beta, greedy, rng + r);
                if (step == 0.0) continue;
                flips++;
                if (dense) {
                    const double *row = dense + i * n;
                    for (int64_t j = 0; j < n; j++) f[j] += step * row[j];
                } else {
                    for (int64_t k = indptr[i]; k < indptr[i + 1]; k++)
                        f[indices[k]] += step * data[k];
                }
            }
            last_flips[r] = flips;
            if (greedy && flips == 0) break;
        }
    }
}

/* sweeps() with the CSR couplings. */
IQ_EXPORT void iq_sweeps_csr(int64_t reps, int64_t n, double *spins, double *fields,
                             const int64_t *indptr, const int32_t *indices, const double *data,
                             int64_t num_sweeps, const double *betas, int64_t beta_stride,
                             uint64_t *rng, int32_t greedy, int64_t *last_flips) {
    sweeps(reps, n, spins, fields, indptr, indices, data, NULL, num_sweeps, betas, beta_stride,
           rng, greedy, last_flips);
}

/* sweeps() with dense couplings (n * n, row-major). */
IQ_EXPORT void iq_sweeps_dense(int64_t reps, int64_t n, double *spins, double *fields,
                               const double *couplings, int64_t num_sweeps, const double *betas,
                               int64_t beta_stride, uint64_t *rng, int32_t greedy,
                               int64_t *last_flips) {
    sweeps(reps, n, spins, fields, NULL, NULL, NULL, couplings, num_sweeps, betas, beta_stride,
           rng, greedy, last_flips);
}

/* An importable module with no Python functions: setuptools builds and installs it like
 * any extension (with the interpreter's flags, on every platform), and _sa_native.py
 * finds its file through the import system and loads the functions above with ctypes. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_sa_kernel",
                                    "torch-sa's compiled CPU kernel (loaded with ctypes).", -1,
                                    NULL};

PyMODINIT_FUNC PyInit__sa_kernel(void) { return PyModule_Create(&module); }
