/* The one-pass width lifting of the float core (split_lift_row_avx512) against its four
 * passes (split_lift_passes), bit for bit, on every row length it takes up to 2112 pairs
 * (16 or more) and on integer and real-valued samples, and that it writes nothing past a
 * row's m outputs; built with the core itself included, so the two are the core's own
 * functions. Prints "unavailable" where the CPU or the compiler has no
 * AVX-512 build of it; otherwise the rows compared, and exits 1 on a difference. */
#include <stdio.h>

#include "native_encoder.c"

int main(void) {
#ifdef WALLOC_X86_CLONES
    if (!__builtin_cpu_supports("x86-64-v4")) {
        puts("unavailable");
        return 0;
    }
    const Lifting L = {{-1.586134342f, -0.05298011854f, 0.8829110762f, 0.4435068522f}, 0, 1};
    int64_t rows = 0;
    srand(7);
    const float fence = 12345.0f; /* after each of the one pass's outputs */
    for (int64_t m = 16; m <= 2112; m++)
        for (int real = 0; real < 2; real++) {
            float *y = malloc(sizeof(float) * 2 * m), *out = malloc(sizeof(float) * (4 * m + 32));
            float *s = out + 2 * m, *d = s + m + 16;
            for (int64_t i = 0; i < 2 * m; i++)
                y[i] = real ? (float)rand() / RAND_MAX * 1e4f - 5e3f : (float)(rand() % 256);
            for (int64_t i = 0; i < 2 * m + 32; i++) s[i] = fence;
            split_lift_passes(y, out, out + m, m, &L);
            split_lift_row_avx512(y, s, d, m, L.c);
            if (memcmp(out, s, sizeof(float) * m) || memcmp(out + m, d, sizeof(float) * m)) {
                printf("rows of %ld pairs differ\n", (long)m);
                return 1;
            }
            for (int64_t i = 0; i < 16; i++)
                if (s[m + i] != fence || d[m + i] != fence) {
                    printf("rows of %ld pairs: written past the end\n", (long)m);
                    return 1;
                }
            rows++;
            free(y);
            free(out);
        }
    printf("%ld rows identical\n", (long)rows);
    return 0;
#else
    puts("unavailable");
    return 0;
#endif
}
