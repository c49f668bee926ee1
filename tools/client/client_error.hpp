#pragma once
// Errors the client library reports. Transport failures (cannot connect, timeouts, a dropped
// connection) and API errors (an HTTP error status with the server's error body) are distinct
// types so that callers such as the CLI can map them to distinct exit codes.

#include <stdexcept>
#include <string>

namespace parley::client {

// The connection could not be made, timed out or broke.
class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The server answered with an error: an HTTP status >= 400 or a WebSocket error frame.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string code, std::string message)
      : std::runtime_error(code.empty() ? message : code + ": " + message),
        status_(status),
        code_(std::move(code)),
        message_(std::move(message)) {}
  // The HTTP status, or 0 when the error came over the WebSocket.
  int status() const { return status_; }
  // The protocol error code (`bad_request`, `unauthorized`, …), empty when the body had none.
  const std::string& code() const { return code_; }
  const std::string& server_message() const { return message_; }

 private:
  int status_;
  std::string code_;
  std::string message_;
};

}  // namespace parley::client
