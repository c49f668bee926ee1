#include "bench/engine.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <thread>

#include "protocol/ws_frame.hpp"

namespace parley::bench {

namespace ws = protocol::ws;

std::int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void PhaseStats::merge(const PhaseStats& o) {
  opened += o.opened;
  failed += o.failed;
  sent += o.sent;
  sent_measured += o.sent_measured;
  expected_measured += o.expected_measured;
  delivered += o.delivered;
  delivered_measured += o.delivered_measured;
  delivered_in_window += o.delivered_in_window;
  acks += o.acks;
  acks_measured += o.acks_measured;
  stale += o.stale;
  errors += o.errors;
  rate_limited += o.rate_limited;
  gaps += o.gaps;
  closes += o.closes;
  pings += o.pings;
  pongs += o.pongs;
  handshakes += o.handshakes;
  handshakes_in_window += o.handshakes_in_window;
  left += o.left;
  for (const auto& [k, v] : o.error_codes) error_codes[k] += v;
  for (const auto& [k, v] : o.close_codes) close_codes[k] += v;
  if (first_error.empty()) first_error = o.first_error;
  e2e.merge(o.e2e);
  ack.merge(o.ack);
  connect.merge(o.connect);
}

namespace {

constexpr std::size_t kReadBuf = 256 * 1024;
constexpr std::size_t kMaxHttpResponse = 16 * 1024;

struct TrafficShared {
  std::atomic<std::uint64_t> expected{0};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> acked{0};
  std::atomic<unsigned> finished_sending{0};
  unsigned workers = 1;
};

bool starts_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && std::memcmp(s.data(), p.data(), p.size()) == 0;
}

// The value of a JSON string field `"key":"` (our own frames: no escapes in the values read).
std::string_view string_field(std::string_view json, std::string_view key_quote) {
  auto p = json.find(key_quote);
  if (p == std::string_view::npos) return {};
  p += key_quote.size();
  auto e = json.find('"', p);
  if (e == std::string_view::npos) return {};
  return json.substr(p, e - p);
}

std::uint64_t uint_field(std::string_view json, std::string_view key_colon) {
  auto p = json.find(key_colon);
  if (p == std::string_view::npos) return 0;
  p += key_colon.size();
  std::uint64_t v = 0;
  std::from_chars(json.data() + p, json.data() + json.size(), v);
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Conn {
  enum class St : std::uint8_t {
    pending,
    connecting,
    upgrading,
    authing,
    syncing,
    acting,
    live,
    leaving,
    closed
  };
  int fd = -1;
  St st = St::pending;
  bool churn = false;
  bool epollout = false;
  ConnSpec spec;
  std::uint32_t index = 0;  // global index (source address choice)
  std::uint32_t user = 0;   // the token used (churn connections rotate)
  std::string carry;        // bytes received but not yet parsed
  std::string out;          // bytes not yet written
  std::size_t out_off = 0;
  std::uint64_t last_seq = 0;
  std::int64_t t_start = 0;
  std::int64_t next_ping = 0;
};

class Worker {
 public:
  Worker(Engine& e, unsigned index);
  ~Worker();

  void add(const ConnSpec& spec, std::uint32_t global_index);
  void run_open(PhaseStats& st);
  void run_traffic(const TrafficPlan& p, double rate, TrafficShared& shared, PhaseStats& st);
  void run_idle(const IdlePlan& p, PhaseStats& st);
  void run_churn(const ChurnPlan& p, PhaseStats& st);
  void run_leave(PhaseStats& st);
  void close_all();

  std::size_t live() const;
  std::size_t live_senders() const;
  std::size_t closed() const;
  unsigned index() const { return index_; }
  void count_members(std::vector<std::uint32_t>& m) const;

 private:
  enum class Mode { none, open, traffic, idle, churn, leave };

  void arm_timer(std::int64_t interval_ns);
  void poll(int timeout_ms);
  void on_event(Conn* c, std::uint32_t events, std::int64_t now);
  bool start_connect(Conn* c, std::int64_t now);
  void on_connected(Conn* c);
  void do_read(Conn* c, std::int64_t now);
  std::size_t process(Conn* c, char* data, std::size_t len, std::int64_t now);
  void on_frame(Conn* c, std::uint8_t op, std::string_view payload, std::int64_t now);
  void on_text(Conn* c, std::string_view p, std::int64_t now);
  void on_message(Conn* c, std::string_view p, std::int64_t now);
  void on_ack(std::string_view p, std::int64_t now);
  void on_error_frame(Conn* c, std::string_view p);
  void became_live(Conn* c);
  void send_text(Conn* c, std::string_view json);
  void flush(Conn* c);
  void set_epollout(Conn* c, bool on);
  void fail(Conn* c, std::string_view why);
  void close_conn(Conn* c, bool rst = false);
  void settle(Conn* c);  // an open-phase connection finished (live or failed)
  void traffic_tick(std::int64_t now);
  void idle_tick(std::int64_t now);
  void note_error(std::string_view msg);
  // Parses "<run>.<trial>.<t_ns>." at the start of `s`; returns false for another trial's.
  bool parse_mark(std::string_view s, std::int64_t& t_ns) const;

  Engine& e_;
  unsigned index_;
  int ep_ = -1;
  int tfd_ = -1;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> to_open_;
  std::vector<char> rbuf_;
  std::uint64_t rng_ = 0x9E3779B97F4A7C15ull;

  Mode mode_ = Mode::none;
  PhaseStats* st_ = nullptr;
  // open
  std::size_t open_next_ = 0;
  std::size_t inflight_ = 0;
  // traffic
  const TrafficPlan* plan_ = nullptr;
  std::string mark_;  // "<run>.<trial>."
  std::vector<Conn*> senders_;
  std::size_t next_sender_ = 0;
  std::uint64_t next_k_ = 0;
  double interval_ns_ = 0;
  std::int64_t win_start_ = 0, win_end_ = 0;
  std::vector<Conn*> touched_;
  std::string payload_;
  // idle
  std::int64_t ping_interval_ = 0;
  // churn
  const ChurnPlan* churn_ = nullptr;
  std::vector<std::unique_ptr<Conn>> churn_conns_;
  std::vector<Conn*> restart_;
  std::uint32_t churn_user_ = 0;
  std::uint32_t churn_index_ = 0;
  // leave
  std::size_t leaving_ = 0;
};

Worker::Worker(Engine& e, unsigned index) : e_(e), index_(index), rbuf_(kReadBuf) {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  tfd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (ep_ < 0 || tfd_ < 0)
    throw std::runtime_error("epoll/timerfd: " + std::string(std::strerror(errno)));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &tfd_;
  ::epoll_ctl(ep_, EPOLL_CTL_ADD, tfd_, &ev);
  rng_ ^= static_cast<std::uint64_t>(now_ns()) + index * 7919u;
}

Worker::~Worker() {
  close_all();
  ::close(tfd_);
  ::close(ep_);
}

void Worker::add(const ConnSpec& spec, std::uint32_t global_index) {
  auto c = std::make_unique<Conn>();
  c->spec = spec;
  c->index = global_index;
  c->user = spec.user;
  to_open_.push_back(c.get());
  conns_.push_back(std::move(c));
}

std::size_t Worker::live() const {
  std::size_t n = 0;
  for (const auto& c : conns_) n += c->st == Conn::St::live;
  return n;
}

std::size_t Worker::live_senders() const {
  std::size_t n = 0;
  for (const auto& c : conns_) n += c->st == Conn::St::live && c->spec.sender;
  return n;
}

std::size_t Worker::closed() const {
  std::size_t n = 0;
  for (const auto& c : conns_) n += c->st == Conn::St::closed;
  return n;
}

void Worker::count_members(std::vector<std::uint32_t>& m) const {
  for (const auto& c : conns_) {
    if (c->st == Conn::St::live && c->spec.room >= 0 &&
        static_cast<std::size_t>(c->spec.room) < m.size()) {
      ++m[static_cast<std::size_t>(c->spec.room)];
    }
  }
}

void Worker::arm_timer(std::int64_t interval_ns) {
  itimerspec its{};
  if (interval_ns > 0) {
    its.it_interval.tv_sec = interval_ns / 1'000'000'000;
    its.it_interval.tv_nsec = interval_ns % 1'000'000'000;
    its.it_value = its.it_interval;
  }
  ::timerfd_settime(tfd_, 0, &its, nullptr);
}

void Worker::note_error(std::string_view msg) {
  if (st_ && st_->first_error.empty()) st_->first_error = std::string(msg.substr(0, 400));
}

// ---------------------------------------------------------------------------------------------
// Connections

bool Worker::start_connect(Conn* c, std::int64_t now) {
  c->carry.clear();
  c->out.clear();
  c->out_off = 0;
  c->epollout = false;
  c->last_seq = 0;
  c->t_start = now;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    c->st = Conn::St::closed;
    note_error(std::string("socket(): ") + std::strerror(errno) + " (raise ulimit -n?)");
    return false;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const auto& o = e_.options();
  if (o.source_ips > 1) {
    // Spread over 127.0.0.x so that more than ~28k connections fit in the ephemeral port
    // range; the port is chosen at connect() time, per 4-tuple.
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7F000001u + c->index % o.source_ips);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      note_error(std::string("bind(): ") + std::strerror(errno));
      ::close(fd);
      c->st = Conn::St::closed;
      return false;
    }
  }
  sockaddr_in addr = e_.address();
  int r = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (r != 0 && errno != EINPROGRESS) {
    note_error(std::string("connect(): ") + std::strerror(errno));
    ::close(fd);
    c->st = Conn::St::closed;
    return false;
  }
  c->fd = fd;
  c->st = Conn::St::connecting;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.ptr = c;
  ::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  c->epollout = true;
  return true;
}

