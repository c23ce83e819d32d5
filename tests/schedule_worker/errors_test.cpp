// Every operation's errors, through the executable in once mode (exit status, code, field, line)
// and through schedule::service::handle; after each failed import nothing is half-written.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <optional>
#include <string>
#include <vector>

#include "support.hpp"

using namespace sw_test;

namespace {

struct bad_request {
    std::string operation;
    std::string request;
    std::optional<std::string> field; ///< the expected "field", when the spec fixes it
    std::optional<std::int64_t> line; ///< the expected "line", when the spec fixes it
    std::string code = "invalid_input";
};

std::string item(const std::string& fields) {
    return R"({"name":"n","channel":"c","items":[)" + fields + "]}";
}

const std::string ok_item = R"({"title":"t","start":"2026-11-30T08:00:00+01:00","duration":60})";

std::string with_start(const std::string& start) {
    return item(R"({"title":"t","start":")" + start + R"(","duration":60})");
}

std::string with_duration(const std::string& duration) {
    return item(R"({"title":"t","start":"2026-11-30T08:00:00Z","duration":)" + duration + "}");
}

/// Invalid import-schedule requests.
std::vector<bad_request> bad_imports() {
    std::vector<bad_request> out;
    const auto add = [&out](std::string request, std::optional<std::string> field,
                            std::optional<std::int64_t> line = std::nullopt) {
        out.push_back({"import-schedule", std::move(request), std::move(field), line});
    };
    // Not JSON, or not an object.
    add("{", std::nullopt);
    add(R"({"name":"n",})", std::nullopt);
    add("[]", std::nullopt);
    add("null", std::nullopt);
    add("\"text\"", std::nullopt);
    add("{}", std::nullopt);
    add(R"({"name":"n","channel":"c","items":[]} trailing)", std::nullopt);
    add("{\"name\":\"\xff\",\"channel\":\"c\",\"items\":[" + ok_item + "]}", std::nullopt);
    // Missing fields and wrong types.
    add(R"({"channel":"c","items":[)" + ok_item + "]}", "name");
    add(R"({"name":"n","items":[)" + ok_item + "]}", "channel");
    add(R"({"name":"n","channel":"c"})", "items");
    add(R"({"name":5,"channel":"c","items":[)" + ok_item + "]}", "name");
    add(R"({"name":"n","channel":["c"],"items":[)" + ok_item + "]}", "channel");
    add(R"({"name":"n","channel":"c","items":{}})", "items");
    add(R"({"name":"n","channel":"c","items":[]})", "items");
    add(R"({"name":"n","channel":"c","items":["x"]})", "items[0]");
    add(item(R"({"start":"2026-11-30T08:00:00Z","duration":60})"), "items[0].title");
    add(item(R"({"title":7,"start":"2026-11-30T08:00:00Z","duration":60})"), "items[0].title");
    add(item(R"({"title":"t","duration":60})"), "items[0].start");
    add(item(R"({"title":"t","start":"2026-11-30T08:00:00Z"})"), "items[0].duration");
    add(item(ok_item + R"(,{"title":"u","url":5,"start":"2026-11-30T09:00:00Z","duration":60})"),
        "items[1].url");
    // Names and channels.
    add(R"({"name":"","channel":"c","items":[)" + ok_item + "]}", "name");
    add(R"({"name":")" + std::string(201, 'n') + R"(","channel":"c","items":[)" + ok_item + "]}",
        "name");
    add(R"({"name":"a\u0001b","channel":"c","items":[)" + ok_item + "]}", "name");
    add(R"({"name":"n","channel":"","items":[)" + ok_item + "]}", "channel");
    add(R"({"name":"n","channel":"campus tv","items":[)" + ok_item + "]}", "channel");
    add(R"({"name":"n","channel":"a/b","items":[)" + ok_item + "]}", "channel");
    add(R"({"name":"n","channel":")" + std::string(101, 'c') + R"(","items":[)" + ok_item + "]}",
        "channel");
    // Titles and URLs.
    add(item(R"({"title":"","start":"2026-11-30T08:00:00Z","duration":60})"), "items[0].title");
    add(item(R"({"title":")" + std::string(501, 't') +
             R"(","start":"2026-11-30T08:00:00Z","duration":60})"),
        "items[0].title");
    add(item(R"({"title":"a\nb","start":"2026-11-30T08:00:00Z","duration":60})"), "items[0].title");
    add(item(R"({"title":"t","url":"http://a b","start":"2026-11-30T08:00:00Z","duration":60})"),
        "items[0].url");
    add(item(R"({"title":"t","url":"http://)" + std::string(2042, 'u') +
             R"(","start":"2026-11-30T08:00:00Z","duration":60})"),
        "items[0].url");
    // Times.
    add(with_start("2026-11-30T08:00:00"), "items[0].start");       // no offset
    add(with_start("2026-13-01T08:00:00Z"), "items[0].start");      // month 13
    add(with_start("2026-02-30T08:00:00Z"), "items[0].start");      // Feb 30
    add(with_start("2026-02-29T08:00:00Z"), "items[0].start");      // not a leap year
    add(with_start("2026-11-30T08:00:00.5Z"), "items[0].start");    // fraction not zero
    add(with_start("2026-11-30T08:00:00.001Z"), "items[0].start");  // fraction not zero
    add(with_start("2026-11-30T24:00:00Z"), "items[0].start");      // hour 24
    add(with_start("2026-11-30T08:60:00Z"), "items[0].start");      // minute 60
    add(with_start("2026-11-30T08:00:00+25:00"), "items[0].start"); // offset hour 25
    add(with_start("2026-11-30T08:00:00+0100"), "items[0].start");  // offset without colon
    add(with_start("2026-11-30"), "items[0].start");
    add(with_start("yesterday"), "items[0].start");
    add(with_start(""), "items[0].start");
    add(item(R"({"title":"t","start":1764486000,"duration":60})"), "items[0].start");
    // Durations.
    add(with_duration("0"), "items[0].duration");
    add(with_duration("-60"), "items[0].duration");
    add(with_duration("604801"), "items[0].duration");
    add(with_duration("1.5"), "items[0].duration");
    add(with_duration("\"60\""), "items[0].duration");
    add(with_duration("1e300"), "items[0].duration");
    add(with_duration("null"), "items[0].duration");
    // Overlaps (the items are sorted by start first; offsets count).
    add(item(R"({"title":"a","start":"2026-11-30T08:00:00+01:00","duration":3600},
             {"title":"b","start":"2026-11-30T08:30:00+01:00","duration":60})"),
        std::nullopt);
    add(item(R"({"title":"b","start":"2026-11-30T08:30:00+01:00","duration":60},
             {"title":"a","start":"2026-11-30T08:00:00+01:00","duration":3600})"),
        std::nullopt);
    add(item(R"({"title":"a","start":"2026-11-30T08:00:00+01:00","duration":3600},
             {"title":"b","start":"2026-11-30T07:30:00Z","duration":60})"),
        std::nullopt);
    add(item(R"({"title":"a","start":"2026-11-30T08:00:00Z","duration":60},
             {"title":"b","start":"2026-11-30T08:00:00Z","duration":60})"),
        std::nullopt);
    // Too many items.
    add(import_request("many", 10001), "items");
    // XMLTV form.
    add(R"({"xmltv":"<tv><programme"})", std::nullopt);
    add(R"({"xmltv":5})", "xmltv");
    add(R"({"xmltv":""})", std::nullopt);
    add(R"({"xmltv":"<tv>\n<channel id=\"a\"/>\n<programme start=\"bad\" stop=\"20261130090000 +0000\" channel=\"a\"><title>x</title></programme>\n</tv>"})",
        std::nullopt, 3);
    // A time zone name the worker does not know; a stop before its start.
    add(R"({"xmltv":"<tv>\n<programme start=\"20261130080000 XST\" channel=\"a\"><title>x</title></programme>\n</tv>"})",
        "xmltv", 2);
    add(R"({"xmltv":"<tv>\n<programme start=\"20261130080000\" stop=\"20261130075959\" channel=\"a\"><title>x</title></programme>\n</tv>"})",
        "xmltv", 2);
    // A name for several schedules; an overlap policy that does not exist.
    add(R"({"name":"n","xmltv":"<tv><programme start=\"2026113008\" channel=\"a\"><title>x</title></programme><programme start=\"2026113008\" channel=\"b\"><title>y</title></programme></tv>"})",
        "name");
    add(R"({"overlap":"merge","xmltv":"<tv><programme start=\"2026113008\" channel=\"a\"><title>x</title></programme></tv>"})",
        "overlap");
    add(R"({"overlap":"trim","unknown_duration":604801,"xmltv":"<tv><programme start=\"2026113008\" channel=\"a\"><title>x</title></programme></tv>"})",
        "unknown_duration");
    add(R"({"name":"n","channel":"c","overlap":true,"items":[)" + ok_item + "]}", "overlap");
    add(R"({"xmltv":"<tv>\n<programme start=\"20261130080000 +0000\" stop=\"20261130090000 +0000\" channel=\"a\"></programme>\n</tv>"})",
        std::nullopt, 2);
    add(R"({"xmltv":"<tv><programme start=\"20261130080000 +0000\" stop=\"20261130090000 +0000\" channel=\"a\"><title>x</title></programme></tv>","channel":"zzz"})",
        std::nullopt);
    add(R"({"xmltv":"<tv></tv>"})", std::nullopt);
    return out;
}

