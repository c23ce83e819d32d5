// Every operation's success path, through the executable in once mode and through
// schedule::service::handle in-process, on a copy of the sample data plus playlists and a feed
// written by the tests (so every count, name, time and duration is known).
#include <catch2/catch.hpp>

#include <pugixml.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "support.hpp"

using namespace sw_test;

namespace {

/// A playlist whose listing is known: 4 entries, 310.5 s known, 2 unknown.
constexpr const char* listed_playlist = "#EXTM3U\n"
                                        "#EXTINF:10.5 tvg-id=\"a\" group-title=\"G\",First\n"
                                        "http://example.org/1.mp4\n"
                                        "#EXTINF:-1,Second\n"
                                        "http://example.org/2.mp4\n"
                                        "http://example.org/3.mp4\n"
                                        "#EXTINF:300,Fourth\n"
                                        "http://example.org/4.mp4\n";

/// A playlist to schedule: 10.2 s (-> 11), -1, 0, no #EXTINF (unknown), 300, 20.0 (-> 20).
constexpr const char* scheduled_playlist = "#EXTM3U\n"
                                           "#EXTINF:10.2,First\n"
                                           "http://example.org/1.mp4\n"
                                           "#EXTINF:-1,Second\n"
                                           "http://example.org/2.mp4\n"
                                           "#EXTINF:0,Third\n"
                                           "http://example.org/3.mp4\n"
                                           "http://example.org/4.mp4\n"
                                           "#EXTINF:300,Fifth\n"
                                           "http://example.org/5.mp4\n"
                                           "#EXTINF:20.0,Sixth\n"
                                           "http://example.org/6.mp4\n";

/// A data folder: the sample data plus the two playlists above.
struct data_folder {
    temp_dir dir;
    data_folder() {
        copy_sample_data(dir.path());
        fs::create_directories(dir.path() / "playlists");
        write_file(dir.path() / "playlists" / "zz-listed.m3u", listed_playlist);
        write_file(dir.path() / "playlists" / "zz-scheduled.m3u8", scheduled_playlist);
    }
};

/// The runner for a mode: "cli" (once mode) or "service" (in-process).
runner make_runner(const std::string& mode, const fs::path& dir,
                   std::shared_ptr<schedule::service>& keep) {
    if (mode == "cli") {
        return [dir](const std::string& op, std::string_view request) {
            return cli(dir, op, request);
        };
    }
    keep = std::make_shared<test_service>(dir);
    return [svc = keep](const std::string& op, std::string_view request) {
        return in_process(*svc, op, request);
    };
}

const json::object& schedule_of(const answer& a) {
    return a.obj().at("schedule").as_object();
}

constexpr const char* three_items =
    R"({"name":"Monday","channel":"campus-tv","items":[
        {"title":"Weather","url":"http://example.org/weather.mp4",
         "start":"2026-11-30T08:30:00+01:00","duration":600},
        {"title":"News","url":"http://example.org/news.mp4",
         "start":"2026-11-30T08:00:00+01:00","duration":1800},
        {"title":"Late","start":"2026-11-30T23:50:00.000+01:00","duration":1200}]})";

} // namespace

TEST_CASE("import-schedule stores the items sorted, keeps the offset and answers the schedule") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    const answer a = run("import-schedule", three_items);
    INFO(a.text);
    REQUIRE(a.status() == "success");
    REQUIRE(a.exit_code == 0);
    REQUIRE(num(a.obj().at("id")) >= 1);
    const auto& s = schedule_of(a);
    CHECK(num(s.at("id")) == num(a.obj().at("id")));
    CHECK(str(s.at("name")) == "Monday");
    CHECK(str(s.at("channel")) == "campus-tv");
    CHECK(s.at("created_at").is_string());
    CHECK(item_lines(s) == std::vector<std::string>{
                               "News 2026-11-30T08:00:00+01:00 2026-11-30T08:30:00+01:00 1800",
                               "Weather 2026-11-30T08:30:00+01:00 2026-11-30T08:40:00+01:00 600",
                               // crosses midnight: the stop is on the next day, same offset
                               "Late 2026-11-30T23:50:00+01:00 2026-12-01T00:10:00+01:00 1200"});
    const auto& items = s.at("items").as_array();
    CHECK(str(items[0].as_object().at("url")) == "http://example.org/news.mp4");
    CHECK(items[2].as_object().if_contains("url") == nullptr);

    // export-schedule-json gives the same schedule back.
    const answer e =
        run("export-schedule-json", R"({"id":)" + std::to_string(num(a.obj().at("id"))) + "}");
    REQUIRE(e.status() == "success");
    CHECK(e.exit_code == 0);
    CHECK(schedule_of(e) == s);
}

