/* The rans levels' least-squares fit in C99 (the "best" and "fast" predictors; this file
 * allocates and uses double, so a -DWALLOC_FIXED_POINT build leaves it out).
 *
 * What walloc_edge/runtime/coders/rans/predictor.py computes (fit_taps for "best",
 * fit_all_taps for "fast"), step for step: the Gram matrices of the features (a latent's own
 * neighbours; the value, west and north of every channel) over every step-th latent, exact
 * in integers; per channel the regularised normal equations solved in double (Gaussian
 * elimination with partial pivoting, where numpy calls LAPACK: the same solution to within
 * rounding, so the same Q8 coefficients unless one lies within rounding of a half); "best"
 * keeps the earlier channels only where their coefficients pay for themselves, judged as
 * fit_taps judges them.
 */
#ifndef WALLOC_FIXED_POINT
#include <math.h>
#include <stdlib.h>

#include "walloc_rans.h"

#define C WALLOC_LATENT_DIM
#define K WALLOC_RANS_OWN
#define R (3 * C)            /* the shared features: values, west, north of every channel */
#define FIT_SAMPLES 16384    /* "best": about this many latents a channel */
#define FAST_BUDGET (1L << 22) /* "fast": about this many multiply-adds for the Gram matrix */
#define COEF_BITS 8
#define PI 3.141592653589793
#define E 2.718281828459045

/* Latents a channel the level's fit looks at (levels.fit_samples). */
static long fit_samples(int level) {
    long fast = FAST_BUDGET / ((long)R * R);
    if (level == WALLOC_RANS_BEST) return FIT_SAMPLES;
    return fast < 1024 ? 1024 : fast > FIT_SAMPLES ? FIT_SAMPLES : fast;
}

/* x . y over s samples, exactly: |feature| <= 127 and s < 2^15 keep the sum in int32. */
static int64_t dot(const int16_t *x, const int16_t *y, long s) {
    int32_t acc = 0;
    for (long i = 0; i < s; i++) acc += (int32_t)x[i] * y[i];
    return acc;
}

/* Solve a x = b (k x k, row-major; both overwritten, x in b); a is nonsingular here (the
 * regularised Gram matrix of a least-squares fit). */
static void solve(double *a, double *b, long k) {
    for (long j = 0; j < k; j++) {
        long pivot = j;
        for (long i = j + 1; i < k; i++)
            if (fabs(a[i * k + j]) > fabs(a[pivot * k + j])) pivot = i;
        if (pivot != j) {
            for (long q = 0; q < k; q++) {
                double t = a[j * k + q];
                a[j * k + q] = a[pivot * k + q];
                a[pivot * k + q] = t;
            }
            double t = b[j];
            b[j] = b[pivot];
            b[pivot] = t;
        }
        for (long i = j + 1; i < k; i++) {
            double f = a[i * k + j] / a[j * k + j];
            for (long q = j; q < k; q++) a[i * k + q] -= f * a[j * k + q];
            b[i] -= f * b[j];
        }
    }
    for (long j = k - 1; j >= 0; j--) {
        for (long q = j + 1; q < k; q++) b[j] -= a[j * k + q] * b[q];
        b[j] /= a[j * k + j];
    }
}

/* Channel c's Q8 coefficients over its first k taps (gram k x k of stride `full`, target),
 * into q; returns the mean-squared-residual cost as fit_taps weighs it. */
static double fit(const double *gram, const double *target, double self, long k, long full,
                  long s, long n, double *work, int16_t *q) {
    double *a = work, *beta = work + k * k;
    for (long i = 0; i < k; i++) {
        for (long j = 0; j < k; j++) a[i * k + j] = gram[i * full + j];
        a[i * k + i] += 1e-6;
        beta[i] = target[i];
    }
    solve(a, beta, k);
    double bt = 0, bgb = 0;
    for (long i = 0; i < k; i++) {
        double v = nearbyint(beta[i] * (1 << COEF_BITS));  /* half to even, as np.round */
        v = v < -32767 ? -32767 : v > 32767 ? 32767 : v;
        q[i] = (int16_t)v;
        beta[i] = v / (1 << COEF_BITS);
    }
    for (long i = 0; i < k; i++) bt += 2 * beta[i] * target[i];
    for (long j = 0; j < k; j++) {
        double g = 0;
        for (long i = 0; i < k; i++) g += beta[i] * gram[i * full + j];
        bgb += g * beta[j];
    }
    double rss = self - bt + bgb;
    double mean_square = (rss > 0 ? rss : 0) / (double)s;
    return (double)n * (0.5 * log2(1 + 2 * PI * E * mean_square)) + 16.0 * (double)k;
}

