/* Replays a fuzz target's corpus without libFuzzer: links with one
 * tests/fuzz/fuzz_*.c and calls its entry point on every file named on the
 * command line, so `make test` runs the recorded corpus under ASan+UBSan
 * with gcc alone. Prints one PASS line per target (a crash aborts). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
    *len = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? cap * 2 : 4096;
            unsigned char *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        *len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s NAME FILE...\n", argv[0]);
        return 2;
    }
    int replayed = 0;
    for (int i = 2; i < argc; i++) {
        size_t len;
        unsigned char *data = read_file(argv[i], &len);
        if (!data) {
            printf("FAIL %s: cannot read %s\n", argv[1], argv[i]);
            return 1;
        }
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        replayed++;
    }
    printf("PASS %s: %d corpus inputs replayed\n", argv[1], replayed);
    return 0;
}
