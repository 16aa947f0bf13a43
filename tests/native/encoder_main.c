/* A test program around native_encoder.c and native_fixed.c, for running them where Python
 * is not (under qemu-user, cross-compiled): the folded model from a parameter file, raw
 * samples from a file, int8 latents to a file.
 *
 *   encoder_main image|image-fixed PARAMS RAW ROWS COLS CHANNELS OUT THREADS
 *   encoder_main audio|audio-fixed PARAMS RAW SAMPLES CHANNELS OUT THREADS
 *
 * PARAMS (little-endian, as tests/test_cross_compile.py writes it): int64 J, latent_dim,
 * planes, thresholds, clip; then for the float core float32 lifting[4],
 * weight[planes * latent_dim], bias[latent_dim], float64 thresholds[thresholds]; for the
 * fixed core int32 scaling[7], int16 weight[planes * 3 * latent_dim], int32
 * shifts[planes * 2], bias[latent_dim], thresholds[thresholds]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "native_encoder.h"

static void *slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = malloc(*size + 1);
    if (fread(data, 1, *size, f) != *size) { perror(path); exit(1); }
    fclose(f);
    return data;
}

int main(int argc, char **argv) {
    int image = argc == 9 && !strncmp(argv[1], "image", 5);
    int fixed = strstr(argv[1], "-fixed") != NULL;
    if (!image && !(argc == 8 && !strncmp(argv[1], "audio", 5))) {
        fprintf(stderr, "usage: see the comment at the top of encoder_main.c\n");
        return 2;
    }
    size_t size;
    char *p = slurp(argv[2], &size);
    int64_t head[5];
    memcpy(head, p, sizeof head);
    int64_t J = head[0], L = head[1], planes = head[2], n_thresholds = head[3], clip = head[4];
    const float *lifting = (const float *)(p + sizeof head);
    const float *weight = lifting + 4, *bias = weight + planes * L;
    const double *thresholds = (const double *)(bias + L);
    void *raw = slurp(argv[3], &size);
    int64_t a = atoll(argv[4]), b = atoll(argv[5]);
    int64_t channels = image ? atoll(argv[6]) : b, block = (int64_t)1 << J;
    int64_t latents = image ? L * (a / block) * (b / block) : L * (a / block + 2);
    int threads = atoi(argv[image ? 8 : 7]);
    int8_t *out = malloc((size_t)latents);
    int64_t *rows = malloc((size_t)a * sizeof(int64_t));
    int64_t *cols = malloc((size_t)b * sizeof(int64_t));
    for (int64_t i = 0; i < a; i++) rows[i] = i; /* the input read as it is */
    for (int64_t i = 0; i < b; i++) cols[i] = i;
    const int32_t *scaling = (const int32_t *)(p + sizeof head);
    const int16_t *fweight = (const int16_t *)(scaling + 7);
    const int32_t *shifts = (const int32_t *)(fweight + planes * 3 * L);
    const int32_t *fbias = shifts + planes * 2, *fthresholds = fbias + L;
    int status = fixed && image
        ? walloc_fixed_encode_image(raw, b, rows, cols, a, b, channels, J, scaling, fweight,
                                    shifts, fbias, L, fthresholds, n_thresholds, clip, out,
                                    threads)
        : fixed ? walloc_fixed_encode_audio(raw, rows, a, channels, J, scaling, fweight, shifts,
                                            fbias, L, fthresholds, n_thresholds, clip, out,
                                            threads)
        : image
        ? walloc_native_encode_image(raw, b, rows, cols, a, b, channels, J, lifting, weight, bias,
                                     L, thresholds, n_thresholds, clip, out, threads)
        : walloc_native_encode_audio(raw, rows, a, channels, J, lifting, weight, bias, L,
                                     thresholds, n_thresholds, clip, out, threads);
    if (status) { fprintf(stderr, "encoder status %d\n", status); return 1; }
    FILE *f = fopen(argv[image ? 7 : 6], "wb");
    fwrite(out, 1, (size_t)latents, f);
    fclose(f);
    return 0;
}
