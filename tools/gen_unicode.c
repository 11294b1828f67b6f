/* gen_unicode.c — writes tokenizer_unicode.h, the character classes of GPT-2's pre-tokenizer
 * pattern, from the Unicode Character Database.
 *
 *   cc -O2 -o build/gen_unicode tools/gen_unicode.c
 *   build/gen_unicode /usr/share/unicode/UnicodeData.txt /usr/share/unicode/PropList.txt > tokenizer_unicode.h
 *
 * (Debian: apt-get install unicode-data.) `make tokenizer-unicode` does the same.
 *
 * The pattern needs three properties, each for every code point:
 *   \p{L}  general category Lu, Ll, Lt, Lm or Lo          (UnicodeData.txt, field 2)
 *   \p{N}  general category Nd, Nl or No                  (UnicodeData.txt, field 2)
 *   \s     the White_Space property, as Rust's regex and so tiktoken define it (PropList.txt)
 * No code point has two of them, so one class per code point: other, letter, number, space.
 * Unassigned code points are "other", as in every regex engine.
 *
 * The table is two-level: the code point's high bits pick a block of 2^BLOCK_SHIFT code
 * points, identical blocks are stored once, and each class takes 2 bits (four to a byte).
 * Past the last letter, number or space every code point is "other", so the first level stops
 * there. BLOCK_SHIFT 7 gives the smallest table for Unicode 15 (8 KB; at 6 the distinct blocks
 * outnumber a u8 index, at 8 and up they are bigger).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CODEPOINTS 0x110000
#ifndef BLOCK_SHIFT
#define BLOCK_SHIFT 7
#endif
#define BLOCK_SIZE (1 << BLOCK_SHIFT)
#define BLOCK_BYTES (BLOCK_SIZE / 4)
#define N_BLOCKS (N_CODEPOINTS / BLOCK_SIZE)

enum { CLASS_OTHER = 0, CLASS_LETTER = 1, CLASS_NUMBER = 2, CLASS_SPACE = 3 };

static unsigned char class_of[N_CODEPOINTS];

static void die(const char *what, const char *path) {
    fprintf(stderr, "gen_unicode: %s: %s\n", path, what);
    exit(1);
}

/* UnicodeData.txt: "code;name;category;...". A range is two lines, "<Name, First>" and
 * "<Name, Last>", whose category covers every code point between them. */
static void read_categories(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open", path);
    char line[1024];
    long first = -1;  /* the start of a range whose "Last" line comes next */
    int n_lines = 0;
    while (fgets(line, sizeof line, f)) {
        char *name = strchr(line, ';');
        char *category = name ? strchr(name + 1, ';') : NULL;
        if (!category) die("malformed line", path);
        long cp = strtol(line, NULL, 16);
        if (cp < 0 || cp >= N_CODEPOINTS) die("code point out of range", path);
        category++;
        int cls = category[0] == 'L' ? CLASS_LETTER : category[0] == 'N' ? CLASS_NUMBER : CLASS_OTHER;
        if (strstr(name, ", First>;")) { first = cp; continue; }
        long lo = strstr(name, ", Last>;") ? first : cp;
        if (lo < 0) die("range without its First line", path);
        for (long c = lo; c <= cp; c++) class_of[c] = (unsigned char)cls;
        first = -1;
        n_lines++;
    }
    fclose(f);
    if (n_lines < 1000) die("too few entries: not UnicodeData.txt?", path);
}

/* PropList.txt: "0009..000D    ; White_Space # ..." or "0020          ; White_Space # ...".
 * Its first line names the version: "# PropList-15.0.0.txt". */