std::vector<bad_request> bad_others() {
    std::vector<bad_request> out;
    const auto add = [&out](std::string op, std::string request, std::optional<std::string> field,
                            std::string code = "invalid_input",
                            std::optional<std::int64_t> line = std::nullopt) {
        out.push_back({std::move(op), std::move(request), std::move(field), line, code});
    };
    for (const char* op : {"export-schedule-xml", "export-schedule-json"}) {
        add(op, R"({"id":999999})", std::nullopt, "not_found");
        add(op, R"({"id":"1"})", "id");
        add(op, R"({"id":1.5})", "id");
        add(op, R"({})", "id");
        add(op, R"({"id":)", std::nullopt);
        add(op, R"([1])", std::nullopt);
    }
    add("schedules", "{", std::nullopt);
    add("schedules", "[]", std::nullopt);
    add("playlists", "{", std::nullopt);
    add("export-all-schedules-xml", "nul", std::nullopt);
    add("infowars-videos", "{", std::nullopt);
    const std::string start = R"(,"channel":"c","start":"2026-11-30T08:00:00Z"})";
    for (const char* name :
         {"../x", "/etc/passwd", "a/b", ".hidden", "", "..", "../playlists/x", "x\\u0000y"}) {
        add("schedule-playlist", R"({"playlist":")" + std::string(name) + "\"" + start, "playlist");
    }
    add("schedule-playlist", R"({"playlist":"no-such-playlist")" + start, std::nullopt,
        "not_found");
    add("schedule-playlist", R"({"playlist":5)" + start, "playlist");
    add("schedule-playlist", R"({"channel":"c","start":"2026-11-30T08:00:00Z"})", std::nullopt);
    add("schedule-playlist",
        R"({"m3u":"#EXTM3U\n#EXTINF:1,a\nhttp://a\n","start":"2026-11-30T08:00:00Z"})", "channel");
    add("schedule-playlist", R"({"m3u":"#EXTM3U\n#EXTINF:1,a\nhttp://a\n","channel":"c"})",
        "start");
    add("schedule-playlist",
        R"({"m3u":"#EXTM3U\n#EXTINF:1,a\nhttp://a\n","channel":"c","start":"2026-11-30T08:00:00"})",
        "start");
    for (const char* unknown : {"0", "-5", "1.5", "604801", "\"60\""}) {
        add("schedule-playlist",
            R"({"m3u":"#EXTM3U\n#EXTINF:-1,a\nhttp://a\n","channel":"c","start":"2026-11-30T08:00:00Z","unknown_duration":)" +
                std::string(unknown) + "}",
            "unknown_duration");
    }
    // M3U errors name the line.
    add("schedule-playlist", R"({"m3u":"#EXTM3U\n#EXTINF:10,a\n")" + start, std::nullopt,
        "invalid_input", 2);
    add("schedule-playlist", R"({"m3u":"#EXTM3U\n#EXTINF:10,a\n#EXTINF:10,b\nhttp://b\n")" + start,
        std::nullopt, "invalid_input", 2);
    add("schedule-playlist", R"({"m3u":"#EXTM3U\nhttp://a\n#EXTINF:ten,b\nhttp://b\n")" + start,
        std::nullopt, "invalid_input", 3);
    add("schedule-playlist", R"({"m3u":"","channel":"c","start":"2026-11-30T08:00:00Z"})",
        std::nullopt);
    return out;
}