TEST_CASE("import-schedule accepts the boundaries: touching items, Feb 29 of a leap year, Z, "
          "a week's duration, 10000 items") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    const answer a = run("import-schedule", R"({"name":"Edge \u00e9t\u00e9","channel":"a.B_c-9",
        "items":[{"title":"One","start":"2028-02-29T00:00:00Z","duration":3600},
                 {"title":"Two","start":"2028-02-29T01:00:00Z","duration":604800},
                 {"title":"Three","start":"2028-03-07T02:00:00.000-05:30","duration":1}]})");
    INFO(a.text);
    REQUIRE(a.status() == "success");
    const auto& s = schedule_of(a);
    CHECK(str(s.at("name")) == "Edge \xc3\xa9t\xc3\xa9");
    CHECK(str(s.at("channel")) == "a.B_c-9");
    const auto& items = s.at("items").as_array();
    REQUIRE(items.size() == 3);
    CHECK(num(items[1].as_object().at("duration")) == 604800);
    CHECK(str(items[2].as_object().at("start")) == "2028-03-07T02:00:00-05:30");
    CHECK(str(items[2].as_object().at("stop")) == "2028-03-07T02:00:01-05:30");

    const answer big = run("import-schedule", import_request("Big", 10000));
    REQUIRE(big.status() == "success");
    CHECK(schedule_of(big).at("items").as_array().size() == 10000);
}

TEST_CASE("schedules lists every schedule in id order with counts, first start and last end") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    answer empty = run("schedules", "{}");
    REQUIRE(empty.status() == "success");
    CHECK(num(empty.obj().at("count")) == 0);
    CHECK(empty.obj().at("schedules").as_array().empty());
    // Empty input means {}.
    answer empty2 = run("schedules", "");
    CHECK(empty2.status() == "success");

    REQUIRE(run("import-schedule", three_items).status() == "success");
    REQUIRE(run("import-schedule", import_request("Second", 5, "other")).status() == "success");

    const answer a = run("schedules", "{}");
    INFO(a.text);
    REQUIRE(a.status() == "success");
    CHECK(a.exit_code == 0);
    CHECK(num(a.obj().at("count")) == 2);
    const auto& list = a.obj().at("schedules").as_array();
    REQUIRE(list.size() == 2);
    const auto& first = list[0].as_object();
    const auto& second = list[1].as_object();
    CHECK(num(first.at("id")) < num(second.at("id")));
    CHECK(str(first.at("name")) == "Monday");
    CHECK(str(first.at("channel")) == "campus-tv");
    CHECK(num(first.at("item_count")) == 3);
    CHECK(str(first.at("first_start")) == "2026-11-30T08:00:00+01:00");
    CHECK(str(first.at("last_end")) == "2026-12-01T00:10:00+01:00");
    CHECK(str(second.at("name")) == "Second");
    CHECK(str(second.at("channel")) == "other");
    CHECK(num(second.at("item_count")) == 5);
    CHECK(str(second.at("first_start")) == "2026-11-30T08:00:00+01:00");
    CHECK(str(second.at("last_end")) == "2026-11-30T08:05:00+01:00");
}

