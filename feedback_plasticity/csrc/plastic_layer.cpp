// Fused CPU kernels of one plastic dense layer (feedback_plasticity, kernels notebook).
// Shapes follow the notebooks: W, G (M, n_out, n_in) row-major; eta, d_eta (n_out, n_in); activities (M, b, n).
// Each kernel passes over a layer's weights once, RB rows at a time, and does every product and elementwise
// pass of its step on those rows while they sit in L1. T is float or double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

// 32-byte vectors (GCC/Clang vector extensions: AVX on x86; on ARM the compiler splits them into NEON registers)
template <typename T> struct V;
template <> struct V<float>  { typedef float  v __attribute__((vector_size(32))); enum { L = 8 }; };
template <> struct V<double> { typedef double v __attribute__((vector_size(32))); enum { L = 4 }; };
template <typename T> static inline typename V<T>::v ld(const T* p) { typename V<T>::v x; std::memcpy(&x, p, sizeof x); return x; }
template <typename T> static inline void st(T* p, typename V<T>::v x) { std::memcpy(p, &x, sizeof x); }
// Rows per block. Every product below keeps an RB x 2-vector tile in registers: 12 independent chains of
// fused multiply-adds, enough to hide their latency, with 2 vector loads and RB broadcasts per 2 RB of them
// (12 accumulators, 2 loaded vectors and a broadcast: 15 of AVX2's 16 vector registers).
enum { RB = 6 };
#define FOR_R(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define DECL(r) vec a##r##0 = {}, a##r##1 = {};

static inline long up(long n, long k) { return (n + k - 1) / k * k; }   // n rounded up to a multiple of k

// a (rows, cols) transposed into out (cols, ld), ld >= rows, zeros in the columns past rows
template <typename T> static void transpose(const T* a, long rows, long cols, T* out, long ld) {
    std::memset(out, 0, sizeof(T) * cols * ld);
    for (long r = 0; r < rows; r++) for (long c = 0; c < cols; c++) out[c * ld + r] = a[r * cols + c];
}

// Outer-product rows: C[r][j] = sum_k u[k][i0 + r] v[k][j]  (r < RB; j < n, a multiple of 2L); u (b, ldu), v (b, n), C (RB, n).
// For H = post^T pre and dz^T a: b (the minibatch) is the short sum.
template <typename T> static inline void outer_rows(const T* u, long ldu, long i0, const T* v, long b, long n, T* C) {
    typedef typename V<T>::v vec; const long L = V<T>::L;
    for (long j = 0; j < n; j += 2 * L) {
        FOR_R(DECL)
        for (long k = 0; k < b; k++) {
            const T* vk = v + k * n + j; const T* uk = u + k * ldu + i0;
            vec v0 = ld<T>(vk), v1 = ld<T>(vk + L);
#define OACC(r) { T s = uk[r]; a##r##0 += s * v0; a##r##1 += s * v1; }
            FOR_R(OACC)
        }
#define OSTORE(r) st<T>(C + r * n + j, a##r##0); st<T>(C + r * n + j + L, a##r##1);
        FOR_R(OSTORE)
    }
}

// A scratch array of at least n elements that lives as long as the calling thread: no allocation per call.
template <typename T> static T* scratch(int slot, size_t n) {
    static thread_local std::vector<T> store[12];
    if (store[slot].size() < n) store[slot].resize(n);
    return store[slot].data();
}

// The threads of the parallel region, and this thread's number in it.
static inline long thread_count() {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}
static inline long thread_number() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// The Mb rows (n wide) of a copied into out, n_p wide, with zeros after (inside a parallel region; no barrier after it:
// the caller places one before the copy is read).
template <typename T> static void pad_rows(const T* a, long Mb, long n, T* out, long n_p) {
    #pragma omp for schedule(static) nowait
    for (long q = 0; q < Mb; q++) {
        std::memcpy(out + q * n_p, a + q * n, sizeof(T) * n);
        std::fill(out + q * n_p + n, out + (q + 1) * n_p, T(0));
    }
}

// a (M, b, n) transposed per lifetime into out (M, n, bp), zeros after b (inside a parallel region; no barrier after it).
template <typename T> static void transpose_lifetimes(const T* a, long M, long b, long n, T* out, long bp) {
    #pragma omp for schedule(static) nowait
    for (long mj = 0; mj < M * n; mj++) {
        const long m = mj / n, j = mj % n;
        T* o = out + mj * bp;
        for (long k = 0; k < b; k++) o[k] = a[(m * b + k) * n + j];
        std::fill(o + b, o + bp, T(0));
    }
}

// Oja's decay of a block's rows: d[r] = sum_k post[k][i0 + r]^2 (r < RB) for one lifetime's post (b, op), where the
// thread that updates those rows needs it.
template <typename T> static inline void block_decay(const T* post, long b, long op, long i0, T* d) {
    for (long r = 0; r < RB; r++) d[r] = 0;
    for (long k = 0; k < b; k++) for (long r = 0; r < RB; r++) { const T p = post[k * op + i0 + r]; d[r] += p * p; }
}

// Row products: out[r][k] = sum_j vt[j][k] A[r][j]  (r < RB; k < bp, a multiple of 2L); vt (n, bp), A (RB, lda), out (RB, bp).
// For z = a W^T and a E^T, vectorised over the minibatch: the sum runs along the block's rows.
template <typename T> static inline void row_products(const T* vt, long bp, const T* A, long lda, long n, T* out) {
    typedef typename V<T>::v vec; const long L = V<T>::L;
    for (long k = 0; k < bp; k += 2 * L) {
        FOR_R(DECL)
        for (long j = 0; j < n; j++) {
            const T* x = vt + j * bp + k;
            vec v0 = ld<T>(x), v1 = ld<T>(x + L);
#define RACC(r) { T s = A[r * lda + j]; a##r##0 += s * v0; a##r##1 += s * v1; }
            FOR_R(RACC)
        }
#define RSTORE(r) st<T>(out + r * bp + k, a##r##0); st<T>(out + r * bp + k + L, a##r##1);
        FOR_R(RSTORE)
    }
}

