/* Host program around the C encoders (this file may allocate; the fixed encoder does not).
 *
 * walloc_encode [--threads N] [--fixed | --fixed-point] [--level L] [--boot B --sequence S]
 *     MODE ...: the latents come from the
 * runtime's C core (native_encoder.c, lifting; N threads, default 1; the whole input in
 * memory, and a few rows of floats per thread), with --fixed-point from its integer twin
 * (native_fixed.c: no float), or with --fixed from the fixed-memory encoder
 * (walloc_encoder.c, for devices without an OS: rows of WALLOC_MAX_WIDTH, a few MB). Built
 * with -DWALLOC_FIXED_POINT (make CFLAGS+=-DWALLOC_FIXED_POINT), the program has no float at
 * all: the fixed-memory encoder in integers by default, or --fixed-point. --level: the rans
 * coder's level, as the Python coder's (best, fast, fastest: the same bytes); without it
 * the planar predictor (model version 3, what firmware writes). A build with no float has
 * the fastest level only (best and fast fit in double). Modes:
 *
 * Image models (INPUT = H W C: raw uint8 H x W x C, rows of interleaved pixels):
 *   walloc_encode --latents IN.raw H W C OUT.raw   int8 latents out, (latent_dim, h, w) order
 *   walloc_encode --wlc IN.raw H W C OUT.wlc [rans|raw]
 *                                                  a .wlc the Python decoder reads (rans coder
 *                                                  with the planar predictor by default)
 *   walloc_encode --frames IN.raw H W C OUT [rans|raw]
 *                                                  that .wlc in wire frames (docs/framing.md)
 *                                                  as message S of boot B (--boot, --sequence;
 *                                                  default 0 0): what a device sends over a
 *                                                  serial line or a socket. A device numbers
 *                                                  its messages; two captures under one
 *                                                  number are a collision to the server
 *   walloc_encode --rans-tile IN.lat H W OUT       rans payload of one tile of int8 latents
 *                                                  (latent_dim, H, W): for test vectors
 * Audio models take INPUT = L C RATE instead (raw little-endian int16 PCM, L frames of C
 * interleaved samples; RATE in Hz, 0 if not known; latents (latent_dim, l)) and
 * --rans-tile IN.lat L OUT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "native_encoder.h"
#include "walloc_encoder.h"
#include "walloc_model.h"
#include "walloc_rans.h"

#define TILE WALLOC_TILE  /* latents per tile side in the .wlc */



#ifndef WALLOC_SENSOR_ID  /* this device's 64-bit id in its frames (-DWALLOC_SENSOR_ID=...) */
#define WALLOC_SENSOR_ID 0
#endif

static int8_t tile[WALLOC_RANS_MAX_LATENTS];
static uint8_t payload[WALLOC_RANS_MAX_LATENTS * 2 + 65536];

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static uint32_t crc;
static uint8_t *buffer;  /* the .wlc being written */
static size_t used, capacity;

static void put(const void *data, size_t n) {
    crc = crc_update(crc, data, n);
    if (used + n > capacity) {
        capacity = 2 * (used + n);
        buffer = realloc(buffer, capacity);
        if (!buffer) { fprintf(stderr, "out of memory\n"); exit(1); }
    }
    memcpy(buffer + used, data, n);
    used += n;
}

static void put_u8(uint8_t v) { put(&v, 1); }

static void put_u16(uint16_t v) {
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, 2);
}

static void put_u32(uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, 4);
}

/* Header and coded tiles as docs/bitstream.md specifies. Images: size = {H, W} and latents
 * (latent_dim, hb, wb); audio: size = {L}, hb = 1 and latents (latent_dim, wb). */