void check_error(const answer& a, const bad_request& bad) {
    CHECK(a.status() == "error");
    CHECK(a.code() == bad.code);
    CHECK(a.exit_code == (bad.code == "not_found" ? 3 : 2));
    CHECK(a.obj().contains("message"));
    if (bad.field) {
        CHECK(a.field() == *bad.field);
    }
    if (bad.line) {
        CHECK(a.line() == *bad.line);
    }
}

std::string shorten(const std::string& text) {
    return text.size() > 300 ? text.substr(0, 300) + "..." : text;
}

} // namespace

TEST_CASE("import-schedule rejects invalid requests with code, field and exit 2, and writes "
          "nothing") {
    temp_dir dir;
    test_service svc(dir.path());
    REQUIRE(cli(dir.path(), "import-schedule", import_request("kept", 3)).status() == "success");
    const std::string counts = table_counts(dir.path());
    INFO("tables: " << counts);
    for (const auto& bad : bad_imports()) {
        INFO("request: " << shorten(bad.request));
        const answer a = cli(dir.path(), bad.operation, bad.request);
        INFO("cli answer: " << shorten(a.text));
        check_error(a, bad);
        const answer b = in_process(svc, bad.operation, bad.request);
        INFO("service answer: " << shorten(b.text));
        check_error(b, bad);
        CHECK(table_counts(dir.path()) == counts);
    }
    CHECK(schedule_count(dir.path()) == 1);
}