// Column accumulation by one block: out[k][j] += sum_r u[k][i0 + r] A[r][j]  (r < RB; j < n, a multiple of 2L); u (b, ldu),
// A (RB, lda), out (b, ldo). The block's 2 RB vectors of a column pair stay in registers while the minibatch passes.
template <typename T> static inline void column_block(const T* u, long ldu, long i0, const T* A, long lda, long b, long n, T* out, long ldo) {
    typedef typename V<T>::v vec; const long L = V<T>::L;
    for (long j = 0; j < n; j += 2 * L) {
#define WLOAD(r) vec w##r##0 = ld<T>(A + r * lda + j), w##r##1 = ld<T>(A + r * lda + j + L);
        FOR_R(WLOAD)
        for (long k = 0; k < b; k++) {
            const T* uk = u + k * ldu + i0; T* o = out + k * ldo + j;
            vec o0 = ld<T>(o), o1 = ld<T>(o + L);
#define WACC(r) { T s = uk[r]; o0 += s * w##r##0; o1 += s * w##r##1; }
            FOR_R(WACC)
            st<T>(o, o0); st<T>(o + L, o1);
        }
    }
}

// z = a W^T + bias for M lifetimes, and its ReLU if relu: W (M, n_out, n_in), a (M, b, n_in), bias (n_out), z (M, b, n_out).
// Inside a parallel region (at: scratch for a transposed, M n_in bp); ends with a barrier.
template <typename T> static void affine_in(long M, long n_out, long n_in, long b, const T* W, const T* a, const T* bias, int relu, T* z, T* at) {
    const long L = V<T>::L, bp = up(b, 2 * L), blocks = up(n_out, RB) / RB;
    transpose_lifetimes(a, M, b, n_in, at, bp);                          // (M, n_in, bp)
    #pragma omp barrier
    std::vector<T> P(RB * bp), last(RB * n_in, T(0));
    #pragma omp for schedule(static)
    for (long blk = 0; blk < blocks; blk++)
        for (long m = 0; m < M; m++) {
            const long i0 = blk * RB, rows = std::min<long>(RB, n_out - i0);
            const T* A = W + (m * n_out + i0) * n_in;
            if (rows < RB) { std::memcpy(last.data(), A, sizeof(T) * rows * n_in); A = last.data(); }
            row_products(at + m * n_in * bp, bp, A, n_in, n_in, P.data());
            for (long r = 0; r < rows; r++) for (long k = 0; k < b; k++) {
                const T v = P[r * bp + k] + bias[i0 + r];
                z[(m * b + k) * n_out + i0 + r] = relu && v < 0 ? T(0) : v;
            }
        }
}
template <typename T> static void affine(long M, long n_out, long n_in, long b, const T* W, const T* a, const T* bias, int relu, T* z) {
    T* at = scratch<T>(1, M * n_in * up(b, 2 * V<T>::L));
    #pragma omp parallel
    affine_in(M, n_out, n_in, b, W, a, bias, relu, z, at);
}

// One plastic step, in place: W += eta (.) R with R = post^T pre - diag(d) W (Oja) or post^T pre (Hebb).
// W (M, n_out, n_in), eta (n_out, n_in), pre (M, b, n_in), post (M, b, n_out). If row_max (n_out: each row's largest
// |eta|) is given, *largest = max over lifetimes and rows of row_max_i d_i, which bounds |eta (.) d| (Oja's undo divides by 1 - eta d).
// Inside a parallel region (post_p, pre_p: scratch for the padded copies, M b op and M b np; *largest starts at 0); no
// barrier at the end.
template <typename T> static void step_in(long M, long n_out, long n_in, long b, T* W, const T* eta, const T* pre, const T* post, int oja,
                                          const T* row_max, T* largest, T* post_p, T* pre_p) {
    const long L = V<T>::L, np = up(n_in, 2 * L), op = up(n_out, RB), blocks = op / RB;
    pad_rows(post, M * b, n_out, post_p, op);                            // (M b, op): whole blocks of rows
    pad_rows(pre, M * b, n_in, pre_p, np);                               // (M b, np): whole vectors
    #pragma omp barrier
    std::vector<T> H(RB * np);
    T most = 0;                                                          // this thread's largest row_max_i d_i
    #pragma omp for schedule(static) nowait
    for (long blk = 0; blk < blocks; blk++)
        for (long m = 0; m < M; m++) {
            const long i0 = blk * RB;
            T d[RB];                                                     // d_i = sum_k post_ki^2, the block's rows
            if (oja || row_max) block_decay(post_p + m * b * op, b, op, i0, d);
            outer_rows(post_p + m * b * op, op, i0, pre_p + m * b * np, b, np, H.data());
            for (long r = 0; r < RB && i0 + r < n_out; r++) {
                const long i = i0 + r; T* w = W + (m * n_out + i) * n_in; const T* e = eta + i * n_in; const T* h = H.data() + r * np;
                const T di = oja ? d[r] : T(0);
                if (row_max) most = std::max(most, row_max[i] * d[r]);
                #pragma omp simd
                for (long j = 0; j < n_in; j++) w[j] += e[j] * (h[j] - di * w[j]);   // W' = W + eta (H - d W)
            }
        }
    if (row_max) {
        #pragma omp critical
        *largest = std::max(*largest, most);
    }
}
template <typename T> static void step(long M, long n_out, long n_in, long b, T* W, const T* eta, const T* pre, const T* post, int oja,
                                       const T* row_max, T* largest) {
    T* post_p = scratch<T>(1, M * b * up(n_out, RB)); T* pre_p = scratch<T>(2, M * b * up(n_in, 2 * V<T>::L));
    if (row_max) *largest = 0;
    #pragma omp parallel
    step_in(M, n_out, n_in, b, W, eta, pre, post, oja, row_max, largest, post_p, pre_p);
}