void Worker::on_connected(Conn* c) {
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    fail(c, std::string("connect: ") + std::strerror(err));
    return;
  }
  c->st = Conn::St::upgrading;
  set_epollout(c, false);
  c->out.append(e_.upgrade_request());
  flush(c);
}

void Worker::set_epollout(Conn* c, bool on) {
  if (c->epollout == on || c->fd < 0) return;
  epoll_event ev{};
  ev.events = on ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
  ev.data.ptr = c;
  ::epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
  c->epollout = on;
}

void Worker::send_text(Conn* c, std::string_view json) {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  c->out.append(ws::make_client_frame(ws::Opcode::text, json, static_cast<std::uint32_t>(rng_)));
}

void Worker::flush(Conn* c) {
  while (c->out_off < c->out.size()) {
    ssize_t n = ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      set_epollout(c, true);
      return;
    }
    if (c->st == Conn::St::live || c->st == Conn::St::leaving) {
      if (st_) ++st_->closes;
      close_conn(c);
    } else {
      fail(c, std::string("write: ") + std::strerror(errno));
    }
    return;
  }
  c->out.clear();
  c->out_off = 0;
  if (c->st != Conn::St::connecting) set_epollout(c, false);
}

void Worker::close_conn(Conn* c, bool rst) {
  if (c->fd >= 0) {
    if (rst) {
      linger lg{1, 0};
      ::setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    ::close(c->fd);  // also leaves the epoll set
  }
  c->fd = -1;
  c->st = Conn::St::closed;
  c->carry.clear();
  c->carry.shrink_to_fit();
  c->out.clear();
  c->out.shrink_to_fit();
  c->out_off = 0;
}

void Worker::fail(Conn* c, std::string_view why) {
  const bool opening =
      c->st != Conn::St::live && c->st != Conn::St::leaving && c->st != Conn::St::closed;
  note_error(why);
  close_conn(c);
  if (!st_) return;
  if (opening) {
    ++st_->failed;
    if (mode_ == Mode::open) settle(c);
    if (mode_ == Mode::churn) restart_.push_back(c);
  } else {
    ++st_->closes;
  }
}

void Worker::settle(Conn*) {
  if (inflight_ > 0) --inflight_;
}

void Worker::became_live(Conn* c) {
  c->st = Conn::St::live;
  if (mode_ == Mode::open) {
    ++st_->opened;
    settle(c);
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

void Worker::on_event(Conn* c, std::uint32_t events, std::int64_t now) {
  if (c->st == Conn::St::closed) return;
  if (c->st == Conn::St::connecting) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
    return;
  }
  if (events & EPOLLOUT) {
    flush(c);
    if (c->st == Conn::St::closed) return;
  }
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) do_read(c, now);
}

void Worker::do_read(Conn* c, std::int64_t now) {
  for (int round = 0; round < 4; ++round) {
    const std::size_t carry = c->carry.size();
    if (carry + 64 * 1024 > rbuf_.size()) rbuf_.resize(carry + kReadBuf);
    if (carry) std::memcpy(rbuf_.data(), c->carry.data(), carry);
    const std::size_t space = rbuf_.size() - carry;
    ssize_t n = ::read(c->fd, rbuf_.data() + carry, space);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      if (c->st == Conn::St::live || c->st == Conn::St::leaving) {
        if (st_) ++st_->closes;
        close_conn(c);
      } else {
        fail(c, n == 0 ? "the server closed the connection during the handshake"
                       : std::string("read: ") + std::strerror(errno));
      }
      return;
    }
    const std::size_t total = carry + static_cast<std::size_t>(n);
    std::size_t used = process(c, rbuf_.data(), total, now);
    if (c->st == Conn::St::closed) return;
    c->carry.assign(rbuf_.data() + used, total - used);
    if (static_cast<std::size_t>(n) < space) return;
  }
}

