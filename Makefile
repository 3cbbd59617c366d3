# flexlearn: plain Makefile.
#   make            library (static + shared), CLI, examples
#   make run        set up a fresh machine (once) and train the lesson's model on Fashion-MNIST
#   make test       set up, build with ASan+UBSan and run every test
#   make bench      epoch and predict benchmarks beside PyTorch (see bench/)
#   CUDA=1 / CUDA=0 force the CUDA backend on/off (default: on when nvcc is found)
#   SAN=1           build with AddressSanitizer + UndefinedBehaviorSanitizer (into build-san/)

# Builds use every core (a -jN on the command line still wins; sub-makes share the jobserver).
ifeq ($(MAKELEVEL),0)
  MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 2)
endif

CC      ?= gcc
NVCC    ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifeq ($(origin CUDA),undefined)
  CUDA := $(if $(NVCC),1,0)
endif

BUILD   := build
OPT     := -O3 -march=native
ifeq ($(SAN),1)
  BUILD := build-san
  OPT   := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif

CFLAGS  += $(shell pkg-config --cflags cairo 2>/dev/null) -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -fopenmp -ffp-contract=off $(OPT) -Iinclude -Isrc
# DNNL=0: plain C GEMM instead of oneDNN; CAIRO=0: no PNG plots; CJSON=0: no safetensors
# weights; PNG=0 / JPEG=0: predict reads no PNG / JPEG images (for machines lacking them).
DNNL    ?= 1
PNG     ?= 1
JPEG    ?= 1
ZLIB    ?= -lz
CAIRO   ?= 1
CJSON   ?= 1
LDLIBS  := $(if $(filter 1,$(DNNL)),-ldnnl,) $(ZLIB) $(if $(filter 1,$(CAIRO)),-lcairo,) $(if $(filter 1,$(CJSON)),-lcjson,) $(if $(filter 1,$(PNG)),-lpng,) $(if $(filter 1,$(JPEG)),-ljpeg,) -lm -lpthread $(EXTRA_LDLIBS)
CFLAGS  += $(if $(filter 1,$(DNNL)),,-DFL_NO_DNNL) $(if $(filter 1,$(CAIRO)),,-DFL_NO_CAIRO) $(if $(filter 1,$(CJSON)),,-DFL_NO_CJSON) $(if $(filter 1,$(PNG)),,-DFL_NO_PNG) $(if $(filter 1,$(JPEG)),,-DFL_NO_JPEG) $(EXTRA_CFLAGS)
LDFLAGS += -fopenmp $(if $(filter 1,$(SAN)),-fsanitize=address$(comma)undefined)
comma   := ,

