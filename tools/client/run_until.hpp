#pragma once
// Drives a private io_context until a condition holds or a deadline passes. The client is
// synchronous for its callers, but every socket operation is asynchronous underneath so that
// each call can give up at a deadline without leaving the connection in an undefined state.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>

namespace parley::client {

// Returns true once `done()` holds, false when the deadline passed first (or when the
// io_context ran out of work without `done()` becoming true).
template <class Done>
bool run_until(boost::asio::io_context& ioc, Done done,
               std::chrono::steady_clock::time_point deadline) {
  while (!done()) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    if (ioc.stopped()) ioc.restart();
    auto ran = ioc.run_one_for(deadline - now);
    if (ran == 0 && ioc.stopped() && !done()) {
      // No handler ran and no work is left: nothing can make `done()` true any more.
      return false;
    }
  }
  return true;
}

// Closes the socket and runs the aborted handlers to completion, so that none of them runs
// later against objects that no longer exist.
inline void abort_and_drain(boost::asio::io_context& ioc, boost::asio::ip::tcp::socket& socket) {
  boost::system::error_code ignored;
  socket.close(ignored);
  if (ioc.stopped()) ioc.restart();
  ioc.run_for(std::chrono::seconds(1));
}

}  // namespace parley::client