TEST_CASE("playlists lists the sample playlists and the test's, sorted, with counts") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    write_file(data.dir.path() / "playlists" / "zz-broken.m3u", "#EXTM3U\n#EXTINF:10,x\n");
    write_file(data.dir.path() / "playlists" / "zz-ignored.txt", "not a playlist\n");
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    // What the listing should hold: every *.m3u / *.m3u8 file, parsed here.
    std::set<std::string> expected_names;
    for (const auto& entry : fs::directory_iterator(data.dir.path() / "playlists")) {
        const auto ext = entry.path().extension().string();
        if (ext == ".m3u" || ext == ".m3u8") {
            expected_names.insert(entry.path().stem().string());
        }
    }

    const answer a = run("playlists", "{}");
    INFO(a.text);
    REQUIRE(a.status() == "success");
    CHECK(a.exit_code == 0);
    CHECK(num(a.obj().at("count")) == static_cast<std::int64_t>(expected_names.size()));
    const auto& list = a.obj().at("playlists").as_array();
    REQUIRE(list.size() == expected_names.size());
    std::vector<std::string> names;
    for (const auto& p : list) {
        const auto& o = p.as_object();
        const std::string name = str(o.at("name"));
        names.push_back(name);
        const std::string file = str(o.at("file"));
        CHECK(fs::path(file).stem().string() == name);
        if (name == "zz-broken") {
            CHECK(o.contains("error"));
            continue;
        }
        INFO("playlist " << name);
        CHECK_FALSE(o.contains("error"));
        const auto parsed = schedule::parse_m3u(
            read_file(data.dir.path() / "playlists" / fs::path(file).filename()));
        CHECK(num(o.at("entries")) == static_cast<std::int64_t>(parsed.entries.size()));
        // The sum of the known durations: exact, or each rounded up to whole seconds as
        // schedule-playlist would (the implementation does the latter).
        double known = 0;
        double known_rounded_up = 0;
        std::int64_t unknown = 0;
        for (const auto& e : parsed.entries) {
            if (e.duration && *e.duration > 0) {
                known += *e.duration;
                known_rounded_up += std::ceil(*e.duration);
            } else {
                ++unknown;
            }
        }
        const double total = o.at("total_duration").to_number<double>();
        CHECK((total == Approx(known) || total == Approx(known_rounded_up)));
        CHECK(num(o.at("unknown_durations")) == unknown);
        if (name == "zz-listed") {
            CHECK(str(o.at("file")) == "zz-listed.m3u");
            CHECK(num(o.at("entries")) == 4);
            CHECK((total == Approx(310.5) || total == Approx(311)));
            CHECK(num(o.at("unknown_durations")) == 2);
        }
    }
    CHECK(std::is_sorted(names.begin(), names.end()));
    CHECK(std::set<std::string>(names.begin(), names.end()) == expected_names);
}

TEST_CASE("export-schedule-xml writes an XMLTV document with the schedule's channel and "
          "programmes") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    const answer imported = run("import-schedule", three_items);
    REQUIRE(imported.status() == "success");
    const answer a = run("export-schedule-xml",
                         R"({"id":)" + std::to_string(num(imported.obj().at("id"))) + "}");
    INFO(a.text);
    REQUIRE(a.status() == "success");
    CHECK(a.exit_code == 0);
    CHECK(str(a.obj().at("content_type")) == "application/xml");
    pugi::xml_document doc;
    const std::string xml = str(a.obj().at("xml"));
    REQUIRE(doc.load_string(xml.c_str()));
    const auto tv = doc.child("tv");
    REQUIRE(tv);
    std::vector<pugi::xml_node> channels;
    for (auto c : tv.children("channel")) {
        channels.push_back(c);
    }
    REQUIRE(channels.size() == 1);
    CHECK(std::string(channels[0].attribute("id").value()) == "campus-tv");
    CHECK(std::string(channels[0].child_value("display-name")) == "Monday");
    std::vector<std::string> programmes;
    for (auto p : tv.children("programme")) {
        programmes.push_back(std::string(p.attribute("start").value()) + "|" +
                             p.attribute("stop").value() + "|" + p.attribute("channel").value() +
                             "|" + p.child_value("title") + "|" + p.child_value("url"));
    }
    CHECK(programmes ==
          std::vector<std::string>{"20261130080000 +0100|20261130083000 +0100|campus-tv|News|"
                                   "http://example.org/news.mp4",
                                   "20261130083000 +0100|20261130084000 +0100|campus-tv|Weather|"
                                   "http://example.org/weather.mp4",
                                   "20261130235000 +0100|20261201001000 +0100|campus-tv|Late|"});
}