std::size_t Worker::process(Conn* c, char* data, std::size_t len, std::int64_t now) {
  std::size_t off = 0;
  if (c->st == Conn::St::upgrading) {
    std::string_view v(data, len);
    auto end = v.find("\r\n\r\n");
    if (end == std::string_view::npos) {
      if (len > kMaxHttpResponse) fail(c, "oversized HTTP response to the upgrade");
      return 0;
    }
    std::string_view head = v.substr(0, end);
    if (!starts_with(head, "HTTP/1.1 101")) {
      fail(c, "upgrade refused: " + std::string(head.substr(0, head.find('\r'))));
      return len;
    }
    if (head.find(e_.expected_accept()) == std::string_view::npos) {
      fail(c, "upgrade answer without the expected Sec-WebSocket-Accept");
      return len;
    }
    off = end + 4;
    c->st = Conn::St::authing;
    std::string auth = "{\"type\":\"auth\",\"token\":\"";
    auth += e_.options().tokens[c->user];
    auth += "\"}";
    send_text(c, auth);
    flush(c);
    if (c->st == Conn::St::closed) return len;
  }
  while (len - off >= 2) {
    const auto b0 = static_cast<std::uint8_t>(data[off]);
    const auto b1 = static_cast<std::uint8_t>(data[off + 1]);
    std::size_t hdr = 2;
    std::uint64_t plen = b1 & 0x7F;
    if (b1 & 0x80) {
      fail(c, "masked frame from the server");
      return len;
    }
    if (plen == 126) {
      if (len - off < 4) break;
      plen = (static_cast<std::uint64_t>(static_cast<std::uint8_t>(data[off + 2])) << 8) |
             static_cast<std::uint8_t>(data[off + 3]);
      hdr = 4;
    } else if (plen == 127) {
      if (len - off < 10) break;
      plen = 0;
      for (int i = 0; i < 8; ++i) plen = (plen << 8) | static_cast<std::uint8_t>(data[off + 2 + i]);
      hdr = 10;
    }
    if (len - off < hdr + plen) break;
    if (!(b0 & 0x80)) {
      fail(c, "fragmented frame from the server (not expected from parleyd)");
      return len;
    }
    on_frame(c, b0 & 0x0F, std::string_view(data + off + hdr, static_cast<std::size_t>(plen)), now);
    off += hdr + static_cast<std::size_t>(plen);
    if (c->st == Conn::St::closed) return len;
  }
  return off;
}

