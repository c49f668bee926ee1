// Fuzz target: the JSON protocol decoder (protocol::decode_request).
//
// Properties, for every input:
//  * decoding never crashes, hangs or trips a sanitizer, whatever the bytes;
//  * decoding is deterministic;
//  * round trip: when a frame decodes, encode_request() of the result decodes again, under the
//    same limits, to an equal Envelope, and encoding that gives the same text (a fixed point);
//  * an error that echoes a ref echoes a valid one (valid UTF-8, within the limit).
// The first byte picks the limits (the defaults, or small ones that put every limit within
// reach of short inputs); the rest is the frame.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/names.hpp"
#include "fuzz_check.hpp"
#include "protocol/messages.hpp"
#include "protocol/ws_frame.hpp"

using namespace parley::protocol;

namespace {

Limits limits_for(std::uint8_t b) {
  Limits l;
  if ((b & 1) == 0) return l;  // the defaults
  l.max_body_code_points = 1 + (b >> 1 & 7);
  l.max_client_msg_id = 1 + (b >> 4 & 3);
  l.max_ref = (b >> 6) + 1;
  l.max_history_limit = 3;
  l.default_history_limit = 2;
  l.max_watch_users = 2;
  l.max_cursors = 2;
  return l;
}

std::string describe(const Envelope& e) {
  return encode_request(e);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Limits limits = limits_for(data[0]);
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

  auto first = decode_request(text, limits);
  auto again = decode_request(text, limits);
  FUZZ_CHECK(first.has_value() == again.has_value(), "decoding is not deterministic");
  if (!first) {
    const DecodeError& e = first.error();
    FUZZ_CHECK(!e.message.empty(), "an error without a message");
    FUZZ_CHECK(e.code == ErrorCode::bad_request || e.code == ErrorCode::too_large,
               "decode error code " + std::string(to_string(e.code)));
    if (e.ref) {
      FUZZ_CHECK(ws::is_valid_utf8(*e.ref), "an echoed ref is not UTF-8");
      FUZZ_CHECK(parley::core::utf8_code_points(*e.ref) <= limits.max_ref,
                 "an echoed ref over the limit");
    }
    FUZZ_CHECK(again.error().message == e.message, "decoding is not deterministic (message)");
    return 0;
  }
  FUZZ_CHECK(*first == *again, "decoding is not deterministic (envelope)");

  const std::string encoded = encode_request(*first);
  FUZZ_CHECK(ws::is_valid_utf8(encoded), "encode_request produced invalid UTF-8: " + encoded);
  auto round = decode_request(encoded, limits);
  FUZZ_CHECK(round.has_value(), "the encoding of a decoded request does not decode: " + encoded +
                                    " -> " + (round ? std::string() : round.error().message));
  FUZZ_CHECK(*round == *first,
             "round trip changed the request: " + encoded + " vs " + describe(*round));
  FUZZ_CHECK(encode_request(*round) == encoded, "encoding is not a fixed point: " + encoded);
  return 0;
}
