# gpt2.c — `make` builds the CLI and the converter, `make test` runs every test,
# `make bench` measures speed. Test and benchmark outputs go to build/.

CC ?= cc
# -O3: the matmuls are written to be vectorized. No -ffast-math: it reorders the sums and
# changes GELU/softmax enough to drift from the reference implementations.
OPT ?= -O3
# Use every instruction the build machine has (AVX-512/AVX2/NEON); `make NATIVE=` for a
# portable binary. Probed, because some compilers spell it -mcpu=native or lack it.
NATIVE ?= $(shell $(CC) -march=native -E -x c /dev/null >/dev/null 2>&1 && echo -march=native || \
                  ($(CC) -mcpu=native -E -x c /dev/null >/dev/null 2>&1 && echo -mcpu=native))
WARN = -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror
CFLAGS ?= $(OPT) $(NATIVE)
LDLIBS = -lpthread -lm
ALL_CFLAGS = $(WARN) $(CFLAGS) -pthread
# Sanitizer builds used by the tests: address + undefined behaviour, aborting on the first report.
SAN = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

ENGINE = gpt2.c gpt2.h tokenizer.c tokenizer_unicode.h

.PHONY: all test bench clean
all: gpt2 export/convert

gpt2: $(ENGINE)
	$(CC) $(ALL_CFLAGS) -o $@ gpt2.c $(LDLIBS)

export/convert: export/convert.c $(ENGINE)
	$(CC) $(ALL_CFLAGS) -DGPT2_NO_MAIN -o $@ export/convert.c gpt2.c $(LDLIBS)

build:
	mkdir -p build

# ---- engine tests ----------------------------------------------------------------------
ENGINE_TESTS =

# ---- converter tests -------------------------------------------------------------------
# build/tiny.bin and build/odd.bin: the reference fixtures converted, used by every test.
FIXTURE_FILES = config.json model.safetensors vocab.json merges.txt
build/tiny.bin build/odd.bin: build/%.bin: export/convert $(addprefix tests/fixtures/%/model/,$(FIXTURE_FILES)) | build
	export/convert tests/fixtures/$*/model $@

# test-convert: tests/make_hf_variant.c writes ~100 variants of the fixtures (prefixed names,
# shuffled and padded layouts, F16/BF16, a padded vocabulary, added tokens, and every kind of
# malformed input); tests/test_convert.sh runs each through export/convert and its ASan/UBSan
# build, expecting byte-identical output, output that tests/check_convert.c finds equal to
# the checkpoint value by value, or one line of error and no file, as cases.txt says.
CONVERT_TESTS = test-convert
CONVERT_TEST_CFLAGS = $(WARN) -O2 -g -pthread
.PHONY: $(CONVERT_TESTS)
export/convert: export/json.h
build/convert-san: export/convert.c export/json.h $(ENGINE) | build
	$(CC) $(WARN) $(SAN) -pthread -DGPT2_NO_MAIN -o $@ export/convert.c gpt2.c $(LDLIBS)
build/check_convert: tests/check_convert.c export/json.h $(ENGINE) | build
	$(CC) $(CONVERT_TEST_CFLAGS) -DGPT2_NO_MAIN -o $@ tests/check_convert.c gpt2.c $(LDLIBS)
build/make_hf_variant: tests/make_hf_variant.c export/json.h | build
	$(CC) $(CONVERT_TEST_CFLAGS) -o $@ tests/make_hf_variant.c $(LDLIBS)

test-convert: export/convert build/convert-san build/check_convert build/make_hf_variant build/tiny.bin build/odd.bin
	rm -rf build/hf build/hf-odd
	build/make_hf_variant tests/fixtures/tiny/model build/hf
	build/make_hf_variant tests/fixtures/odd/model build/hf-odd --basic
	tests/test_convert.sh build/hf tests/fixtures/tiny/model build/tiny.bin
	tests/test_convert.sh build/hf-odd tests/fixtures/odd/model build/odd.bin

# ---- tokenizer tests -------------------------------------------------------------------
TOKENIZER_TESTS =

test: all $(ENGINE_TESTS) $(CONVERT_TESTS) $(TOKENIZER_TESTS)
	@echo "all tests passed"

bench: all

clean:
	rm -rf gpt2 export/convert build