void Worker::on_frame(Conn* c, std::uint8_t op, std::string_view payload, std::int64_t now) {
  switch (op) {
    case 0x1:
      on_text(c, payload, now);
      return;
    case 0x8: {
      int code = 1005;
      if (payload.size() >= 2) {
        code = (static_cast<std::uint8_t>(payload[0]) << 8) | static_cast<std::uint8_t>(payload[1]);
      }
      if (st_) ++st_->close_codes[code];
      std::string why = "server closed " + std::to_string(code);
      if (payload.size() > 2) why += " " + std::string(payload.substr(2));
      fail(c, why);
      return;
    }
    case 0x9:
      c->out.append(
          ws::make_client_frame(ws::Opcode::pong, payload, static_cast<std::uint32_t>(rng_)));
      flush(c);
      return;
    case 0xA:
      return;
    default:
      fail(c, "unexpected opcode " + std::to_string(op));
  }
}

bool Worker::parse_mark(std::string_view s, std::int64_t& t_ns) const {
  if (!starts_with(s, mark_)) return false;
  const char* p = s.data() + mark_.size();
  auto r = std::from_chars(p, s.data() + s.size(), t_ns);
  return r.ec == std::errc();
}

void Worker::on_text(Conn* c, std::string_view p, std::int64_t now) {
  static constexpr std::string_view kType = "{\"type\":\"";
  if (!starts_with(p, kType)) return;
  std::string_view t = p.substr(kType.size());
  switch (t.empty() ? '\0' : t[0]) {
    case 'm':
      if (starts_with(t, "message\"")) on_message(c, p, now);
      return;
    case 'a':
      if (starts_with(t, "ack\"")) on_ack(p, now);
      return;
    case 'w':
      if (starts_with(t, "welcome\"") && c->st == Conn::St::authing) {
        if (c->churn) {
          ++st_->handshakes;
          if (now >= churn_->t0 + churn_->warmup_ns &&
              now < churn_->t0 + churn_->warmup_ns + churn_->duration_ns) {
            ++st_->handshakes_in_window;
            st_->connect.record(now - c->t_start);
          }
          close_conn(c, true);  // RST: no TIME_WAIT, so ports are not the limit
          restart_.push_back(c);
          return;
        }
        c->st = Conn::St::syncing;
      }
      return;
    case 's':
      if (starts_with(t, "synced\"") && c->st == Conn::St::syncing) {
        if (c->spec.action == Action::none || c->spec.room < 0) {
          became_live(c);
          return;
        }
        const std::string& room = e_.options().rooms[static_cast<std::size_t>(c->spec.room)];
        std::string req =
            c->spec.action == Action::create
                ? "{\"type\":\"create\",\"room\":\"" + room + "\",\"visibility\":\"public\"}"
                : "{\"type\":\"join\",\"room\":\"" + room + "\"}";
        c->st = Conn::St::acting;
        send_text(c, req);
        flush(c);
      }
      return;
    case 'j':
      if (starts_with(t, "joined\"") && c->st == Conn::St::acting) {
        c->last_seq = uint_field(p, "\"last_seq\":");
        became_live(c);
      }
      return;
    case 'l':
      if (starts_with(t, "left\"") && c->st == Conn::St::leaving) {
        c->st = Conn::St::live;
        ++st_->left;
        if (leaving_ > 0) --leaving_;
      }
      return;
    case 'p':
      if (starts_with(t, "pong\"")) ++st_->pongs;
      return;
    case 'e':
      if (starts_with(t, "error\"")) on_error_frame(c, p);
      return;
    default:
      return;
  }
}

