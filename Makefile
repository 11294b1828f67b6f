# gpt2.c — `make` builds the CLI and the converter, `make test` runs every test,
# `make bench` measures speed. Test and benchmark outputs go to build/.

CC ?= cc
# Programs that run during the build (the page's embedding, the Unicode tables' generator): for
# the build machine, also when CC cross-compiles.
HOSTCC ?= cc
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

ENGINE = gpt2.c gpt2.h gpt2_kernels.h tokenizer.c tokenizer_unicode.h
# Builds of the engine for tests of what runs no kernels (the tokenizer, the sampler, the
# converter, request parsing): plain C alone, not every kernel set (a quarter of the compile,
# which is most of what `make test` spends); KERNEL_SETS, empty but for them, goes into build/%-san
PLAIN_C = -DGPT2_SCALAR
KERNEL_SETS =

.PHONY: all test test-all bench bench-engine bench-train clean
all: gpt2 export/convert train_gpt2

# the command-line program: main.c, the server (server.c, with web/index.html compiled in) and
# the engine
CLI = main.c server.c server.h export/json.h build/page.h
gpt2: $(CLI) build/gpt2.o
	$(CC) $(ALL_CFLAGS) -Ibuild -o $@ main.c server.c build/gpt2.o $(LDLIBS)
# the engine, compiled once for the programs that link it
build/gpt2.o: $(ENGINE) | build
	$(CC) $(ALL_CFLAGS) -c -o $@ gpt2.c
build/page.h: web/index.html build/embed_file | build
	build/embed_file web/index.html page_html >$@
build/embed_file: tools/embed_file.c | build
	$(HOSTCC) $(WARN) -O2 -o $@ tools/embed_file.c

# the trainer #includes gpt2.c: one translation unit, the engine's kernels and structs
train_gpt2: train_gpt2.c $(ENGINE)
	$(CC) $(ALL_CFLAGS) -o $@ train_gpt2.c $(LDLIBS)

export/convert: export/convert.c build/gpt2.o
	$(CC) $(ALL_CFLAGS) -o $@ export/convert.c build/gpt2.o $(LDLIBS)

build:
	mkdir -p build

# Seconds each libFuzzer target runs in `make test` (longer runs: make test FUZZ_SECONDS=600),
# and in `make fuzz`, which runs every target: the model loader, the tokenizer, the server's
# request parser and the converter's parsers.
FUZZ_SECONDS ?= 15
FUZZ_LONG_SECONDS ?= 1800
fuzz:
	$(MAKE) test-fuzz-loader test-tokenizer-fuzz test-fuzz-server test-fuzz-convert FUZZ_SECONDS=$(FUZZ_LONG_SECONDS)
.PHONY: fuzz

# ---- engine tests ----------------------------------------------------------------------
# The forward pass against the reference logits with every kernel this machine can run (the
# native build, AVX2, the scalar path, NEON under qemu when the cross tools are installed);
# damaged files, sampling and the CLI under ASan/UBSan; the embedding example as its own
# translation unit; and, when valgrind is installed, a leak check of the CLI and the example.
REFERENCES = tests/fixtures/tiny build/tiny.bin tests/fixtures/odd build/odd.bin
# the test programs at -O3, as the programs: the level users run
TEST_CFLAGS = $(WARN) -O3 -g -pthread
ENGINE_TESTS = test-engine test-engine-kernels test-types test-badfiles test-fuzz-loader test-sampling test-api test-cli test-embed test-valgrind
.PHONY: $(ENGINE_TESTS)

build/test_engine: tests/test_engine.c tests/same_kernels.h export/json.h $(ENGINE) | build
	$(CC) $(TEST_CFLAGS) $(NATIVE) -o $@ $< $(LDLIBS)
build/test_engine-portable: tests/test_engine.c tests/same_kernels.h export/json.h $(ENGINE) | build
	$(CC) $(TEST_CFLAGS) -o $@ $< $(LDLIBS)
build/%-san: tests/%.c tests/same_kernels.h $(ENGINE) | build
	$(CC) $(WARN) $(SAN) $(NATIVE) $(KERNEL_SETS) -pthread -o $@ $< $(LDLIBS)
build/gpt2-san: $(CLI) $(ENGINE) | build
	$(CC) $(WARN) $(SAN) $(NATIVE) -pthread -Ibuild -o $@ main.c server.c gpt2.c $(LDLIBS)
# valgrind does not decode AVX-512: its builds use AVX2 at most
build/gpt2-valgrind: $(CLI) $(ENGINE) | build
	$(CC) $(WARN) -O2 -g -gdwarf-4 -pthread $(if $(findstring avx2,$(shell grep -m1 -o -w avx2 /proc/cpuinfo 2>/dev/null)),-mavx2 -mfma) -Ibuild -o $@ main.c server.c gpt2.c $(LDLIBS)