TEST_CASE("the whole request is at most 8 MiB") {
    temp_dir dir;
    test_service svc(dir.path());
    std::string request = import_request("padded", 2);
    const std::size_t limit = std::size_t{8} << 20;
    std::string exact = request + std::string(limit - request.size(), ' ');
    REQUIRE(exact.size() == limit);
    CHECK(cli(dir.path(), "import-schedule", exact).status() == "success");
    CHECK(in_process(svc, "import-schedule", exact).status() == "success");
    const std::string counts = table_counts(dir.path());
    const std::string over = exact + " ";
    for (const answer& a :
         {cli(dir.path(), "import-schedule", over), in_process(svc, "import-schedule", over)}) {
        INFO(shorten(a.text));
        CHECK(a.status() == "error");
        CHECK(a.code() == "invalid_input");
        CHECK(a.exit_code == 2);
    }
    // Also for the other operations.
    const std::string big_empty = "{" + std::string(limit, ' ') + "}";
    const answer s = cli(dir.path(), "schedules", big_empty);
    CHECK(s.code() == "invalid_input");
    CHECK(s.exit_code == 2);
    CHECK(table_counts(dir.path()) == counts);
}

TEST_CASE("the other operations reject invalid requests and unknown ids with code, field and "
          "exit status") {
    temp_dir dir;
    copy_sample_data(dir.path());
    test_service svc(dir.path());
    REQUIRE(cli(dir.path(), "import-schedule", import_request("kept", 3)).status() == "success");
    const std::string counts = table_counts(dir.path());
    for (const auto& bad : bad_others()) {
        INFO(bad.operation << " " << shorten(bad.request));
        const answer a = cli(dir.path(), bad.operation, bad.request);
        INFO("cli answer: " << shorten(a.text));
        check_error(a, bad);
        const answer b = in_process(svc, bad.operation, bad.request);
        INFO("service answer: " << shorten(b.text));
        check_error(b, bad);
    }
    CHECK(table_counts(dir.path()) == counts);
}