namespace {

// Walks `{"type":"message","room":"R","seq":N,"from":"F","body":"B` in the order the server's
// encoder writes it (memchr over the short strings, no substring search), falling back to a
// search when the layout differs. Room and user names never need escapes.
bool fast_message_fields(std::string_view p, std::uint64_t& seq, std::string_view& body) {
  static constexpr std::string_view kHead = "{\"type\":\"message\",\"room\":\"";
  static constexpr std::string_view kSeq = "\",\"seq\":";
  static constexpr std::string_view kFrom = ",\"from\":\"";
  static constexpr std::string_view kBody = "\",\"body\":\"";
  const char* s = p.data() + kHead.size();
  const char* e = p.data() + p.size();
  if (p.size() < kHead.size()) return false;
  auto q = static_cast<const char*>(std::memchr(s, '"', static_cast<std::size_t>(e - s)));
  if (!q || static_cast<std::size_t>(e - q) < kSeq.size() ||
      std::memcmp(q, kSeq.data(), kSeq.size()) != 0)
    return false;
  s = q + kSeq.size();
  auto r = std::from_chars(s, e, seq);
  if (r.ec != std::errc()) return false;
  s = r.ptr;
  if (static_cast<std::size_t>(e - s) < kFrom.size() ||
      std::memcmp(s, kFrom.data(), kFrom.size()) != 0)
    return false;
  s += kFrom.size();
  q = static_cast<const char*>(std::memchr(s, '"', static_cast<std::size_t>(e - s)));
  if (!q || static_cast<std::size_t>(e - q) < kBody.size() ||
      std::memcmp(q, kBody.data(), kBody.size()) != 0)
    return false;
  s = q + kBody.size();
  body = std::string_view(s, static_cast<std::size_t>(e - s));
  return true;
}

// `{"type":"ack","room":"R","client_msg_id":"ID` likewise.
bool fast_ack_id(std::string_view p, std::string_view& id) {
  static constexpr std::string_view kHead = "{\"type\":\"ack\",\"room\":\"";
  static constexpr std::string_view kId = "\",\"client_msg_id\":\"";
  if (p.size() < kHead.size() || std::memcmp(p.data(), kHead.data(), kHead.size()) != 0)
    return false;
  const char* s = p.data() + kHead.size();
  const char* e = p.data() + p.size();
  auto q = static_cast<const char*>(std::memchr(s, '"', static_cast<std::size_t>(e - s)));
  if (!q || static_cast<std::size_t>(e - q) < kId.size() ||
      std::memcmp(q, kId.data(), kId.size()) != 0)
    return false;
  s = q + kId.size();
  id = std::string_view(s, static_cast<std::size_t>(e - s));
  return true;
}

}  // namespace

void Worker::on_message(Conn* c, std::string_view p, std::int64_t now) {
  std::uint64_t seq = 0;
  std::string_view body;
  if (!fast_message_fields(p, seq, body)) {
    seq = uint_field(p, "\",\"seq\":");
    body = string_field(p, "\"body\":\"");
  }
  if (c->last_seq != 0 && seq != c->last_seq + 1) ++st_->gaps;
  c->last_seq = seq;
  if (mode_ != Mode::traffic) {
    ++st_->stale;
    return;
  }
  std::int64_t t = 0;
  if (!parse_mark(body, t)) {
    ++st_->stale;
    return;
  }
  ++st_->delivered;
  if (now >= win_start_ && now < win_end_) ++st_->delivered_in_window;
  if (t >= win_start_ && t < win_end_) {
    ++st_->delivered_measured;
    st_->e2e.record(now - t);
  }
}

void Worker::on_ack(std::string_view p, std::int64_t now) {
  if (mode_ != Mode::traffic) return;
  std::string_view id;
  if (!fast_ack_id(p, id)) id = string_field(p, "\"client_msg_id\":\"");
  std::int64_t t = 0;
  if (!parse_mark(id, t)) return;
  ++st_->acks;
  if (t >= win_start_ && t < win_end_) {
    ++st_->acks_measured;
    st_->ack.record(now - t);
  }
}

void Worker::on_error_frame(Conn* c, std::string_view p) {
  std::string code(string_field(p, "\"code\":\""));
  ++st_->errors;
  ++st_->error_codes[code.empty() ? "?" : code];
  if (code == "rate_limited") ++st_->rate_limited;
  note_error(p);
  if (c->st == Conn::St::authing || c->st == Conn::St::syncing || c->st == Conn::St::acting) {
    fail(c, std::string(p.substr(0, 300)));
  } else if (c->st == Conn::St::leaving) {
    c->st = Conn::St::live;
    if (leaving_ > 0) --leaving_;
  }
}

