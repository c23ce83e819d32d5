// Unit tests of the server's XML charset decoding (examples/schedule_server/xml_charset.hpp):
// how the encoding is found (byte order mark, Content-Type charset, the bytes of "<?xml", the
// declaration, UTF-8 by default), what is refused, and that lines are kept. No server, no Beast.
#include "xml_charset.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <variant>

using namespace schedule_server;
using namespace std::string_literals;

namespace {

/// `text` (each byte one code point: ASCII or ISO-8859-1) in UTF-16 or UTF-32, with or without
/// a byte order mark; `extra` code points (beyond U+00FF) are appended in the same encoding.
std::string widen(std::string_view text, int width, bool big_endian, bool bom,
                  std::u32string_view extra = {}) {
    std::string out;
    const auto unit = [&](std::uint32_t value) {
        for (int i = 0; i < width; ++i) {
            const int shift = big_endian ? 8 * (width - 1 - i) : 8 * i;
            out += static_cast<char>((value >> shift) & 0xFFU);
        }
    };
    const auto put = [&](char32_t code_point) {
        const auto value = static_cast<std::uint32_t>(code_point);
        if (width == 2 && value > 0xFFFFU) {
            unit(0xD800U + ((value - 0x10000U) >> 10U));
            unit(0xDC00U + ((value - 0x10000U) & 0x3FFU));
        } else {
            unit(value);
        }
    };
    if (bom) {
        put(U'\uFEFF');
    }
    for (const char c : text) {
        put(static_cast<unsigned char>(c));
    }
    for (const char32_t c : extra) {
        put(c);
    }
    return out;
}

std::string decoded(std::string_view document, std::string_view content_type = {}) {
    auto result = xml_to_utf8(document, content_type);
    if (auto* error = std::get_if<xml_charset_error>(&result)) {
        FAIL("refused: " << error->message << " (line " << error->line << ")");
    }
    return std::get<std::string>(std::move(result));
}

xml_charset_error refusal(std::string_view document, std::string_view content_type = {}) {
    auto result = xml_to_utf8(document, content_type);
    if (!std::holds_alternative<xml_charset_error>(result)) {
        FAIL("accepted: " << std::get<std::string>(result));
    }
    return std::get<xml_charset_error>(std::move(result));
}

xml_encoding detected(std::string_view document, std::string_view content_type = {}) {
    auto result = detect_xml_encoding(document, content_type);
    if (auto* error = std::get_if<xml_charset_error>(&result)) {
        FAIL("refused: " << error->message);
    }
    return std::get<detected_encoding>(result).encoding;
}

const std::string latin1_declared =
    "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<tv>caf\xE9</tv>\n";

} // namespace

TEST_CASE("charset_parameter reads token and quoted values, any case, among other parameters",
          "[server][unit]") {
    CHECK(charset_parameter("application/xml; charset=ISO-8859-1") == "ISO-8859-1");
    CHECK(charset_parameter("text/xml;CHARSET=\"utf-16\"") == "utf-16");
    CHECK(charset_parameter("text/xml; q=1; charset=latin1 ; x=y") == "latin1");
    CHECK(charset_parameter("text/xml; x=\"a;charset=b\"; charset=l1") == "l1");
    CHECK(charset_parameter("text/xml; charset=\"a\\\"b\"") == "a\"b");
    CHECK_FALSE(charset_parameter("application/xml"));
    CHECK_FALSE(charset_parameter(""));
    CHECK_FALSE(charset_parameter("text/xml; charsets=utf-8"));
}

