// Fuzz target: HTTP request handling (transport::HttpSession and the JSON API of api.cpp) of a
// real in-process node, fed raw bytes through an in-memory stream (see fuzz_server.hpp): the
// Beast request parser with the server's header and body limits, routing, query strings
// (before, limit), path decoding (url_decode), JSON bodies (register, login), bearer tokens,
// static files and the WebSocket upgrade.
//
// The first byte seeds the write pieces and picks a part of the input for url_decode; the rest
// is the bytes of one connection, pipelined requests included. Placeholders ($TOKEN, $OTHER,
// $EXPIRED) are replaced by the fixture's tokens.
//
// Properties:
//  * no crash, hang or sanitizer report in the server;
//  * the server answers with well-formed HTTP/1.1 responses: a known status, Content-Length
//    matching the body, JSON bodies that parse, every error body {"error":{"code","message"}}
//    with a known code, and never 500 (an internal error is a server bug); a 413 and a
//    malformed request close the connection; after a 101 the bytes are valid server WebSocket
//    frames;
//  * url_decode: a result is never longer than its input, fails exactly on a '%' not followed
//    by two hex digits, and decoding a percent-encoding of its result gives the result back.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>

#include "fuzz_check.hpp"
#include "fuzz_server.hpp"
#include "transport/api.hpp"
#include "transport/http_session.hpp"
#include "transport/node.hpp"
#include "transport/shard.hpp"

namespace asio = boost::asio;
using parley::transport::HttpSession;

namespace {

bool is_hex(char c) {
  return std::isxdigit(static_cast<unsigned char>(c)) != 0;
}

void check_url_decode(std::string_view s) {
  bool well_formed = true;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) {
        well_formed = false;
        break;
      }
      if (!is_hex(s[i + 1]) || !is_hex(s[i + 2])) {
        well_formed = false;
        break;
      }
      i += 2;
    }
  }
  auto r = parley::transport::url_decode(s);
  FUZZ_CHECK(r.has_value() == well_formed, "url_decode " +
                                               std::string(well_formed ? "refused" : "accepted") +
                                               " \"" + std::string(s.substr(0, 100)) + "\"");
  if (!r) return;
  FUZZ_CHECK(r->size() <= s.size(), "url_decode grew its input");
  std::string enc;
  static constexpr char hex[] = "0123456789ABCDEF";
  for (unsigned char c : *r) {
    enc += '%';
    enc += hex[c >> 4];
    enc += hex[c & 15];
  }
  auto again = parley::transport::url_decode(enc);
  FUZZ_CHECK(again && *again == *r, "url_decode(percent-encoding(x)) != x");
}

// Checks the server's bytes: HTTP/1.1 responses, then WebSocket frames after a 101.
void check_http_output(std::string_view out, bool head_requests) {
  std::size_t pos = 0;
  while (pos < out.size()) {
    const std::size_t end = out.find("\r\n\r\n", pos);
    if (end == std::string_view::npos) return;  // cut short
    const std::string_view head = out.substr(pos, end - pos);
    FUZZ_CHECK(head.rfind("HTTP/1.1 ", 0) == 0 && head.size() >= 12,
               "not an HTTP/1.1 status line: " + std::string(head.substr(0, 80)));
    const int status = std::stoi(std::string(head.substr(9, 3)));
    static constexpr int known[] = {101, 200, 201, 204, 400, 401, 403,
                                    404, 405, 409, 413, 426, 429, 503};
    bool ok = false;
    for (int k : known) ok = ok || k == status;
    FUZZ_CHECK(ok,
               "HTTP status " + std::to_string(status) + ": " + std::string(out.substr(pos, 400)));
    std::size_t content_length = 0;
    bool json = false;
    bool closes = false;
    std::size_t line = head.find("\r\n");
    while (line != std::string_view::npos) {
      const std::size_t next = head.find("\r\n", line + 2);
      std::string h(head.substr(
          line + 2, next == std::string_view::npos ? std::string_view::npos : next - line - 2));
      for (auto& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (h.rfind("content-length: ", 0) == 0) content_length = std::stoul(h.substr(16));
      if (h.rfind("content-type: application/json", 0) == 0) json = true;
      if (h == "connection: close") closes = true;
      line = next;
    }
    pos = end + 4;
    if (status == 101) {
      parley::fuzz::check_ws_output(out.substr(pos));
      return;
    }
    if (status == 413) FUZZ_CHECK(closes, "a 413 that keeps the connection");
    if (head_requests) return;  // HEAD responses have a Content-Length but no body
    if (status == 204) {
      FUZZ_CHECK(content_length == 0, "a 204 with a body");
      continue;
    }
    if (pos + content_length > out.size()) return;  // cut short
    const std::string_view body = out.substr(pos, content_length);
    if (json) parley::fuzz::check_server_json(body, false);
    if (status == 400 && body.find("malformed HTTP request") != std::string_view::npos) {
      FUZZ_CHECK(closes, "a malformed request that keeps the connection");
    }
    if (status >= 400) {
      FUZZ_CHECK(json && body.find("\"error\"") != std::string_view::npos,
                 "an error without an error body");
    }
    pos += content_length;
  }
}

// Known open bug (docs/security.md, Findings 1): a request target that starts with '?' crashes
// the server. With PARLEY_FUZZ_SKIP_KNOWN=1 such inputs are skipped, so that a long run can look
// past it; by default they are not, so that the bug shows until it is fixed.
bool has_known_crash(std::string_view in) {
  static const bool skip = [] {
    const char* e = std::getenv("PARLEY_FUZZ_SKIP_KNOWN");
    return e != nullptr && *e == '1';
  }();
  if (!skip) return false;
  std::size_t pos = 0;
  while (pos < in.size()) {
    std::size_t i = pos;
    while (i < in.size() && std::isalpha(static_cast<unsigned char>(in[i]))) ++i;
    if (i > pos && i + 1 < in.size() && in[i] == ' ' && in[i + 1] == '?') return true;
    const std::size_t nl = in.find('\n', pos);
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  parley::fuzz::node();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  auto& node = parley::fuzz::node();
  std::mt19937 rng(data[0]);
  const std::string_view raw(reinterpret_cast<const char*>(data) + 1, size - 1);
  check_url_decode(raw.substr(0, std::min<std::size_t>(raw.size(), 512)));
  const std::string input = parley::fuzz::substitute(raw);
  if (has_known_crash(input)) return 0;

  auto& shard = node.next_shard();
  auto ex = parley::fuzz::exchange(
      [&](int fd) {
        asio::post(shard.ioc(), [&node, &shard, fd] {
          asio::ip::tcp::socket s(shard.ioc());
          s.assign(asio::ip::tcp::v4(), fd);
          std::make_shared<HttpSession>(node, shard, std::move(s))->start();
        });
      },
      input, rng, 0);
  check_http_output(ex.output, input.find("HEAD") != std::string::npos);
  if (input.find("logout") != std::string::npos) parley::fuzz::restore_tokens();
  return 0;
}