// ---------------------------------------------------------------------------------------------
// Loop and phases

void Worker::poll(int timeout_ms) {
  epoll_event evs[512];
  int n = ::epoll_wait(ep_, evs, 512, timeout_ms);
  if (n <= 0) return;
  std::int64_t now = now_ns();
  for (int i = 0; i < n; ++i) {
    if (evs[i].data.ptr == &tfd_) {
      std::uint64_t x;
      [[maybe_unused]] auto r = ::read(tfd_, &x, sizeof x);
      if (mode_ == Mode::traffic)
        traffic_tick(now);
      else if (mode_ == Mode::idle)
        idle_tick(now);
      continue;
    }
    on_event(static_cast<Conn*>(evs[i].data.ptr), evs[i].events, now);
  }
}

void Worker::run_open(PhaseStats& st) {
  mode_ = Mode::open;
  st_ = &st;
  // Reopen what the server closed since (those are members already: no action again).
  for (auto& c : conns_) {
    if (c->st == Conn::St::closed &&
        std::find(to_open_.begin(), to_open_.end(), c.get()) == to_open_.end()) {
      c->spec.action = Action::none;
      to_open_.push_back(c.get());
    }
  }
  const std::size_t limit =
      std::max<std::size_t>(1, e_.options().open_concurrency / std::max(1u, e_.options().threads));
  const std::int64_t deadline = now_ns() + e_.options().open_timeout_ns;
  open_next_ = 0;
  inflight_ = 0;
  while (true) {
    std::int64_t now = now_ns();
    while (inflight_ < limit && open_next_ < to_open_.size()) {
      Conn* c = to_open_[open_next_++];
      if (start_connect(c, now))
        ++inflight_;
      else
        ++st.failed;
    }
    if (inflight_ == 0 && open_next_ >= to_open_.size()) break;
    if (now > deadline) {
      for (Conn* c : to_open_) {
        if (c->st != Conn::St::live && c->st != Conn::St::closed)
          fail(c, "timed out opening the connection");
      }
      break;
    }
    poll(100);
  }
  to_open_.clear();
  mode_ = Mode::none;
  st_ = nullptr;
}

void Worker::run_traffic(const TrafficPlan& p, double rate, TrafficShared& shared, PhaseStats& st) {
  mode_ = Mode::traffic;
  st_ = &st;
  plan_ = &p;
  mark_ = p.run_id + "." + std::to_string(p.trial) + ".";
  win_start_ = p.t0 + p.warmup_ns;
  win_end_ = win_start_ + p.duration_ns;
  senders_.clear();
  for (auto& c : conns_) {
    if (c->spec.sender && c->st == Conn::St::live) senders_.push_back(c.get());
  }
  next_sender_ = 0;
  next_k_ = 0;
  interval_ns_ = rate > 0 ? 1e9 / rate : 0;
  bool finished = senders_.empty() || rate <= 0;
  if (finished) shared.finished_sending.fetch_add(1);
  arm_timer(p.tick_ns);
  std::uint64_t pushed_delivered = 0, pushed_acks = 0;
  while (true) {
    poll(50);
    const std::int64_t now = now_ns();
    if (!finished && now >= win_end_) {
      traffic_tick(now);
      finished = true;
      shared.expected.fetch_add(st.expected_measured);
      shared.sent.fetch_add(st.sent_measured);
      shared.finished_sending.fetch_add(1);
    }
    if (st.delivered_measured != pushed_delivered) {
      shared.delivered.fetch_add(st.delivered_measured - pushed_delivered);
      pushed_delivered = st.delivered_measured;
    }
    if (st.acks_measured != pushed_acks) {
      shared.acked.fetch_add(st.acks_measured - pushed_acks);
      pushed_acks = st.acks_measured;
    }
    if (now >= win_end_) {
      const bool all_sent = shared.finished_sending.load() == shared.workers;
      if (all_sent && shared.delivered.load() >= shared.expected.load() &&
          shared.acked.load() >= shared.sent.load()) {
        break;
      }
      if (now >= win_end_ + p.drain_ns) break;
    }
  }
  arm_timer(0);
  mode_ = Mode::none;
  st_ = nullptr;
  plan_ = nullptr;
}