// One step of the reversible walk for one plastic layer, in place (see the lifetime notebook for the maths):
// (1, if d_act) the forward pass's backward of step tau, with W = W(tau):  dz = d_act (.) [act_now > 0] (no mask if act_now
//     is null: the output layer),  d_b += sum dz,  G += dz^T a_now,  d_a_now += dz W;
// (2, if post) the rule's backward of step tau-1:  R = (post^T pre - d W') / (1 - eta d),  W <- W' - eta R = W(tau-1),
//     E = eta G,  d_eta += G (.) R,  G <- G - diag(d) E,  d_pre = post E,  d_post = pre E^T - 2 post (.) rowsum(E (.) W)
//     (Hebb: R = post^T pre and no d terms). If W_prev (M, n_out, n_in) is given, it is W(tau-1), replayed rather than
//     undone (Oja's safety fallback): then R = post^T pre - d W_prev and W <- W_prev.
// W, G (M, n_out, n_in); eta, d_eta (n_out, n_in); d_act, act_now, post, d_post (M, b, n_out); d_b (n_out);
// a_now, d_a_now, pre, d_pre (M, b, n_in). d_act (with a_now) or post (with pre, d_post) may be null to skip a part;
// d_b, d_a_now, d_pre and d_eta may be null when not needed.
// The walk's scratch arrays (sizes in elements): dz (masked, rows padded to op), a_now and pre (rows padded to np), post (padded
// to op), pre transposed (M, n_in, bp), and each thread's parts of the two column sums (threads, M b, np), added after the pass.
enum { WALK_SCRATCH = 7 };
template <typename T> static void walk_scratch(long M, long n_out, long n_in, long b, long threads, long* sizes) {
    const long np = up(n_in, 2 * V<T>::L), op = up(n_out, RB), bp = up(b, 2 * V<T>::L), Mb = M * b;
    const long want[WALK_SCRATCH] = {Mb * op, Mb * np, Mb * op, Mb * np, M * n_in * bp, threads * Mb * np, threads * Mb * np};
    for (int k = 0; k < WALK_SCRATCH; k++) sizes[k] = std::max(sizes[k], want[k]);
}
static inline long most_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
// Inside a parallel region, with the scratch arrays of walk_scratch in work; no barrier at the end.
template <typename T> static void walk_in(long M, long n_out, long n_in, long b, T* W, T* G, const T* eta, T* d_eta,
                                          const T* d_act, const T* act_now, T* d_b, const T* a_now, T* d_a_now,
                                          const T* pre, const T* post, int oja, T* d_pre, T* d_post, T* const* work, const T* W_prev) {
    const long L = V<T>::L, np = up(n_in, 2 * L), op = up(n_out, RB), bp = up(b, 2 * L), blocks = op / RB;
    const bool forward_part = d_act != nullptr, rule_part = post != nullptr;
    const bool sum_a = forward_part && d_a_now, sum_pre = rule_part && d_pre;   // the two column sums, dz W and post E
    const long Mb = M * b;
    T* dz_p = work[0]; T* a_p = work[1]; T* post_p = work[2]; T* pre_p = work[3]; T* pre_t = work[4]; T* da_parts = work[5]; T* dp_parts = work[6];
    {
        const long threads = thread_count();
        T* da = da_parts + thread_number() * Mb * np; T* dp = dp_parts + thread_number() * Mb * np;   // this thread's parts
        if (sum_a) std::fill(da, da + Mb * np, T(0));
        if (sum_pre) std::fill(dp, dp + Mb * np, T(0));
        if (forward_part) {
            #pragma omp for schedule(static) nowait
            for (long q = 0; q < Mb; q++) {
                T* row = dz_p + q * op; const T* d_act_q = d_act + q * n_out;
                for (long i = 0; i < n_out; i++) row[i] = (!act_now || act_now[q * n_out + i] > 0) ? d_act_q[i] : T(0);   // dz = d_act [act_now > 0]
                std::fill(row + n_out, row + op, T(0));
            }
            pad_rows(a_now, Mb, n_in, a_p, np);
        }
        if (rule_part) {
            pad_rows(post, Mb, n_out, post_p, op);
            pad_rows(pre, Mb, n_in, pre_p, np);
            transpose_lifetimes(pre, M, b, n_in, pre_t, bp);
        }
        #pragma omp barrier
        // the block's H, rows of W(tau) and E (padded with zeros to whole vectors and blocks), and d_post's products
        // (Hf: dz^T a_now, G's part from the forward pass's backward, added to G in the rule's pass; zero without that part)
        std::vector<T> H(RB * np), Hf(RB * np, T(0)), P(RB * bp), Wb(RB * np, T(0)), Eb(RB * np, T(0));
        const long n_whole = n_in / (2 * L) * (2 * L);                   // the columns of W that fill whole vector pairs
        #pragma omp for schedule(static) nowait
        for (long blk = 0; blk < blocks; blk++)
            for (long m = 0; m < M; m++) {
                const long i0 = blk * RB, rows = std::min<long>(RB, n_out - i0);
                if (forward_part && d_b && m == 0)                       // d_b += sum dz, the block's rows (all lifetimes)
                    for (long r = 0; r < rows; r++) { T s = 0; for (long q = 0; q < Mb; q++) s += dz_p[q * op + i0 + r]; d_b[i0 + r] += s; }
                if (sum_a) {
                    // d_a_now += dz W(tau), this block's rows (before the rule's part below changes them): read from W where
                    // they fill whole vector pairs, the rest (and a last block of fewer rows) from a zero-padded copy
                    const T* Wm = W + (m * n_out + i0) * n_in; T* out = da + m * b * np;
                    if (rows == RB) {
                        column_block(dz_p + m * b * op, op, i0, Wm, n_in, b, n_whole, out, np);
                        if (n_whole < n_in) {
                            for (long r = 0; r < RB; r++) std::copy(Wm + r * n_in + n_whole, Wm + (r + 1) * n_in, Wb.data() + r * np);
                            column_block(dz_p + m * b * op, op, i0, Wb.data(), np, b, 2 * L, out + n_whole, np);
                        }
                    } else {
                        for (long r = 0; r < rows; r++) std::memcpy(Wb.data() + r * np, Wm + r * n_in, sizeof(T) * n_in);
                        for (long r = rows; r < RB; r++) std::fill(Wb.data() + r * np, Wb.data() + (r + 1) * np, T(0));
                        column_block(dz_p + m * b * op, op, i0, Wb.data(), np, b, np, out, np);
                    }
                }
                // Hf = dz^T a_now: G' = G + Hf
                if (forward_part) outer_rows(dz_p + m * b * op, op, i0, a_p + m * b * np, b, np, Hf.data());
                if (!rule_part) {
                    for (long r = 0; r < rows; r++) {
                        T* g = G + (m * n_out + i0 + r) * n_in; const T* h = Hf.data() + r * np;
                        #pragma omp simd
                        for (long j = 0; j < n_in; j++) g[j] += h[j];
                    }
                    continue;
                }
                T d[RB];                                                 // d_i = sum_k post_ki^2, the block's rows
                if (oja) block_decay(post_p + m * b * op, b, op, i0, d);
                // H = post^T pre
                outer_rows(post_p + m * b * op, op, i0, pre_p + m * b * np, b, np, H.data());
                T rowsum[RB] = {};
                for (long r = 0; r < rows; r++) {
                    const long i = i0 + r; const T di = oja ? d[r] : T(0);
                    const T* e = eta + i * n_in; T* de = d_eta ? d_eta + i * n_in : nullptr; const T* h = H.data() + r * np;
                    const T* hf = Hf.data() + r * np;
                    T* w = W + (m * n_out + i) * n_in; T* g = G + (m * n_out + i) * n_in; T* Ei = Eb.data() + r * np;
                    const T* wp = W_prev ? W_prev + (m * n_out + i) * n_in : nullptr;
                    T s = 0;
                    if (wp) {                                                                // W(tau-1) replayed
                        #pragma omp simd reduction(+:s)
                        for (long j = 0; j < n_in; j++) {
                            const T gj = g[j] + hf[j];                                       // G' = G + dz^T a_now
                            const T R = oja ? h[j] - di * wp[j] : h[j];                      // R = H - d W
                            const T Ej = e[j] * gj;                                          // E = eta G'
                            if (de) de[j] += gj * R;                                         // d_eta += G' R
                            g[j] = gj - di * Ej;                                             // G <- G' - d E
                            w[j] = wp[j]; Ei[j] = Ej; s += Ej * wp[j];                       // rowsum(E W)
                        }
                    } else {                                                                 // W(tau-1) undone
                        #pragma omp simd reduction(+:s)
                        for (long j = 0; j < n_in; j++) {
                            const T gj = g[j] + hf[j];                                       // G' = G + dz^T a_now
                            const T R = oja ? (h[j] - di * w[j]) / (T(1) - e[j] * di) : h[j];   // R = (H - d W') / (1 - eta d)
                            const T w_before = w[j] - e[j] * R;                              // W = W' - eta R
                            const T Ej = e[j] * gj;                                          // E = eta G'
                            if (de) de[j] += gj * R;                                         // d_eta += G' R
                            g[j] = gj - di * Ej;                                             // G <- G' - d E
                            w[j] = w_before; Ei[j] = Ej; s += Ej * w_before;                 // rowsum(E W)
                        }
                    }
                    rowsum[r] = s;
                }
                for (long r = rows; r < RB; r++) std::fill(Eb.data() + r * np, Eb.data() + (r + 1) * np, T(0));
                // d_pre += post E, this block's rows
                if (sum_pre) column_block(post_p + m * b * op, op, i0, Eb.data(), np, b, np, dp + m * b * np, np);
                // d_post = pre E^T - 2 post (.) rowsum(E (.) W), for the block's rows
                row_products(pre_t + m * n_in * bp, bp, Eb.data(), np, n_in, P.data());
                for (long r = 0; r < rows; r++) for (long k = 0; k < b; k++) {
                    const long at = (m * b + k) * n_out + i0 + r;
                    d_post[at] = P[r * bp + k] - (oja ? 2 * post[at] * rowsum[r] : T(0));
                }
            }
        #pragma omp barrier
        // the threads' parts added together, each thread taking some rows: d_a_now += sum dz W, d_pre = sum post E
        #pragma omp for schedule(static) nowait
        for (long q = 0; q < Mb; q++)
            for (long t = 0; t < threads; t++) {
                if (sum_a) {
                    T* out = d_a_now + q * n_in; const T* part = da_parts + (t * Mb + q) * np;
                    #pragma omp simd
                    for (long j = 0; j < n_in; j++) out[j] += part[j];
                }
                if (sum_pre) {
                    T* out = d_pre + q * n_in; const T* part = dp_parts + (t * Mb + q) * np;
                    if (t == 0) std::copy(part, part + n_in, out);
                    else {
                        #pragma omp simd
                        for (long j = 0; j < n_in; j++) out[j] += part[j];
                    }
                }
            }
    }
}
template <typename T> static T* const* walk_work(const long* sizes) {
    static thread_local T* work[WALK_SCRATCH];
    for (int k = 0; k < WALK_SCRATCH; k++) work[k] = scratch<T>(k + 1, sizes[k]);
    return work;
}
// The scratch arrays of walk_in for the largest of several layers (sizes: n_out, n_in of each).
template <typename T> static T* const* layers_walk_work(long layers, long M, long b, const long* sizes) {
    long work_sizes[WALK_SCRATCH] = {};
    for (long l = 0; l < layers; l++) walk_scratch<T>(M, sizes[2 * l], sizes[2 * l + 1], b, most_threads(), work_sizes);
    return walk_work<T>(work_sizes);
}
template <typename T> static void walk(long M, long n_out, long n_in, long b, T* W, T* G, const T* eta, T* d_eta,
                                       const T* d_act, const T* act_now, T* d_b, const T* a_now, T* d_a_now,
                                       const T* pre, const T* post, int oja, T* d_pre, T* d_post, const T* W_prev) {
    const long sizes[2] = {n_out, n_in};
    T* const* work = layers_walk_work<T>(1, M, b, sizes);
    #pragma omp parallel
    walk_in(M, n_out, n_in, b, W, G, eta, d_eta, d_act, act_now, d_b, a_now, d_a_now, pre, post, oja, d_pre, d_post, work, W_prev);
}

