// The main() of a fuzz target built without libFuzzer (g++, or clang without PARLEY_FUZZ): it
// runs LLVMFuzzerTestOneInput once on each file named on the command line, and on every regular
// file of each directory named, in name order. This is how the test command replays the seed
// corpora (tests/fuzz/corpus/<target>/) under any compiler. Flags starting with '-' are ignored,
// so the same command line works for a libFuzzer binary (e.g. -runs=0).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

int run_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", p.c_str());
    return 1;
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A heap copy of exactly the input's size, so that ASan (when enabled) sees overreads.
  std::vector<std::uint8_t> data(bytes.begin(), bytes.end());
  std::uint8_t* ptr = data.empty() ? nullptr : data.data();
  LLVMFuzzerTestOneInput(ptr, data.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::filesystem::path> files;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (!arg.empty() && arg[0] == '-') continue;
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::filesystem::path> in_dir;
      for (const auto& e : std::filesystem::directory_iterator(arg)) {
        if (e.is_regular_file()) in_dir.push_back(e.path());
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else {
      files.emplace_back(arg);
    }
  }
  int failures = 0;
  for (const auto& f : files) failures += run_file(f);
  std::printf("replayed %zu inputs\n", files.size() - static_cast<std::size_t>(failures));
  if (files.empty()) {
    std::fprintf(stderr, "no inputs given (files or directories)\n");
    return 1;
  }
  return failures == 0 ? 0 : 1;
}
