// The server's JSON writer: Boost.JSON values written as Boost.JSON writes them, except doubles.
#include "json_text.hpp"

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <limits>

namespace json = boost::json;
using schedule_server::to_json_text;

TEST_CASE("to_json_text writes doubles as people read them, not in Boost's E notation",
          "[server][json]") {
    CHECK(to_json_text(json::value(25.5)) == "25.5");
    CHECK(to_json_text(json::value(0.412)) == "0.412");
    CHECK(to_json_text(json::value(0.001)) == "0.001");
    CHECK(to_json_text(json::value(-3.25)) == "-3.25");
    CHECK(to_json_text(json::value(25.0)) == "25");
    CHECK(to_json_text(json::value(1e21)) == "1e+21");
    // Every double comes back exactly when read again.
    for (const double number : {0.1, 1.0 / 3.0, 123456.789, 5e-324, 1.7976931348623157e308}) {
        CHECK(json::parse(to_json_text(json::value(number))).as_double() == number);
    }
}

TEST_CASE("to_json_text writes a non-finite double as null, keeping the text valid JSON",
          "[server][json]") {
    CHECK(to_json_text(json::value(std::numeric_limits<double>::infinity())) == "null");
    CHECK(to_json_text(json::value(std::numeric_limits<double>::quiet_NaN())) == "null");
}

TEST_CASE("to_json_text writes objects, arrays, strings and integers as Boost.JSON does",
          "[server][json]") {
    const json::value nested = {
        {"status", "success"},
        {"count", 3},
        {"big", std::numeric_limits<std::uint64_t>::max()},
        {"negative", -7},
        {"flags", json::array{true, false, nullptr}},
        {"text", "quote \" backslash \\ newline \n control \x01 é"},
        {"nested", json::object{{"ms", 1.5}, {"empty", json::array{}}}},
    };
    const std::string text = to_json_text(nested);
    CHECK(json::parse(text) == nested);
    CHECK(text == R"({"status":"success","count":3,"big":18446744073709551615,"negative":-7,)"
                  R"("flags":[true,false,null],"text":"quote \" backslash \\ newline \n control )"
                  R"(\u0001 é","nested":{"ms":1.5,"empty":[]}})");
    CHECK(to_json_text(json::object{}) == "{}");
    CHECK(to_json_text(json::object{{"key \"q\"", 1}}) == R"({"key \"q\"":1})");
}
