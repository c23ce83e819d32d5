// schedule::parse_m3u: what the M3U reader accepts and the errors (with their line) it reports.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "support.hpp"

using schedule::input_error;
using schedule::parse_m3u;
using namespace std::string_literals;
namespace fs = std::filesystem;

namespace {

/// The line of the input_error parse_m3u throws (0 if it does not throw one).
std::size_t error_line(std::string_view text) {
    try {
        (void)parse_m3u(text);
    } catch (const input_error& e) {
        return e.line;
    }
    return 0;
}

} // namespace

TEST_CASE("parse_m3u reads a playlist with and without its #EXTM3U header") {
    const auto with =
        parse_m3u("#EXTM3U\n#EXTINF:10,One\nhttp://a/1\n#EXTINF:20,Two\nhttp://a/2\n");
    CHECK(with.has_header);
    REQUIRE(with.entries.size() == 2);
    CHECK(with.entries[0].title == "One");
    CHECK(with.entries[0].url == "http://a/1");
    REQUIRE(with.entries[0].duration.has_value());
    CHECK(*with.entries[0].duration == 10.0);
    CHECK(with.entries[1].title == "Two");
    CHECK(with.entries[1].url == "http://a/2");
    CHECK(*with.entries[1].duration == 20.0);

    const auto without = parse_m3u("#EXTINF:10,One\nhttp://a/1\n");
    CHECK_FALSE(without.has_header);
    REQUIRE(without.entries.size() == 1);
    CHECK(without.entries[0].title == "One");

    const auto empty = parse_m3u("");
    CHECK_FALSE(empty.has_header);
    CHECK(empty.entries.empty());

    const auto header_only = parse_m3u("#EXTM3U");
    CHECK(header_only.has_header);
    CHECK(header_only.entries.empty());

    // No newline at the end of the last URL.
    const auto unterminated = parse_m3u("#EXTM3U\n#EXTINF:5,Last\nhttp://a/last");
    REQUIRE(unterminated.entries.size() == 1);
    CHECK(unterminated.entries[0].url == "http://a/last");
}

TEST_CASE("parse_m3u accepts CRLF line ends and a UTF-8 byte order mark") {
    const auto crlf = parse_m3u("#EXTM3U\r\n#EXTINF:10,One\r\nhttp://a/1\r\n\r\n");
    CHECK(crlf.has_header);
    REQUIRE(crlf.entries.size() == 1);
    CHECK(crlf.entries[0].title == "One");
    CHECK(crlf.entries[0].url == "http://a/1");

    const auto bom = parse_m3u("\xEF\xBB\xBF#EXTM3U\n#EXTINF:10,One\nhttp://a/1\n");
    CHECK(bom.has_header);
    REQUIRE(bom.entries.size() == 1);
    CHECK(bom.entries[0].title == "One");

    const auto bom_crlf = parse_m3u("\xEF\xBB\xBF#EXTM3U\r\n#EXTINF:3,x\r\nu\r\n");
    CHECK(bom_crlf.has_header);
    REQUIRE(bom_crlf.entries.size() == 1);
    CHECK(bom_crlf.entries[0].url == "u");
}

TEST_CASE("parse_m3u ignores comments, other directives and blank lines, and counts lines") {
    const auto p = parse_m3u("#EXTM3U\n"
                             "# a comment\n"
                             "\n"
                             "#EXTVLCOPT:network-caching=1000\n"
                             "#EXTGRP:Group\n"
                             "#EXTINF:10,One\n"
                             "#EXTVLCOPT:http-user-agent=x\n"
                             "\n"
                             "http://a/1\n"
                             "   \n"
                             "#PLAYLIST:ignored\n"
                             "#EXTINF:20,Two\n"
                             "http://a/2\n");
    REQUIRE(p.entries.size() == 2);
    CHECK(p.entries[0].title == "One");
    CHECK(p.entries[0].url == "http://a/1");
    CHECK(p.entries[1].title == "Two");
    CHECK(p.entries[0].line >= 6);
    CHECK(p.entries[0].line <= 9);
    CHECK(p.entries[1].line >= 12);
    CHECK(p.entries[1].line <= 13);
}

