// Unit tests of the server's request-target, query and Host parsing (examples/schedule_server/
// query.hpp) and its UTF-8 checks (utf8.hpp): pure functions, no server, no Beast.
#include "query.hpp"
#include "utf8.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <variant>

using namespace schedule_server;

namespace {

request_target target_of(std::string_view text) {
    auto parsed = parse_request_target(text);
    if (auto* message = std::get_if<std::string>(&parsed)) {
        FAIL("'" << std::string(text) << "' refused: " << *message);
    }
    return std::get<request_target>(std::move(parsed));
}

std::string refusal_of(std::string_view text) {
    auto parsed = parse_request_target(text);
    if (!std::holds_alternative<std::string>(parsed)) {
        FAIL("'" << std::string(text) << "' accepted");
    }
    return std::get<std::string>(std::move(parsed));
}

} // namespace

TEST_CASE("decode_component decodes percent-escapes and plus, and refuses broken escapes",
          "[server][unit]") {
    CHECK(decode_component("a%20b+c") == "a b c");
    CHECK(decode_component("%41%4a%4A") == "AJJ");
    CHECK(decode_component("") == "");
    CHECK(decode_component("%FF") == std::string("\xFF"));
    CHECK_FALSE(decode_component("%"));
    CHECK_FALSE(decode_component("%4"));
    CHECK_FALSE(decode_component("abc%"));
    CHECK_FALSE(decode_component("%zz"));
}

TEST_CASE("parse_query decodes pairs, skips empty ones and refuses repeats and non-UTF-8",
          "[server][unit]") {
    auto parsed = parse_query("name=Caf%C3%A9&&channel=x+y&flag");
    REQUIRE(std::holds_alternative<std::map<std::string, std::string>>(parsed));
    const auto& query = std::get<0>(parsed);
    CHECK(query.size() == 3);
    CHECK(query.at("name") == "Caf\xC3\xA9");
    CHECK(query.at("channel") == "x y");
    CHECK(query.at("flag").empty());

    CHECK(std::get<std::string>(parse_query("a=1&a=2")) == "query parameter 'a' given twice");
    CHECK(std::get<std::string>(parse_query("a=%4")) ==
          "malformed percent-encoding in the query string");
    CHECK(std::get<std::string>(parse_query("name=%FF")) ==
          "query parameter 'name' is not valid UTF-8");
    CHECK(std::get<std::string>(parse_query("name=%C3%28")) ==
          "query parameter 'name' is not valid UTF-8");
    // A key that is not UTF-8 is named as sent, and a raw byte in it escaped.
    CHECK(std::get<std::string>(parse_query("id%C3=1")) ==
          "query parameter 'id%C3' is not valid UTF-8");
    CHECK(std::get<std::string>(parse_query("i\xFF=1")) ==
          "query parameter 'i%FF' is not valid UTF-8");
}

TEST_CASE("parse_request_target reads origin-form with its query", "[server][unit]") {
    const request_target target = target_of("/api/export-schedule-json?id=3");
    CHECK(target.form == target_form::origin);
    CHECK(target.path == "/api/export-schedule-json");
    CHECK(target.query.at("id") == "3");
    CHECK(target_of("/healthz").query.empty());
    CHECK(target_of("/").path == "/");
}

TEST_CASE("parse_request_target reads absolute-form: http or https, any case, path and query "
          "as in origin-form",
          "[server][unit]") {
    const request_target target = target_of("http://127.0.0.1:5000/healthz");
    CHECK(target.form == target_form::absolute);
    CHECK(target.authority == "127.0.0.1:5000");
    CHECK(target.path == "/healthz");

    const request_target upper = target_of("HTTPS://Example.ORG/api/infowars-videos?limit=1");
    CHECK(upper.form == target_form::absolute);
    CHECK(upper.path == "/api/infowars-videos");
    CHECK(upper.query.at("limit") == "1");

    CHECK(target_of("http://example.org").path == "/");
    const request_target no_path = target_of("http://example.org?limit=2");
    CHECK(no_path.path == "/");
    CHECK(no_path.query.at("limit") == "2");
    CHECK(target_of("http://[::1]:8080/metrics").authority == "[::1]:8080");
}