build/embed: tests/embed.c build/gpt2.o
	$(CC) $(ALL_CFLAGS) -o $@ tests/embed.c build/gpt2.o $(LDLIBS)

test-engine: build/test_engine build/test_engine-san build/tiny.bin build/odd.bin
	build/test_engine $(REFERENCES)
	build/test_engine-san $(REFERENCES)

# test_engine runs every kernel set the build has and the CPU runs (amx, avx512bf16, avx512, avx2, scalar on
# x86-64); here again built for any x86-64 (the AVX ones then come from target pragmas), and
# for ARM (NEON, under qemu)
test-engine-kernels: build/test_engine-portable build/tiny.bin build/odd.bin
	build/test_engine-portable $(REFERENCES)

# other machines under qemu-user: 64-bit ARM (the NEON kernels) and 32-bit ARM (armhf: 32-bit
# sizes and offsets), each skipped with a note when its cross compiler or qemu is missing
test-emulated: test-emulated-aarch64 test-emulated-armhf
test-emulated-aarch64 test-emulated-armhf: test-emulated-%: build/tiny.bin build/odd.bin
	tests/test_emulated.sh $* build
ENGINE_TESTS += test-emulated
.PHONY: test-emulated test-emulated-aarch64 test-emulated-armhf

# weight types: conversions, quantization round trips, every type x kernel set x path against
# the references and against plain C (amx emulated), damaged quantized files
build/test_types: tests/test_types.c tests/same_kernels.h export/json.h $(ENGINE) | build
	$(CC) $(TEST_CFLAGS) $(NATIVE) -o $@ $< $(LDLIBS)
# a random model with rows of 25 and 100 blocks of 32 (GPT-2's are 24 and 96), the shipped
# model's vocabulary: the kernels on rows as wide as GPT-2's
build/wide.bin: build/random_model models/shakespeare.bin
	build/random_model $@ models/shakespeare.bin 1 8 800 160
test-types: build/test_types build/test_types-san build/tiny.bin build/odd.bin build/wide.bin
	mkdir -p build/types
	build/test_types $(REFERENCES) --wide build/wide.bin build/types
	build/test_types-san tests/fixtures/odd build/odd.bin build/types

test-badfiles: build/test_badfiles-san build/tiny.bin
	rm -rf build/bad && mkdir -p build/bad
	build/test_badfiles-san build/tiny.bin build/bad tests/data/micro-v1.bin

# model files as libFuzzer makes them, from a valid micro model (skipped without clang's libFuzzer)
test-fuzz-loader: | build
	tests/fuzz.sh loader $(FUZZ_SECONDS)

build/test_sampling-san: KERNEL_SETS = $(PLAIN_C)
test-sampling: build/test_sampling-san build/tiny.bin
	build/test_sampling-san build/tiny.bin

# the library's interface (tests/test_api.c); and the library calls nothing that is not
# thread-safe (strerror shares a buffer between threads: the engine uses strerror_r)
test-api: build/test_api build/test_api-san build/gpt2.o build/tiny.bin
	mkdir -p build/api
	build/test_api build/tiny.bin build/api
	build/test_api-san build/tiny.bin build/api
	build/bench_builds --rounds 2 build/tiny.bin build/$(SONAME) build/$(SONAME) >/dev/null  # (make bench-builds' tool still runs)
	@unsafe=$$(nm -u build/gpt2.o | grep -wE 'strerror|strtok|localtime|gmtime|ctime|asctime|rand|srand|getenv|setlocale' || true); \
	if [ -n "$$unsafe" ]; then echo "FAIL: the engine calls functions that are not thread-safe: $$unsafe"; exit 1; fi; \
	echo "test_api: the engine calls no thread-unsafe libc function"
build/test_api: tests/test_api.c $(ENGINE) | build
	$(CC) $(TEST_CFLAGS) $(NATIVE) -o $@ $< $(LDLIBS)

test-cli: gpt2 build/gpt2-san build/tiny.bin test-badfiles
	tests/test_cli.sh ./gpt2 build/tiny.bin build/bad
	tests/test_cli.sh build/gpt2-san build/tiny.bin build/bad

test-embed: build/embed build/tiny.bin build/odd.bin
	build/embed build/tiny.bin >build/embed.out && build/embed build/tiny.bin | cmp -s - build/embed.out
	@if command -v $(CXX) >/dev/null; then $(CXX) -fsyntax-only -Wall -Wextra -Werror -x c++ gpt2.h; fi
	@echo "test_embed: ok (the example builds against gpt2.h alone and is reproducible)"

test-valgrind: build/gpt2-valgrind build/tiny.bin
	@if command -v valgrind >/dev/null; then \
		valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
			build/gpt2-valgrind build/tiny.bin "Hello, world" -n 16 -s 1 -q --threads 2 >/dev/null && \
		valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
			build/gpt2-valgrind build/tiny.bin --ids 464,3290,318 --logits build/valgrind.f32 -n 0 && \
		echo "test_valgrind: ok (no memory errors, no leaks)"; \
	else echo "skipped: valgrind not installed"; fi