// The postsynaptic term of a hidden layer with feedback (the feedback notebook): u = t B^T + c, f = phi_B(u) (ReLU, or
// the identity if linear), post = s f + (1 - s) act. t (M b, n_t), B (n, n_t), c (n), act and post (M b, n).
// Each thread takes rows k; u_k is computed with B transposed, vectorised along the layer's n units.
template <typename T> static void feedback_inputs(const T* tk, long n, long n_t, const T* Bt, const T* c, T* uk) {
    std::copy(c, c + n, uk);
    for (long q = 0; q < n_t; q++) {
        const T tq = tk[q]; const T* Bq = Bt + q * n;
        #pragma omp simd
        for (long i = 0; i < n; i++) uk[i] += tq * Bq[i];                         // u = t B^T + c
    }
}
// Inside a parallel region, with B^T (n_t, n) given; no barrier at the end.
template <typename T> static void feedback_post_in(long Mb, long n, long n_t, const T* t, const T* Bt, const T* c, T s, int linear, const T* act, T* post) {
    #pragma omp for schedule(static) nowait
    for (long k = 0; k < Mb; k++) {
        T* pk = post + k * n; const T* ak = act + k * n;
        feedback_inputs(t + k * n_t, n, n_t, Bt, c, pk);
        #pragma omp simd
        for (long i = 0; i < n; i++) pk[i] = s * (linear || pk[i] > 0 ? pk[i] : T(0)) + (1 - s) * ak[i];   // post = s f + (1 - s) act
    }
}
template <typename T> static void feedback_post(long Mb, long n, long n_t, const T* t, const T* B, const T* c, T s, int linear, const T* act, T* post) {
    T* Bt = scratch<T>(7, n_t * n);
    #pragma omp parallel
    {
        transpose_lifetimes(B, 1, n, n_t, Bt, n);                                 // B^T: (n_t, n)
        #pragma omp barrier
        feedback_post_in(Mb, n, n_t, t, Bt, c, s, linear, act, post);
    }
}

