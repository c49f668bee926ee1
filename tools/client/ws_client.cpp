#include "client/ws_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include "client/run_until.hpp"

namespace parley::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

nlohmann::json WsEvent::json() const {
  return nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
}

std::string WsEvent::describe() const {
  switch (kind) {
    case Kind::text:
      return "text frame " + (data.size() > 300 ? data.substr(0, 300) + "…" : data);
    case Kind::binary:
      return "binary frame of " + std::to_string(data.size()) + " bytes";
    case Kind::closed:
      return "close " + std::to_string(close_code) + " \"" + close_reason + "\"";
    case Kind::timeout:
      return "timeout (nothing received)";
  }
  return "?";
}

struct WsClient::Impl {
  asio::io_context ioc;
  websocket::stream<tcp::socket> ws{ioc};
  beast::flat_buffer read_buffer;
  std::deque<WsEvent> events;
  bool connected = false;
  bool ended = false;  // a `closed` event was produced, or the connection was dropped
  bool read_pending = false;
  bool write_pending = false;
  std::uint64_t bytes = 0;

  // Starts the one pending read; its completion queues exactly one event.
  void start_read() {
    if (read_pending || ended || !connected) return;
    read_pending = true;
    ws.async_read(read_buffer, [this](boost::system::error_code ec, std::size_t n) {
      read_pending = false;
      WsEvent ev;
      if (!ec) {
        ev.kind = ws.got_text() ? WsEvent::Kind::text : WsEvent::Kind::binary;
        ev.data = beast::buffers_to_string(read_buffer.data());
        read_buffer.consume(read_buffer.size());
        bytes += n;
        events.push_back(std::move(ev));
        return;
      }
      ev.kind = WsEvent::Kind::closed;
      const auto& reason = ws.reason();
      // A close frame that was read counts even when answering it failed afterwards (the
      // server may be gone by the time the client reads its close frame); Beast then reports
      // the write or teardown error, but reason() holds what the server said.
      if (ec == websocket::error::closed || reason.code != websocket::close_code::none) {
        ev.close_code = reason.code == websocket::close_code::none
                            ? std::uint16_t{1005}
                            : static_cast<std::uint16_t>(reason.code);
        ev.close_reason = std::string(reason.reason.data(), reason.reason.size());
      } else {
        ev.close_code = 1006;
        ev.close_reason = ec.message();
      }
      ended = true;
      events.push_back(std::move(ev));
    });
  }
};

WsClient::WsClient() : impl_(std::make_unique<Impl>()) {}

WsClient::~WsClient() {
  // Closing the socket aborts the pending operations; their handlers must run before the
  // stream they reference is destroyed.
  if (impl_->connected) abort_and_drain(impl_->ioc, impl_->ws.next_layer());
}

void WsClient::connect(const std::string& host, std::uint16_t port, const std::string& path,
                       std::chrono::milliseconds timeout) {
  auto& im = *impl_;
  if (im.connected) throw TransportError("WsClient::connect called twice");
  const auto deadline = steady::now() + timeout;
  const std::string where = host + ":" + std::to_string(port);
  boost::system::error_code ec;
  tcp::resolver resolver(im.ioc);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec) throw TransportError("cannot resolve " + host + ": " + ec.message());

  bool done = false;
  asio::async_connect(im.ws.next_layer(), results,
                      [&](boost::system::error_code e, const tcp::endpoint&) {
                        ec = e;
                        done = true;
                      });
  if (!run_until(
          im.ioc, [&] { return done; }, deadline)) {
    abort_and_drain(im.ioc, im.ws.next_layer());
    throw TransportError("timed out connecting to " + where);
  }
  if (ec) throw TransportError("cannot connect to " + where + ": " + ec.message());
  im.ws.next_layer().set_option(tcp::no_delay(true));

  im.ws.read_message_max(64 * 1024 * 1024);
  im.ws.set_option(websocket::stream_base::decorator([](websocket::request_type& req) {
    req.set(beast::http::field::user_agent, "parley-client");
  }));
  websocket::response_type res;
  done = false;
  im.ws.async_handshake(res, where, path, [&](boost::system::error_code e) {
    ec = e;
    done = true;
  });
  if (!run_until(
          im.ioc, [&] { return done; }, deadline)) {
    abort_and_drain(im.ioc, im.ws.next_layer());
    throw TransportError("timed out upgrading " + where + path + " to WebSocket");
  }
  if (ec) {
    throw TransportError("WebSocket upgrade of " + where + path + " failed (HTTP " +
                         std::to_string(res.result_int()) + "): " + ec.message());
  }
  im.ws.text(true);
  im.connected = true;
}