static void write_wlc(const int8_t *latents, const long *size, long hb, long wb,
                      uint32_t rate, int rans, int level) {
    static const uint8_t model_id[16] = WALLOC_MODEL_ID;
    crc = 0;
    put("\x89WLC", 4);
    put_u8(1);                 /* format version */
    put_u8(WALLOC_AUDIO);      /* modality: 0 image, 1 audio */
    put_u8(0);                 /* flags: the input had a channel axis (H x W x C, L x C) */
    put_u8(WALLOC_AUDIO ? 2 : 1);  /* uint8 pixels or int16 samples */
    put(model_id, 16);
    put_u8(WALLOC_J);
    put_u8(WALLOC_LATENT_BITS);
    put_u8(1);                 /* reflect padding */
    put_u16(WALLOC_LATENT_DIM);
    put_u16(WALLOC_CHANNELS);
    put_u8(rans ? 1 : 0);      /* coder: rans or raw */
    if (rans) {
        /* coder parameters: probability bits, model version, the level but for best */
        int levelled = level > WALLOC_RANS_BEST;
        put_u8((uint8_t)(2 + levelled));
        put_u8(WALLOC_RANS_PREC);
        put_u8(WALLOC_RANS_MODEL_VERSION(level));
        if (levelled) put_u8((uint8_t)level);
    } else {
        put_u8(0);
    }
    for (int axis = 0; axis < (WALLOC_AUDIO ? 1 : 2); axis++) {
        put_u32((uint32_t)size[axis]);
        put_u32(TILE);
    }
    if (WALLOC_AUDIO) put_u32(rate);
    long tile_rows = WALLOC_AUDIO ? 1 : TILE;
    for (long y0 = 0; y0 < hb; y0 += tile_rows)
        for (long x0 = 0; x0 < wb; x0 += TILE) {
            long th = hb - y0 < tile_rows ? hb - y0 : tile_rows;
            long tw = wb - x0 < TILE ? wb - x0 : TILE;
            for (long l = 0; l < WALLOC_LATENT_DIM; l++)
                for (long y = 0; y < th; y++)
                    memcpy(&tile[(l * th + y) * tw], &latents[(l * hb + y0 + y) * wb + x0],
                           (size_t)tw);
            long length = WALLOC_LATENT_DIM * th * tw;
            if (rans) {
                length = WALLOC_AUDIO
                    ? walloc_rans_encode_audio(tile, tw, level, payload, sizeof payload)
                    : walloc_rans_encode(tile, th, tw, level, payload, sizeof payload);
                if (length < 0) { fprintf(stderr, "rans: tile too large\n"); exit(1); }
            }
            put_u32((uint32_t)length);
            put(rans ? (const void *)payload : (const void *)tile, (size_t)length);
        }
    put_u32(crc);  /* the CRC of everything before it */
}

static void le16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static void le32(uint8_t *p, uint32_t v) {
    le16(p, v);
    le16(p + 2, v >> 16);
}

static void le64(uint8_t *p, uint64_t v) {
    le32(p, (uint32_t)v);
    le32(p + 4, (uint32_t)(v >> 32));
}

/* The message in version-2 frames of at most 60000 payload bytes (docs/framing.md), from
   sensor `sensor` (its 64-bit id), boot `boot`, as message `sequence` of that boot. */
static void write_frames(FILE *f, const uint8_t *message, size_t n, uint64_t sensor,
                         uint32_t boot, uint32_t sequence) {
    const size_t max_payload = 60000;
    size_t count = n ? (n + max_payload - 1) / max_payload : 1;
    for (size_t i = 0; i < count; i++) {
        size_t length = n - i * max_payload < max_payload ? n - i * max_payload : max_payload;
        const uint8_t *payload = message + i * max_payload;
        uint8_t header[32] = {0xA5, 'W', 'L', 'F', 2, 0};
        le64(header + 6, sensor);
        le32(header + 14, boot);
        le32(header + 18, sequence);
        le16(header + 22, (uint32_t)i);
        le16(header + 24, (uint32_t)count);
        le16(header + 26, (uint32_t)length);
        le32(header + 28, crc_update(0, header, 28));
        uint8_t tail[4];
        le32(tail, crc_update(0, payload, length));
        fwrite(header, 1, 32, f);
        fwrite(payload, 1, length, f);
        fwrite(tail, 1, 4, f);
    }
}