void Worker::traffic_tick(std::int64_t now) {
  if (senders_.empty() || interval_ns_ <= 0 || now < plan_->t0) return;
  const std::int64_t horizon = std::min(now, win_end_ - 1);
  touched_.clear();
  const auto& rooms = e_.options().rooms;
  for (;;) {
    const std::int64_t t =
        plan_->t0 + static_cast<std::int64_t>(static_cast<double>(next_k_) * interval_ns_);
    if (t > horizon) break;
    const std::uint64_t k = next_k_++;
    Conn* c = nullptr;
    for (std::size_t tries = 0; tries < senders_.size(); ++tries) {
      Conn* s = senders_[next_sender_++ % senders_.size()];
      if (s->st == Conn::St::live) {
        c = s;
        break;
      }
    }
    if (!c) break;  // every sender is gone
    const std::string& room = rooms[static_cast<std::size_t>(c->spec.room)];
    std::string mark = mark_ + std::to_string(t) + ".";
    payload_.assign("{\"type\":\"send\",\"room\":\"");
    payload_ += room;
    payload_ += "\",\"client_msg_id\":\"";
    payload_ += mark;
    payload_ += std::to_string(k) + "-" + std::to_string(index_);
    payload_ += "\",\"body\":\"";
    payload_ += mark;
    if (mark.size() < plan_->body_bytes) payload_.append(plan_->body_bytes - mark.size(), 'x');
    payload_ += "\"}";
    const bool was_empty = c->out.size() == c->out_off;
    send_text(c, payload_);
    if (was_empty) touched_.push_back(c);
    ++st_->sent;
    if (t >= win_start_ && t < win_end_) {
      ++st_->sent_measured;
      st_->expected_measured += plan_->members[static_cast<std::size_t>(c->spec.room)];
    }
  }
  for (Conn* c : touched_) {
    if (c->st != Conn::St::closed) flush(c);
  }
}

void Worker::run_idle(const IdlePlan& p, PhaseStats& st) {
  mode_ = Mode::idle;
  st_ = &st;
  ping_interval_ = p.ping_interval_ns;
  const std::int64_t start = now_ns();
  const std::int64_t end = start + p.duration_ns;
  // Stagger the pings evenly over one interval.
  std::size_t i = 0, n = conns_.size();
  for (auto& c : conns_) {
    c->next_ping = start + static_cast<std::int64_t>(
                               static_cast<double>(ping_interval_) * static_cast<double>(i++) /
                               static_cast<double>(std::max<std::size_t>(1, n)));
  }
  arm_timer(50'000'000);
  while (now_ns() < end) poll(100);
  arm_timer(0);
  // Collect the last pongs.
  const std::int64_t drain_end = now_ns() + 200'000'000;
  while (now_ns() < drain_end) poll(20);
  mode_ = Mode::none;
  st_ = nullptr;
}

void Worker::idle_tick(std::int64_t now) {
  if (ping_interval_ <= 0) return;
  for (auto& c : conns_) {
    if (c->st != Conn::St::live || now < c->next_ping) continue;
    c->next_ping += ping_interval_;
    send_text(c.get(), "{\"type\":\"ping\"}");
    ++st_->pings;
    flush(c.get());
  }
}

void Worker::run_churn(const ChurnPlan& p, PhaseStats& st) {
  mode_ = Mode::churn;
  st_ = &st;
  churn_ = &p;
  const unsigned threads = std::max(1u, e_.options().threads);
  const unsigned slots = std::max(1u, p.concurrency / threads);
  churn_conns_.clear();
  churn_user_ = index_;
  churn_index_ = index_;
  restart_.clear();
  for (unsigned i = 0; i < slots; ++i) {
    auto c = std::make_unique<Conn>();
    c->churn = true;
    restart_.push_back(c.get());
    churn_conns_.push_back(std::move(c));
  }
  const std::int64_t end = p.t0 + p.warmup_ns + p.duration_ns;
  std::uint64_t consecutive_failures_at_start = 0;
  while (consecutive_failures_at_start <= 10000 || st.handshakes > 0) {
    std::int64_t now = now_ns();
    if (now >= end) break;
    // Restart finished slots after the event batch, so that no stale event of a closed
    // descriptor lands on its successor.
    auto restart = std::move(restart_);
    restart_.clear();
    for (Conn* c : restart) {
      c->user = churn_user_ % p.users;
      churn_user_ += threads;
      c->index = churn_index_;
      churn_index_ += threads;
      if (!start_connect(c, now)) {
        ++st.failed;
        restart_.push_back(c);
        if (++consecutive_failures_at_start > 10000 && st.handshakes == 0) break;
      }
    }
    poll(restart_.empty() ? 20 : 0);
  }
  for (auto& c : churn_conns_) {
    if (c->st != Conn::St::closed) close_conn(c.get(), true);
  }
  churn_conns_.clear();
  restart_.clear();
  mode_ = Mode::none;
  st_ = nullptr;
  churn_ = nullptr;
}