TEST_CASE("parse_m3u reads the tvg attributes, quoted commas and quotes in titles") {
    const auto p = parse_m3u(
        "#EXTM3U\n"
        "#EXTINF:-1 tvg-id=\"news.1\" tvg-name=\"News, Late\" tvg-logo=\"http://l/o.png\" "
        "group-title=\"Info, and more\" other=\"ignored\",Title, with \"quotes\", and commas\n"
        "http://a/1\n"
        "#EXTINF:12.5 group-title=\"G\",Plain\n"
        "http://a/2\n");
    REQUIRE(p.entries.size() == 2);
    const auto& e = p.entries[0];
    CHECK(e.tvg_id == "news.1");
    CHECK(e.tvg_name == "News, Late");
    CHECK(e.tvg_logo == "http://l/o.png");
    CHECK(e.group == "Info, and more");
    CHECK(e.title == "Title, with \"quotes\", and commas");
    CHECK(e.url == "http://a/1");
    // -1 is the M3U way of saying "unknown".
    CHECK_FALSE(e.duration.has_value());
    const auto& f = p.entries[1];
    REQUIRE(f.duration.has_value());
    CHECK(*f.duration == 12.5);
    CHECK(f.group == "G");
    CHECK(f.tvg_id.empty());
    CHECK(f.title == "Plain");
}

TEST_CASE("parse_m3u: a URL without #EXTINF is an entry of unknown duration titled by its URL") {
    const auto p =
        parse_m3u("#EXTM3U\nhttp://a/bare.mp4\n#EXTINF:5,Five\nhttp://a/5\nrtmp://b/x\n");
    REQUIRE(p.entries.size() == 3);
    CHECK(p.entries[0].title == "http://a/bare.mp4");
    CHECK(p.entries[0].url == "http://a/bare.mp4");
    CHECK_FALSE(p.entries[0].duration.has_value());
    CHECK(p.entries[1].title == "Five");
    CHECK(p.entries[2].title == "rtmp://b/x");
    CHECK_FALSE(p.entries[2].duration.has_value());
}

TEST_CASE("parse_m3u: durations 0 and fractional ones") {
    const auto p =
        parse_m3u("#EXTINF:0,Zero\nu0\n#EXTINF:0.25,Quarter\nu1\n#EXTINF:3600,Hour\nu2\n");
    REQUIRE(p.entries.size() == 3);
    // 0 is unknown to schedule-playlist; the parser may keep it as 0 or as unknown.
    CHECK((!p.entries[0].duration || *p.entries[0].duration == 0.0));
    REQUIRE(p.entries[1].duration.has_value());
    CHECK(*p.entries[1].duration == 0.25);
    CHECK(*p.entries[2].duration == 3600.0);
}

TEST_CASE("parse_m3u: an #EXTINF followed by another #EXTINF or by the end is an error with its "
          "line") {
    CHECK(error_line("#EXTM3U\n#EXTINF:10,a\n#EXTINF:10,b\nhttp://b\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:10,a\nhttp://a\n#EXTINF:10,b\n") == 4);
    CHECK(error_line("#EXTM3U\n#EXTINF:10,a\nhttp://a\n#EXTINF:10,b") == 4);
    CHECK(error_line("#EXTM3U\r\n#EXTINF:10,a\r\n\r\n# comment\r\n") == 2);
    CHECK_THROWS_AS(parse_m3u("#EXTINF:10,a"), input_error);
}

TEST_CASE("parse_m3u: bad durations and unterminated quotes are errors with their line") {
    CHECK(error_line("#EXTM3U\n#EXTINF:abc,a\nhttp://a\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:1x,a\nhttp://a\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:nan,a\nhttp://a\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:inf,a\nhttp://a\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:1e999,a\nhttp://a\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:10 tvg-id=\"open,a\nhttp://a\n") == 2);
}

TEST_CASE("parse_m3u: invalid UTF-8 and NUL bytes are errors with their line") {
    CHECK(error_line("#EXTM3U\n#EXTINF:10,bad \xff title\nhttp://a\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:10,a\nhttp://a/\xc3\x28\n") == 3);
    CHECK(error_line("#EXTM3U\n#EXTINF:10,overlong \xc0\xaf\nhttp://a\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:10,surrogate \xed\xa0\x80\nhttp://a\n") == 2);
    CHECK(error_line("#EXTM3U\n# comment \xfe\n") == 2);
    CHECK(error_line("#EXTM3U\n#EXTINF:10,a\nhttp://a\0b\n"s) == 3);
    CHECK(error_line("\0#EXTM3U\n"s) == 1);
    CHECK(error_line("#EXTM3U\n\n\n# x\0\n"s) == 4);
    // Valid multi-byte UTF-8 is fine.
    const auto p = parse_m3u("#EXTINF:1,\xe2\x82\xac \xf0\x9f\x93\xba \xc3\xa9\nhttp://a\n");
    REQUIRE(p.entries.size() == 1);
    CHECK(p.entries[0].title == "\xe2\x82\xac \xf0\x9f\x93\xba \xc3\xa9");
}

