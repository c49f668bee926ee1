#pragma once
// One WebSocket connection, living on one shard's thread for its whole life.
//
// Writes: every outgoing frame is an immutable shared buffer (a chat message's frame is built
// once per node and shared by all recipients). Frames queue per session, and a flush posted
// once per loop turn writes everything queued with one gathered write, so a burst of events
// costs one syscall per recipient rather than one per event. The queue is bounded in bytes: a
// client whose backlog passes the limit is closed 1008 "slow consumer" and resumes later.
//
// Resume: each room the session is a member of has a delivery point (the last seq sent). A room
// being synchronised (a resume cursor, a join, an invitation accepted elsewhere) is "held":
// live messages for it are kept aside while the gap is read from the recent-message cache or
// the store, then the held ones are released in order, skipping what the replay already sent.
//
// Authentication: once the token names the user, the session registers for the user's events
// before it reads the user's rooms from the store, and keeps the events that arrive meanwhile
// until the list is in. A membership change committed while the list is read then reaches the
// session either through the list or through its event (applied after the list, so twice is
// harmless); registering after the read would let a change committed in between reach neither.
// (With RabbitMQ, a user's first session on a node asks for the binding of the user's topic,
// which the broker applies a moment later, unconfirmed: a change made on another node inside
// that moment can still be missed.)

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "protocol/messages.hpp"
#include "protocol/ws_frame.hpp"
#include "transport/node.hpp"

namespace parley::transport {

class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  // `initial` holds bytes read past the HTTP upgrade request (a pipelined first frame).
  WsSession(Node& node, Shard& shard, boost::asio::ip::tcp::socket socket, std::string initial,
            std::string remote);
  ~WsSession();

  void start();

  // Called on the shard's thread by the shard.
  void deliver_message(const std::string& room, std::uint64_t seq,
                       const std::shared_ptr<const std::string>& frame);
  void deliver_frame(const std::shared_ptr<const std::string>& frame);
  void deliver_presence(const std::string& user, bool online,
                        const std::shared_ptr<const std::string>& frame);
  void on_user_event(const UserEvent& ev);
  // Sends a close frame after what is queued (or, with discard_queued, after only the write in
  // flight: a slow consumer would never read the backlog) and closes the socket once the peer
  // answers or a grace period ends.
  void close(std::uint16_t code, std::string_view reason, bool discard_queued = false);

  const std::string& user() const { return user_; }
  bool authenticated() const { return state_ == State::live; }
  bool is_member(const std::string& room) const { return rooms_.count(room) != 0; }

 private:
  enum class State { awaiting_auth, authenticating, live, closing };
  struct RoomSync {
    std::uint64_t last = 0;  // last seq this session has been sent
    bool held = false;       // synchronising: live messages wait in `buffer`
    bool fetching = false;
    bool counts_for_synced = false;  // a cursor room: `synced` waits for it
    std::vector<std::pair<std::uint64_t, std::shared_ptr<const std::string>>> buffer;
  };

  void do_read();
  void on_readable();
  void on_peer_gone();
  // Parses the kept bytes of an unfinished frame (rbuf_) followed by `fresh`.
  void process_input(std::string_view fresh);
  void on_text(std::string_view text);
  void handle(protocol::Envelope env);
  void send_error(const std::optional<std::string>& ref, protocol::ErrorCode code,
                  std::string_view message, std::optional<std::uint64_t> retry_after = {});
  void send_json(std::string json);
  // `replay` frames (resume and join catch-up) are not held to the slow-consumer limit: the replay
  // is paced instead, fetching its next page only when the queue has drained below half.
  void enqueue(std::shared_ptr<const std::string> frame, bool replay = false);
  void schedule_flush();
  void pop_queued(bool back);
  void flush();
  void on_written(std::size_t frames);
  void finish_close();
  void detach();

