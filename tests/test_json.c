/* test_json.c — export/json.h against inputs whose results are written out by hand.
 *
 *     build/test_json
 *
 * The converter tests read vocab.json through the same parser on both sides (converter and
 * checker), so the decoding of escapes, surrogate pairs and numbers is pinned down here,
 * byte by byte, along with what must be rejected and where the error is reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../export/json.h"

static int failures, checks;

static void check(int ok, const char *what, const char *input) {
    checks++;
    if (!ok) {
        failures++;
        printf("FAIL %s: input %s\n", what, input);
    }
}

/* A JSON string literal decodes to exactly these bytes. */
static void string_is(const char *input, const char *bytes, size_t n) {
    json_doc doc;
    char err[256];
    const json_value *v = json_parse(input, strlen(input), &doc, err, sizeof err);
    check(v && v->type == JSON_STRING && v->string_len == n && memcmp(v->string, bytes, n) == 0 && v->string[n] == 0,
          "string decoding", input);
    json_free(&doc);
}

static void number_is(const char *input, double value, int is_integer, long long integer) {
    json_doc doc;
    char err[256];
    const json_value *v = json_parse(input, strlen(input), &doc, err, sizeof err);
    check(v && v->type == JSON_NUMBER && v->number == value && v->is_integer == is_integer &&
              (!is_integer || v->integer == integer),
          "number", input);
    json_free(&doc);
}

/* The input is rejected with exactly this message. */
static void rejects(const char *input, size_t len, const char *message) {
    json_doc doc;
    char err[256] = "";
    const json_value *v = json_parse(input, len, &doc, err, sizeof err);
    check(!v && strcmp(err, message) == 0, "rejection", input);
    if (v || strcmp(err, message) != 0) printf("     got \"%s\", expected \"%s\"\n", v ? "(accepted)" : err, message);
    json_free(&doc);
}

static void accepts(const char *input) {
    json_doc doc;
    char err[256] = "";
    const json_value *v = json_parse(input, strlen(input), &doc, err, sizeof err);
    check(v != NULL, "acceptance", input);
    if (!v) printf("     got \"%s\"\n", err);
    json_free(&doc);
}

static char *nested(int depth) {
    char *s = malloc(2 * (size_t)depth + 1);
    for (int i = 0; i < depth; i++) s[i] = '[', s[depth + i] = ']';
    s[2 * depth] = 0;
    return s;
}