/* --rans-tile: `rows` x `width` latents per channel (audio: rows = 0, width = l). */
static int rans_tile(const char *in_path, long rows, long width, int level,
                     const char *out_path) {
    if ((WALLOC_AUDIO ? rows != 0 : rows < 1) || width < 1) {
        fprintf(stderr, "--rans-tile needs %s >= 1\n", WALLOC_AUDIO ? "L" : "ROWS, WIDTH");
        return 2;
    }
    size_t n = (size_t)WALLOC_LATENT_DIM * (rows ? rows : 1) * width;
    FILE *in = fopen(in_path, "rb");
    if (n > sizeof tile || !in || fread(tile, 1, n, in) != n) {
        fprintf(stderr, "%s: cannot read %zu latents (at most %zu)\n", in_path, n, sizeof tile);
        return 1;
    }
    fclose(in);
    long size = rows ? walloc_rans_encode(tile, rows, width, level, payload, sizeof payload)
                     : walloc_rans_encode_audio(tile, width, level, payload, sizeof payload);
    FILE *out = fopen(out_path, "wb");
    if (size < 0 || !out) return 1;
    fwrite(payload, 1, (size_t)size, out);
    fclose(out);
    return 0;
}

/* The `n` bytes of `path` (a file of exactly that size: another size means other
 * dimensions than the ones given) in a new buffer, or exit with a message. */
static void *read_input(const char *path, size_t n, const char *dims) {
    FILE *in = fopen(path, "rb");
    if (!in) {
        perror(path);
        exit(1);
    }
    void *data = malloc(n ? n : 1);
    if (!data) {
        fprintf(stderr, "out of memory for %zu bytes of input\n", n);
        exit(1);
    }
    size_t got = fread(data, 1, n, in);
    int more = got == n && fgetc(in) != EOF; /* a file or a pipe: whatever it holds */
    if (ferror(in)) {
        perror(path);
        exit(1);
    }
    if (got != n || more) {
        fprintf(stderr, "%s: holds %s than the %zu bytes %s needs: give its own "
                "dimensions\n", path, more ? "more" : "fewer", n, dims);
        exit(2);
    }
    fclose(in);
    return data;
}

#define MAX_RATE 1048575L /* the .wlc's sample rate field holds at most this (bitstream.md) */

/* A decimal count from the command line, or -1 where it is none (a sign, other characters,
 * past LONG_MAX): atol took "512abc" as 512 and wrapped what did not fit. */
static long count_arg(const char *s) {
    char *end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    return s[0] < '0' || s[0] > '9' || *end || errno ? -1 : v;
}

/* Blocks of 2^J samples along an axis of `size` once reflect-padded. */
static long blocks(long size) {
    long before, after;
    walloc_padding(size, &before, &after);
    return (size + before + after) / WALLOC_BLOCK;
}

#if WALLOC_CORE || WALLOC_FIXED_CORE
/* The latents by the runtime's C core (with `integers` its fixed-point twin): the input
 * reflect-padded to multiples of 2^J (read in place through each padded row's and column's
 * source index), then the periodic packet transform of the whole (what the Python runtime
 * computes). */
static int core_latents(const void *input, const long *size, long c, int8_t *latents,
                        int threads, int integers) {
    long before[2] = {0, 0}, after[2] = {0, 0}, padded[2] = {size[0], size[1]};
    for (int a = 0; a < (WALLOC_AUDIO ? 1 : 2); a++) {
        walloc_padding(size[a], &before[a], &after[a]);
        padded[a] = size[a] + before[a] + after[a];
    }
    int64_t *row_of = malloc((size_t)padded[0] * sizeof *row_of);
    int64_t *col_of = malloc((size_t)padded[1] * sizeof *col_of);
    if (!row_of || !col_of) {
        free(row_of); free(col_of);
        return -1;
    }
    for (long i = 0; i < padded[0]; i++) row_of[i] = walloc_reflect(i, size[0], before[0]);
    for (long j = 0; j < padded[1]; j++)
        col_of[j] = WALLOC_AUDIO ? 0 : walloc_reflect(j, size[1], before[1]);
    int status = -1;
#if WALLOC_FIXED_CORE
    if (integers)
        status = WALLOC_AUDIO
        ? walloc_fixed_encode_audio(input, row_of, padded[0], c, WALLOC_J, walloc_fixed_scaling,
                                    &walloc_fixed_weight[0][0][0], &walloc_fixed_shifts[0][0],
                                    walloc_fixed_bias, WALLOC_LATENT_DIM, walloc_fixed_thresholds,
                                    WALLOC_THRESHOLDS, WALLOC_CLIP, latents, threads)
        : walloc_fixed_encode_image(input, size[1], row_of, col_of, padded[0], padded[1], c,
                                    WALLOC_J, walloc_fixed_scaling, &walloc_fixed_weight[0][0][0],
                                    &walloc_fixed_shifts[0][0], walloc_fixed_bias,
                                    WALLOC_LATENT_DIM, walloc_fixed_thresholds, WALLOC_THRESHOLDS,
                                    WALLOC_CLIP, latents, threads);
#endif
#if WALLOC_CORE
    if (!integers)
        status = WALLOC_AUDIO
        ? walloc_native_encode_audio(input, row_of, padded[0], c, WALLOC_J,
                                     walloc_core_lifting, &walloc_core_weight[0][0],
                                     walloc_core_bias, WALLOC_LATENT_DIM,
                                     walloc_core_thresholds, WALLOC_THRESHOLDS, WALLOC_CLIP,
                                     latents, threads)
        : walloc_native_encode_image(input, size[1], row_of, col_of, padded[0], padded[1], c,
                                     WALLOC_J, walloc_core_lifting, &walloc_core_weight[0][0],
                                     walloc_core_bias, WALLOC_LATENT_DIM,
                                     walloc_core_thresholds, WALLOC_THRESHOLDS, WALLOC_CLIP,
                                     latents, threads);
#endif
    free(row_of); free(col_of);
    return status;
}
#endif

