/* Text reverser: reads all of stdin and writes it back reversed, byte by byte
 * except that UTF-8 sequences are kept whole. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) return 1;
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += n;
        if (len == cap) {
            cap *= 2;
            unsigned char *bigger = realloc(buf, cap);
            if (!bigger) { fputs("reverse: out of memory\n", stderr); return 2; }
            buf = bigger;
        }
    }
    size_t end = len;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && (buf[start] & 0xC0) == 0x80) start--; /* continuation byte */
        fwrite(buf + start, 1, end - start, stdout);
        end = start;
    }
    free(buf);
    return 0;
}
