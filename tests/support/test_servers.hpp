#pragma once
// What tests that need the shared test servers (PostgreSQL and RabbitMQ, started by
// scripts/test.sh through deploy/servers.sh) use to reach them: the environment that names them,
// a database of their own, and bus flags that give each test cluster an exchange of its own.
//
// A missing server is a failure, never a skip: require_env throws, and GoogleTest records the
// exception as a failure of the running test.

#include <string>
#include <vector>

namespace parley::test {

// The value of an environment variable; throws std::runtime_error naming it (and saying how to
// start the servers) when it is unset or empty.
std::string require_env(const char* name);

// A database of its own on the test PostgreSQL (PARLEY_TEST_PG_URL), created on construction
// and dropped (WITH (FORCE)) on destruction unless PARLEY_KEEP_TEST_DIRS is set.
class TestDatabase {
 public:
  TestDatabase();
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;
  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }

 private:
  std::string admin_url_;
  std::string name_;
  std::string url_;
};

// `--bus PARLEY_TEST_AMQP_URL --bus-exchange parley.test.<database>`: the nodes of one test
// cluster (one database) share an exchange that no other test publishes to, so tests running in
// parallel on the one broker never see each other's heartbeats, presence or messages.
std::vector<std::string> bus_args(const TestDatabase& db);

// Replaces the database name (the path) of a libpq URL.
std::string with_database(const std::string& url, const std::string& db);

// Runs one statement; returns "" or the error.
std::string pg_exec(const std::string& url, const std::string& sql);

}  // namespace parley::test