TEST_CASE("a bad command line exits 64 with usage on stderr, an unknown operation is invalid "
          "input") {
    temp_dir dir;
    const std::string bin = worker_binary.string();
    for (const auto& args : std::vector<std::vector<std::string>>{
             {bin},
             {bin, "schedules"},
             {bin, "--data-dir"},
             {bin, "--data-dir", dir.str()},
             {bin, "--data-dir", dir.str(), "schedules", "playlists"},
             {bin, "--bogus", "--data-dir", dir.str(), "schedules"},
             {bin, "--data-dir", (dir.path() / "missing").string(), "schedules"},
             {bin, "--data-dir", dir.str(), "--feed"},
         }) {
        std::string joined;
        for (const auto& a : args) {
            joined += a + " ";
        }
        INFO(joined);
        const run_result r = run(args, "{}");
        CHECK(r.exit_code == 64);
        CHECK_FALSE(r.err.empty());
    }
    // An unknown operation is answered as invalid input (exit 2), in once mode as in-process.
    test_service svc(dir.path());
    for (const answer& a :
         {cli(dir.path(), "frobnicate", "{}"), in_process(svc, "frobnicate", "{}")}) {
        INFO(a.text);
        CHECK(a.status() == "error");
        CHECK(a.code() == "invalid_input");
        CHECK(a.exit_code == 2);
    }
}

TEST_CASE("a symlink in playlists pointing outside the data folder is refused") {
    temp_dir outside;
    write_file(outside.path() / "secret.m3u", "#EXTM3U\n#EXTINF:10,Secret\nhttp://secret/1\n");
    temp_dir dir;
    fs::create_directories(dir.path() / "playlists");
    write_file(dir.path() / "playlists" / "fine.m3u", "#EXTM3U\n#EXTINF:10,Fine\nhttp://f/1\n");
    fs::create_symlink(outside.path() / "secret.m3u", dir.path() / "playlists" / "evil.m3u");
    // A symlinked playlists directory does not lead outside either.
    temp_dir dir2;
    fs::create_directory_symlink(outside.path(), dir2.path() / "playlists");

    test_service svc(dir.path());
    const std::string request =
        R"({"playlist":"evil","channel":"c","start":"2026-11-30T08:00:00Z"})";
    for (const answer& a : {cli(dir.path(), "schedule-playlist", request),
                            in_process(svc, "schedule-playlist", request)}) {
        INFO(a.text);
        CHECK(a.status() == "error");
        CHECK((a.exit_code == 2 || a.exit_code == 3));
        CHECK(a.text.find("Secret") == std::string::npos);
    }
    // (The implementation answers a symlinked playlists folder as an internal error.)
    const answer linked_dir = cli(dir2.path(), "schedule-playlist",
                                  R"({"playlist":"secret","channel":"c",
                                      "start":"2026-11-30T08:00:00Z"})");
    INFO(linked_dir.text);
    CHECK(linked_dir.status() == "error");
    CHECK(linked_dir.exit_code != 0);
    CHECK(linked_dir.text.find("Secret") == std::string::npos);
    const answer linked_list = cli(dir2.path(), "playlists", "{}");
    CHECK(linked_list.text.find("secret") == std::string::npos);
    CHECK(schedule_count(dir.path()) == 0);
    CHECK(schedule_count(dir2.path()) == 0);

    // The listing never shows the outside file's contents as a playlist.
    const answer list = cli(dir.path(), "playlists", "{}");
    INFO(list.text);
    REQUIRE(list.status() == "success");
    for (const auto& p : list.obj().at("playlists").as_array()) {
        const auto& o = p.as_object();
        if (str(o.at("name")) == "evil") {
            CHECK(o.contains("error"));
        } else {
            CHECK(str(o.at("name")) == "fine");
        }
    }
    CHECK(cli(dir.path(), "schedule-playlist",
              R"({"playlist":"fine","channel":"c","start":"2026-11-30T08:00:00Z"})")
              .status() == "success");
}