/* --level NAME's number, or -1 after saying on stderr why there is none. */
static int level_number(const char *name) {
    static const char *names[] = {"best", "fast", "fastest"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, names[i])) continue;
#ifdef WALLOC_FIXED_POINT
        if (i != WALLOC_RANS_FASTEST) {
            fprintf(stderr, "--level %s fits its predictors in float; this build has no "
                    "float (-DWALLOC_FIXED_POINT): use --level fastest\n", name);
            return -1;
        }
#endif
        return i;
    }
    fprintf(stderr, "unknown --level %s; choose from best, fast, fastest\n", name);
    return -1;
}

#if WALLOC_AUDIO
#define INPUT "L C RATE"
#else
#define INPUT "H W C"
#endif

int main(int argc, char **argv) {
    const char *program = argv[0];
    int threads = 1, fixed = !WALLOC_CORE, integers = 0, level = WALLOC_RANS_PLANAR;
    int cores_named = 0;
    unsigned long long key[2] = {0, 0}; /* --boot, --sequence */
    while (argc > 2 && (!strcmp(argv[1], "--threads") || !strcmp(argv[1], "--fixed") ||
                        !strcmp(argv[1], "--fixed-point") || !strcmp(argv[1], "--level") ||
                        !strcmp(argv[1], "--boot") || !strcmp(argv[1], "--sequence"))) {
        int shift = strcmp(argv[1], "--fixed") && strcmp(argv[1], "--fixed-point") ? 2 : 1;
        if (shift == 1 && cores_named++) {
            fprintf(stderr, "--fixed and --fixed-point name two encoders: choose one\n");
            return 2;
        }
        if (!strcmp(argv[1], "--fixed")) fixed = 1;
        else if (shift == 1) integers = 1, fixed = 0;
        else if (!strcmp(argv[1], "--level")) {
            if ((level = level_number(argv[2])) < 0) return 2;
        } else if (!strcmp(argv[1], "--threads")) {
            const long n = count_arg(argv[2]);
            if (n < 1 || n > 1024) {
                fprintf(stderr, "--threads needs a number from 1 to 1024\n");
                return 2;
            }
            threads = (int)n;
        } else {
            char *end;
            unsigned long long v = strtoull(argv[2], &end, 10);
            if (*end || argv[2][0] < '0' || argv[2][0] > '9' || v > 0xFFFFFFFFull) {
                fprintf(stderr, "%s needs a number from 0 to 4294967295\n", argv[1]);
                return 2;
            }
            key[!strcmp(argv[1], "--sequence")] = v;
        }
        argc -= shift;
        argv += shift;
    }
    if (argc == 6 - WALLOC_AUDIO && !strcmp(argv[1], "--rans-tile"))
        return WALLOC_AUDIO ? rans_tile(argv[2], 0, count_arg(argv[3]), level, argv[4])
                            : rans_tile(argv[2], count_arg(argv[3]), count_arg(argv[4]), level,
                                        argv[5]);
    int rans = argc < 8 || strcmp(argv[7], "raw");
    if (argc < 7 || argc > 8 || (strcmp(argv[1], "--latents") && strcmp(argv[1], "--wlc") &&
                                 strcmp(argv[1], "--frames"))) {
        fprintf(stderr, "usage: %s [--threads N] [--fixed | --fixed-point] [--level L] "
                "[--boot B --sequence S] --latents|--wlc|--frames IN.raw " INPUT
                " OUT [rans|raw] (options before the mode)\n", program);
        return 2;
    }
    if (argc == 8 && strcmp(argv[7], "raw") && strcmp(argv[7], "rans")) {
        fprintf(stderr, "unknown coder %s; choose rans or raw\n", argv[7]);
        return 2;
    }
    if (integers && !WALLOC_FIXED_CORE) {
        fprintf(stderr, "--fixed-point: this model has no fixed-point core (its filters do "
                "not lift, or its range is past int32); use --fixed\n");
        return 2;
    }
    crc_init();
    long size[2] = {count_arg(argv[3]), WALLOC_AUDIO ? 1 : count_arg(argv[4])};
    long c = count_arg(argv[WALLOC_AUDIO ? 4 : 5]), rate = WALLOC_AUDIO ? count_arg(argv[5]) : 0;
    if (size[0] < 1 || size[1] < 1 || c != WALLOC_CHANNELS || rate < 0 || rate > MAX_RATE) {
        fprintf(stderr, "need %s >= 1, C = %d (this model's channels)%s\n",
                WALLOC_AUDIO ? "L" : "H, W", WALLOC_CHANNELS,
                WALLOC_AUDIO ? ", RATE from 0 to 1048575 (samples a second)" : "");
        return 2;
    }
#if WALLOC_AUDIO
    long hb = 1, wb = blocks(size[0]) + 2;  /* latents (latent_dim, L/2^J + 2) */
    int16_t *pcm = read_input(argv[2], (size_t)size[0] * c * sizeof *pcm, "L x C int16");
    int8_t *latents = malloc((size_t)WALLOC_LATENT_DIM * wb);
    int failed = !latents;
#if WALLOC_CORE || WALLOC_FIXED_CORE
    if (!fixed && !failed) failed = core_latents(pcm, size, c, latents, threads, integers);
#endif
    if (fixed && !failed) {
        walloc_sample *work = malloc((size_t)walloc_audio_workspace(size[0]) * sizeof *work);
        failed = !work || walloc_encode_audio(pcm, size[0], work, latents);
        free(work);
    }
    if (failed) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    free(pcm);
#else
    long hb = blocks(size[0]), wb = blocks(size[1]);
    uint8_t *image = read_input(argv[2], (size_t)size[0] * size[1] * c, "H x W x C");
    int8_t *latents = malloc((size_t)WALLOC_LATENT_DIM * hb * wb);
    if (!latents) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
#if WALLOC_CORE || WALLOC_FIXED_CORE
    if (!fixed && core_latents(image, size, c, latents, threads, integers)) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
#endif
    if (fixed && walloc_encode_image(image, size[0], size[1], latents)) {
        fprintf(stderr, "image too wide for WALLOC_MAX_WIDTH=%d\n", WALLOC_MAX_WIDTH);
        return 1;
    }
    free(image);
#endif
    FILE *out = fopen(argv[6], "wb");
    if (!out) {
        fprintf(stderr, "%s: cannot write\n", argv[6]);
        return 1;
    }
    if (!strcmp(argv[1], "--latents")) {
        fwrite(latents, 1, (size_t)WALLOC_LATENT_DIM * hb * wb, out);
    } else {
        write_wlc(latents, size, hb, wb, (uint32_t)rate, rans, level);
        if (!strcmp(argv[1], "--wlc"))
            fwrite(buffer, 1, used, out);
        else
            write_frames(out, buffer, used, WALLOC_SENSOR_ID, (uint32_t)key[0],
                         (uint32_t)key[1]);
    }
    fclose(out);
    free(buffer);
    free(latents);
    return 0;
}
