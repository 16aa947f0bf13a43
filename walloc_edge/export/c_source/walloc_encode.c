/* Host program around the C encoder (this file may allocate; the encoder does not).
 *
 *   walloc_encode --latents IN.raw H W C OUT.raw   raw HWC uint8 in; int8 latents out in
 *                                                  (latent_dim, h, w) order
 *   walloc_encode --wlc IN.raw H W C OUT.wlc [rans|raw]
 *                                                  a .wlc the Python decoder reads (rans coder
 *                                                  with the planar predictor by default)
 *   walloc_encode --frames IN.raw H W C OUT [rans|raw]
 *                                                  that .wlc in wire frames (docs/framing.md),
 *                                                  stream 0, sequence 0: what a device sends
 *                                                  over a serial line or a socket
 *   walloc_encode --rans-tile IN.lat H W OUT       rans payload of one tile of int8 latents
 *                                                  (latent_dim, H, W): for test vectors
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walloc_encoder.h"
#include "walloc_model.h"
#include "walloc_rans.h"

#define TILE WALLOC_TILE  /* latents per tile side in the .wlc */

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

/* Header and coded tiles as docs/bitstream.md specifies. */
static void write_wlc(const int8_t *latents, long h, long w, long hb, long wb, int rans) {
    static const uint8_t model_id[16] = WALLOC_MODEL_ID;
    crc = 0;
    put("\x89WLC", 4);
    put_u8(1);                 /* format version */
    put_u8(0);                 /* image */
    put_u8(0);                 /* flags: the input had a channel axis (H x W x C) */
    put_u8(1);                 /* uint8 */
    put(model_id, 16);
    put_u8(WALLOC_J);
    put_u8(WALLOC_LATENT_BITS);
    put_u8(1);                 /* reflect padding */
    put_u16(WALLOC_LATENT_DIM);
    put_u16(WALLOC_CHANNELS);
    put_u8(rans ? 1 : 0);      /* coder: rans or raw */
    if (rans) {
        put_u8(2);             /* coder parameters: probability bits, model version */
        put_u8(WALLOC_RANS_PREC);
        put_u8(WALLOC_RANS_MODEL_VERSION);
    } else {
        put_u8(0);
    }
    put_u32((uint32_t)h);
    put_u32(TILE);
    put_u32((uint32_t)w);
    put_u32(TILE);
    for (long y0 = 0; y0 < hb; y0 += TILE)
        for (long x0 = 0; x0 < wb; x0 += TILE) {
            long th = hb - y0 < TILE ? hb - y0 : TILE, tw = wb - x0 < TILE ? wb - x0 : TILE;
            for (long l = 0; l < WALLOC_LATENT_DIM; l++)
                for (long y = 0; y < th; y++)
                    memcpy(&tile[(l * th + y) * tw], &latents[(l * hb + y0 + y) * wb + x0],
                           (size_t)tw);
            long size = WALLOC_LATENT_DIM * th * tw;
            if (rans) {
                size = walloc_rans_encode(tile, th, tw, payload, sizeof payload);
                if (size < 0) { fprintf(stderr, "rans: tile too large\n"); exit(1); }
            }
            put_u32((uint32_t)size);
            put(rans ? (const void *)payload : (const void *)tile, (size_t)size);
        }
    put_u32(crc);  /* the CRC of everything before it */
}

static void le16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static void le32(uint8_t *p, uint32_t v) {
    le16(p, v);
    le16(p + 2, v >> 16);
}

