/* For test_engine and test_types (after gpt2.c): whether a kernel set computes models of this
 * weight type as a narrower set of the same build does, so that running both tests nothing new.
 * avx512bf16 differs from avx512 only with bf16 weights, neondot from neon only with q8_0 and
 * q4_0 (test_matmul_kernels still runs both on every type; a build made for the dot products
 * has no neon set, and its neondot runs everything). */
static bool same_as_narrower(const char *set, gpt2_dtype type) {
    if (!strcmp(set, "avx512bf16")) return type != GPT2_BF16;
    if (!strcmp(set, "neondot")) return type != GPT2_Q8_0 && type != GPT2_Q4_0 && choose_kernels("neon", NULL, 0);
    return false;
}