TEST_CASE("export-all-schedules-xml has one channel per distinct channel and every programme") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    const answer none = run("export-all-schedules-xml", "{}");
    REQUIRE(none.status() == "success");
    {
        pugi::xml_document doc;
        REQUIRE(doc.load_string(str(none.obj().at("xml")).c_str()));
        CHECK(doc.child("tv"));
        CHECK_FALSE(doc.child("tv").child("programme"));
    }

    REQUIRE(run("import-schedule", import_request("A", 3, "one")).status() == "success");
    REQUIRE(run("import-schedule", import_request("B", 4, "two")).status() == "success");
    REQUIRE(run("import-schedule", import_request("C", 5, "one")).status() == "success");
    const answer a = run("export-all-schedules-xml", "{}");
    INFO(a.text);
    REQUIRE(a.status() == "success");
    CHECK(a.exit_code == 0);
    CHECK(str(a.obj().at("content_type")) == "application/xml");
    pugi::xml_document doc;
    REQUIRE(doc.load_string(str(a.obj().at("xml")).c_str()));
    std::multiset<std::string> channels;
    for (auto c : doc.child("tv").children("channel")) {
        channels.insert(c.attribute("id").value());
    }
    CHECK(channels == std::multiset<std::string>{"one", "two"});
    std::multiset<std::string> programme_channels;
    for (auto p : doc.child("tv").children("programme")) {
        programme_channels.insert(p.attribute("channel").value());
    }
    CHECK(programme_channels.count("one") == 8);
    CHECK(programme_channels.count("two") == 4);
}

TEST_CASE("schedule-playlist schedules entries back to back with rounded-up and assumed "
          "durations") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    const answer a = run("schedule-playlist", R"({"playlist":"zz-scheduled","channel":"campus-tv",
        "start":"2026-11-30T08:00:00+01:00","unknown_duration":100})");
    INFO(a.text);
    REQUIRE(a.status() == "success");
    CHECK(a.exit_code == 0);
    CHECK(num(a.obj().at("assumed_durations")) == 3);
    CHECK(num(a.obj().at("id")) >= 1);
    const auto& s = schedule_of(a);
    CHECK(str(s.at("name")) == "zz-scheduled");
    CHECK(str(s.at("channel")) == "campus-tv");
    CHECK(item_lines(s) ==
          std::vector<std::string>{
              "First 2026-11-30T08:00:00+01:00 2026-11-30T08:00:11+01:00 11",
              "Second 2026-11-30T08:00:11+01:00 2026-11-30T08:01:51+01:00 100",
              "Third 2026-11-30T08:01:51+01:00 2026-11-30T08:03:31+01:00 100",
              "http://example.org/4.mp4 2026-11-30T08:03:31+01:00 2026-11-30T08:05:11+01:00 100",
              "Fifth 2026-11-30T08:05:11+01:00 2026-11-30T08:10:11+01:00 300",
              "Sixth 2026-11-30T08:10:11+01:00 2026-11-30T08:10:31+01:00 20"});
    CHECK(str(s.at("items").as_array()[0].as_object().at("url")) == "http://example.org/1.mp4");

    // Default unknown_duration 1800, the name given, the playlist named with its extension.
    const answer b = run("schedule-playlist", R"({"playlist":"zz-scheduled.m3u8","channel":"c2",
        "name":"Named","start":"2026-11-30T08:00:00Z"})");
    INFO(b.text);
    REQUIRE(b.status() == "success");
    CHECK(num(b.obj().at("assumed_durations")) == 3);
    CHECK(str(schedule_of(b).at("name")) == "Named");
    std::vector<std::int64_t> durations;
    for (const auto& item : schedule_of(b).at("items").as_array()) {
        durations.push_back(num(item.as_object().at("duration")));
    }
    CHECK(durations == std::vector<std::int64_t>{11, 1800, 1800, 1800, 300, 20});
    // Z comes back as Z or as +00:00.
    const std::string last_stop =
        str(schedule_of(b).at("items").as_array()[5].as_object().at("stop"));
    CHECK((last_stop == "2026-11-30T09:35:31Z" || last_stop == "2026-11-30T09:35:31+00:00"));

    // Inline M3U text: the name defaults to "playlist".
    const answer c =
        run("schedule-playlist", R"({"m3u":"#EXTM3U\n#EXTINF:59.001,Only\nhttp://x/1\n",
        "channel":"c3","start":"2026-11-30T08:00:00+01:00"})");
    INFO(c.text);
    REQUIRE(c.status() == "success");
    CHECK(num(c.obj().at("assumed_durations")) == 0);
    CHECK(str(schedule_of(c).at("name")) == "playlist");
    CHECK(item_lines(schedule_of(c)) ==
          std::vector<std::string>{"Only 2026-11-30T08:00:00+01:00 2026-11-30T08:01:00+01:00 60"});

    // Stored as by import-schedule.
    const answer list = run("schedules", "{}");
    CHECK(num(list.obj().at("count")) == 3);

    // Every sample playlist schedules.
    for (const auto& entry : fs::directory_iterator(sample_data / "playlists")) {
        const auto ext = entry.path().extension().string();
        if (ext != ".m3u" && ext != ".m3u8") {
            continue;
        }
        const auto parsed = schedule::parse_m3u(read_file(entry.path()));
        const answer p = run("schedule-playlist",
                             R"({"playlist":")" + entry.path().stem().string() +
                                 R"(","channel":"sample","start":"2026-11-30T06:00:00+01:00"})");
        INFO(p.text);
        REQUIRE(p.status() == "success");
        CHECK(schedule_of(p).at("items").as_array().size() == parsed.entries.size());
    }
}