/* The message in frames of at most 60000 payload bytes (docs/framing.md). */
static void write_frames(FILE *f, const uint8_t *message, size_t n, uint16_t stream,
                         uint32_t sequence) {
    const size_t max_payload = 60000;
    size_t count = n ? (n + max_payload - 1) / max_payload : 1;
    for (size_t i = 0; i < count; i++) {
        size_t length = n - i * max_payload < max_payload ? n - i * max_payload : max_payload;
        const uint8_t *payload = message + i * max_payload;
        uint8_t header[22] = {0xA5, 'W', 'L', 'F', 1, 0};
        le16(header + 6, stream);
        le32(header + 8, sequence);
        le16(header + 12, (uint32_t)i);
        le16(header + 14, (uint32_t)count);
        le16(header + 16, (uint32_t)length);
        le32(header + 18, crc_update(0, header, 18));
        uint8_t tail[4];
        le32(tail, crc_update(0, payload, length));
        fwrite(header, 1, 22, f);
        fwrite(payload, 1, length, f);
        fwrite(tail, 1, 4, f);
    }
}

static int rans_tile(const char *in_path, long h, long w, const char *out_path) {
    size_t n = (size_t)WALLOC_LATENT_DIM * h * w;
    FILE *in = fopen(in_path, "rb");
    if (n > sizeof tile || !in || fread(tile, 1, n, in) != n) {
        fprintf(stderr, "%s: cannot read %zu latents (at most %zu)\n", in_path, n, sizeof tile);
        return 1;
    }
    fclose(in);
    long size = walloc_rans_encode(tile, h, w, payload, sizeof payload);
    FILE *out = fopen(out_path, "wb");
    if (size < 0 || !out) return 1;
    fwrite(payload, 1, (size_t)size, out);
    fclose(out);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "--rans-tile"))
        return rans_tile(argv[2], atol(argv[3]), atol(argv[4]), argv[5]);
    int rans = argc < 8 || strcmp(argv[7], "raw");
    if (argc < 7 || argc > 8 || (strcmp(argv[1], "--latents") && strcmp(argv[1], "--wlc") &&
                                 strcmp(argv[1], "--frames")) ||
        (argc == 8 && strcmp(argv[7], "raw") && strcmp(argv[7], "rans"))) {
        fprintf(stderr, "usage: %s --latents|--wlc|--frames IN.raw H W C OUT [rans|raw]\n",
                argv[0]);
        return 2;
    }
    crc_init();
    long h = atol(argv[3]), w = atol(argv[4]), c = atol(argv[5]);
    if (h < 1 || w < 1 || c != WALLOC_CHANNELS) {
        fprintf(stderr, "need H, W >= 1 and C = %d (this model's channels)\n", WALLOC_CHANNELS);
        return 2;
    }
    size_t n = (size_t)h * w * c;
    uint8_t *image = malloc(n);
    FILE *in = fopen(argv[2], "rb");
    if (!image || !in || fread(image, 1, n, in) != n) {
        fprintf(stderr, "%s: cannot read %zu bytes\n", argv[2], n);
        return 1;
    }
    fclose(in);
    long before, after, hb, wb;
    walloc_padding(h, &before, &after);
    hb = (h + before + after) / WALLOC_BLOCK;
    walloc_padding(w, &before, &after);
    wb = (w + before + after) / WALLOC_BLOCK;
    int8_t *latents = malloc((size_t)WALLOC_LATENT_DIM * hb * wb);
    if (!latents || walloc_encode_image(image, h, w, latents)) {
        fprintf(stderr, "image too wide for WALLOC_MAX_WIDTH=%d\n", WALLOC_MAX_WIDTH);
        return 1;
    }
    FILE *out = fopen(argv[6], "wb");
    if (!out) {
        fprintf(stderr, "%s: cannot write\n", argv[6]);
        return 1;
    }
    if (!strcmp(argv[1], "--latents")) {
        fwrite(latents, 1, (size_t)WALLOC_LATENT_DIM * hb * wb, out);
    } else {
        write_wlc(latents, h, w, hb, wb, rans);
        if (!strcmp(argv[1], "--wlc"))
            fwrite(buffer, 1, used, out);
        else
            write_frames(out, buffer, used, 0, 0);
    }
    fclose(out);
    free(buffer);
    free(image);
    free(latents);
    return 0;
}