// Its backward for d_post: d_act += (1 - s) d_post;  d_s += sum (f - act) (.) d_post;  d_u = s d_post (.) phi_B'(u);
// d_B += d_u^T t;  d_c += sum d_u;  d_t += d_u B. Any of the outputs may be null. Each thread takes rows k; the sums
// over k (d_s, d_c, d_B) are gathered per thread and added at the end.
// Inside a parallel region, with B^T (n_t, n) given; no barrier at the end.
template <typename T> static void feedback_post_vjp_in(long Mb, long n, long n_t, const T* t, const T* Bt, const T* c, T s, int linear, const T* act,
                                                       const T* d_post, T* d_act, T* d_s, T* d_B, T* d_c, T* d_t) {
    T ds = 0;                                                                     // this thread's part of d_s
    std::vector<T> u(n), d_u(n), dc(d_c ? n : 0, T(0)), dBt(d_B ? n_t * n : 0, T(0));
    #pragma omp for schedule(static) nowait
    for (long k = 0; k < Mb; k++) {
        const T* tk = t + k * n_t; const T* ak = act + k * n; const T* dp = d_post + k * n;
        feedback_inputs(tk, n, n_t, Bt, c, u.data());
        #pragma omp simd reduction(+:ds)
        for (long i = 0; i < n; i++) {
            const bool on = linear || u[i] > 0;
            ds += ((on ? u[i] : T(0)) - ak[i]) * dp[i];                        // d_s = sum (f - act) d_post
            d_u[i] = on ? s * dp[i] : T(0);                                    // d_u = s d_post phi_B'(u)
        }
        if (d_act) {
            T* da = d_act + k * n;
            #pragma omp simd
            for (long i = 0; i < n; i++) da[i] += (1 - s) * dp[i];             // d_act += (1 - s) d_post
        }
        if (d_c) {
            #pragma omp simd
            for (long i = 0; i < n; i++) dc[i] += d_u[i];                      // d_c += sum d_u
        }
        for (long q = 0; q < n_t; q++) {
            if (d_B) {
                T* dBq = dBt.data() + q * n; const T tq = tk[q];
                #pragma omp simd
                for (long i = 0; i < n; i++) dBq[i] += tq * d_u[i];            // d_B^T += t^T d_u
            }
            if (d_t) {
                const T* Bq = Bt + q * n; T dt = 0;
                #pragma omp simd reduction(+:dt)
                for (long i = 0; i < n; i++) dt += d_u[i] * Bq[i];             // d_t += d_u B
                d_t[k * n_t + q] += dt;
            }
        }
    }
    #pragma omp critical
    {
        if (d_s) *d_s += ds;
        if (d_c) for (long i = 0; i < n; i++) d_c[i] += dc[i];
        if (d_B) for (long i = 0; i < n; i++) for (long q = 0; q < n_t; q++) d_B[i * n_t + q] += dBt[q * n + i];
    }
}
template <typename T> static void feedback_post_vjp(long Mb, long n, long n_t, const T* t, const T* B, const T* c, T s, int linear, const T* act,
                                                    const T* d_post, T* d_act, T* d_s, T* d_B, T* d_c, T* d_t) {
    T* Bt = scratch<T>(8, n_t * n);
    #pragma omp parallel
    {
        transpose_lifetimes(B, 1, n, n_t, Bt, n);                                 // B^T: (n_t, n)
        #pragma omp barrier
        feedback_post_vjp_in(Mb, n, n_t, t, Bt, c, s, linear, act, d_post, d_act, d_s, d_B, d_c, d_t);
    }
}