TEST_CASE("infowars-videos pages through the sample feed") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    const auto feed = schedule::parse_m3u(read_file(sample_data / "feed.m3u"));
    REQUIRE_FALSE(feed.entries.empty());
    const answer a = run("infowars-videos", "{}");
    INFO(a.text);
    REQUIRE(a.status() == "success");
    CHECK(a.exit_code == 0);
    CHECK(num(a.obj().at("total")) == static_cast<std::int64_t>(feed.entries.size()));
    CHECK(num(a.obj().at("offset")) == 0);
    CHECK(num(a.obj().at("limit")) == 50);
    const auto& videos = a.obj().at("videos").as_array();
    REQUIRE(videos.size() == std::min<std::size_t>(50, feed.entries.size()));
    for (std::size_t i = 0; i < videos.size(); ++i) {
        const auto& v = videos[i].as_object();
        const auto& e = feed.entries[i];
        CHECK(str(v.at("title")) == e.title);
        CHECK(str(v.at("url")) == e.url);
        CHECK(str(v.at("group")) == e.group);
        CHECK(str(v.at("tvg_id")) == e.tvg_id);
        CHECK(str(v.at("tvg_name")) == e.tvg_name);
        CHECK(str(v.at("tvg_logo")) == e.tvg_logo);
        if (e.duration && *e.duration > 0) {
            CHECK(v.at("duration").to_number<double>() == Approx(*e.duration));
        }
    }
}

TEST_CASE("infowars-videos pages by offset and limit, with total and null unknown durations") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    data_folder data;
    std::string feed = "#EXTM3U\n";
    for (int i = 0; i < 620; ++i) {
        feed += "#EXTINF:" + (i % 10 == 0 ? std::string("-1") : std::to_string(i)) +
                " tvg-id=\"id" + std::to_string(i) + "\" group-title=\"g\",Video " +
                std::to_string(i) + "\nhttp://example.org/v" + std::to_string(i) + ".mp4\n";
    }
    write_file(data.dir.path() / "feed.m3u", feed);
    std::shared_ptr<schedule::service> keep;
    const runner run = make_runner(mode, data.dir.path(), keep);

    const auto titles = [](const answer& a) {
        std::vector<std::string> out;
        for (const auto& v : a.obj().at("videos").as_array()) {
            out.push_back(str(v.as_object().at("title")));
        }
        return out;
    };

    const answer first = run("infowars-videos", "{}");
    REQUIRE(first.status() == "success");
    CHECK(num(first.obj().at("total")) == 620);
    CHECK(titles(first).size() == 50);
    CHECK(titles(first).front() == "Video 0");
    CHECK(first.obj().at("videos").as_array()[0].as_object().at("duration").is_null());
    CHECK(num(first.obj().at("videos").as_array()[1].as_object().at("duration")) == 1);
    CHECK(str(first.obj().at("videos").as_array()[3].as_object().at("tvg_id")) == "id3");

    const answer page = run("infowars-videos", R"({"offset":600,"limit":50})");
    REQUIRE(page.status() == "success");
    CHECK(num(page.obj().at("total")) == 620);
    CHECK(num(page.obj().at("offset")) == 600);
    CHECK(num(page.obj().at("limit")) == 50);
    REQUIRE(titles(page).size() == 20);
    CHECK(titles(page).front() == "Video 600");
    CHECK(titles(page).back() == "Video 619");

    const answer one = run("infowars-videos", R"({"offset":7,"limit":1})");
    REQUIRE(one.status() == "success");
    CHECK(titles(one) == std::vector<std::string>{"Video 7"});

    const answer most = run("infowars-videos", R"({"limit":500})");
    REQUIRE(most.status() == "success");
    CHECK(titles(most).size() == 500);

    const answer past = run("infowars-videos", R"({"offset":620})");
    REQUIRE(past.status() == "success");
    CHECK(num(past.obj().at("total")) == 620);
    CHECK(titles(past).empty());

    for (const char* bad : {R"({"limit":0})", R"({"limit":501})", R"({"limit":-1})",
                            R"({"offset":-1})", R"({"limit":1.5})", R"({"offset":"3"})"}) {
        INFO(bad);
        const answer e = run("infowars-videos", bad);
        CHECK(e.status() == "error");
        CHECK(e.code() == "invalid_input");
        CHECK(e.exit_code == 2);
    }
}