void WsClient::send_text(std::string_view text) {
  auto& im = *impl_;
  if (!im.connected || im.ended) throw TransportError("send on a closed WebSocket");
  im.ws.text(true);
  boost::system::error_code ec;
  bool done = false;
  im.ws.async_write(asio::buffer(text.data(), text.size()),
                    [&](boost::system::error_code e, std::size_t) {
                      ec = e;
                      done = true;
                    });
  if (!run_until(
          im.ioc, [&] { return done; }, steady::now() + std::chrono::seconds(10))) {
    abort_and_drain(im.ioc, im.ws.next_layer());
    im.ended = true;
    throw TransportError("timed out writing a frame (the server does not read)");
  }
  if (ec) throw TransportError("cannot write a frame: " + ec.message());
}

void WsClient::send_binary(std::string_view data) {
  auto& im = *impl_;
  if (!im.connected || im.ended) throw TransportError("send on a closed WebSocket");
  im.ws.binary(true);
  boost::system::error_code ec;
  bool done = false;
  im.ws.async_write(asio::buffer(data.data(), data.size()),
                    [&](boost::system::error_code e, std::size_t) {
                      ec = e;
                      done = true;
                    });
  bool finished = run_until(
      im.ioc, [&] { return done; }, steady::now() + std::chrono::seconds(10));
  im.ws.text(true);
  if (!finished) {
    abort_and_drain(im.ioc, im.ws.next_layer());
    im.ended = true;
    throw TransportError("timed out writing a frame (the server does not read)");
  }
  if (ec) throw TransportError("cannot write a frame: " + ec.message());
}

WsEvent WsClient::receive(std::chrono::milliseconds timeout) {
  auto& im = *impl_;
  if (im.events.empty() && im.connected && !im.ended) {
    im.start_read();
    run_until(
        im.ioc, [&] { return !im.events.empty(); }, steady::now() + timeout);
  }
  if (im.events.empty()) {
    WsEvent ev;
    if (!im.connected || im.ended) {
      ev.kind = WsEvent::Kind::closed;
      ev.close_code = 1006;
      ev.close_reason = "not connected";
    }
    return ev;
  }
  WsEvent ev = std::move(im.events.front());
  im.events.pop_front();
  return ev;
}

void WsClient::close(std::uint16_t code, std::string_view reason) {
  auto& im = *impl_;
  if (!im.connected || im.ended) return;
  boost::system::error_code ec;
  bool done = false;
  websocket::close_reason cr(static_cast<websocket::close_code>(code),
                             beast::string_view(reason.data(), reason.size()));
  im.ws.async_close(cr, [&](boost::system::error_code e) {
    ec = e;
    done = true;
  });
  // The pending read completes once the server answers the close; wait for both briefly.
  run_until(
      im.ioc, [&] { return done && !im.read_pending; }, steady::now() + std::chrono::seconds(2));
  abort_and_drain(im.ioc, im.ws.next_layer());
  im.ended = true;
}

void WsClient::drop() {
  auto& im = *impl_;
  if (!im.connected) return;
  boost::system::error_code ec;
  im.ws.next_layer().shutdown(tcp::socket::shutdown_both, ec);
  abort_and_drain(im.ioc, im.ws.next_layer());
  im.ended = true;
}

bool WsClient::is_open() const {
  return impl_->connected && !impl_->ended;
}

std::uint64_t WsClient::bytes_received() const {
  return impl_->bytes;
}

}  // namespace parley::client
