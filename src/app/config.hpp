#pragma once
// parleyd's configuration: every flag of PROTOCOL.md's command line and every limit, each also a
// key of the TOML file given by --config (the key is the flag's name without the dashes).
// Precedence: command line, then the file, then the built-in default.

#include <string>
#include <vector>

#include "core/result.hpp"
#include "transport/options.hpp"

namespace parley::app {

struct Config {
  transport::Options transport;
  std::string listen = "127.0.0.1:8080";
  std::string store = "sqlite:./data/parley.db";
  std::string bus = "inproc";
  std::string log_level = "info";
  std::string log_format = "text";  // text | json
  unsigned store_readers = 2;
  unsigned sqlite_cache_mib = 64;
  unsigned store_pool = 4;
  std::string bus_exchange = "parley.events";  // see RabbitmqOptions::exchange
  unsigned bus_consume_delay_ms = 0;  // fault injection: see RabbitmqOptions::consume_delay
};

enum class ParseOutcome { run, exit_ok };

// Parses argv (and the config file it names). On --help prints usage and returns exit_ok.
// A bad flag, value or file is an error with one line saying what is wrong.
Result<ParseOutcome, std::string> parse_config(int argc, char** argv, Config& out);

}  // namespace parley::app
