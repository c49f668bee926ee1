#include "store/store.hpp"

#include <string>

namespace parley::store {

namespace {

// The category names the store's errors in logs ("store: forbidden") and lets callers compare a
// std::error_code against StoreErrc values without knowing which adapter produced it.
class StoreCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "store"; }

  std::string message(int ev) const override {
    switch (static_cast<StoreErrc>(ev)) {
      case StoreErrc::ok:
        return "ok";
      case StoreErrc::not_found:
        return "not_found";
      case StoreErrc::conflict:
        return "conflict";
      case StoreErrc::forbidden:
        return "forbidden";
      case StoreErrc::unavailable:
        return "unavailable";
      case StoreErrc::internal:
        return "internal";
    }
    return "unknown store error " + std::to_string(ev);
  }
};

}  // namespace

const std::error_category& store_category() {
  // A function-local static is constructed once, thread-safely, and lives until exit, so error
  // codes made from it stay valid in every thread.
  static const StoreCategory category;
  return category;
}

std::error_code make_error_code(StoreErrc e) {
  return {static_cast<int>(e), store_category()};
}

const char* to_string(RoomKind k) {
  switch (k) {
    case RoomKind::public_room:
      return "public";
    case RoomKind::private_room:
      return "private";
    case RoomKind::dm:
      return "dm";
  }
  return "public";
}

}  // namespace parley::store
