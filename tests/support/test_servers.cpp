#include "support/test_servers.hpp"

#include <libpq-fe.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "support/test_util.hpp"

namespace parley::test {

std::string require_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    throw std::runtime_error(
        std::string(name) +
        " is not set: these tests need the PostgreSQL and RabbitMQ that scripts/test.sh starts; "
        "run them with scripts/test.sh, or start the servers with `deploy/servers.sh start DIR`, "
        "export the lines it prints and PARLEY_TEST_SERVERS_DIR=DIR, then run ctest");
  }
  return v;
}

std::string with_database(const std::string& url, const std::string& db) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos) throw std::runtime_error("not a URL: " + url);
  auto slash = url.find('/', scheme + 3);
  auto query = url.find('?', scheme + 3);
  std::string base = url.substr(0, std::min(slash, query));
  std::string rest = query == std::string::npos ? "" : url.substr(query);
  return base + "/" + db + rest;
}

std::string pg_exec(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string e = PQerrorMessage(c);
    PQfinish(c);
    return "cannot connect to " + url + ": " + e;
  }
  PGresult* r = PQexec(c, sql.c_str());
  std::string err;
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
    err = PQresultErrorMessage(r);
    if (err.empty()) err = "failed";
  }
  PQclear(r);
  PQfinish(c);
  return err;
}

TestDatabase::TestDatabase() {
  admin_url_ = require_env("PARLEY_TEST_PG_URL");
  std::string err;
  // CREATE DATABASE copies template1 and fails while another session uses it: retry a little.
  for (int attempt = 0; attempt < 10; ++attempt) {
    name_ = unique_name("pt");
    err = pg_exec(admin_url_, "CREATE DATABASE \"" + name_ + "\"");
    if (err.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!err.empty()) {
    throw std::runtime_error("CREATE DATABASE " + name_ + " on PARLEY_TEST_PG_URL failed: " + err);
  }
  url_ = with_database(admin_url_, name_);
}

TestDatabase::~TestDatabase() {
  if (std::getenv("PARLEY_KEEP_TEST_DIRS")) return;
  pg_exec(admin_url_, "DROP DATABASE IF EXISTS \"" + name_ + "\" WITH (FORCE)");
}

std::vector<std::string> bus_args(const TestDatabase& db) {
  return {"--bus", require_env("PARLEY_TEST_AMQP_URL"), "--bus-exchange",
          "parley.test." + db.name()};
}

}  // namespace parley::test
