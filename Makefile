# C/C++ side of shmpool: the library (crate bindings/c, built by cargo), the generated header, the
# C/C++/GStreamer examples and tests, and `make install` with a pkg-config file and a CMake package.
#
#   make                      # build libshmpool.{so,a} (release) and the C/C++ examples and tests
#   make header               # regenerate include/shmpool.h with the pinned cbindgen
#   make install PREFIX=/opt/shmpool [DESTDIR=...]   # also the GStreamer plugin, into $(LIBDIR)/gstreamer-1.0
#   make uninstall PREFIX=...
# Tests: scripts/test-c.sh (uses this file).

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# GStreamer looks for plugins here (for PREFIX=/usr: the system plugin directory).
GSTPLUGINDIR ?= $(LIBDIR)/gstreamer-1.0
BUILD ?= build/c
CARGO ?= cargo
CBINDGEN ?= $(HOME)/.cargo/bin/cbindgen
VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))
CMAKEDIR ?= $(LIBDIR)/cmake/shmpool

CC ?= cc
CXX ?= c++
WARN := -Wall -Wextra -Werror
CFLAGS_C := -std=c99 -pedantic $(WARN) -O2 -g -Iinclude
CXXFLAGS_CXX := -std=c++17 -pedantic $(WARN) -O2 -g -Iinclude
# What the Rust standard library needs when linking libshmpool.a statically.
STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
LIB_A := target/release/libshmpool.a
GST_PKGS := gstreamer-1.0 gstreamer-app-1.0 gstreamer-video-1.0

C_BINS := $(BUILD)/test_api $(BUILD)/test_epoll $(BUILD)/test_store $(BUILD)/producer $(BUILD)/consumer $(BUILD)/bench_loop
CXX_BINS := $(BUILD)/test_api_cpp $(BUILD)/test_api_cpp20 $(BUILD)/test_store_cpp $(BUILD)/producer_cpp $(BUILD)/consumer_cpp
GLIB_BINS := $(BUILD)/glib_consumer
GST_BINS := $(BUILD)/gst_to_pool $(BUILD)/pool_to_gst $(BUILD)/shmsink_bench $(BUILD)/elements

.PHONY: all lib gst-plugin header check-header c cxx glib gst install uninstall clean-c
all: c cxx glib gst
c: $(C_BINS)
cxx: $(CXX_BINS)
glib: $(GLIB_BINS)
gst: $(GST_BINS)

lib:
	$(CARGO) build --release -p shmpool-c

# libgstshmpool.so: the shmpoolsink and shmpoolsrc elements (bindings/gstreamer).
gst-plugin:
	$(CARGO) build --release -p gst-plugin-shmpool

# cargo decides whether anything changed; the archive is what the examples link.
$(LIB_A): FORCE
	$(CARGO) build --release -p shmpool-c --quiet
FORCE:

header:
	$(CBINDGEN) --quiet --config bindings/c/cbindgen.toml --output include/shmpool.h bindings/c

check-header:
	@tmp=$$(mktemp) && $(CBINDGEN) --quiet --config bindings/c/cbindgen.toml --output $$tmp bindings/c && \
	  if diff -u include/shmpool.h $$tmp; then rm -f $$tmp; echo "include/shmpool.h is up to date"; \
	  else rm -f $$tmp; echo "include/shmpool.h is stale: run make header"; exit 1; fi

$(BUILD):
	mkdir -p $@

$(BUILD)/test_api: tests/c/test_api.c tests/c/check.h include/shmpool.h $(LIB_A) | $(BUILD)
	$(CC) $(CFLAGS_C) $< -o $@ $(LIB_A) $(STATIC_LIBS)
$(BUILD)/test_epoll: tests/c/test_epoll.c include/shmpool.h $(LIB_A) | $(BUILD)
	$(CC) $(CFLAGS_C) $< -o $@ $(LIB_A) $(STATIC_LIBS)
# The GLib example is C11 (GLib's headers are not C99-pedantic-clean).
$(BUILD)/glib_consumer: examples/c/glib_consumer.c include/shmpool.h $(LIB_A) | $(BUILD)
	$(CC) -std=c11 $(WARN) -O2 -g -Iinclude $$(pkg-config --cflags glib-2.0) $< -o $@ $(LIB_A) $$(pkg-config --libs glib-2.0) $(STATIC_LIBS)
$(BUILD)/test_store: tests/c/test_store.c tests/c/check.h include/shmpool.h $(LIB_A) | $(BUILD)
	$(CC) $(CFLAGS_C) $< -o $@ $(LIB_A) $(STATIC_LIBS)