// The drivers' B_l^T (n_t, n_out) of every hidden layer, one after another in one scratch array; B_l is p[stride l + at] (null
// at the output). feedback_room makes the room (outside a parallel region), transpose_feedback fills it (inside one; a barrier
// after it).
template <typename T> static T* feedback_room(long layers, const long* sizes, void* const* p, long stride, long at, long n_t) {
    long size = 0;
    for (long l = 0; l < layers; l++) if (p[stride * l + at]) size += n_t * sizes[2 * l];
    return scratch<T>(8, size);
}
template <typename T> static void transpose_feedback(long layers, const long* sizes, void* const* p, long stride, long at, long n_t, T* Bt_all) {
    for (long l = 0, off = 0; l < layers; l++)
        if (p[stride * l + at]) { transpose_lifetimes((const T*)p[stride * l + at], 1, sizes[2 * l], n_t, Bt_all + off, sizes[2 * l]); off += n_t * sizes[2 * l]; }
    #pragma omp barrier
}

// Steps tau = hi, hi-1, .., lo of the walk for all the plastic layers (backward_step at each, with the rule's part undone), in
// one parallel region, with no Python between the steps. At each tau, top layer first: the layer's walk, then (tau > 0) its
// postsynaptic term's backward (d_t += d_post at the output, the feedback term's below); then (tau > 0) the teaching signal's
// backward, dL/da_L(tau-1) from d_t; and dL/dh(tau) into d_h. At tau = 0 only the forward pass's backward runs.
// Each activity a_k has two gradient buffers (2, M, b, n_k), used in turn: at each tau one holds dL/da_k(tau) (which the walk's
// forward part adds to) and the other receives dL/da_k(tau-1); on entry, the first holds dL/da(hi).
// sizes (layers, 2): n_out, n_in, top layer first. p (layers, 15): W, G, eta (full), d_eta, d_b, B, c (null at the output), d_s,
// d_B, d_c, the layer's activities and postsynaptic terms over the steps (T, M, b, n_out), a buffer for d_post (M b n_out), the
// gradient buffers of its output, and a replay buffer (hi - lo + 1, M, n_out, n_in) or null. With replay buffers (Oja's safety
// fallback: a span whose steps are not safe to undo), slot 0 holds W(lo-1) on entry; the span first replays the forward's
// plastic steps into slots 1 .. hi-lo, W(lo) .. W(hi-1), and the walk then takes W(tau-1) from slot tau-lo instead of undoing. h (T, M, b, n_in of the bottom layer): the inputs; dA_h: the gradient buffers of h, and
// d_h (M, T, b, n_in) its gradient at every step, both null if not needed. signal: how t depends on the output (0: not,
// 1: t = y - y_hat, 2: t = onehot(y) - softmax(z)); d_t: a buffer (M b n_t). T_steps: T (at tau = T there is no forward part).
template <typename T> static void walk_span(long hi, long lo, long T_steps, long layers, long M, long b, const long* sizes, void* const* p,
                                            const T* h, T* dA_h, T* d_h, const double* s, int linear, int oja, long n_t, int signal, T* d_t,
                                            const T* t_all, T t_scale) {
    const long Mb = M * b, n_h = sizes[2 * layers - 1];
    T* const* work = layers_walk_work<T>(layers, M, b, sizes);
    T* Bt_all = feedback_room<T>(layers, sizes, p, 15, 5, n_t);
    #define P(l, k) ((T*)p[15 * (l) + (k)])
    const bool replay = p[14] != nullptr;                                    // W(tau-1) replayed into P(l, 14), not undone
    const bool out_feedback = p[5] != nullptr;                               // the output layer has B_L: its a~_L is not t
    const T* t_seq = out_feedback ? t_all : P(0, 11);                        // t at every step (T, M, b, n_t)
    #pragma omp parallel
    {
        transpose_feedback(layers, sizes, p, 15, 5, n_t, Bt_all);
        // the replay: W(lo-1+k) = W(lo-2+k) + eta (.) R(lo-2+k), k = 1 .. hi-lo, with the forward's activities (the same
        // step_in as the forward, so the same numbers), the scratch of walk_in's padded post and pre lent to step_in
        for (long k = 1; replay && k <= hi - lo; k++) {
            const long tau = lo - 2 + k;                                     // the step replayed
            for (long l = 0; l < layers; l++) {
                const long n_out = sizes[2 * l], n_in = sizes[2 * l + 1], size = M * n_out * n_in;
                const T* before_step = P(l, 14) + (k - 1) * size; T* after_step = P(l, 14) + k * size;
                #pragma omp for schedule(static) nowait
                for (long q = 0; q < size; q++) after_step[q] = before_step[q];
                const T* in = l == layers - 1 ? h : P(l + 1, 10);
                step_in(M, n_out, n_in, b, after_step, (const T*)P(l, 2), in + tau * Mb * n_in, P(l, 11) + tau * Mb * n_out, oja,
                        (const T*)nullptr, (T*)nullptr, work[2], work[3]);
                #pragma omp barrier
            }
        }
        for (long tau = hi; tau >= lo; tau--) {
            const long now = (hi - tau) % 2, before = 1 - now;           // the buffers of dL/da(tau) and of dL/da(tau-1)
            #pragma omp for schedule(static)
            for (long q = 0; q < Mb * n_t; q++) d_t[q] = 0;
            for (long l = 0, off = 0; l < layers; l++) {
                const long n_out = sizes[2 * l], n_in = sizes[2 * l + 1];
                const bool output = l == 0, bottom = l == layers - 1;
                // the forward pass's backward of step tau: at tau < T, if dL/da_l(tau) exists (at the output: if t depends on it);
                // the rule's backward of step tau-1: at tau > 0
                const bool forward_part = tau < T_steps && (!output || signal || out_feedback), rule_part = tau > 0;
                if (!forward_part && !rule_part) continue;               // nothing to do for this layer
                // step tau's and tau-1's activities: the layer's output (a_l, post_l) and its input (a_{l-1}, or h)
                const T* out_now = forward_part ? P(l, 10) + tau * Mb * n_out : nullptr;
                const T* out_before = rule_part ? P(l, 10) + (tau - 1) * Mb * n_out : nullptr;
                const T* post_before = rule_part ? P(l, 11) + (tau - 1) * Mb * n_out : nullptr;
                const T* in = bottom ? h : P(l + 1, 10);
                T* dA_out = P(l, 13); T* dA_in = bottom ? dA_h : P(l + 1, 13);
                walk_in(M, n_out, n_in, b, P(l, 0), P(l, 1), (const T*)P(l, 2), P(l, 3), forward_part ? dA_out + now * Mb * n_out : nullptr,
                        output ? nullptr : out_now, P(l, 4), forward_part ? in + tau * Mb * n_in : nullptr,
                        forward_part && dA_in ? dA_in + now * Mb * n_in : nullptr, rule_part ? in + (tau - 1) * Mb * n_in : nullptr,
                        post_before, oja, rule_part && dA_in ? dA_in + before * Mb * n_in : nullptr,
                        rule_part ? P(l, 12) : nullptr, work,
                        rule_part && replay ? P(l, 14) + (tau - lo) * M * n_out * n_in : nullptr);
                #pragma omp barrier
                if (!rule_part) continue;
                if (output && !out_feedback) {                           // d_t += d_post (rows split as in the feedback backward)
                    #pragma omp for schedule(static) nowait
                    for (long k = 0; k < Mb; k++) for (long q = 0; q < n_t; q++) d_t[k * n_t + q] += P(l, 12)[k * n_t + q];
                } else {                                                 // the feedback term's backward; d_act: dL/da_l(tau-1)
                    if (output) {                                        // no layer above starts dL/da_L(tau-1): it starts at 0
                        T* d_out = dA_out + before * Mb * n_out;
                        #pragma omp for schedule(static)
                        for (long q = 0; q < Mb * n_out; q++) d_out[q] = 0;
                    }
                    feedback_post_vjp_in(Mb, n_out, n_t, t_seq + (tau - 1) * Mb * n_t, Bt_all + off, (const T*)P(l, 6), T(s[l]), linear,
                                         out_before, P(l, 12), dA_out + before * Mb * n_out, P(l, 7), P(l, 8), P(l, 9), d_t);
                    off += n_t * n_out;
                }
            }
            #pragma omp barrier
            // dL/da_L(tau-1) from d_t: -d_t (t = y - y_hat), or -(p (.) d_t - p (p . d_t)) with p = softmax(z) (classification)
            if (signal && tau > 0) {
                T* dA_L = P(0, 13) + before * Mb * n_t; const T* z = P(0, 10) + (tau - 1) * Mb * n_t;
                #pragma omp for schedule(static) nowait
                for (long k = 0; k < Mb; k++) {
                    const T* dt = d_t + k * n_t; T* out = dA_L + k * n_t;
                    if (signal == 1) { for (long q = 0; q < n_t; q++) out[q] = (out_feedback ? out[q] : T(0)) - dt[q]; continue; }   // (+ the feedback part)
                    const T* zk = z + k * n_t; T most = zk[0], total = 0, dot = 0;
                    for (long q = 1; q < n_t; q++) most = std::max(most, zk[q]);
                    for (long q = 0; q < n_t; q++) { out[q] = std::exp(zk[q] - most); total += out[q]; }
                    for (long q = 0; q < n_t; q++) { out[q] /= total; dot += out[q] * dt[q]; }       // out = p
                    for (long q = 0; q < n_t; q++) out[q] = -t_scale * (out[q] * dt[q] - out[q] * dot);
                }
            }
            // dL/dh(tau), complete once the bottom layer's forward part has added to it
            if (d_h && tau < T_steps) {
                #pragma omp for schedule(static) nowait
                for (long q = 0; q < Mb; q++) {
                    const long m = q / b, k = q % b;
                    std::copy(dA_h + (now * Mb + q) * n_h, dA_h + (now * Mb + q + 1) * n_h, d_h + ((m * T_steps + tau) * b + k) * n_h);
                }
            }
            #pragma omp barrier
        }
    }
    #undef P
}

