#pragma once
// Invariant checks for fuzz targets: a violated property aborts with a message, which libFuzzer
// reports as a crash (and saves the input) and the corpus replay reports as a failed test.

#include <cstdio>
#include <cstdlib>
#include <string>

#define FUZZ_CHECK(cond, what)                                                                 \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      std::fprintf(stderr, "fuzz invariant violated at %s:%d: %s\n  %s\n", __FILE__, __LINE__, \
                   #cond, std::string(what).c_str());                                          \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)
