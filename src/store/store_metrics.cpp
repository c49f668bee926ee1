#include "store/store_metrics.hpp"

#include <vector>

namespace parley::store {

namespace {
constexpr std::array<const char*, kStoreOpCount> kOpNames = {
    "create_user", "get_user",   "create_token", "lookup_token", "delete_token",
    "create_room", "join_room",  "leave_room",   "invite",       "open_dm",
    "is_member",   "list_rooms", "room_info",    "append",       "read_range",
    "history",     "set_read",   "set_admin",    "delete_user",
};
}  // namespace

StoreMetrics::StoreMetrics(metrics::Registry& registry) {
  for (std::size_t i = 0; i < kStoreOpCount; ++i) {
    latency[i] = &registry.histogram("parley_store_query_seconds",
                                     "Time from a store call to its completion, by operation.",
                                     metrics::latency_buckets(), {{"op", kOpNames[i]}});
  }
  std::vector<double> batch_buckets;
  for (double b = 1; b <= 1024; b *= 2) batch_buckets.push_back(b);
  batch_size = &registry.histogram("parley_store_batch_size",
                                   "Write operations per committed store transaction.",
                                   std::move(batch_buckets));
}

}  // namespace parley::store