TEST_CASE("encoding_named knows exactly the names pugixml reads, in any case", "[server][unit]") {
    CHECK(encoding_named("UTF-8") == xml_encoding::utf8);
    CHECK(encoding_named("utf8") == xml_encoding::utf8);
    CHECK(encoding_named("UTF-16") == xml_encoding::utf16be);
    CHECK(encoding_named("utf-16le") == xml_encoding::utf16le);
    CHECK(encoding_named("UTF-32BE") == xml_encoding::utf32be);
    for (const char* latin1 :
         {"ISO-8859-1", "iso-8859-1", "latin1", "L1", "ISO_8859-1", "iso_8859-1:1987"}) {
        CAPTURE(latin1);
        CHECK(encoding_named(latin1) == xml_encoding::latin1);
    }
    CHECK(encoding_named("US-ASCII") == xml_encoding::ascii);
    CHECK(encoding_named("ascii") == xml_encoding::ascii);
    for (const char* other : {"windows-1252", "ISO-8859-15", "koi8-r", "Shift_JIS", "utf-7", ""}) {
        CAPTURE(other);
        CHECK_FALSE(encoding_named(other));
    }
}

TEST_CASE("the encoding comes from the byte order mark, then the charset, then the first bytes "
          "and the declaration, else UTF-8",
          "[server][unit]") {
    CHECK(detected("<tv/>") == xml_encoding::utf8);
    CHECK(detected("\xEF\xBB\xBF<tv/>") == xml_encoding::utf8);
    CHECK(detected(latin1_declared) == xml_encoding::latin1);
    CHECK(detected("<?xml version='1.0' encoding = 'us-ascii' ?><tv/>") == xml_encoding::ascii);
    CHECK(detected("<?xml version=\"1.0\"?><tv/>") == xml_encoding::utf8);
    // The charset over the declaration.
    CHECK(detected(latin1_declared, "text/xml; charset=utf-8") == xml_encoding::utf8);
    CHECK(detected("<?xml version=\"1.0\" encoding=\"UTF-8\"?><tv/>", "text/xml; charset=l1") ==
          xml_encoding::latin1);
    // UTF-16 and UTF-32: by the mark, or by the bytes of "<?".
    CHECK(detected(widen("<tv/>", 2, false, true)) == xml_encoding::utf16le);
    CHECK(detected(widen("<tv/>", 2, true, true)) == xml_encoding::utf16be);
    CHECK(detected(widen("<?xml version=\"1.0\"?><tv/>", 2, false, false)) ==
          xml_encoding::utf16le);
    CHECK(detected(widen("<?xml version=\"1.0\"?><tv/>", 2, true, false)) == xml_encoding::utf16be);
    CHECK(detected(widen("<tv/>", 4, false, true)) == xml_encoding::utf32le);
    CHECK(detected(widen("<tv/>", 4, true, false)) == xml_encoding::utf32be);
    // A charset of UTF-16 without an order takes it from the mark or the bytes.
    CHECK(detected(widen("<tv/>", 2, false, true), "text/xml; charset=utf-16") ==
          xml_encoding::utf16le);
    CHECK(detected(widen("<?xml version=\"1.0\"?><tv/>", 2, false, false),
                   "text/xml; charset=UTF-16") == xml_encoding::utf16le);
}

TEST_CASE("encodings pugixml cannot read are refused by name, and contradictions are refused",
          "[server][unit]") {
    CHECK(refusal("<?xml version=\"1.0\" encoding=\"windows-1252\"?><tv/>").message ==
          "encoding 'windows-1252' is not supported: send UTF-8, UTF-16, UTF-32 or ISO-8859-1");
    CHECK_THAT(refusal("<tv/>", "application/xml; charset=koi8-r").message,
               Catch::Contains("'koi8-r' is not supported"));
    CHECK_THAT(
        refusal(widen("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><tv/>", 2, false, true))
            .message,
        Catch::Contains("'ISO-8859-1' but the document is UTF-16LE"));
    CHECK_THAT(refusal("<?xml version=\"1.0\" encoding=\"UTF-16\"?><tv/>").message,
               Catch::Contains("no byte order mark"));
}