static void read_white_space(const char *path, char version[32]) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open", path);
    char line[1024];
    int n_ranges = 0;
    version[0] = 0;
    while (fgets(line, sizeof line, f)) {
        if (!version[0] && sscanf(line, "# PropList-%31[0-9.]", version) == 1) {
            size_t n = strlen(version);
            if (n > 0 && version[n - 1] == '.') version[n - 1] = 0;  /* the ".txt" */
            continue;
        }
        if (line[0] == '#' || !strstr(line, "; White_Space ")) continue;
        char *end;
        long lo = strtol(line, &end, 16), hi = lo;
        if (end[0] == '.' && end[1] == '.') hi = strtol(end + 2, NULL, 16);
        if (lo < 0 || hi >= N_CODEPOINTS || lo > hi) die("bad White_Space range", path);
        for (long c = lo; c <= hi; c++) {
            if (class_of[c] != CLASS_OTHER) die("a White_Space code point is also a letter or number", path);
            class_of[c] = CLASS_SPACE;
        }
        n_ranges++;
    }
    fclose(f);
    if (n_ranges == 0) die("no White_Space entries: not PropList.txt?", path);
    if (!version[0]) die("no version line", path);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s UnicodeData.txt PropList.txt > tokenizer_unicode.h\n", argv[0]);
        return 2;
    }
    char version[32];
    read_categories(argv[1]);
    read_white_space(argv[2], version);

    /* Pack each block, then keep one copy of each distinct block. */
    static unsigned char packed[N_BLOCKS][BLOCK_BYTES];
    static unsigned char unique[N_BLOCKS][BLOCK_BYTES];
    static int block_index[N_BLOCKS];
    int n_unique = 0;
    for (int b = 0; b < N_BLOCKS; b++) {
        for (int i = 0; i < BLOCK_SIZE; i++)
            packed[b][i / 4] |= (unsigned char)(class_of[b * BLOCK_SIZE + i] << (2 * (i % 4)));
        int u = 0;
        while (u < n_unique && memcmp(unique[u], packed[b], BLOCK_BYTES) != 0) u++;
        if (u == n_unique) memcpy(unique[n_unique++], packed[b], BLOCK_BYTES);
        block_index[b] = u;
    }
    if (n_unique > 256) {
        fprintf(stderr, "gen_unicode: %d distinct blocks do not fit a u8 index\n", n_unique);
        return 1;
    }
    /* The first level ends after the last block with a letter, number or space. */
    int n_blocks = N_BLOCKS;
    static const unsigned char all_other[BLOCK_BYTES];
    while (n_blocks > 0 && memcmp(packed[n_blocks - 1], all_other, BLOCK_BYTES) == 0) n_blocks--;

    printf("/* tokenizer_unicode.h — GENERATED by tools/gen_unicode.c from the Unicode Character\n"
           " * Database %s (UnicodeData.txt, PropList.txt). Do not edit: `make tokenizer-unicode`.\n"
           " *\n"
           " * The class of every code point for GPT-2's pre-tokenizer pattern: letter = \\p{L}\n"
           " * (Lu Ll Lt Lm Lo), number = \\p{N} (Nd Nl No), space = White_Space (\\s), other = the rest.\n"
           " * Code points from UNICODE_CLASS_LIMIT on are all \"other\". Below it, with\n"
           " * block = unicode_class_block[cp >> UNICODE_BLOCK_SHIFT], the class is the 2-bit field\n"
           " * (unicode_class_blocks[block][(cp & %d) >> 2] >> (2 * (cp & 3))) & 3. ASCII has its own table.\n"
           " */\n", version, BLOCK_SIZE - 1);
    printf("#ifndef TOKENIZER_UNICODE_H\n#define TOKENIZER_UNICODE_H\n\n");
    printf("#define UNICODE_VERSION \"%s\"\n", version);
    printf("enum { UNICODE_OTHER = %d, UNICODE_LETTER = %d, UNICODE_NUMBER = %d, UNICODE_SPACE = %d };\n",
           CLASS_OTHER, CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE);
    printf("#define UNICODE_BLOCK_SHIFT %d\n", BLOCK_SHIFT);
    printf("#define UNICODE_CLASS_LIMIT 0x%X\n\n", n_blocks * BLOCK_SIZE);

    printf("/* [128]: the class of each ASCII character, unpacked: the common case costs one load */\n");
    printf("static const uint8_t unicode_ascii_class[128] = {\n");
    for (int c = 0; c < 128; c++)
        printf("%s%d,%s", c % 32 == 0 ? "  " : "", class_of[c], c % 32 == 31 ? "\n" : "");
    printf("};\n\n");

    printf("/* [UNICODE_CLASS_LIMIT >> UNICODE_BLOCK_SHIFT]: the block of each run of %d code points */\n",
           BLOCK_SIZE);
    printf("static const uint8_t unicode_class_block[%d] = {\n", n_blocks);
    for (int b = 0; b < n_blocks; b++)
        printf("%s%d,%s", b % 24 == 0 ? "  " : "", block_index[b], b % 24 == 23 || b == n_blocks - 1 ? "\n" : "");
    printf("};\n\n");

    printf("/* [%d distinct blocks][%d code points, four to a byte] */\n", n_unique, BLOCK_SIZE);
    printf("static const uint8_t unicode_class_blocks[%d][%d] = {\n", n_unique, BLOCK_BYTES);
    for (int u = 0; u < n_unique; u++) {
        printf("  {");
        for (int i = 0; i < BLOCK_BYTES; i++) printf("%s0x%02x", i ? "," : "", unique[u][i]);
        printf("},\n");
    }
    printf("};\n\n#endif\n");
    fprintf(stderr, "gen_unicode: Unicode %s, %d blocks of %d code points (%d distinct), %d bytes of tables\n",
            version, n_blocks, BLOCK_SIZE, n_unique, n_blocks + n_unique * BLOCK_BYTES);
    return 0;
}