// The forward steps tau = t0 .. t1-1 of all the plastic layers (the lifetime notebook's forward_step on the kernels above) in one
// parallel region, with no Python between the kernels: at each step a_l = phi(a_{l-1} W_l^T + b_l) layer by layer, the teaching
// signal t = post_L, the hidden layers' postsynaptic terms, and every layer's plastic step.
// sizes (layers, 2): each layer's n_out, n_in, bottom layer first. p (layers, 8): each layer's W, bias, eta (full), row_max (or
// null), B and c (null at the output), and its activity and postsynaptic-term buffers (S, M, b, n_out), step tau's at slot tau
// if keep, else at slot 0. s (layers): the feedback strengths. h (T, M, b, n_in of the bottom layer): the inputs. The targets: y
// (T, M, b, n_L) (regression) or labels (T, M, b) (classification: one-hot); error: t = target - prediction (softmax of the
// output for classification), else t = target. largest (T, layers), zero on entry, or null: max |eta d| per step and layer.
template <typename T> static void forward_steps(long t0, long t1, long M, long b, long layers, const long* sizes, void* const* p,
                                                const double* s, int keep, const T* h, const T* y, const std::int64_t* labels, int error,
                                                int linear, int oja, T* largest, T* t_all, T t_scale) {
    const long Mb = M * b, n_t = sizes[2 * layers - 2], n_0 = sizes[1], bp = up(b, 2 * V<T>::L);
    long widest_in = 0, widest_out = 0;
    for (long l = 0; l < layers; l++) {
        widest_in = std::max(widest_in, up(sizes[2 * l + 1], 2 * V<T>::L)); widest_out = std::max(widest_out, up(sizes[2 * l], RB));
    }
    T* at = scratch<T>(1, M * widest_in * bp); T* post_p = scratch<T>(2, Mb * widest_out); T* pre_p = scratch<T>(3, Mb * widest_in);
    T* Bt_all = feedback_room<T>(layers, sizes, p, 8, 4, n_t);
    auto at_slot = [&](long l, int which, long tau) { return (T*)p[8 * l + 6 + which] + (keep ? tau : 0) * Mb * sizes[2 * l]; };
    #pragma omp parallel
    {
        transpose_feedback(layers, sizes, p, 8, 4, n_t, Bt_all);
        for (long tau = t0; tau < t1; tau++) {
            const T* h_tau = h + tau * Mb * n_0;
            // a_l = phi(a_{l-1} W_l^T + b_l)
            for (long l = 0; l < layers; l++)
                affine_in(M, sizes[2 * l], sizes[2 * l + 1], b, (const T*)p[8 * l], l ? at_slot(l - 1, 0, tau) : h_tau, (const T*)p[8 * l + 1],
                          int(l < layers - 1), at_slot(l, 0, tau), at);
            // the teaching signal t: post_L, or (the output layer has feedback of its own) its own buffer t_all (S, M, b, n_t)
            T* t = t_all ? t_all + (keep ? tau : 0) * Mb * n_t : at_slot(layers - 1, 1, tau); const T* out = at_slot(layers - 1, 0, tau);
            #pragma omp for schedule(static)
            for (long q = 0; q < Mb; q++) {
                T* tq = t + q * n_t; const T* oq = out + q * n_t;
                if (labels) {                                            // t = onehot(y) - softmax(z), or onehot(y)
                    const long c = labels[tau * Mb + q];
                    T most = oq[0], total = 0;
                    for (long i = 1; i < n_t; i++) most = std::max(most, oq[i]);
                    for (long i = 0; i < n_t; i++) { tq[i] = std::exp(oq[i] - most); total += tq[i]; }
                    for (long i = 0; i < n_t; i++) tq[i] = t_scale * (T(i == c) - (error ? tq[i] / total : T(0)));   // t_scale: 1, or 1/b
                } else {                                                 // t = y - y_hat, or y
                    const T* yq = y + (tau * Mb + q) * n_t;
                    for (long i = 0; i < n_t; i++) tq[i] = yq[i] - (error ? oq[i] : T(0));
                }
            }
            // post_l = s_l phi_B(t B_l^T + c_l) + (1 - s_l) a_l, below the output (and at the output, if it has B_L)
            for (long l = 0, off = 0; l < layers; l++)
                if (p[8 * l + 4]) {
                    feedback_post_in(Mb, sizes[2 * l], n_t, t, Bt_all + off, (const T*)p[8 * l + 5], T(s[l]), linear, at_slot(l, 0, tau), at_slot(l, 1, tau));
                    off += n_t * sizes[2 * l];
                }
            #pragma omp barrier
            // W_l += eta (.) R_l(a_{l-1}, post_l), and max |eta d|
            for (long l = 0; l < layers; l++) {
                step_in(M, sizes[2 * l], sizes[2 * l + 1], b, (T*)p[8 * l], (const T*)p[8 * l + 2], l ? at_slot(l - 1, 0, tau) : h_tau, at_slot(l, 1, tau),
                        oja, (const T*)p[8 * l + 3], largest ? largest + tau * layers + l : nullptr, post_p, pre_p);
                #pragma omp barrier
            }
        }
    }
}