TEST_CASE("a byte order mark outranks the Content-Type charset, as RFC 7303 says",
          "[server][unit]") {
    CHECK(detected("\xEF\xBB\xBF<tv/>", "text/xml; charset=latin1") == xml_encoding::utf8);
    CHECK(detected(widen("<tv/>", 2, true, true), "application/xml; charset=utf-8") ==
          xml_encoding::utf16be);
    // Even a charset the server cannot read: the mark says what the bytes are.
    CHECK(detected("\xEF\xBB\xBF<tv/>", "text/xml; charset=koi8-r") == xml_encoding::utf8);
}

TEST_CASE("ISO-8859-1 and US-ASCII decode to UTF-8; bytes above 0x7F are refused in US-ASCII",
          "[server][unit]") {
    CHECK(decoded(latin1_declared) ==
          "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<tv>caf\xC3\xA9</tv>\n");
    std::string every_byte;
    for (int c = 1; c < 256; ++c) {
        every_byte += static_cast<char>(c);
    }
    const std::string out = decoded(every_byte, "text/xml; charset=latin1");
    CHECK(out.size() == 127 + 2 * 128);
    CHECK(out.substr(out.size() - 2) == "\xC3\xBF");

    const xml_charset_error error =
        refusal("<?xml version=\"1.0\" encoding=\"us-ascii\"?>\n<tv>\n caf\xE9</tv>\n");
    CHECK_THAT(error.message, Catch::Contains("not valid US-ASCII"));
    CHECK(error.line == 3);
}

TEST_CASE("UTF-8 is checked and its byte order mark dropped; an invalid byte names its line",
          "[server][unit]") {
    CHECK(decoded("\xEF\xBB\xBF<tv>caf\xC3\xA9</tv>") == "<tv>caf\xC3\xA9</tv>");
    const xml_charset_error error = refusal("<tv>\n<a/>\n<b>caf\xE9</b></tv>");
    CHECK_THAT(error.message, Catch::Contains("not valid UTF-8"));
    CHECK(error.line == 3);
    // Also when the declaration says UTF-8 but the bytes are ISO-8859-1.
    CHECK(refusal("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\xE9").line == 2);
}

TEST_CASE("UTF-16 and UTF-32 decode with surrogate pairs, keep their lines and refuse broken "
          "units",
          "[server][unit]") {
    const std::string text = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<tv>caf\xE9\n</tv>";
    const std::string utf8 = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<tv>caf\xC3\xA9\n</tv>";
    const std::string text32 = "<?xml version=\"1.0\" encoding=\"utf-32\"?>\n<tv>caf\xE9\n</tv>";
    const std::string utf8_32 =
        "<?xml version=\"1.0\" encoding=\"utf-32\"?>\n<tv>caf\xC3\xA9\n</tv>";
    for (const bool big_endian : {false, true}) {
        for (const bool bom : {false, true}) {
            CAPTURE(big_endian, bom);
            CHECK(decoded(widen(text, 2, big_endian, bom)) == utf8);
            CHECK(decoded(widen(text, 2, big_endian, bom, U"\U0001F600")) ==
                  utf8 + "\xF0\x9F\x98\x80");
            CHECK(decoded(widen(text32, 4, big_endian, bom, U"\U0001F600")) ==
                  utf8_32 + "\xF0\x9F\x98\x80");
        }
    }
    const std::string lines = widen("<tv>\n\n", 2, false, true);
    CHECK(refusal(lines + "\x00\xDC"s).line == 3);      // a low surrogate alone
    CHECK(refusal(lines + "\x00\xD8<\x00"s).line == 3); // a high surrogate alone
    CHECK_THAT(refusal(lines + "<"s).message, Catch::Contains("odd number of bytes"));
    const std::string wide = widen("<tv>\n", 4, true, true);
    CHECK(refusal(wide + "\x00\x11\x00\x00"s).line == 2); // above U+10FFFF
    CHECK(refusal(wide + "\x00\x00\xD8\x00"s).line == 2); // a surrogate
    CHECK_THAT(refusal(wide + "\x00\x00"s).message, Catch::Contains("multiple of 4"));
}