# ---- the library, installing, static binaries ------------------------------------------
# `make install` (PREFIX=/usr/local; DESTDIR= to stage a package): gpt2, export/convert as
# gpt2-convert, train_gpt2, gpt2.h, libgpt2.a, libgpt2.so (soname libgpt2.so.0, exporting only
# gpt2_*) and gpt2.pc for pkg-config; `make uninstall` removes those files (and no directory).
# The library is built as the programs are: for this CPU unless `make NATIVE=`.
VERSION = 0.1.0
SOVERSION = 0
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
INSTALL ?= install
SONAME = libgpt2.so.$(SOVERSION)
LIBGPT2 = build/libgpt2.a build/$(SONAME) build/gpt2.pc
.PHONY: lib install uninstall static static-aarch64 FORCE
lib: $(LIBGPT2)

# build/gpt2.o: the engine as one object (its rule is at the top)
build/libgpt2.a: build/gpt2.o
	rm -f $@ && $(AR) rcs $@ build/gpt2.o
build/gpt2-pic.o: $(ENGINE) | build
	$(CC) $(ALL_CFLAGS) -fPIC -c -o $@ gpt2.c
# the version script keeps everything but the API (libgcc's CPU detection, for one) local
build/libgpt2.map: | build
	printf '{ global: gpt2_*; local: *; };\n' >$@
build/$(SONAME): build/gpt2-pic.o build/libgpt2.map
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=build/libgpt2.map -o $@ build/gpt2-pic.o $(LDLIBS)
# written on every run: it holds PREFIX, which each `make install` may change
PC_LIBDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
build/gpt2.pc: FORCE | build
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(PC_LIBDIR)' 'includedir=$(PC_INCLUDEDIR)' '' 'Name: gpt2' \
		'Description: GPT-2 inference in one file of C' 'Version: $(VERSION)' 'Cflags: -I$${includedir}' \
		'Libs: -L$${libdir} -lgpt2' 'Libs.private: $(LDLIBS)' >$@

install: gpt2 export/convert train_gpt2 $(LIBGPT2)
	$(INSTALL) -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(LIBDIR)/pkgconfig"
	$(INSTALL) -m 755 gpt2 "$(DESTDIR)$(BINDIR)/gpt2"
	$(INSTALL) -m 755 export/convert "$(DESTDIR)$(BINDIR)/gpt2-convert"
	$(INSTALL) -m 755 train_gpt2 "$(DESTDIR)$(BINDIR)/train_gpt2"
	$(INSTALL) -m 644 gpt2.h "$(DESTDIR)$(INCLUDEDIR)/gpt2.h"
	$(INSTALL) -m 644 build/libgpt2.a "$(DESTDIR)$(LIBDIR)/libgpt2.a"
	$(INSTALL) -m 755 build/$(SONAME) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf $(SONAME) "$(DESTDIR)$(LIBDIR)/libgpt2.so"
	$(INSTALL) -m 644 build/gpt2.pc "$(DESTDIR)$(LIBDIR)/pkgconfig/gpt2.pc"
uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/gpt2" "$(DESTDIR)$(BINDIR)/gpt2-convert" "$(DESTDIR)$(BINDIR)/train_gpt2" \
		"$(DESTDIR)$(INCLUDEDIR)/gpt2.h" "$(DESTDIR)$(LIBDIR)/libgpt2.a" "$(DESTDIR)$(LIBDIR)/$(SONAME)" \
		"$(DESTDIR)$(LIBDIR)/libgpt2.so" "$(DESTDIR)$(LIBDIR)/pkgconfig/gpt2.pc"

# `make static`: build/gpt2-static, a gpt2 with no shared libraries, on musl where musl-gcc is
# installed (Debian: musl-tools), else glibc (whose static getaddrinfo still wants the NSS
# libraries to resolve --host names; addresses work). For this CPU unless `make static NATIVE=`.
# `make static-aarch64`: build/gpt2-static-aarch64, the same for any 64-bit ARM (glibc).
STATIC_CC ?= $(if $(shell command -v musl-gcc),musl-gcc,$(CC))
static: build/gpt2-static
static-aarch64: build/gpt2-static-aarch64
build/gpt2-static: $(CLI) $(ENGINE) | build
	$(STATIC_CC) $(ALL_CFLAGS) -static -Ibuild -o $@ main.c server.c gpt2.c $(LDLIBS)
build/gpt2-static-aarch64: $(CLI) $(ENGINE) | build
	aarch64-linux-gnu-gcc $(WARN) $(OPT) -pthread -static -Ibuild -o $@ main.c server.c gpt2.c $(LDLIBS)