#define EXPORT(T, S) \
extern "C" void flp_affine_##S(long M, long n_out, long n_in, long b, const T* W, const T* a, const T* bias, int relu, T* z) { \
    affine<T>(M, n_out, n_in, b, W, a, bias, relu, z); } \
extern "C" void flp_step_##S(long M, long n_out, long n_in, long b, T* W, const T* eta, const T* pre, const T* post, int oja, \
                             const T* row_max, T* largest) { step<T>(M, n_out, n_in, b, W, eta, pre, post, oja, row_max, largest); } \
extern "C" void flp_walk_##S(long M, long n_out, long n_in, long b, T* W, T* G, const T* eta, T* d_eta, const T* d_act, const T* act_now, \
                             T* d_b, const T* a_now, T* d_a_now, const T* pre, const T* post, int oja, T* d_pre, T* d_post, \
                             const T* W_prev) { \
    walk<T>(M, n_out, n_in, b, W, G, eta, d_eta, d_act, act_now, d_b, a_now, d_a_now, pre, post, oja, d_pre, d_post, W_prev); } \
extern "C" void flp_feedback_post_##S(long Mb, long n, long n_t, const T* t, const T* B, const T* c, double s, int linear, \
                                      const T* act, T* post) { feedback_post<T>(Mb, n, n_t, t, B, c, T(s), linear, act, post); } \
extern "C" void flp_feedback_post_vjp_##S(long Mb, long n, long n_t, const T* t, const T* B, const T* c, double s, int linear, const T* act, \
                                          const T* d_post, T* d_act, T* d_s, T* d_B, T* d_c, T* d_t) { \
    feedback_post_vjp<T>(Mb, n, n_t, t, B, c, T(s), linear, act, d_post, d_act, d_s, d_B, d_c, d_t); } \
extern "C" void flp_forward_steps_##S(long t0, long t1, long M, long b, long layers, const long* sizes, void* const* p, const double* s, \
                                      int keep, const T* h, const T* y, const std::int64_t* labels, int error, int linear, int oja, T* largest, \
                                      T* t_all, double t_scale) { \
    forward_steps<T>(t0, t1, M, b, layers, sizes, p, s, keep, h, y, labels, error, linear, oja, largest, t_all, T(t_scale)); } \
extern "C" void flp_walk_span_##S(long hi, long lo, long T_steps, long layers, long M, long b, const long* sizes, void* const* p, \
                                  const T* h, T* dA_h, T* d_h, const double* s, int linear, int oja, long n_t, int signal, T* d_t, \
                                  const T* t_all, double t_scale) { \
    walk_span<T>(hi, lo, T_steps, layers, M, b, sizes, p, h, dA_h, d_h, s, linear, oja, n_t, signal, d_t, t_all, T(t_scale)); }
EXPORT(float, f32)
EXPORT(double, f64)