TEST_CASE("parse_m3u: at most 8 MiB and 100000 entries") {
    std::string many = "#EXTM3U\n";
    for (int i = 0; i < 100000; ++i) {
        many += "u\n";
    }
    CHECK(parse_m3u(many).entries.size() == 100000);
    CHECK_THROWS_AS(parse_m3u(many + "u\n"), input_error);
    const std::size_t limit = std::size_t{8} << 20;
    std::string big = "#EXTM3U\n#EXTINF:1,a\nu\n";
    big += std::string(limit - big.size(), '\n');
    CHECK(parse_m3u(big).entries.size() == 1);
    CHECK_THROWS_AS(parse_m3u(big + "\n"), input_error);
}

TEST_CASE("parse_m3u reads every sample playlist and the sample feed") {
    for (const auto& entry : fs::directory_iterator(sw_test::sample_data / "playlists")) {
        INFO(entry.path());
        const auto p = parse_m3u(sw_test::read_file(entry.path()));
        CHECK_FALSE(p.entries.empty());
    }
    CHECK_FALSE(parse_m3u(sw_test::read_file(sw_test::sample_data / "feed.m3u")).entries.empty());
}

TEST_CASE("parse_m3u: an empty or blank #EXTINF duration is a missing one (unknown)") {
    const auto p = parse_m3u("#EXTM3U\n"
                             "#EXTINF:,Empty\nhttp://a/1\n"
                             "#EXTINF: ,Blank\nhttp://a/2\n"
                             "#EXTINF:\t \t,Tabs\nhttp://a/3\n"
                             "#EXTINF:\nhttp://a/4\n"
                             "#EXTINF:  \r\nhttp://a/5\n"
                             "#EXTINF:, Spaced title \nhttp://a/6\n");
    REQUIRE(p.entries.size() == 6);
    for (const auto& entry : p.entries) {
        INFO(entry.url);
        CHECK_FALSE(entry.duration.has_value());
    }
    CHECK(p.entries[0].title == "Empty");
    CHECK(p.entries[1].title == "Blank");
    CHECK(p.entries[2].title == "Tabs");
    CHECK(p.entries[3].title == "http://a/4"); // no comma, no title: titled by the URL
    CHECK(p.entries[4].title == "http://a/5");
    CHECK(p.entries[5].title == "Spaced title");
    // No duration before the attributes.
    const auto attributes = parse_m3u("#EXTINF: tvg-id=\"a\" tvg-name=\"A B\",Named\nhttp://a/1\n"
                                      "#EXTINF:group-title=\"G\",Grouped\nhttp://a/2\n");
    REQUIRE(attributes.entries.size() == 2);
    CHECK_FALSE(attributes.entries[0].duration.has_value());
    CHECK(attributes.entries[0].tvg_id == "a");
    CHECK(attributes.entries[0].tvg_name == "A B");
    CHECK(attributes.entries[0].title == "Named");
    CHECK_FALSE(attributes.entries[1].duration.has_value());
    CHECK(attributes.entries[1].group == "G");
    CHECK(attributes.entries[1].title == "Grouped");
    // A duration that is there must still be a number.
    CHECK(error_line("#EXTM3U\n#EXTINF: x,a\nhttp://a\n") == 2);
}

TEST_CASE("parse_m3u: an entry knows the line of its #EXTINF and the line of its URL") {
    const auto p = parse_m3u("#EXTM3U\n"
                             "#EXTINF:10,One\n"
                             "#EXTVLCOPT:http-referrer=http://x/\n"
                             "\n"
                             "http://a/1\n"
                             "http://a/bare\n");
    REQUIRE(p.entries.size() == 2);
    CHECK(p.entries[0].line == 2);
    CHECK(p.entries[0].url_line == 5);
    CHECK(p.entries[1].line == 6);
    CHECK(p.entries[1].url_line == 6);
}

namespace {

/// A playlist as IPTV providers publish them: BOM, CRLF, `url-tvg` on the header, `tvg-*`
/// attributes whose quoted values hold commas, `#EXTGRP` and `#EXTVLCOPT` lines between an
/// `#EXTINF` and its URL, empty and `-1` durations, blank lines.
std::string provider_playlist(int entries) {
    std::string text =
        "\xEF\xBB\xBF#EXTM3U url-tvg=\"http://guide.example.org/epg.xml\" "
        "x-tvg-url=\"http://guide.example.org/a.xml,http://guide.example.org/b.xml\"\r\n";
    for (int index = 0; index < entries; ++index) {
        const std::string number = std::to_string(index);
        const char* duration = index % 3 == 0 ? "-1" : (index % 3 == 1 ? "" : "1800.5");
        text += "#EXTINF:" + std::string(duration) + " tvg-id=\"ch" + number +
                ".example.org\" tvg-name=\"Channel " + number +
                ", HD\" tvg-logo=\"http://logo.example.org/" + number + ".png\" tvg-chno=\"" +
                number + "\" group-title=\"News, Sport\"," + "Channel " + number +
                " (HD), live\r\n";
        text += "#EXTGRP:Group " + number + "\r\n";
        text += "#EXTVLCOPT:http-user-agent=Player/1.0 (X11, Linux)\r\n";
        if (index % 100 == 0) {
            text += "\r\n";
        }
        text += "http://stream.example.org/live/" + number + ".ts\r\n";
    }
    return text;
}

} // namespace

