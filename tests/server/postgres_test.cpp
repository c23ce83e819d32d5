// The server's --database flag: refusing bad URLs at start, and, with a PostgreSQL server the
// test starts on a free loopback port (tests/common/postgres_server.hpp), two servers sharing
// one database: what one imports the other lists and exports at once.
#include "support.hpp"

#include <catch2/catch.hpp>

#if BTQ_SERVER_TESTS_POSTGRES
#include "../common/postgres_server.hpp"
#endif

#include <string>

using namespace srv_test;

TEST_CASE("the server refuses a --database that is not a database URL") {
    // The exit status and message shape of any bad flag value (CLI11's).
    const int usual = start_refused({"--pool-size", "0"}).first;
    const std::string log =
        check_refused_at_start({"--database", "mysql://user:secret@db/x"}, "unknown scheme", usual);
    CHECK_FALSE(contains(log, "secret"));
#if !BTQ_SERVER_TESTS_POSTGRES
    check_refused_at_start({"--database", "postgresql://127.0.0.1/x"},
                           "built without PostgreSQL support", usual);
#endif
}

TEST_CASE("/api/system-info names the SQLite store by default") {
    server_process server(server_config{});
    const json::object info = json_body(server.get("/api/system-info"));
    const json::object& store = info.at("server").as_object().at("store").as_object();
    CHECK(text_of(store, "kind") == "sqlite");
    CHECK(contains(text_of(store, "file"), "schedules.db"));
}

#if BTQ_SERVER_TESTS_POSTGRES

TEST_CASE("two servers on one PostgreSQL database are one service") {
    btq_postgres_test::postgres_server postgres;
    postgres.create_database("shared");
    // One in pool mode, one in spawn mode: both kinds of worker reach the same store.
    const std::string url = postgres.url("shared");
    server_config pool;
    pool.extra_arguments = {"--database", url};
    server_config spawn = pool;
    spawn.mode = "spawn";
    server_process first(pool);
    server_process second(spawn);

    for (const server_process* server : {&first, &second}) {
        const json::object info = json_body(server->get("/api/system-info"));
        const json::object& store = info.at("server").as_object().at("store").as_object();
        CHECK(text_of(store, "kind") == "postgresql");
        CHECK(text_of(store, "host") == "127.0.0.1");
        CHECK(text_of(store, "port") == std::to_string(postgres.port()));
        CHECK(text_of(store, "database") == "shared");
        CHECK_FALSE(contains(json::serialize(info), "postgres@")); // never the user
        CHECK(contains(server->log(), "schedules in postgresql://127.0.0.1:"));
    }

    CHECK(schedule_count(first) == 0);
    CHECK(schedule_count(second) == 0); // both listings cached now
    const http_response imported = first.post_json("/api/import-schedule", import_body("shared"));
    INFO(imported.body);
    REQUIRE(imported.status == 200);
    const std::int64_t id = int_of(json_body(imported), "id");
    CHECK(id == 1);
    // The other server lists and exports it at once.
    CHECK(schedule_count(second) == 1);
    const http_response exported = second.get("/api/export-schedule-json?id=1");
    REQUIRE(exported.status == 200);
    CHECK(contains(exported.body, "\"name\":\"shared\""));
    CHECK(second.get("/api/export-schedule-xml?id=1").status == 200);
    // And the other way round, with ids continuing across servers.
    const http_response again = second.post_json("/api/import-schedule", import_body("back"));
    REQUIRE(again.status == 200);
    CHECK(int_of(json_body(again), "id") == 2);
    CHECK(schedule_count(first) == 2);
    CHECK(first.get("/api/schedules").body == second.get("/api/schedules").body);
}

TEST_CASE("a server on PostgreSQL answers 500 with the database's error while it is down") {
    btq_postgres_test::postgres_server postgres;
    postgres.create_database("down");
    server_config config;
    config.extra_arguments = {"--database", postgres.url("down")};
    server_process server(config);
    CHECK(schedule_count(server) == 0);
    postgres.stop();
    const http_response failed = server.get("/api/schedules");
    CHECK(failed.status == 500);
    CHECK(contains(failed.body, "database: "));
    postgres.start();
    CHECK(wait_until([&] { return server.get("/api/schedules").status == 200; }, 15s, 50ms));
}

#endif