SRC     := $(sort $(wildcard src/*/*.c src/*/*/*.c))
OBJ     := $(SRC:%.c=$(BUILD)/obj/%.o)

# CUDA=1: the CUDA backend is its own library, $(BUILD)/libflexlearn_cuda.so (the only thing
# linked against cudart + cuBLAS), which the core dlopens when a GPU is present
# (src/backend/dispatch.c); libflexlearn and the programs link no CUDA library.
ifeq ($(CUDA),1)
  CFLAGS   += -DFL_HAVE_CUDA
  CU_SRC   := $(sort $(wildcard src/backend/cuda/*.cu))
  CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
  CUDA_PLUGIN := $(BUILD)/libflexlearn_cuda.so
  NVFLAGS  := -O3 -std=c++17 -Iinclude -Isrc -DFL_HAVE_CUDA -Xcompiler -fPIC,-Wall,-fvisibility=hidden \
              -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
  CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
  LDLIBS   += -ldl
  # the last place the core looks for the plugin: this build directory
  $(BUILD)/obj/src/backend/dispatch.o: CFLAGS += -DFL_CUDA_PLUGIN_DIR='"$(abspath $(BUILD))"'
endif

LIB_A   := $(BUILD)/libflexlearn.a
LIB_SO  := $(BUILD)/libflexlearn.so
CLI     := $(BUILD)/flexlearn
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
EXAMPLES:= $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
BENCHES := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

.PHONY: all run test tests bench deps depcheck clean
all: $(LIB_A) $(LIB_SO) $(CLI) $(EXAMPLES) $(BENCHES) $(CUDA_PLUGIN)

$(BUILD)/obj/%.o: %.c $(wildcard include/fl/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.o: %.cu $(wildcard include/fl/*.h src/*/*.h src/backend/cuda/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# Before compiling anything: every library this build needs is there, or one line per missing
# one naming its Debian package (make deps installs them).
depcheck:
	@CC="$(CC)" DNNL=$(DNNL) CAIRO=$(CAIRO) CJSON=$(CJSON) PNG=$(PNG) JPEG=$(JPEG) CUDA=$(CUDA) NVCC="$(NVCC)" tools/check_deps.sh
$(OBJ) $(CU_OBJ): | depcheck

$(LIB_A): $(OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

# No sanitizer flags: nvcc's objects are not instrumented. Exports only fl__cuda_plugin.
$(BUILD)/libflexlearn_cuda.so: $(CU_OBJ)
	$(CC) -shared -o $@ $^ $(CUDA_LDLIBS) -Wl,--no-undefined

$(CLI): cli/flexlearn.c $(wildcard cli/*.h) $(LIB_A)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ cli/flexlearn.c $(LIB_A) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_A) $(LDLIBS)

$(BUILD)/examples/%: examples/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_A) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_A) $(LDLIBS)

deps:
	@tools/setup.sh

tests: $(TESTS) $(CLI) $(CUDA_PLUGIN)

# The README's test command: installs what is missing (with python3-torch, which the test of a
# whole epoch against PyTorch uses), then runs every test under ASan+UBSan.
test:
	@FL_SETUP_TORCH=1 tools/setup.sh
	@$(MAKE) --no-print-directory SAN=1 tests
	@SAN_BUILD=build-san tools/run_tests.sh build-san

run:
	@tools/setup.sh
	@$(MAKE) --no-print-directory all
	$(CLI) fit

# Also installs python3-torch (the peer loop) when missing.
bench:
	@FL_SETUP_TORCH=1 tools/setup.sh
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bench/bench.sh && BUILD=$(BUILD) bench/predict.sh && BUILD=$(BUILD) bench/accel_sgd.sh && BUILD=$(BUILD) bench/resnet.sh

# ---- fuzzing (fuzz/): libFuzzer harnesses for the readers of outside bytes, built by clang with
# ASan + UBSan (+ LeakSanitizer), each linking only the sources it needs. `make fuzz-build`
# builds them (installing clang + libFuzzer when missing); `make fuzz` also runs each for
# FUZZ_TIME seconds (fuzz/run.sh) and fails on any finding.
.PHONY: fuzz fuzz-build
FUZZ_CC     ?= clang
FUZZ_TIME   ?= 60
FUZZ_BUILD  ?= build-fuzz
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -g -O1 -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Iinclude -Isrc -I.
FUZZ_BINS   := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard fuzz/fuzz_*.c))
FUZZ_LIBSRC := src/data/idx.c src/core/error.c
FUZZ_SRC_dataset := src/data/dataset.c
# the safetensors reader's validation only (no module code), and cJSON
FUZZ_SRC_safetensors := src/nn/safetensors.c
FUZZ_LIBS_safetensors := -lcjson
$(FUZZ_BUILD)/fuzz_safetensors: FUZZ_CFLAGS += -DFL_SAFETENSORS_PARSE_ONLY
$(FUZZ_BUILD)/fuzz_safetensors: src/nn/safetensors.c src/nn/safetensors_internal.h
# the PNG / JPEG decoders (Debian's libpng and libjpeg-turbo, not instrumented: our side is)
FUZZ_SRC_image := src/data/image.c
FUZZ_LIBS_image := -lpng -ljpeg
# (libpng's CRC checks off under the fuzzer only, so that it gets past them: image.c)
$(FUZZ_BUILD)/fuzz_image: FUZZ_CFLAGS += -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
$(FUZZ_BUILD)/fuzz_image: src/data/image.c
# the checkpoint reader: its metadata schema, then the safetensors reader on every tensor
FUZZ_SRC_checkpoint := src/learner/checkpoint.c src/nn/safetensors.c
FUZZ_LIBS_checkpoint := -lcjson -lm   # and -lz, which every harness links
$(FUZZ_BUILD)/fuzz_checkpoint: FUZZ_CFLAGS += -DFL_CHECKPOINT_PARSE_ONLY -DFL_SAFETENSORS_PARSE_ONLY
$(FUZZ_BUILD)/fuzz_checkpoint: src/learner/checkpoint.c src/learner/checkpoint_internal.h src/nn/safetensors.c \
                               src/nn/safetensors_internal.h

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(FUZZ_LIBSRC) src/data/dataset.c \
                      src/data/idx_internal.h $(wildcard include/fl/*.h src/backend/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_LIBSRC) $(FUZZ_SRC_$*) -lz -lpthread $(FUZZ_LIBS_$*)

fuzz-build:
	@FL_SETUP_FUZZ=1 tools/setup.sh
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_TIME=$(FUZZ_TIME) fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_BINS)

clean:
	rm -rf build build-san build-fuzz
