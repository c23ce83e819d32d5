// The memory flags' values (byte_size.hpp): sizes with K/M/G and KiB/MiB/GiB as powers of 1024,
// percentages from 0 to 100, and sizes written for people.
#include "byte_size.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <variant>

using schedule_server::describe_byte_size;
using schedule_server::parse_byte_size;
using schedule_server::parse_percent;

namespace {

std::uint64_t size_of(std::string_view text) {
    const auto parsed = parse_byte_size(text);
    if (const auto* message = std::get_if<std::string>(&parsed)) {
        FAIL("'" << text << "' refused: " << *message);
    }
    return std::get<std::uint64_t>(parsed);
}

std::string size_error(std::string_view text) {
    const auto parsed = parse_byte_size(text);
    const auto* message = std::get_if<std::string>(&parsed);
    return message != nullptr ? *message : std::string("<accepted>");
}

std::string percent_error(std::string_view text) {
    const auto parsed = parse_percent(text);
    const auto* message = std::get_if<std::string>(&parsed);
    return message != nullptr ? *message : std::string("<accepted>");
}

} // namespace

TEST_CASE("parse_byte_size reads bytes and K M G KiB MiB GiB as powers of 1024 in any case",
          "[server][byte_size]") {
    CHECK(size_of("0") == 0);
    CHECK(size_of("1048576") == 1048576);
    CHECK(size_of("1K") == 1024);
    CHECK(size_of("256M") == 256ULL << 20);
    CHECK(size_of("256m") == 256ULL << 20);
    CHECK(size_of("2G") == 2ULL << 30);
    CHECK(size_of("1000G") == 1000ULL << 30);
    CHECK(size_of("4KiB") == 4096);
    CHECK(size_of("64MiB") == 64ULL << 20);
    CHECK(size_of("64mib") == 64ULL << 20);
    CHECK(size_of("3GiB") == 3ULL << 30);
    CHECK(size_of("18446744073709551615") == UINT64_MAX);
    CHECK(size_of("17179869183G") == 17179869183ULL << 30);
}

TEST_CASE("parse_byte_size refuses garbage signs fractions spaces other units and overflow",
          "[server][byte_size]") {
    for (const char* text : {"", "M", "abc", "-1", "-64M", "+64M", "1.5G", " 64M", "64M ", "64 M",
                             "64MB", "64T", "64Mi", "0x40", "64M64"}) {
        CAPTURE(text);
        CHECK_THAT(size_error(text), Catch::Contains("is not a size"));
    }
    for (const char* text : {"18446744073709551616", "17179869184G", "99999999999999999999999M",
                             "18014398509481984K"}) {
        CAPTURE(text);
        CHECK_THAT(size_error(text), Catch::Contains("too large"));
    }
}

TEST_CASE("parse_percent takes 0 to 100 and refuses the rest", "[server][byte_size]") {
    CHECK(std::get<double>(parse_percent("0")) == 0.0);
    CHECK(std::get<double>(parse_percent("12.5")) == 12.5);
    CHECK(std::get<double>(parse_percent("100")) == 100.0);
    for (const char* text : {"100.5", "101", "-1", "-0.1"}) {
        CAPTURE(text);
        CHECK_THAT(percent_error(text), Catch::Contains("outside 0 to 100"));
    }
    for (const char* text : {"", "abc", "10%", "nan", "inf", "1e2", " 5", "5 "}) {
        CAPTURE(text);
        CHECK_THAT(percent_error(text), Catch::Contains("is not a percentage"));
    }
}

TEST_CASE("describe_byte_size writes the largest unit that divides the size",
          "[server][byte_size]") {
    CHECK(describe_byte_size(256ULL << 20) == "256 MiB");
    CHECK(describe_byte_size(64ULL << 20) == "64 MiB");
    CHECK(describe_byte_size(1ULL << 30) == "1 GiB");
    CHECK(describe_byte_size(1536ULL << 20) == "1536 MiB");
    CHECK(describe_byte_size(4096) == "4 KiB");
    CHECK(describe_byte_size(1000) == "1000 bytes");
    CHECK(describe_byte_size(1) == "1 byte");
    CHECK(describe_byte_size(0) == "0 bytes");
}