int walloc_rans_fit(const int8_t *latents, long n, int level, const uint8_t *constant,
                    walloc_rans_neighbour own, int16_t coefs[][WALLOC_RANS_MAX_TAPS],
                    uint8_t *m_out) {
    const long full = WALLOC_RANS_MAX_TAPS, per = n / fit_samples(level);
    const long step = per > 1 ? per : 1, s = (n + step - 1) / step;
    int16_t *V = malloc(sizeof *V * (size_t)(R * s));      /* (3C, s) */
    int16_t *O = malloc(sizeof *O * (size_t)(C * K * s));  /* (C, K, s) */
    int64_t *shared = malloc(sizeof *shared * (size_t)(R * R));
    double *gram = malloc(sizeof *gram * (size_t)(full * full));
    double *work = malloc(sizeof *work * (size_t)(full * full + full));
    double target[WALLOC_RANS_MAX_TAPS];
    int16_t q[WALLOC_RANS_MAX_TAPS];
    int status = -1;
    if (!V || !O || !shared || !gram || !work) goto done;
    for (long c = 0; c < C; c++) {
        const int8_t *x = latents + c * n;
        for (long i = 0; i < s; i++) {
            long p = i * step;
            V[c * s + i] = x[p];
            V[(C + c) * s + i] = (int16_t)own(x, p, 0);
            V[(2 * C + c) * s + i] = (int16_t)own(x, p, 1);
            for (long k = 0; k < K; k++) O[(c * K + k) * s + i] = (int16_t)own(x, p, k);
        }
    }
    for (long i = 0; i < R; i++)
        for (long j = i; j < R; j++)
            shared[i * R + j] = shared[j * R + i] = dot(V + i * s, V + j * s, s);
    for (long c = 0; c < C; c++) {
        if (constant[c]) continue;
        long m = c < WALLOC_RANS_MAX_EARLIER ? c : WALLOC_RANS_MAX_EARLIER, k = K + 3 * m;
        long pick[3 * WALLOC_RANS_MAX_EARLIER];  /* values, west, north of c - m ... c - 1 */
        for (long f = 0; f < 3; f++)
            for (long j = 0; j < m; j++) pick[f * m + j] = f * C + c - m + j;
        const int16_t *own_c = O + c * K * s;
        /* [[own, cross], [cross^T, shared]] over the picked taps, and the target */
        for (long a = 0; a < K; a++) {
            for (long b = 0; b < K; b++)
                gram[a * full + b] = (double)dot(own_c + a * s, own_c + b * s, s);
            for (long j = 0; j < 3 * m; j++)
                gram[a * full + K + j] = gram[(K + j) * full + a] =
                    (double)dot(own_c + a * s, V + pick[j] * s, s);
            target[a] = (double)dot(own_c + a * s, V + c * s, s);
        }
        for (long i = 0; i < 3 * m; i++) {
            for (long j = 0; j < 3 * m; j++)
                gram[(K + i) * full + K + j] = (double)shared[pick[i] * R + pick[j]];
            target[K + i] = (double)shared[pick[i] * R + c];
        }
        double self = (double)shared[c * R + c];
        if (level == WALLOC_RANS_FAST) {  /* every earlier channel, no choice */
            fit(gram, target, self, k, full, s, n, work, coefs[c]);
            m_out[c] = (uint8_t)m;
            continue;
        }
        double alone = fit(gram, target, self, K, full, s, n, work, coefs[c]);
        m_out[c] = 0;
        if (m && fit(gram, target, self, k, full, s, n, work, q) < alone) {
            for (long i = 0; i < k; i++) coefs[c][i] = q[i];
            m_out[c] = (uint8_t)m;
        }
    }
    status = 0;
done:
    free(V); free(O); free(shared); free(gram); free(work);
    return status;
}
#endif