TEST_CASE("infowars-videos reads the feed given with --feed") {
    data_folder data;
    write_file(data.dir.path() / "other.m3u", "#EXTM3U\n#EXTINF:5,Other\nhttp://o/1\n");
    const run_result r = run({worker_binary.string(), "--data-dir", data.dir.str(), "--feed",
                              "other.m3u", "infowars-videos"},
                             "{}");
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    const auto v = parse_json(r.out);
    CHECK(num(v.as_object().at("total")) == 1);
    CHECK(str(v.as_object().at("videos").as_array()[0].as_object().at("title")) == "Other");

    test_service svc(data.dir.path(), "other.m3u");
    const answer a = in_process(svc, "infowars-videos", "{}");
    CHECK(num(a.obj().at("total")) == 1);
}

TEST_CASE("schedules in a long-lived service reflects imports by itself and by other processes") {
    // A persistent worker reuses its last listing while the database is unchanged; any write,
    // its own or another process's, must show in the next listing.
    data_folder data;
    test_service service(data.dir.path());
    CHECK(num(in_process(service, "schedules", "{}").obj().at("count")) == 0);
    CHECK(num(in_process(service, "schedules", "{}").obj().at("count")) == 0);

    REQUIRE(in_process(service, "import-schedule", import_request("Own", 2)).status() == "success");
    CHECK(num(in_process(service, "schedules", "{}").obj().at("count")) == 1);

    REQUIRE(cli(data.dir.path(), "import-schedule", import_request("Other process", 3)).status() ==
            "success");
    const answer after = in_process(service, "schedules", "{}");
    REQUIRE(num(after.obj().at("count")) == 2);
    CHECK(str(after.obj().at("schedules").as_array()[1].as_object().at("name")) == "Other process");
    CHECK(in_process(service, "schedules", "{}").text == after.text);
}

TEST_CASE("the store is --database, else SCHEDULE_DATABASE, else DIR/schedules.db") {
    temp_dir dir;
    temp_dir elsewhere;
    const std::string from_flag = "sqlite:" + (elsewhere.path() / "flag.db").string();
    const std::string from_environment = "sqlite:" + (elsewhere.path() / "environment.db").string();
    const auto import_with = [&](std::vector<std::string> flags) {
        std::vector<std::string> command{worker_binary.string(), "--data-dir", dir.str()};
        command.insert(command.end(), flags.begin(), flags.end());
        command.emplace_back("import-schedule");
        const run_result r = run(command, import_request("where", 1));
        INFO(r.out << r.err);
        CHECK(r.exit_code == 0);
    };
    import_with({});
    CHECK(fs::exists(dir.path() / "schedules.db"));
    ::setenv("SCHEDULE_DATABASE", from_environment.c_str(), 1);
    import_with({});
    CHECK(fs::exists(elsewhere.path() / "environment.db"));
    import_with({"--database", from_flag}); // the flag wins over the environment
    CHECK(fs::exists(elsewhere.path() / "flag.db"));
    const run_result refused = run({worker_binary.string(), "--data-dir", dir.str(), "--database",
                                    "mysql://user:secret@host/db", "schedules"},
                                   "{}");
    ::unsetenv("SCHEDULE_DATABASE");
    CHECK(refused.exit_code == 64);
    CHECK(refused.err.find("unknown scheme 'mysql:'") != std::string::npos);
    CHECK(refused.err.find("secret") == std::string::npos);
    // One schedule in each of the three stores.
    for (const std::string& url :
         {"sqlite:" + (dir.path() / "schedules.db").string(), from_environment, from_flag}) {
        schedule::service service(dir.path(), "feed.m3u", url);
        CHECK(num(in_process(service, "schedules", "{}").obj().at("count")) == 1);
    }
}