# test-install: tests/test_install.sh: `make install` staged (DESTDIR) and to a PREFIX; the
# files installed, the soname and the exports; tests/embed.c built against the installed copy
# with nothing but `pkg-config --cflags --libs gpt2`, statically and on libgpt2.so, writing
# what build/embed writes; `make uninstall` leaves no file behind.
# test-static: the static binaries have no interpreter and no shared library; build/gpt2-static
# passes tests/test_cli.sh, and both (the aarch64 one under qemu, when the cross compiler and
# qemu-user are installed) tokenize as gpt2 does and agree with its --ppl.
ENGINE_TESTS += test-install test-static
.PHONY: test-install test-static
test-install: gpt2 export/convert train_gpt2 $(LIBGPT2) build/embed build/tiny.bin
	MAKE="$(MAKE)" CC="$(CC)" tests/test_install.sh build/install-test build/tiny.bin build/embed
test-static: gpt2 build/gpt2-static build/tiny.bin test-badfiles
	tests/test_static.sh ./gpt2 build/tiny.bin build/gpt2-static
	tests/test_cli.sh build/gpt2-static build/tiny.bin build/bad
	@if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; then \
		$(MAKE) -s build/gpt2-static-aarch64 && tests/test_static.sh ./gpt2 build/tiny.bin build/gpt2-static-aarch64 qemu-aarch64; \
	else echo "skipped: the static aarch64 binary (install gcc-aarch64-linux-gnu and qemu-user to run it)"; fi

# ---- threads under ThreadSanitizer ------------------------------------------------------
# generation on several threads, contexts sharing a model and a pool, the trainer, the server
TSAN = -O1 -g -fsanitize=thread -fno-omit-frame-pointer
build/test_engine-tsan build/test_api-tsan: build/%-tsan: tests/%.c export/json.h $(ENGINE) | build
	$(CC) $(WARN) $(TSAN) $(NATIVE) -pthread -o $@ $< $(LDLIBS)
build/gpt2-tsan: $(CLI) $(ENGINE) | build
	$(CC) $(WARN) $(TSAN) $(NATIVE) -pthread -Ibuild -o $@ main.c server.c gpt2.c $(LDLIBS)
build/train_gpt2-tsan: train_gpt2.c $(ENGINE) | build
	$(CC) $(WARN) $(TSAN) $(NATIVE) -pthread -o $@ train_gpt2.c $(LDLIBS)
test-tsan: build/test_engine-tsan build/test_api-tsan build/gpt2-tsan build/train_gpt2-tsan build/tiny.bin
	tests/test_tsan.sh build build/tiny.bin tests/tokenizer/unicode_text.txt
ENGINE_TESTS += test-tsan
.PHONY: test-tsan

# test-compilers: with gcc and with clang, at -O2 and at -O3, warnings as errors: the programs
# built and run through the CLI, server, trainer CLI and converter suites, and the engine's,
# tokenizer's and trainer's test programs built and run (tests/test_compilers.sh)
test-compilers: build/tiny.bin build/odd.bin build/page.h build/test_server build/make_hf_variant build/check_convert test-badfiles
	tests/test_compilers.sh build "$(NATIVE)" $(REFERENCES)
ENGINE_TESTS += test-compilers
.PHONY: test-compilers

# ---- server tests ----------------------------------------------------------------------
# test-server: tests/test_server.c drives `gpt2 --serve` over loopback sockets: every endpoint,
# parameter and error, logprobs against --logits, stop sequences, streaming, disconnects, 8 x 50
# concurrent requests, the queue, SIGTERM; the server again under ASan/UBSan, and under
# valgrind when it is installed.
SERVER_TESTS = test-server
.PHONY: test-server test-fuzz-server test-web
build/test_server: tests/test_server.c export/json.h | build
	$(CC) $(TEST_CFLAGS) -o $@ tests/test_server.c -lpthread -lm
test-server: gpt2 build/gpt2-san build/gpt2-valgrind build/test_server build/tiny.bin
	mkdir -p build/server
	build/test_server ./gpt2 build/tiny.bin build/server $(if $(shell command -v valgrind),build/gpt2-valgrind)
	build/test_server build/gpt2-san build/tiny.bin build/server

# test-fuzz-server: the HTTP request head and the /v1/completions body as libFuzzer makes them
# (skipped without clang's libFuzzer)
SERVER_TESTS += test-fuzz-server
test-fuzz-server: build/page.h build/tiny.bin
	GPT2_FUZZ_MODEL=build/tiny.bin tests/fuzz.sh server $(FUZZ_SECONDS) -dict=tests/fuzz_server.dict