int main(void) {
    /* Escapes, \u escapes (one, two and three UTF-8 bytes, a surrogate pair for four), and
     * raw UTF-8 kept as it is. */
    string_is("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t", 15);
    string_is("\"\\u0041\\u00e9\\u0120\\u20AC\"", "A\xc3\xa9\xc4\xa0\xe2\x82\xac", 8);
    string_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
    string_is("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4);
    string_is("\"a\\u0000b\"", "a\0b", 3);
    string_is("\"\xc4\xa0t \xe4\xb8\xad \xf0\x9f\x98\x80\"", "\xc4\xa0t \xe4\xb8\xad \xf0\x9f\x98\x80", 12);
    string_is("\"\"", "", 0);

    /* Numbers: exact integers within int64, everything else a double. */
    number_is("0", 0, 1, 0);
    number_is("-0", 0, 1, 0);
    number_is("50256", 50256, 1, 50256);
    number_is("9223372036854775807", 9223372036854775807.0, 1, 9223372036854775807LL);
    number_is("-9223372036854775808", -9223372036854775808.0, 1, -9223372036854775807LL - 1);
    number_is("9223372036854775808", 9223372036854775808.0, 0, 0);
    number_is("1e-05", 1e-05, 0, 0);
    number_is("-2.5E+3", -2500, 0, 0);
    number_is("1.0", 1, 0, 0);

    /* Containers, nesting to the limit, whitespace around the value. */
    accepts(" \t\r\n{\"a\": [1, {\"b\": null}, true, false, \"x\"], \"c\": {}} \n  ");
    accepts("[]");
    char *deep = nested(JSON_MAX_DEPTH);
    accepts(deep);
    free(deep);
    json_doc doc;
    char err[256];
    const json_value *root = json_parse("{\"k\": [10, 20], \"\\u006b2\": \"v\"}", 31, &doc, err, sizeof err);
    const json_value *k = json_get(root, "k"), *k2 = json_get(root, "k2");
    check(root && root->count == 2 && k && k->count == 2 && k->first->integer == 10 && k->first->next->integer == 20 &&
              k2 && strcmp(k2->string, "v") == 0 && !json_get(root, "x") && k->start == 6 && k->end == 14,
          "object members, lookup and source positions", "{\"k\": [10, 20], ...}");
    json_free(&doc);

    /* Rejections, with the position of the problem (line, column in bytes). */
    rejects("", 0, "line 1, column 1: unexpected end of input");
    rejects("{\"a\": 1", 7, "line 1, column 8: unexpected end of input");
    rejects("{\n  \"a\": ?}", 11, "line 2, column 8: expected a value");
    rejects("[1,]", 4, "line 1, column 4: expected a value");
    rejects("{\"a\": 1,}", 9, "line 1, column 9: expected a string key");
    rejects("{\"a\" 1}", 7, "line 1, column 6: expected ':' after the key");
    rejects("[1 2]", 5, "line 1, column 4: expected ',' or ']'");
    rejects("{\"a\": 1 \"b\": 2}", 15, "line 1, column 9: expected ',' or '}'");
    rejects("[] x", 4, "line 1, column 4: unexpected text after the JSON value");
    rejects("01", 2, "line 1, column 2: unexpected text after the JSON value");
    rejects("1.", 2, "line 1, column 3: unexpected end of input");
    rejects("1.e5", 4, "line 1, column 3: expected a digit after the decimal point");
    rejects("1e+", 3, "line 1, column 4: unexpected end of input");
    rejects(".5", 2, "line 1, column 1: expected a value");
    rejects("+1", 2, "line 1, column 1: expected a value");
    rejects("-", 1, "line 1, column 2: unexpected end of input");
    rejects("-x", 2, "line 1, column 2: expected a digit");
    rejects("NaN", 3, "line 1, column 1: expected a value");
    rejects("Infinity", 8, "line 1, column 1: expected a value");
    rejects("nul", 3, "line 1, column 4: unexpected end of input");
    rejects("trve", 4, "line 1, column 3: expected a value");
    rejects("[\"abc", 5, "line 1, column 6: unexpected end of input");
    rejects("\"a\tb\"", 5, "line 1, column 3: control character in string (must be escaped)");
    rejects("\"\\x41\"", 6, "line 1, column 2: invalid escape in string");
    rejects("\"\\u12\"", 6, "line 1, column 6: expected four hex digits after \\u");
    rejects("\"\\ud800\"", 8, "line 1, column 2: high surrogate in \\u escape without a low one after it");
    rejects("\"\\ud800\\u0041\"", 14, "line 1, column 2: high surrogate in \\u escape without a low one after it");
    rejects("\"\\udc00\"", 8, "line 1, column 2: lone low surrogate in \\u escape");
    rejects("\"\xc0\xaf\"", 4, "line 1, column 2: invalid UTF-8 in string");         /* overlong '/' */
    rejects("\"\xed\xa0\x80\"", 5, "line 1, column 2: invalid UTF-8 in string");     /* a surrogate */
    rejects("\"\xf4\x90\x80\x80\"", 6, "line 1, column 2: invalid UTF-8 in string"); /* past U+10FFFF */
    rejects("\"\xe4\xb8\"", 4, "line 1, column 2: invalid UTF-8 in string");         /* cut short */
    rejects("\xef\xbb\xbf{}", 5, "line 1, column 1: expected a value");               /* a byte order mark */
    rejects("{\"a\": 1, \"b\": 2, \"a\": 3}", 24, "line 1, column 18: duplicate key \"a\"");
    rejects("{\"a\": 1}\0", 9, "line 1, column 9: unexpected text after the JSON value");
    deep = nested(JSON_MAX_DEPTH + 1);
    rejects(deep, strlen(deep), "line 1, column 65: nested too deeply");
    free(deep);

    /* The value limit counts every value, containers included. */
    check(json_parse_limited("[1, 2]", 6, 3, &doc, err, sizeof err) != NULL, "3 values within a limit of 3", "[1, 2]");
    json_free(&doc);
    check(json_parse_limited("[1, 2, 3]", 9, 3, &doc, err, sizeof err) == NULL &&
              strcmp(err, "line 1, column 8: more than 3 values") == 0,
          "4 values past a limit of 3", "[1, 2, 3]");
    json_free(&doc);

    if (failures) {
        printf("test_json: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf("test_json: all %d checks passed\n", checks);
    return 0;
}
