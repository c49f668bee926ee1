#pragma once
// The metrics every Store adapter reports, so that SQLite and PostgreSQL nodes expose the same
// series: parley_store_query_seconds{op} (from a call to its completion, queueing included) and
// parley_store_batch_size (write operations per committed transaction).

#include <array>
#include <cstddef>

#include "metrics/metrics.hpp"

namespace parley::store {

// The Store port's operations, one histogram series each.
enum class StoreOp {
  create_user,
  get_user,
  create_token,
  lookup_token,
  delete_token,
  create_room,
  join_room,
  leave_room,
  invite,
  open_dm,
  is_member,
  list_rooms,
  room_info,
  append,
  read_range,
  history,
  set_read,
  set_admin,
  delete_user,
  count,
};
inline constexpr std::size_t kStoreOpCount = static_cast<std::size_t>(StoreOp::count);

struct StoreMetrics {
  // Registers (or finds) the series; call at start-up.
  explicit StoreMetrics(metrics::Registry& registry);
  std::array<metrics::Histogram*, kStoreOpCount> latency{};
  metrics::Histogram* batch_size = nullptr;
};

}  // namespace parley::store