void Worker::run_leave(PhaseStats& st) {
  mode_ = Mode::leave;
  st_ = &st;
  leaving_ = 0;
  for (auto& c : conns_) {
    if (c->st != Conn::St::live || c->spec.room < 0 || c->spec.action == Action::none) continue;
    const std::string& room = e_.options().rooms[static_cast<std::size_t>(c->spec.room)];
    c->st = Conn::St::leaving;
    send_text(c.get(), "{\"type\":\"leave\",\"room\":\"" + room + "\"}");
    flush(c.get());
    if (c->st == Conn::St::leaving) ++leaving_;
  }
  const std::int64_t deadline = now_ns() + 30'000'000'000;
  while (leaving_ > 0 && now_ns() < deadline) poll(100);
  mode_ = Mode::none;
  st_ = nullptr;
}

void Worker::close_all() {
  // RST rather than FIN: a run leaves no TIME_WAIT sockets behind, which would otherwise hold
  // tens of thousands of ephemeral ports for a minute and slow the next run's connect()s.
  for (auto& c : conns_) {
    if (c->st != Conn::St::closed && c->st != Conn::St::pending) close_conn(c.get(), true);
  }
  conns_.clear();
  to_open_.clear();
}

// ---------------------------------------------------------------------------------------------
// Engine

Engine::Engine(EngineOptions o) : o_(std::move(o)) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(o_.target.host.c_str(), std::to_string(o_.target.port).c_str(), &hints, &res) !=
          0 ||
      !res) {
    throw std::runtime_error("cannot resolve " + o_.target.host);
  }
  std::memcpy(&addr_, res->ai_addr, sizeof addr_);
  ::freeaddrinfo(res);
  if (o_.source_ips > 1 && (ntohl(addr_.sin_addr.s_addr) >> 24) != 127) {
    throw std::runtime_error("--source-ips needs a loopback (127.x) target");
  }
  static constexpr const char* kKey = "dGhlIHNhbXBsZSBub25jZQ==";
  upgrade_ = "GET /ws HTTP/1.1\r\nHost: " + o_.target.host + ":" + std::to_string(o_.target.port) +
             "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + kKey +
             "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  accept_ = ws::accept_key(kKey);
  const unsigned n = std::max(1u, o_.threads);
  o_.threads = n;
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(*this, i));
}

Engine::~Engine() {
  close_all();
}

void Engine::add(const ConnSpec& spec) {
  auto g = static_cast<std::uint32_t>(added_++);
  workers_[g % workers_.size()]->add(spec, g);
}

PhaseStats Engine::run(const std::function<void(Worker&, PhaseStats&)>& fn,
                       const std::function<void()>& controller) {
  std::vector<PhaseStats> st(workers_.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    threads.emplace_back([&, i] { fn(*workers_[i], st[i]); });
  }
  if (controller) controller();
  for (auto& t : threads) t.join();
  PhaseStats total;
  for (auto& s : st) total.merge(s);
  return total;
}

PhaseStats Engine::open() {
  return run([](Worker& w, PhaseStats& st) { w.run_open(st); }, {});
}

PhaseStats Engine::traffic(const TrafficPlan& plan, const std::function<void()>& controller) {
  TrafficShared shared;
  shared.workers = static_cast<unsigned>(workers_.size());
  // Each worker paces its own senders at their share of the total rate.
  std::vector<std::size_t> senders(workers_.size(), 0);
  std::size_t total = 0;
  for (std::size_t i = 0; i < workers_.size(); ++i)
    total += senders[i] = workers_[i]->live_senders();
  std::vector<double> rates(workers_.size(), 0.0);
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (total > 0)
      rates[i] = plan.rate * static_cast<double>(senders[i]) / static_cast<double>(total);
  }
  return run([&](Worker& w, PhaseStats& st) { w.run_traffic(plan, rates[w.index()], shared, st); },
             controller);
}

PhaseStats Engine::idle(const IdlePlan& plan, const std::function<void()>& controller) {
  return run([&](Worker& w, PhaseStats& st) { w.run_idle(plan, st); }, controller);
}

PhaseStats Engine::churn(const ChurnPlan& plan, const std::function<void()>& controller) {
  return run([&](Worker& w, PhaseStats& st) { w.run_churn(plan, st); }, controller);
}

PhaseStats Engine::leave_rooms() {
  return run([](Worker& w, PhaseStats& st) { w.run_leave(st); }, {});
}

void Engine::close_all() {
  for (auto& w : workers_) w->close_all();
}

std::size_t Engine::live() const {
  std::size_t n = 0;
  for (const auto& w : workers_) n += w->live();
  return n;
}

std::size_t Engine::closed() const {
  std::size_t n = 0;
  for (const auto& w : workers_) n += w->closed();
  return n;
}

std::vector<std::uint32_t> Engine::members() const {
  std::vector<std::uint32_t> m(o_.rooms.size(), 0);
  for (const auto& w : workers_) w->count_members(m);
  return m;
}

}  // namespace parley::bench
