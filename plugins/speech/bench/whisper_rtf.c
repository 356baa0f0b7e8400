// The baseline for bench/rtf.sh: whisper.cpp alone, built from the source whisper-rs-sys
// vendors (that copy has no examples/, so no whisper-cli). It does what whisper-cli
// does for one file: greedy decoding of 16 kHz mono samples with whisper_full, timed
// without the model load, with the decoding parameters the plugin uses.
//
// usage: whisper_rtf MODEL WAV THREADS AUDIO_CTX RUNS
// prints: seconds of audio, fastest seconds per run, the transcript
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "whisper.h"

// 16-bit PCM mono WAV only (the script makes it so with sox).
static float *read_wav(const char *path, int *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(size);
    if (fread(buf, 1, size, f) != (size_t)size) { fclose(f); free(buf); return NULL; }
    fclose(f);
    long pos = 12;
    while (pos + 8 <= size) {
        uint32_t len = buf[pos + 4] | buf[pos + 5] << 8 | buf[pos + 6] << 16 | (uint32_t)buf[pos + 7] << 24;
        if (memcmp(buf + pos, "data", 4) == 0) {
            if (len > size - pos - 8) len = size - pos - 8;
            *n = len / 2;
            float *pcm = malloc(sizeof(float) * *n);
            for (int i = 0; i < *n; i++) pcm[i] = (int16_t)(buf[pos + 8 + 2 * i] | buf[pos + 9 + 2 * i] << 8) / 32768.0f;
            free(buf);
            return pcm;
        }
        pos += 8 + len + (len & 1);
    }
    free(buf);
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL WAV THREADS AUDIO_CTX RUNS\n", argv[0]);
        return 2;
    }
    int n = 0;
    float *pcm = read_wav(argv[2], &n);
    if (!pcm) { fprintf(stderr, "cannot read %s\n", argv[2]); return 1; }
    struct whisper_context *ctx = whisper_init_from_file_with_params(argv[1], whisper_context_default_params());
    if (!ctx) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }

    struct whisper_full_params p = whisper_full_default_params(WHISPER_SAMPLING_GREEDY);
    p.n_threads = atoi(argv[3]);
    p.audio_ctx = atoi(argv[4]);
    p.greedy.best_of = 1; // as the plugin decodes (whisper.cpp's default is 5)
    p.language = "en";
    p.no_context = true;
    p.suppress_nst = true;
    p.print_progress = false;
    p.print_realtime = false;
    p.print_timestamps = false;
    p.print_special = false;

    int runs = atoi(argv[5]);
    double *times = malloc(sizeof(double) * runs);
    whisper_full(ctx, p, pcm, n); // warm-up
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        if (whisper_full(ctx, p, pcm, n) != 0) { fprintf(stderr, "whisper_full failed\n"); return 1; }
        times[r] = now() - t0;
    }
    qsort(times, runs, sizeof(double), by_value);
    printf("%.3f %.4f ", n / 16000.0, times[0]);
    for (int i = 0; i < whisper_full_n_segments(ctx); i++) printf("%s", whisper_full_get_segment_text(ctx, i));
    printf("\n");
    whisper_free(ctx);
    return 0;
}