# test-web: the page in a real browser (Debian's chromium driven by playwright-core: greedy text
# = the command line's, the tooltip, colours, Stop, a phone-sized screen; screenshots in
# build/web) and OpenAI's own npm client (completion, stream, logprobs, errors), both against
# the shipped model. The packages are pinned in tests/web/package-lock.json (npm ci); without
# node, the packages or chromium, the test says what it skipped.
WEB_MODEL = models/shakespeare.bin
SERVER_TESTS += test-web
test-web: gpt2
	@if ! command -v node >/dev/null; then echo "skipped: browser and OpenAI-client tests (install nodejs and npm)"; exit 0; fi; \
	if [ ! -d tests/web/node_modules/openai ] && ! (cd tests/web && npm ci --no-audit --no-fund >/dev/null 2>&1); then \
		echo "skipped: browser and OpenAI-client tests (npm ci in tests/web failed: no network?)"; exit 0; fi; \
	node tests/web/openai.mjs ./gpt2 $(WEB_MODEL) || exit 1; \
	if [ -x "$${CHROMIUM:-/usr/bin/chromium}" ]; then node tests/web/browser.mjs ./gpt2 $(WEB_MODEL) build/web; \
	else echo "skipped: browser test (install chromium)"; fi

# ---- trainer tests ---------------------------------------------------------------------
# test-train: tests/test_train.c against nanoGPT's loss, gradients and AdamW steps on the tiny
# fixture, finite differences, the trainer's forward against the engine's, --sequential
# batches, and vocabularies learned from texts (natively and under ASan/UBSan).
# test-train-cli: tests/test_train_cli.sh: the usage contract, exact resumes, Ctrl-C, bad
# input, a full disk, and 50 steps from scratch on tinyshakespeare (from ../shared, if there);
# then a short run under valgrind. test-ppl: gpt2 --ppl against tests/ppl_reference.c.
TRAIN_TESTS = test-train test-train-cli test-ppl
.PHONY: $(TRAIN_TESTS)
SHAKESPEARE = $(wildcard ../shared/data/tinyshakespeare.txt)
build/test_train: tests/test_train.c train_gpt2.c export/json.h $(ENGINE) | build
	$(CC) $(TEST_CFLAGS) $(NATIVE) -o $@ $< $(LDLIBS)
build/test_train-san: tests/test_train.c train_gpt2.c export/json.h $(ENGINE) | build
	$(CC) $(WARN) $(SAN) $(NATIVE) -pthread -o $@ $< $(LDLIBS)
build/train_gpt2-valgrind: train_gpt2.c $(ENGINE) | build
	$(CC) $(WARN) -O2 -g -gdwarf-4 -pthread $(if $(findstring avx2,$(shell grep -m1 -o -w avx2 /proc/cpuinfo 2>/dev/null)),-mavx2 -mfma) -o $@ train_gpt2.c $(LDLIBS)
build/ppl_reference: tests/ppl_reference.c build/gpt2.o
	$(CC) $(TEST_CFLAGS) $(NATIVE) -o $@ tests/ppl_reference.c build/gpt2.o $(LDLIBS)

test-train: build/test_train build/test_train-san build/tiny.bin
	mkdir -p build/train
	build/test_train tests/fixtures/tiny/train build/tiny.bin build/train $(SHAKESPEARE) tests/tokenizer/unicode_text.txt
	build/test_train-san tests/fixtures/tiny/train build/tiny.bin build/train tests/tokenizer/unicode_text.txt

test-train-cli: train_gpt2 gpt2 build/train_gpt2-valgrind build/tiny.bin test-badfiles
	tests/test_train_cli.sh ./train_gpt2 ./gpt2 build/tiny.bin build/bad/magic.bin $(SHAKESPEARE)
	@if command -v valgrind >/dev/null; then \
		mkdir -p build/train-cli && head -c 20000 tests/tokenizer/unicode_text.txt >build/train-cli/valgrind.txt && \
		valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
			build/train_gpt2-valgrind --data build/train-cli/valgrind.txt --vocab 300 --layers 2 --heads 2 --embd 16 --ctx 16 \
			--batch 2 --steps 3 --eval-every 2 --threads 2 --out build/train-cli/valgrind.bin >/dev/null && \
		valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
			build/train_gpt2-valgrind --resume build/train-cli/valgrind.bin --data build/train-cli/valgrind.txt --steps 4 >/dev/null && \
		echo "test_train valgrind: ok (no memory errors, no leaks, in training and resuming)"; \
	else echo "skipped: valgrind not installed (trainer)"; fi

test-ppl: gpt2 build/ppl_reference build/tiny.bin
	@head -c 3000 tests/tokenizer/unicode_text.txt >build/ppl.txt; \
	for w in 64 16 7; do \
		want=$$(build/ppl_reference build/tiny.bin build/ppl.txt $$w) && \
		got=$$(./gpt2 build/tiny.bin --ppl build/ppl.txt --ctx $$w | sed -n 's/.*: \([0-9.]*\) nats per token.*/\1/p') && \
		awk -v a="$$want" -v b="$$got" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-3 * a) }' || \
		{ echo "FAIL: --ppl --ctx $$w says $$got nats per token, the reference $$want"; exit 1; }; \
	done; echo "test_ppl: --ppl agrees with a token-by-token reference for windows of 64, 16 and 7"