TEST_CASE("parse_m3u reads a provider-style playlist of 5000 entries: BOM, CRLF, tvg attributes "
          "with commas, #EXTGRP, #EXTVLCOPT, empty durations") {
    const std::string text = provider_playlist(5000);
    const auto p = parse_m3u(text);
    CHECK(p.has_header);
    REQUIRE(p.entries.size() == 5000);
    const auto& first = p.entries[0];
    CHECK(first.title == "Channel 0 (HD), live");
    CHECK(first.tvg_id == "ch0.example.org");
    CHECK(first.tvg_name == "Channel 0, HD");
    CHECK(first.tvg_logo == "http://logo.example.org/0.png");
    CHECK(first.group == "News, Sport");
    CHECK(first.url == "http://stream.example.org/live/0.ts");
    CHECK_FALSE(first.duration.has_value());
    CHECK_FALSE(p.entries[1].duration.has_value()); // empty duration
    REQUIRE(p.entries[2].duration.has_value());
    CHECK(*p.entries[2].duration == 1800.5);
    const auto& last = p.entries[4999];
    CHECK(last.title == "Channel 4999 (HD), live");
    CHECK(last.url == "http://stream.example.org/live/4999.ts");
    CHECK(last.line == 1 + 4999 * 4 + 50 + 1);
    CHECK(last.url_line == last.line + 3);
}

TEST_CASE("schedule-playlist: an error about an entry's URL names the URL's line, not the "
          "#EXTINF's") {
    sw_test::temp_dir dir;
    sw_test::test_service svc(dir.path());
    const auto schedule_m3u = [&](const std::string& m3u) {
        sw_test::json::object request;
        request["m3u"] = m3u;
        request["channel"] = "c";
        request["start"] = "2026-11-30T08:00:00Z";
        return sw_test::in_process(svc, "schedule-playlist", sw_test::json::serialize(request));
    };
    // A URL with a space in it (line 5), its #EXTINF on line 2.
    const auto spaced = schedule_m3u("#EXTM3U\n#EXTINF:10,a\n#EXTVLCOPT:x=y\n\nhttp://a/b c\n");
    INFO(spaced.text);
    CHECK(spaced.code() == "invalid_input");
    CHECK(spaced.field() == "m3u");
    CHECK(spaced.line() == 5);
    // A URL over 2048 bytes, CRLF line ends.
    const auto long_url = schedule_m3u("#EXTM3U\r\n#EXTINF:10,a\r\n#EXTGRP:g\r\nhttp://a/" +
                                       std::string(2048, 'x') + "\r\n");
    INFO(long_url.text);
    CHECK(long_url.line() == 4);
    // A title error still names the #EXTINF line.
    const auto long_title =
        schedule_m3u("#EXTM3U\n#EXTINF:10," + std::string(501, 't') + "\n#EXTGRP:g\nhttp://a/1\n");
    INFO(long_title.text);
    CHECK(long_title.line() == 2);
}

TEST_CASE("schedule-playlist schedules a provider-style playlist of 5000 entries") {
    sw_test::temp_dir dir;
    sw_test::test_service svc(dir.path());
    sw_test::json::object request;
    request["m3u"] = provider_playlist(5000);
    request["channel"] = "iptv";
    request["start"] = "2026-11-30T00:00:00+01:00";
    request["unknown_duration"] = 60;
    const auto a = sw_test::in_process(svc, "schedule-playlist", sw_test::json::serialize(request));
    INFO(a.text.substr(0, 500));
    REQUIRE(a.status() == "success");
    // Entries 0, 3, 6, ... have -1 and 1, 4, 7, ... an empty duration: 1667 + 1667 unknown.
    CHECK(sw_test::num(a.obj().at("assumed_durations")) == 1667 + 1667);
    const auto& items = a.obj().at("schedule").as_object().at("items").as_array();
    REQUIRE(items.size() == 5000);
    CHECK(sw_test::str(items[0].as_object().at("title")) == "Channel 0 (HD), live");
    CHECK(sw_test::num(items[2].as_object().at("duration")) == 1801);
}
