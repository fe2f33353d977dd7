# Two commands on a fresh machine (README):
#   make demo   build, then run the benchmark CLI (on the GPU when there is one, else the CPU path)
#   make test   build and run every test: C tests (CUDA build when nvcc is found; GPU cases run
#               when a GPU is present), the same C tests under ASan+UBSan, and the Python tests
JOBS ?= 2
BUILD ?= build
BUILD_ASAN ?= build-asan
CMAKE_FLAGS ?=

.PHONY: all build demo test test-c test-asan clean

all: build

build:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./scripts/demo.sh $(BUILD)

test-c: build
	$(BUILD)/tests/sageattn-tests

# CPU-only build: the sanitizers check the host code; CUDA is checked by compute-sanitizer
# on a GPU machine (scripts/gpu-check.sh).
test-asan:
	cmake -S . -B $(BUILD_ASAN) -DSAGE_ENABLE_CUDA=OFF -DSAGE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $(BUILD_ASAN)/tests/sageattn-tests

-include python/python.mk

test: test-c test-asan test-python

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