# ---- converter tests -------------------------------------------------------------------
# build/tiny.bin and build/odd.bin: the reference fixtures converted, used by every test.
FIXTURE_FILES = config.json model.safetensors vocab.json merges.txt
build/tiny.bin build/odd.bin: build/%.bin: export/convert $(addprefix tests/fixtures/%/model/,$(FIXTURE_FILES)) | build
	export/convert tests/fixtures/$*/model $@

# test-convert: tests/test_json.c pins down the JSON parser byte by byte; then
# tests/make_hf_variant.c writes ~100 variants of the fixtures (prefixed names,
# shuffled and padded layouts, F16/BF16, a padded vocabulary, added tokens, and every kind of
# malformed input); tests/test_convert.sh runs each through export/convert and its ASan/UBSan
# build, expecting byte-identical output, output that tests/check_convert.c finds equal to
# the checkpoint value by value, or one line of error and no file, as cases.txt says; then a
# few conversions and rejections under valgrind (leaks, uninitialised reads).
# test-download: export/download.sh against tests/http_server.c on 127.0.0.1, serving the tiny
# fixture as the hub serves gpt2 (skipped without curl).
# test-fuzz-convert: config.json, vocab.json, merges.txt and model.safetensors as libFuzzer makes
# them, each parsed alone and converted whole (skipped without clang's libFuzzer).
CONVERT_TESTS = test-convert test-download test-fuzz-convert
CONVERT_TEST_CFLAGS = $(WARN) -O2 -g -pthread
.PHONY: $(CONVERT_TESTS)
export/convert: export/json.h
build/convert-san: export/convert.c export/json.h $(ENGINE) | build
	$(CC) $(WARN) $(SAN) $(PLAIN_C) -pthread -o $@ export/convert.c gpt2.c $(LDLIBS)
build/check_convert: tests/check_convert.c export/json.h build/gpt2.o
	$(CC) $(CONVERT_TEST_CFLAGS) -o $@ tests/check_convert.c build/gpt2.o $(LDLIBS)
build/make_hf_variant: tests/make_hf_variant.c export/json.h | build
	$(CC) $(CONVERT_TEST_CFLAGS) -o $@ tests/make_hf_variant.c $(LDLIBS)
# valgrind does not decode AVX-512 (no -march=native here), nor, before 3.20, clang's default DWARF 5
build/convert-valgrind: export/convert.c export/json.h $(ENGINE) | build
	$(CC) $(WARN) -O1 -gdwarf-4 -pthread $(PLAIN_C) -o $@ export/convert.c gpt2.c $(LDLIBS)
build/test_json: tests/test_json.c export/json.h | build
	$(CC) $(WARN) $(SAN) -o $@ tests/test_json.c
build/http_server: tests/http_server.c | build
	$(CC) $(CONVERT_TEST_CFLAGS) -o $@ tests/http_server.c

test-convert: export/convert build/convert-san build/convert-valgrind build/check_convert build/make_hf_variant \
              build/test_json build/tiny.bin build/odd.bin
	build/test_json
	rm -rf build/hf build/hf-odd
	build/make_hf_variant tests/fixtures/tiny/model build/hf
	build/make_hf_variant tests/fixtures/odd/model build/hf-odd --basic
	tests/test_convert.sh build/hf tests/fixtures/tiny/model build/tiny.bin
	tests/test_convert.sh build/hf-odd tests/fixtures/odd/model build/odd.bin
	@if command -v valgrind >/dev/null; then \
		for case in prefixed f16 added-tokens; do \
			valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=all \
				build/convert-valgrind build/hf/$$case build/convert-out/valgrind.bin || exit 1; \
		done; \
		for case in st-lm-head-differs vocab-too-many-values cfg-eos-is-a-merge; do \
			valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=all \
				build/convert-valgrind build/hf/$$case build/convert-out/valgrind.bin; \
			[ $$? -eq 1 ] || exit 1; \
		done; \
		echo "test_convert valgrind: ok (no memory errors or leaks in 3 conversions and 3 rejections)"; \
	else echo "skipped: valgrind not installed (test_convert)"; fi

test-download: export/convert build/http_server build/tiny.bin
	tests/test_download.sh

test-fuzz-convert: | build
	tests/fuzz.sh convert $(FUZZ_SECONDS) -dict=tests/fuzz_convert.dict

# ---- tokenizer tests -------------------------------------------------------------------
# test-tokenizer: tests/test_tokenizer.c, natively and under ASan/UBSan: every case of
# tests/tokenizer/cases.txt (ids from js-tiktoken, checked against tiktoken), round trips of
# random bytes, the heap merge against tiktoken's loop, UTF-8 tails, special tokens, broken
# vocabularies, threads, and a megabyte of one letter/digit/space/emoji (timed).
# test-tokenizer-cli: `gpt2 --tokenize` on every case. test-tokenizer-fuzz: a short libFuzzer
# run (FUZZ_SECONDS; skipped without clang's libFuzzer). test-tokenizer-unicode: the generator
# remakes tokenizer_unicode.h exactly (when the Unicode data of the same version is installed).
# test-tokenizer-valgrind: test_tokenizer under valgrind (memory errors, leaks), if installed.
TOKENIZER_TESTS = test-tokenizer test-tokenizer-cli test-tokenizer-fuzz test-tokenizer-unicode test-tokenizer-valgrind
.PHONY: $(TOKENIZER_TESTS) bench-tokenizer tokenizer-unicode
TOKENIZER_CASES = tests/tokenizer/cases.txt