$(BUILD)/%: examples/c/%.c include/shmpool.h $(LIB_A) | $(BUILD)
	$(CC) $(CFLAGS_C) $< -o $@ $(LIB_A) $(STATIC_LIBS)
$(BUILD)/test_api_cpp: tests/cpp/test_api.cpp tests/cpp/check.hpp include/shmpool.hpp include/shmpool.h $(LIB_A) | $(BUILD)
	$(CXX) $(CXXFLAGS_CXX) $< -o $@ $(LIB_A) $(STATIC_LIBS)
$(BUILD)/test_api_cpp20: tests/cpp/test_api.cpp tests/cpp/check.hpp include/shmpool.hpp include/shmpool.h $(LIB_A) | $(BUILD)
	$(CXX) $(CXXFLAGS_CXX) -std=c++20 $< -o $@ $(LIB_A) $(STATIC_LIBS)
$(BUILD)/test_store_cpp: tests/cpp/test_store.cpp tests/cpp/check.hpp include/shmpool.hpp include/shmpool.h $(LIB_A) | $(BUILD)
	$(CXX) $(CXXFLAGS_CXX) $< -o $@ $(LIB_A) $(STATIC_LIBS)
$(BUILD)/%_cpp: examples/cpp/%.cpp include/shmpool.hpp include/shmpool.h $(LIB_A) | $(BUILD)
	$(CXX) $(CXXFLAGS_CXX) $< -o $@ $(LIB_A) $(STATIC_LIBS)
$(BUILD)/%: examples/gstreamer/%.cpp include/shmpool.hpp include/shmpool.h $(LIB_A) | $(BUILD)
	$(CXX) $(CXXFLAGS_CXX) $$(pkg-config --cflags $(GST_PKGS)) $< -o $@ $(LIB_A) $$(pkg-config --libs $(GST_PKGS)) $(STATIC_LIBS)

# libshmpool.so.X.Y.Z, its SONAME link libshmpool.so.X and the development link libshmpool.so;
# the GStreamer plugin into the prefix's GStreamer plugin directory.
install: lib gst-plugin
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(CMAKEDIR) \
	  $(DESTDIR)$(GSTPLUGINDIR)
	install -m 755 target/release/libgstshmpool.so $(DESTDIR)$(GSTPLUGINDIR)/
	install -m 644 include/shmpool.h include/shmpool.hpp $(DESTDIR)$(INCLUDEDIR)/
	install -m 755 target/release/libshmpool.so $(DESTDIR)$(LIBDIR)/libshmpool.so.$(VERSION)
	ln -sf libshmpool.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libshmpool.so.$(SOVERSION)
	ln -sf libshmpool.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libshmpool.so
	install -m 644 target/release/libshmpool.a $(DESTDIR)$(LIBDIR)/
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@SOVERSION@|$(SOVERSION)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	  -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' bindings/c/cmake/shmpoolConfig.cmake.in > $(DESTDIR)$(CMAKEDIR)/shmpoolConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' bindings/c/cmake/shmpoolConfigVersion.cmake.in \
	  > $(DESTDIR)$(CMAKEDIR)/shmpoolConfigVersion.cmake
	printf '%s\n' \
	  'prefix=$(PREFIX)' \
	  'libdir=$(LIBDIR)' \
	  'includedir=$(INCLUDEDIR)' \
	  '' \
	  'Name: shmpool' \
	  'Description: Zero-copy inter-process buffer pools in shared memory' \
	  'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -lshmpool' \
	  'Libs.private: $(STATIC_LIBS)' \
	  'Cflags: -I$${includedir}' > $(DESTDIR)$(PKGCONFIGDIR)/shmpool.pc
	@echo "installed shmpool $(VERSION) into $(DESTDIR)$(PREFIX)"

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/shmpool.h $(DESTDIR)$(INCLUDEDIR)/shmpool.hpp \
	  $(DESTDIR)$(LIBDIR)/libshmpool.so $(DESTDIR)$(LIBDIR)/libshmpool.so.$(SOVERSION) \
	  $(DESTDIR)$(LIBDIR)/libshmpool.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libshmpool.a $(DESTDIR)$(PKGCONFIGDIR)/shmpool.pc \
	  $(DESTDIR)$(CMAKEDIR)/shmpoolConfig.cmake $(DESTDIR)$(CMAKEDIR)/shmpoolConfigVersion.cmake \
	  $(DESTDIR)$(GSTPLUGINDIR)/libgstshmpool.so

clean-c:
	rm -rf $(BUILD)
