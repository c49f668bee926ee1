#pragma once
// Versioned schema migrations, embedded from migrations/<adapter>/NNNN_name.sql at build time.
// Each adapter applies, at start-up and in one transaction each, every migration whose version is
// above the schema's recorded version.

#include <string_view>
#include <vector>

namespace parley::store {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

const std::vector<Migration>& sqlite_migrations();
const std::vector<Migration>& postgres_migrations();

}  // namespace parley::store
