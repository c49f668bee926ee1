// parley: the command-line client of a Parley server.
//
//   parley [--server http://127.0.0.1:8080] [--user NAME --password PASS] COMMAND …
//
// Commands: register, login, logout, rooms, join ROOM, create ROOM [--private],
// send ROOM TEXT, tail ROOM…, history ROOM [--before N] [--limit N].

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "parley/commands.hpp"

namespace {

std::string env_or(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : std::move(fallback);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace parley::cli;
  CLI::App app{"parley: command-line client of a Parley chat server"};
  app.require_subcommand(1);
  app.fallthrough();
  app.footer(
      "Credentials come from --user/--password or PARLEY_USER/PARLEY_PASSWORD; the token and\n"
      "tail's cursors are kept in $PARLEY_HOME (default ~/.config/parley)/<host>-<port>/.\n"
      "Exit codes: 0 ok, 1 refused by the server, 2 bad usage, 3 not logged in or bad\n"
      "credentials, 4 cannot reach the server.");

  std::string server = env_or("PARLEY_SERVER", "http://127.0.0.1:8080");
  GlobalOptions g;
  g.user = env_or("PARLEY_USER", "");
  g.password = env_or("PARLEY_PASSWORD", "");
  app.add_option("--server", server, "server URL (env PARLEY_SERVER)")->capture_default_str();
  app.add_option("--user,-u", g.user, "user name (env PARLEY_USER)");
  app.add_option("--password,-p", g.password, "password (env PARLEY_PASSWORD)");
  app.add_flag("--verbose,-v", g.verbose, "explain retries and reconnects on stderr");

  auto* reg = app.add_subcommand("register", "create an account and log in");
  auto* login = app.add_subcommand("login", "log in and save the session token");
  auto* logout = app.add_subcommand("logout", "end the session (its token stops working)");
  auto* rooms = app.add_subcommand("rooms", "list your rooms with unread counts");

  std::string room;
  auto* join = app.add_subcommand("join", "join a room");
  join->add_option("room", room, "room name")->required();

  bool is_private = false;
  auto* create = app.add_subcommand("create", "create a room (and join it)");
  create->add_option("room", room, "room name")->required();
  create->add_flag("--private", is_private, "invitation only");

  std::string text;
  auto* send = app.add_subcommand("send", "send a message and wait for its acknowledgement");
  send->add_option("room", room, "room name")->required();
  send->add_option("text", text, "message text")->required();

  TailOptions tail_opts;
  auto* tail = app.add_subcommand(
      "tail", "print messages live as \"[room #seq] user: body\", resuming after the last printed");
  tail->add_option("rooms", tail_opts.rooms, "room names")->required();
  tail->add_option("--last,-n", tail_opts.last,
                   "on first use of a room, start this many messages back");
  tail->add_option("--count", tail_opts.count, "exit after printing this many messages");

  std::uint64_t before = 0;
  std::uint32_t limit = 50;
  auto* history = app.add_subcommand("history", "print a room's older messages");
  history->add_option("room", room, "room name")->required();
  auto* before_opt = history->add_option("--before", before, "only messages with seq below this");
  history->add_option("--limit", limit, "how many (1..200)")
      ->check(CLI::Range(1, 200))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? exit_code::ok : exit_code::usage;
  }

  auto ep = parley::client::parse_server_url(server);
  if (!ep) {
    std::cerr << "parley: bad --server " << server << " (expected http://HOST:PORT)\n";
    return exit_code::usage;
  }
  g.server = *ep;

  if (reg->parsed()) return cmd_register(g);
  if (login->parsed()) return cmd_login(g);
  if (logout->parsed()) return cmd_logout(g);
  if (rooms->parsed()) return cmd_rooms(g);
  if (join->parsed()) return cmd_join(g, room);
  if (create->parsed()) return cmd_create(g, room, is_private);
  if (send->parsed()) return cmd_send(g, room, text);
  if (tail->parsed()) return cmd_tail(g, tail_opts);
  if (history->parsed()) {
    return cmd_history(
        g, room, before_opt->count() ? std::optional<std::uint64_t>(before) : std::nullopt, limit);
  }
  return exit_code::usage;
}