  // Requests.
  void handle_auth(const std::optional<std::string>& ref, protocol::AuthReq req);
  // The token is valid: registers for the user's events, then reads the user's rooms.
  void on_token_valid(const store::TokenInfo& info);
  // Reads the user's rooms; only the newest read's answer is used (see on_early_user_event).
  void list_rooms();
  void on_authenticated(std::vector<store::RoomSummary> rooms);
  // A user event that arrived between registration and the welcome.
  void on_early_user_event(const UserEvent& ev);
  void handle_send(const std::optional<std::string>& ref, protocol::SendReq req);
  void handle_history(const std::optional<std::string>& ref, protocol::HistoryReq req);
  void handle_create(const std::optional<std::string>& ref, protocol::CreateReq req);
  void handle_join(const std::optional<std::string>& ref, protocol::JoinReq req);
  void handle_leave(const std::optional<std::string>& ref, protocol::LeaveReq req);
  void handle_invite(const std::optional<std::string>& ref, protocol::InviteReq req);
  void handle_dm(const std::optional<std::string>& ref, protocol::DmReq req);
  void handle_typing(const std::optional<std::string>& ref, protocol::TypingReq req);
  void handle_read(const std::optional<std::string>& ref, protocol::ReadReq req);
  void handle_watch(const std::optional<std::string>& ref, protocol::WatchReq req);
  void reply_store_error(const std::optional<std::string>& ref, std::error_code ec);
  bool require_member(const std::optional<std::string>& ref, const std::string& room);

  // Membership and resume.
  void add_room(const std::string& room, std::uint64_t start_after, std::uint64_t room_last_seq,
                bool counts_for_synced);
  void remove_room(const std::string& room);
  // Reads the room's messages after the session's point, up to `up_to`, from the cache or the
  // store, and hands them to on_gap_fetched.
  void fetch_gap(const std::string& room, std::uint64_t up_to = UINT64_MAX);
  void on_gap_fetched(const std::string& room,
                      std::vector<std::shared_ptr<const std::string>> frames,
                      std::vector<std::uint64_t> seqs, bool complete);
  void maybe_synced();
  // Runs `fn` on this session's shard thread, keeping the session alive until then.
  template <class Fn>
  void post_self(Fn&& fn);

  Node& node_;
  Shard& shard_;
  boost::asio::ip::tcp::socket socket_;
  std::string remote_;
  std::string rbuf_;  // bytes of an unfinished frame header or control frame, usually none
  protocol::ws::FrameParser parser_;
  std::vector<protocol::ws::FrameEvent> events_;
  boost::asio::steady_timer timer_;  // auth timeout, then the close grace period
  State state_ = State::awaiting_auth;
  std::vector<std::string> pending_frames_;  // requests pipelined behind auth
  // The auth request's ref and cursors, kept until the welcome.
  std::optional<std::string> auth_ref_;
  std::vector<std::pair<std::string, std::uint64_t>> auth_cursors_;
  // User events that arrived before the welcome, applied right after the room list; and the
  // number of the newest room-list read, whose answer alone is used.
  std::vector<UserEvent> early_events_;
  std::uint64_t list_generation_ = 0;

  std::string user_;
  std::string token_hash_;
  std::string session_id_;
  std::unordered_map<std::string, RoomSync> rooms_;
  // Watched users and the status last sent for each: a change is sent once, however many
  // events report it (the answer to `watch` and an event in flight may both say "online").
  std::unordered_map<std::string, bool> watching_;
  std::size_t syncing_rooms_ = 0;
  std::vector<std::string> replay_waiting_;  // rooms whose next replay page waits for the queue
  bool synced_sent_ = false;
  // In the shard's user table and counted against the user's session cap: from the moment the
  // token is found valid, before the room list is read.
  bool listening_ = false;
  bool registered_ = false;  // in presence and the sessions gauge: from the welcome

  struct Queued {
    std::shared_ptr<const std::string> frame;
    bool replay;
  };
  // The write queue: a vector consumed from the front. Unlike std::deque, which allocates a
  // 512-byte block as soon as it is constructed, it holds no memory until a frame is queued and
  // gives a grown buffer back once drained, so an idle session costs next to nothing here.
  class WriteQueue {
   public:
    bool empty() const { return head_ == items_.size(); }
    std::size_t size() const { return items_.size() - head_; }
    const Queued& operator[](std::size_t i) const { return items_[head_ + i]; }
    const Queued& front() const { return items_[head_]; }
    const Queued& back() const { return items_.back(); }
    void push_back(Queued q) { items_.push_back(std::move(q)); }
    void pop_back() {
      items_.pop_back();
      if (empty()) reset();
    }
    void pop_front();

   private:
    void reset();
    std::vector<Queued> items_;
    std::size_t head_ = 0;  // items_[0, head_) have been written
  };
  WriteQueue queue_;
  std::size_t queued_bytes_ = 0;  // all queued frames
  std::size_t live_bytes_ = 0;    // queued frames other than replay: held to the limit
  std::size_t in_flight_ = 0;     // frames at the head of queue_ being written
  bool flush_posted_ = false;
  bool close_queued_ = false;
  bool socket_closed_ = false;
};

}  // namespace parley::transport