UNICODE_DATA ?= /usr/share/unicode

build/test_tokenizer build/test_tokenizer-san build/test_tokenizer-valgrind: tests/tokenizer/valid_utf8.h
build/test_tokenizer: tests/test_tokenizer.c $(ENGINE) | build
	$(CC) $(ALL_CFLAGS) $(PLAIN_C) -o $@ tests/test_tokenizer.c $(LDLIBS)
build/test_tokenizer-san: KERNEL_SETS = $(PLAIN_C)
# valgrind does not decode AVX-512: AVX2 at most
build/test_tokenizer-valgrind: tests/test_tokenizer.c $(ENGINE) | build
	$(CC) $(WARN) -O2 -g -gdwarf-4 -pthread $(if $(findstring avx2,$(shell grep -m1 -o -w avx2 /proc/cpuinfo 2>/dev/null)),-mavx2 -mfma) $(PLAIN_C) -o $@ tests/test_tokenizer.c $(LDLIBS)
build/gen_unicode: tools/gen_unicode.c | build
	$(HOSTCC) $(WARN) -O2 -o $@ tools/gen_unicode.c

test-tokenizer: build/test_tokenizer build/test_tokenizer-san build/tiny.bin
	build/test_tokenizer build/tiny.bin $(TOKENIZER_CASES)
	build/test_tokenizer-san build/tiny.bin $(TOKENIZER_CASES)

test-tokenizer-cli: gpt2 build/test_tokenizer build/tiny.bin
	tests/tokenizer/cli_test.sh ./gpt2 build/tiny.bin build/test_tokenizer $(TOKENIZER_CASES) build/tokenizer_cli

test-tokenizer-valgrind: build/test_tokenizer-valgrind build/tiny.bin
	@if command -v valgrind >/dev/null; then \
		valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
			build/test_tokenizer-valgrind build/tiny.bin $(TOKENIZER_CASES) >build/test_tokenizer-valgrind.out && \
		echo "test_tokenizer_valgrind: ok (no memory errors, no leaks)"; \
	else echo "skipped: valgrind not installed"; fi

test-tokenizer-fuzz: build/tiny.bin
	GPT2_FUZZ_MODEL=build/tiny.bin tests/fuzz.sh tokenizer $(FUZZ_SECONDS) -dict=tests/tokenizer/fuzz.dict

test-tokenizer-unicode: build/gen_unicode
	@have=$$(sed -n 's/^# PropList-\([0-9.]*\)\.txt.*/\1/p' $(UNICODE_DATA)/PropList.txt 2>/dev/null); \
	want=$$(sed -n 's/^#define UNICODE_VERSION "\(.*\)"/\1/p' tokenizer_unicode.h); \
	if [ "$$have" != "$$want" ]; then \
		echo "skipped: tokenizer_unicode.h check (needs Unicode $$want data in $(UNICODE_DATA): apt-get install unicode-data)"; \
	else \
		build/gen_unicode $(UNICODE_DATA)/UnicodeData.txt $(UNICODE_DATA)/PropList.txt >build/tokenizer_unicode.h && \
		cmp tokenizer_unicode.h build/tokenizer_unicode.h && \
		echo "test_tokenizer_unicode: ok (tools/gen_unicode.c remakes tokenizer_unicode.h from Unicode $$have)"; \
	fi

# Remakes tokenizer_unicode.h from the Unicode Character Database (Debian: unicode-data).
tokenizer-unicode: build/gen_unicode
	build/gen_unicode $(UNICODE_DATA)/UnicodeData.txt $(UNICODE_DATA)/PropList.txt >tokenizer_unicode.h

# Encode throughput (MB/s) on tinyshakespeare and a Unicode-heavy text, next to js-tiktoken
# and tiktoken's WebAssembly build when node is installed (their packages: npm ci, done here).
TOKENIZER_BENCH_TEXTS = $(wildcard ../shared/data/tinyshakespeare.txt) tests/tokenizer/unicode_text.txt
bench: bench-tokenizer
bench-tokenizer: build/test_tokenizer build/tiny.bin
	@if command -v node >/dev/null && { [ -d tests/tokenizer/node_modules/tiktoken ] || \
			(cd tests/tokenizer && npm ci --no-audit --no-fund >/dev/null 2>&1); }; then \
		node tests/tokenizer/bench.mjs "build/test_tokenizer --bench build/tiny.bin" $(TOKENIZER_BENCH_TEXTS); \
	else \
		build/test_tokenizer --bench build/tiny.bin $(TOKENIZER_BENCH_TEXTS); \
		echo "skipped: js-tiktoken and tiktoken (need node and npm)"; \
	fi

