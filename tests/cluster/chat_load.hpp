#pragma once
// Steady chat traffic from N clients that behave as docs/protocol.md "How to resume correctly"
// asks, and a checker of what they saw against the store.
//
// Each client is one user, member of every room of the run (joined before start()). It runs in
// a thread of its own with a parley::client::WsClient:
//  - connects to its endpoint (HAProxy, or one node of a list: client i starts on endpoint
//    i % n and moves to the next one when a connect fails), authenticates with a cursor for
//    every room, and reconnects with jittered exponential backoff after any close or error;
//  - applies a message only when its seq is the room's cursor + 1; a seq <= cursor is recorded
//    as a duplicate delivery, a seq > cursor + 1 as a gap (and the client reconnects to resume,
//    as the protocol says);
//  - keeps an outbox of unacknowledged sends with their client_msg_id: after every welcome it
//    resends them all with the same id, on `unavailable` or `rate_limited` it retries later with
//    the same id, and a send left unanswered for `resend_after` is sent again (same id);
//  - while sending is on, adds a message to a room (rotating) every `send_interval` (jittered)
//    as long as fewer than `max_in_flight` sends wait for their ack.
// The checker (check()) compares every client's streams, acks and the store's final history.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/http_client.hpp"

namespace parley::cluster {

struct LoadUser {
  std::string name;
  std::string token;
};

struct LoadOptions {
  std::vector<client::Endpoint> endpoints;
  std::vector<std::string> rooms;  // every client is a member of every room
  std::chrono::milliseconds send_interval{200};
  std::size_t max_in_flight = 2;
  std::chrono::milliseconds resend_after{4000};
  std::chrono::milliseconds retry_unavailable_after{250};
};

// A message as one client applied it.
struct Received {
  std::uint64_t seq = 0;
  std::string from;
  std::string client_msg_id;
  std::string body;
};

// One WebSocket connection of a client.
struct ConnectionRecord {
  std::size_t endpoint = 0;  // index into LoadOptions::endpoints
  std::string node;          // welcome.node ("" when it ended before the welcome)
  std::map<std::string, std::uint64_t> cursors;  // sent in auth
  std::int64_t opened_ms = 0;                    // since the load started
  std::int64_t closed_ms = -1;
  int close_code = 0;  // the server's close code, 1006 for a dropped connection, 0 if we closed
  std::string close_reason;
};

struct Generated {
  std::string room;
  std::string client_msg_id;
  std::string body;
  bool saw_unavailable = false;
  bool acked = false;
};

// Everything one client saw. Read it after ChatLoad::stop().
struct ClientReport {
  std::string user;
  std::map<std::string, std::uint64_t> start_cursors;
  std::map<std::string, std::vector<Received>> streams;  // applied, per room
  std::map<std::string, std::uint64_t> cursors;
  std::vector<Generated> generated;
  // (room, client_msg_id) -> seq of its first ack.
  std::map<std::pair<std::string, std::string>, std::uint64_t> acked;
  std::vector<ConnectionRecord> connections;
  std::vector<std::string> violations;  // each gap, duplicate, ack mismatch, unexpected error
  std::uint64_t gaps = 0;
  std::uint64_t duplicate_deliveries = 0;
  std::uint64_t ack_mismatches = 0;
  std::uint64_t unexpected_errors = 0;
  std::uint64_t sends = 0;    // send frames written (resends included)
  std::uint64_t resends = 0;  // send frames for an id already sent once
  std::uint64_t unavailable = 0;
  std::uint64_t rate_limited = 0;
  std::uint64_t connect_failures = 0;
  std::size_t outbox = 0;           // still unacknowledged
  std::vector<std::string> events;  // a short log (connections, closes, violations) for reports
};

// The checker's verdict.
struct CheckResult {
  std::uint64_t acked = 0;        // distinct acknowledged messages
  std::uint64_t store_total = 0;  // messages in the store's history, all rooms
  std::uint64_t deliveries = 0;   // messages applied, all clients
  // Acknowledged messages missing from the store, plus (acked message, member) pairs that the
  // member never received.
  std::uint64_t lost = 0;
  // Messages created twice in the store (same sender and client_msg_id), deliveries of a seq a
  // client already had, and client_msg_ids acknowledged with two different seqs.
  std::uint64_t duplicates = 0;
  // Gaps in a connection's stream, holes in the store's seqs, and streams that disagree with
  // the store at a seq.
  std::uint64_t out_of_order = 0;
  std::uint64_t unacked = 0;      // generated messages never acknowledged
  std::uint64_t undelivered = 0;  // store messages some member never received
  std::uint64_t errors = 0;       // unexpected error frames
  std::string details;            // the first problems found, one per line

  bool ok() const {
    return lost == 0 && duplicates == 0 && out_of_order == 0 && unacked == 0 && undelivered == 0 &&
           errors == 0;
  }
  std::string summary() const;
};

class ChatLoad {
 public:
  ChatLoad(LoadOptions options, std::vector<LoadUser> users);
  ~ChatLoad();
  ChatLoad(const ChatLoad&) = delete;
  ChatLoad& operator=(const ChatLoad&) = delete;

  void start();
  // No new messages from now on; unacknowledged ones are still retried.
  void stop_sending();
  // Closes every client (1000) and joins the threads.
  void stop();

  // Every client has been welcomed at least once and has `acks` or more acknowledged messages.
  bool wait_progress(std::uint64_t acks, std::chrono::milliseconds timeout);
  // Each client's total of acknowledged messages grows by at least `acks` from now on.
  bool wait_more_acks(std::uint64_t acks, std::chrono::milliseconds timeout);
  // After stop_sending(): waits until every outbox is empty and every client's cursor of every
  // room reached the room's last_seq (read over HTTP from `at`). `why` says what is missing.
  bool wait_quiet(const client::Endpoint& at, std::chrono::milliseconds timeout, std::string& why);

  std::size_t size() const { return clients_.size(); }
  // The node each client is connected to now ("" when it is not).
  std::vector<std::string> current_nodes() const;
  std::uint64_t total_acked() const;
  std::uint64_t total_unavailable() const;
  // Snapshot copies (any time; complete after stop()).
  std::vector<ClientReport> reports() const;
  const LoadOptions& options() const { return options_; }

 private:
  class Client;
  LoadOptions options_;
  std::string token_;  // a member's token, to read the rooms' last_seq
  std::vector<std::unique_ptr<Client>> clients_;
};

// Checks the clients' reports against the store's final history (room -> messages, ascending,
// as GET /api/v1/rooms/{room}/messages returns them).
CheckResult check(const std::vector<ClientReport>& reports,
                  const std::map<std::string, std::vector<nlohmann::json>>& history);

// A few lines about the run: connections per node, closes by code, retries.
std::string describe_run(const std::vector<ClientReport>& reports);

}  // namespace parley::cluster