TEST_CASE("parse_request_target refuses malformed absolute targets", "[server][unit]") {
    CHECK_THAT(refusal_of("http:///healthz"), Catch::Contains("host"));
    CHECK_THAT(refusal_of("http://:80/healthz"), Catch::Contains("host"));
    CHECK_THAT(refusal_of("http://user@example.org/"), Catch::Contains("user info"));
    CHECK_THAT(refusal_of("ftp://example.org/healthz"), Catch::Contains("http and https"));
    CHECK_THAT(refusal_of("http://example.org:80x/"), Catch::Contains("host"));
    CHECK_THAT(refusal_of("http://[::1/healthz"), Catch::Contains("host"));
    CHECK_THAT(refusal_of("http://exa mple.org/"), Catch::Contains("host"));
    CHECK_THAT(refusal_of("http://example.org/?q=%zz"), Catch::Contains("percent-encoding"));
    CHECK_THAT(refusal_of("/healthz#top"), Catch::Contains("fragment"));
    CHECK_THAT(refusal_of("http:/healthz"), Catch::Contains("neither"));
    CHECK_THAT(refusal_of("healthz"), Catch::Contains("neither"));
    CHECK_THAT(refusal_of(""), Catch::Contains("neither"));
}

TEST_CASE("parse_request_target refuses a path with bytes that are not printable ASCII, and its "
          "message is UTF-8",
          "[server][unit]") {
    // Found by btq_fuzz_request_path: Beast passes such bytes on, and the 404 quoted them raw.
    for (const std::string_view target :
         {std::string_view("/api/\xD9schedules"), std::string_view("http://h/a\xFF"),
          std::string_view("/caf\xC3\xA9?x=1"), std::string_view("/a\x7F")}) {
        const std::string message = refusal_of(target);
        CAPTURE(message);
        CHECK_FALSE(find_invalid_utf8(message));
        CHECK(message.find("not printable ASCII") != std::string::npos);
    }
    CHECK(refusal_of("/api/\xD9x").find("/api/%D9x") != std::string::npos);
    CHECK(target_of("/caf%C3%A9").path == "/caf%C3%A9");
}

TEST_CASE("parse_request_target tells asterisk-form and authority-form", "[server][unit]") {
    CHECK(target_of("*").form == target_form::asterisk);
    const request_target authority = target_of("127.0.0.1:5000");
    CHECK(authority.form == target_form::authority);
    CHECK(authority.authority == "127.0.0.1:5000");
    CHECK(target_of("example.org:443").form == target_form::authority);
}

TEST_CASE("valid_host accepts host[:port] as RFC 3986 writes it and nothing else",
          "[server][unit]") {
    for (const char* good :
         {"", "example.org", "Example.ORG:80", "127.0.0.1", "127.0.0.1:5000", "[::1]", "[::1]:80",
          "[v1.fe80::a+en1]", "a-b_c~d.e", "host:", "%41bc"}) {
        CAPTURE(good);
        CHECK(valid_host(good));
    }
    for (const char* bad :
         {"two words", "example.org:80x", "example.org/path", "[::1", "a@example.org", "::1",
          "[::1]x", "[]", "%4", "ex\xC3\xA9.org", "host:80:80"}) {
        CAPTURE(bad);
        CHECK_FALSE(valid_host(bad));
    }
}

TEST_CASE("find_invalid_utf8 finds the first byte of an ill-formed sequence", "[server][unit]") {
    CHECK_FALSE(find_invalid_utf8(""));
    CHECK_FALSE(find_invalid_utf8("plain ASCII"));
    CHECK_FALSE(find_invalid_utf8("Caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
    CHECK_FALSE(find_invalid_utf8("\xF4\x8F\xBF\xBF")); // U+10FFFF
    CHECK(find_invalid_utf8("ab\xFF") == 2U);
    CHECK(find_invalid_utf8("a\xC3") == 1U);            // truncated
    CHECK(find_invalid_utf8("\xC0\xAF") == 0U);         // overlong '/'
    CHECK(find_invalid_utf8("\xE0\x80\xAF") == 0U);     // overlong
    CHECK(find_invalid_utf8("\xED\xA0\x80") == 0U);     // a surrogate
    CHECK(find_invalid_utf8("\xF4\x90\x80\x80") == 0U); // above U+10FFFF
    CHECK(find_invalid_utf8("x\x80") == 1U);            // a continuation byte alone
    CHECK(find_invalid_utf8("\xE2\x82x") == 0U);
}

TEST_CASE("line_at counts lines from 1 and append_utf8 writes 1 to 4 bytes", "[server][unit]") {
    CHECK(line_at("a\nb\nc", 0) == 1);
    CHECK(line_at("a\nb\nc", 2) == 2);
    CHECK(line_at("a\nb\nc", 4) == 3);
    CHECK(line_at("a\nb", 100) == 2);
    std::string out;
    append_utf8(out, U'A');
    append_utf8(out, U'\u00E9');
    append_utf8(out, U'\u20AC');
    append_utf8(out, U'\U0001F600');
    CHECK(out == "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
}