TEST_CASE("infowars-videos without a feed, or with a feed outside the data folder, is refused") {
    temp_dir dir;
    test_service svc(dir.path());
    for (const answer& a :
         {cli(dir.path(), "infowars-videos", "{}"), in_process(svc, "infowars-videos", "{}")}) {
        INFO(a.text);
        CHECK(a.status() == "error");
        CHECK(a.code() == "not_found");
        CHECK(a.exit_code == 3);
    }
    temp_dir outside;
    write_file(outside.path() / "feed.m3u", "#EXTM3U\n#EXTINF:10,Secret\nhttp://secret/1\n");
    fs::create_symlink(outside.path() / "feed.m3u", dir.path() / "feed.m3u");
    const answer linked = cli(dir.path(), "infowars-videos", "{}");
    INFO(linked.text);
    CHECK(linked.status() == "error");
    CHECK(linked.text.find("Secret") == std::string::npos);

    for (const std::string& feed :
         {(outside.path() / "feed.m3u").string(),
          std::string("../") + outside.path().filename().string() + "/feed.m3u"}) {
        INFO("--feed " << feed);
        const run_result r = run(
            {worker_binary.string(), "--data-dir", dir.str(), "--feed", feed, "infowars-videos"},
            "{}");
        CHECK(r.exit_code != 0);
        CHECK(r.out.find("Secret") == std::string::npos);
    }
    // A feed that does not parse is the data folder's fault, not the request's: the
    // implementation answers internal (exit 1), naming the line in the message.
    fs::remove(dir.path() / "feed.m3u");
    write_file(dir.path() / "feed.m3u", "#EXTM3U\n#EXTINF:10,a\nhttp://a\n#EXTINF:10,b\n");
    const answer broken = cli(dir.path(), "infowars-videos", "{}");
    INFO(broken.text);
    CHECK(broken.status() == "error");
    CHECK(broken.code() == "internal");
    CHECK(broken.exit_code == 1);
    CHECK((broken.line() == 4 || broken.text.find("line 4") != std::string::npos));
}

TEST_CASE("an unusable data folder is an internal error, exit 1") {
    temp_dir dir;
    answer a;
    if (tested_store() == store_kind::sqlite) {
        // schedules.db is a directory: the database cannot be opened.
        fs::create_directories(dir.path() / "schedules.db");
        a = cli(dir.path(), "schedules", "{}");
    } else {
#if SCHEDULE_TESTS_POSTGRES
        // Nothing listens where the database should be.
        const std::string nowhere =
            "postgresql://postgres@127.0.0.1:" + std::to_string(btq_postgres_test::free_port()) +
            "/none";
        const run_result r = run(
            {worker_binary.string(), "--data-dir", dir.str(), "--database", nowhere, "schedules"},
            "{}");
        a = answer{parse_json(r.out), r.exit_code, r.out};
        CHECK(a.text.find("database: cannot connect to postgresql://127.0.0.1:") !=
              std::string::npos);
#endif
    }
    INFO(a.text);
    CHECK(a.status() == "error");
    CHECK(a.code() == "internal");
    CHECK(a.exit_code == 1);
    CHECK(a.text.find("\"message\":\"database: ") != std::string::npos);
}
