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

CONVERT_TESTS =

# ---- tokenizer tests -------------------------------------------------------------------
TOKENIZER_TESTS =

test: all $(ENGINE_TESTS) $(CONVERT_TESTS) $(TOKENIZER_TESTS)
	@echo "all tests passed"

bench: all

clean:
	rm -rf gpt2 export/convert build