# ---- the walkthrough -------------------------------------------------------------------
# docs/WALKTHROUGH.md against the code: the functions it names exist, its computed tables are
# what the engine reports, its quoted perplexities are what --ppl measures (tests/test_walkthrough.sh)
DOC_TESTS = test-walkthrough
.PHONY: $(DOC_TESTS)
build/walkthrough_numbers: tests/walkthrough_numbers.c build/gpt2.o
	$(CC) $(TEST_CFLAGS) -o $@ tests/walkthrough_numbers.c build/gpt2.o $(LDLIBS)
test-walkthrough: build/walkthrough_numbers gpt2 export/convert build/page.h
	CC="$(CC)" tests/test_walkthrough.sh build

# `make test` runs the tests on every core (make test JOBS=1: one at a time), each one's output
# printed together when it ends; `make test-all` runs them as make is told (-j or not).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
test:
	@$(MAKE) --no-print-directory -j$(JOBS) --output-sync=target test-all
# (the longest first, so the others fill the other cores around them)
test-all: all test-compilers test-emulated test-tsan $(ENGINE_TESTS) $(SERVER_TESTS) $(TRAIN_TESTS) $(CONVERT_TESTS) $(TOKENIZER_TESTS) $(DOC_TESTS)
	@echo "all tests passed"

# Speed on a model with GPT-2 124M's shapes and random weights (no real weights needed): load
# time, prefill and decode tokens/s, peak memory, on all cores and on one.
bench: all bench-engine
bench-engine: gpt2 build/gpt2-124M.bin
	./gpt2 build/gpt2-124M.bin --bench
	./gpt2 build/gpt2-124M.bin --bench --threads 1
# The portable build against this one (`make NATIVE=` against CFLAGS' build): both engines as
# shared libraries (this one is libgpt2.so), taking turns in one process (tools/bench_builds.c)
# on the 124M-shaped model in every weight type, all cores and one. BENCH_ROUNDS rounds each.
BENCH_ROUNDS ?= 30
BENCH_MODELS = build/gpt2-124M.bin $(foreach t,f16 bf16 q8_0 q4_0,build/gpt2-124M-$(t).bin)
bench-builds: build/bench_builds build/$(SONAME) build/bench-portable.so $(BENCH_MODELS)
	for m in $(BENCH_MODELS); do \
		for t in 0 1; do build/bench_builds --threads $$t --rounds $(BENCH_ROUNDS) $$m build/$(SONAME) build/bench-portable.so || exit 1; done; \
	done
.PHONY: bench-builds
test-api: build/bench_builds build/$(SONAME)
build/bench_builds: tools/bench_builds.c gpt2.h | build
	$(CC) $(WARN) $(OPT) -o $@ tools/bench_builds.c -ldl
build/bench-portable.so: $(ENGINE) build/libgpt2.map
	$(CC) $(WARN) $(OPT) -pthread -fPIC -shared -Wl,--version-script=build/libgpt2.map -o $@ gpt2.c $(LDLIBS)
build/gpt2-124M-%.bin: build/gpt2-124M.bin export/convert
	export/convert --dtype $* build/gpt2-124M.bin $@ >/dev/null
# Load time, peak memory and decoding speed for GPT-2 124M, 355M, 774M and 1.5B in every weight
# type (random weights; the models, 24 GB in all, go to build/sizes/): README's table.
bench-sizes: gpt2 export/convert build/random_model build/tiny.bin
	tools/sizes.sh build/sizes build/tiny.bin $(SIZES)
.PHONY: bench-sizes
build/random_model: tools/random_model.c build/gpt2.o
	$(CC) $(ALL_CFLAGS) -o $@ tools/random_model.c build/gpt2.o $(LDLIBS)
build/gpt2-124M.bin: build/random_model build/tiny.bin
	build/random_model $@ build/tiny.bin 12 12 768 1024

# Training speed: ms per step and tokens/s at GPT-2 124M's shape (B = 4, T = 64) and at the
# shipped model's, on all cores and on one.
bench: bench-train
bench-train: train_gpt2 build/gpt2-124M.bin
	@text=$${SHAKESPEARE_TXT:-$(firstword $(SHAKESPEARE) tests/tokenizer/unicode_text.txt)}; \
	for t in 0 1; do threads=$$([ $$t = 0 ] && echo "" || echo "--threads 1"); \
		echo "train, GPT-2 124M shape, B=4 T=64 $${threads:-(all cores)}:"; \
		./train_gpt2 --init build/gpt2-124M.bin --data $$text --batch 4 --seq 64 --steps 6 --bench $$threads | tail -n 1; \
	done

clean:
	rm -rf gpt2 export/convert train_gpt2 build
