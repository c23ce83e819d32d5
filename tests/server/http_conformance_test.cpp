// HTTP/1.1 at the door as RFC 9110 and RFC 9112 ask: Host, Expect: 100-continue, absolute-form
// targets, 408 for a request that stops half-way. And text as clients send it: XMLTV guides in
// the encodings the worker's XML parser reads, query values and JSON bodies that are not UTF-8.
#include "support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace srv_test;

namespace {

bool starts_with(std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
}

/// The body of a raw response (after its header).
std::string body_of(const std::string& response) {
    const std::size_t end = response.find("\r\n\r\n");
    return end == std::string::npos ? std::string() : response.substr(end + 4);
}

/// The error body's message ("<missing>" if there is none).
std::string message_of(const http_response& response) {
    return text_of(json_body(response), "message");
}

/// One request written on a raw socket with `Connection: close`; what came back.
std::string raw_exchange(const server_process& server, const std::string& request_line,
                         const std::string& fields = "Host: 127.0.0.1\r\n") {
    return send_raw(server.port(), request_line + "\r\n" + fields + "Connection: close\r\n\r\n", 5s)
        .received;
}

/// A JSON import request of more than 2 MiB (the import body padded with spaces).
std::string large_import_body() {
    return import_body("Large") + std::string(std::size_t{2} << 20, ' ');
}

/// A POST header for /api/import-schedule, without its body.
std::string import_header(std::size_t length, const std::string& fields) {
    return "POST /api/import-schedule HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           "Content-Type: application/json\r\nContent-Length: " +
           std::to_string(length) + "\r\n" + fields + "\r\n";
}

/// A one-channel XMLTV guide whose programme's title (line 4) is `title`, bytes as given; the
/// declaration names `encoding` (none when empty).
std::string guide(std::string_view encoding, std::string_view title) {
    std::string out = "<?xml version=\"1.0\"";
    if (!encoding.empty()) {
        out += " encoding=\"" + std::string(encoding) + "\"";
    }
    out += "?>\n<tv>\n  <channel id=\"radio-x\"><display-name>Radio X</display-name></channel>\n"
           "  <programme start=\"20261202090000 +0100\" stop=\"20261202093000 +0100\" "
           "channel=\"radio-x\"><title>";
    out += title;
    out += "</title></programme>\n</tv>\n";
    return out;
}

/// `latin1` (each byte one code point) in UTF-16 (`width` 2) or UTF-32 (`width` 4).
std::string widen(std::string_view latin1, int width, bool big_endian, bool bom) {
    std::string out;
    const auto put = [&](std::uint32_t code_point) {
        for (int i = 0; i < width; ++i) {
            const int shift = big_endian ? 8 * (width - 1 - i) : 8 * i;
            out += static_cast<char>((code_point >> shift) & 0xFFU);
        }
    };
    if (bom) {
        put(0xFEFF);
    }
    for (const char c : latin1) {
        put(static_cast<unsigned char>(c));
    }
    return out;
}

/// POSTs an XMLTV guide for channel radio-x.
http_response import_guide(const server_process& server, const std::string& guide_bytes,
                           const std::string& content_type = "application/xml") {
    return request(server.port(), "POST", "/api/import-schedule?channel=radio-x", guide_bytes,
                   {{"Content-Type", content_type}});
}

/// The title of the first item of schedule `id`, as export-schedule-json answers it.
std::string exported_title(const server_process& server, std::int64_t id) {
    const http_response response = server.get("/api/export-schedule-json?id=" + std::to_string(id));
    if (response.status != 200) {
        return "<status " + std::to_string(response.status) + ">";
    }
    const json::object body = json_body(response);
    return text_of(body.at("schedule").as_object().at("items").as_array().at(0).as_object(),
                   "title");
}

} // namespace

// ---- Host (RFC 9112 section 3.2) ----------------------------------------------------------

TEST_CASE("an HTTP/1.1 request without Host, with two Host lines or an invalid Host gets 400",
          "[server]") {
    server_process server(server_config{});
    for (const char* fields : {"", "Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n", "Host: two words\r\n",
                               "Host: example.org:80x\r\n", "Host: example.org/path\r\n",
                               "Host: [::1\r\n", "Host: a@example.org\r\n"}) {
        CAPTURE(fields);
        const std::string answer = raw_exchange(server, "GET /healthz HTTP/1.1", fields);
        CHECK(starts_with(answer, "HTTP/1.1 400 "));
        CHECK(contains(body_of(answer), "Host"));
    }
    for (const char* fields : {"Host: 127.0.0.1\r\n", "Host: 127.0.0.1:5000\r\n",
                               "Host: [::1]:80\r\n", "Host: Example.org\r\n", "Host: \r\n"}) {
        CAPTURE(fields);
        CHECK(starts_with(raw_exchange(server, "GET /healthz HTTP/1.1", fields), "HTTP/1.1 200 "));
    }
    // HTTP/1.0 has no Host requirement.
    CHECK(contains(raw_exchange(server, "GET /healthz HTTP/1.0", ""), " 200 OK\r\n"));
}

// ---- Expect: 100-continue (RFC 9110 section 10.1.1) -----------------------------------------

TEST_CASE("Expect: 100-continue is answered 100 Continue before the body, then the final answer",
          "[server]") {
    server_config config;
    config.auth_token = "s3cret";
    server_process server(config);
    const std::string body = large_import_body();

    raw_connection client(server.port());
    client.send(import_header(body.size(), "Authorization: Bearer s3cret\r\n"
                                           "Expect: 100-continue\r\n"));
    const std::string interim = client.read_response(5s);
    REQUIRE(starts_with(interim, "HTTP/1.1 100 Continue\r\n"));
    client.send(body);
    const std::string answer = client.read_response(20s);
    INFO(answer.substr(0, 600));
    CHECK(starts_with(answer, "HTTP/1.1 200 "));
    CHECK(schedule_count(server) == 1);

    // A client that does not wait for the 100 (curl sends the body after 1 s anyway) gets it
    // too, then the final answer.
    raw_connection eager(server.port());
    const std::string small = import_body("Eager");
    eager.send(import_header(small.size(), "Authorization: Bearer s3cret\r\n"
                                           "Expect: 100-continue\r\n") +
               small);
    CHECK(starts_with(eager.read_response(5s), "HTTP/1.1 100 Continue\r\n"));
    CHECK(starts_with(eager.read_response(10s), "HTTP/1.1 200 "));
    CHECK(schedule_count(server) == 2);
}

TEST_CASE("Expect: 100-continue on a refused request gets the final status at once, no 100, and "
          "the connection closed",
          "[server]") {
    server_config config;
    config.auth_token = "s3cret";
    config.body_limit = 1 << 20;
    server_process server(config);
    const std::string token = "Authorization: Bearer s3cret\r\n";
    const std::string expect = "Expect: 100-continue\r\n";

    struct refusal {
        std::string header;
        const char* status;
    };
    const std::vector<refusal> refusals{
        {import_header(1000, expect), "401"},
        {import_header(1000, "Authorization: Bearer wrong\r\n" + expect), "401"},
        {import_header(std::size_t{2} << 20, token + expect), "413"},
        {"POST /api/import-schedule HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
         "Content-Length: 1000\r\n" +
             token + expect + "\r\n",
         "415"},
        {"POST /api/nothing-here HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n" + expect +
             "\r\n",
         "404"},
        {"POST /api/schedules HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n" + expect +
             "\r\n",
         "405"},
        {import_header(1000, token + "Expect: something-else\r\n"), "417"},
    };
    for (const refusal& tried : refusals) {
        CAPTURE(tried.header, tried.status);
        raw_connection client(server.port());
        client.send(tried.header);
        const std::string answer = client.read_response(3s);
        CHECK(starts_with(answer, std::string("HTTP/1.1 ") + tried.status + " "));
        CHECK(contains(answer, "Connection: close\r\n"));
        CHECK(client.closed_within(3s));
    }
    CHECK(schedule_count(server) == 0);
}

TEST_CASE("Expect: 100-continue while the queue is full gets 503 at once", "[server]") {
    server_config config;
    config.pool_size = 1;
    config.queue_capacity = 0;
    config.worker_delay_ms = 1500;
    server_process server(config);

    http_response first;
    std::thread running([&] { first = try_request(server.port(), "GET", "/api/schedules"); });
    const bool started =
        wait_until([&] { return int_of(server.pool_stats(), "activeProcesses") == 1; }, 5s);
    raw_connection client(server.port());
    const std::string body = import_body("Refused");
    client.send(import_header(body.size(), "Expect: 100-continue\r\n"));
    const std::string answer = client.read_response(1s);
    running.join();
    REQUIRE(started);
    CHECK(starts_with(answer, "HTTP/1.1 503 "));
    CHECK(contains(answer, "Retry-After: "));
    CHECK(first.status == 200);
}

// ---- Request targets (RFC 9112 section 3.2) -----------------------------------------------

TEST_CASE("an absolute-form target is served by its path and query; malformed targets get 400",
          "[server]") {
    server_process server(server_config{});
    {
        const std::string answer =
            raw_exchange(server, "GET http://127.0.0.1:5000/healthz HTTP/1.1");
        CHECK(starts_with(answer, "HTTP/1.1 200 "));
        CHECK(json_body(http_response{200, {}, body_of(answer)}).at("healthy").as_bool());
    }
    {
        // The target's authority, not Host, names the server; the query is kept.
        const std::string answer = raw_exchange(
            server, "GET HTTP://Example.ORG/api/infowars-videos?offset=0&limit=1 HTTP/1.1",
            "Host: elsewhere.example\r\n");
        INFO(answer);
        CHECK(starts_with(answer, "HTTP/1.1 200 "));
        CHECK(json_body(http_response{200, {}, body_of(answer)}).at("videos").as_array().size() ==
              1);
    }
    for (const char* line :
         {"GET http:///healthz HTTP/1.1", "GET http://user@127.0.0.1/healthz HTTP/1.1",
          "GET ftp://127.0.0.1/healthz HTTP/1.1", "GET http:/healthz HTTP/1.1",
          "GET http://127.0.0.1:80x/healthz HTTP/1.1", "GET healthz HTTP/1.1",
          "GET 127.0.0.1:5000 HTTP/1.1", "GET * HTTP/1.1"}) {
        CAPTURE(line);
        const std::string answer = raw_exchange(server, line);
        CHECK(starts_with(answer, "HTTP/1.1 400 "));
    }
    // Asterisk-form belongs to OPTIONS (answered with what the server allows); authority-form
    // to CONNECT, which an origin server does not do.
    {
        const std::string answer = raw_exchange(server, "OPTIONS * HTTP/1.1");
        CHECK(starts_with(answer, "HTTP/1.1 204 "));
        CHECK(contains(answer, "Allow: GET, POST\r\n"));
    }
    {
        const std::string answer = raw_exchange(server, "CONNECT 127.0.0.1:5000 HTTP/1.1");
        CHECK(starts_with(answer, "HTTP/1.1 405 "));
        CHECK(contains(answer, "Allow: GET, POST\r\n"));
    }
}

// ---- Timeouts -----------------------------------------------------------------------------

TEST_CASE("a request that stops before its header ends gets 408 and Connection close; an idle "
          "connection is closed silently",
          "[server]") {
    server_config config;
    config.extra_arguments = {"--header-timeout-ms", "300", "--idle-timeout-ms", "600",
                              "--body-timeout-ms",   "300"};
    server_process server(config);

    for (const char* partial : {"GET /heal", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                                "POST /api/import-schedule HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"}) {
        CAPTURE(partial);
        const auto sent = std::chrono::steady_clock::now();
        const raw_answer answer = send_raw(server.port(), partial, 5s);
        const auto took = std::chrono::steady_clock::now() - sent;
        CHECK(starts_with(answer.received, "HTTP/1.1 408 "));
        CHECK(contains(answer.received, "Connection: close\r\n"));
        CHECK(answer.closed);
        CHECK(took >= 250ms);
        CHECK(took < 3s);
    }
    {
        // Nothing sent: closed after the idle timeout, without a word.
        const raw_answer answer = send_raw(server.port(), "", 5s);
        CHECK(answer.closed);
        CHECK(answer.received.empty());
    }
    {
        // Keep-alive after one answered request: no byte of a next one, so no 408 either.
        const raw_answer answer =
            send_raw(server.port(), "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 5s);
        CHECK(answer.closed);
        CHECK(starts_with(answer.received, "HTTP/1.1 200 "));
        CHECK_FALSE(contains(answer.received, "408"));
    }
    // The server serves on.
    CHECK(server.get("/healthz").status == 200);
}

// ---- Text encodings -----------------------------------------------------------------------

TEST_CASE("an XMLTV guide in ISO-8859-1 imports and its text comes back as UTF-8", "[server]") {
    server_process server(server_config{});
    const std::string title_latin1 = "Caf\xE9 du matin \xE0 l'\xE9t\xE9";
    const std::string title_utf8 = "Caf\xC3\xA9 du matin \xC3\xA0 l'\xC3\xA9t\xC3\xA9";

    SECTION("named by the XML declaration") {
        // The worker reads the decoded text as UTF-8 whatever the declaration still says.
        const http_response response = import_guide(server, guide("ISO-8859-1", title_latin1));
        INFO(response.body);
        REQUIRE(response.status == 200);
        CHECK(exported_title(server, int_of(json_body(response), "id")) == title_utf8);
    }
    SECTION("named by the Content-Type charset, over the declaration") {
        const http_response response =
            import_guide(server, guide("UTF-8", title_latin1), "text/xml; charset=\"latin1\"");
        INFO(response.body);
        REQUIRE(response.status == 200);
        CHECK(exported_title(server, int_of(json_body(response), "id")) == title_utf8);
    }
}

TEST_CASE("XMLTV guides in UTF-16 and UTF-32 import, with or without a byte order mark",
          "[server]") {
    server_process server(server_config{});
    const std::string title_latin1 = "Caf\xE9";
    struct form {
        int width;
        bool big_endian;
        bool bom;
        const char* declared;
    };
    for (const form& tried : {form{2, false, true, "UTF-16"}, form{2, true, true, "UTF-16"},
                              form{2, true, false, "UTF-16"}, form{4, false, true, ""},
                              form{4, true, false, "UTF-32"}}) {
        CAPTURE(tried.width, tried.big_endian, tried.bom);
        const http_response response =
            import_guide(server, widen(guide(tried.declared, title_latin1), tried.width,
                                       tried.big_endian, tried.bom));
        INFO(response.body);
        REQUIRE(response.status == 200);
        CHECK(exported_title(server, int_of(json_body(response), "id")) == "Caf\xC3\xA9");
    }
}

TEST_CASE("an XMLTV guide in an encoding the worker cannot read gets 400 naming the encoding; "
          "invalid bytes get 400 naming the line",
          "[server]") {
    server_process server(server_config{});
    {
        const http_response response = import_guide(server, guide("windows-1252", "Caf\xE9"));
        INFO(response.body);
        CHECK(response.status == 400);
        CHECK(contains(message_of(response), "'windows-1252' is not supported"));
    }
    {
        const http_response response =
            import_guide(server, guide("", "Caf\xE9"), "application/xml; charset=koi8-r");
        INFO(response.body);
        CHECK(response.status == 400);
        CHECK(contains(message_of(response), "'koi8-r'"));
    }
    for (const char* encoding : {"UTF-8", "", "US-ASCII"}) {
        CAPTURE(encoding);
        const http_response response = import_guide(server, guide(encoding, "Caf\xE9"));
        INFO(response.body);
        CHECK(response.status == 400);
        const json::object body = json_body(response);
        CHECK(contains(text_of(body, "message"), "not valid"));
        CHECK(text_of(body, "field") == "xmltv");
        CHECK(int_of(body, "line") == 4);
    }
    CHECK(schedule_count(server) == 0);
}

TEST_CASE("a query value or a JSON body that is not UTF-8 gets 400 saying so", "[server]") {
    server_process server(server_config{});
    {
        const http_response response =
            request(server.port(), "POST", "/api/import-schedule?name=%FF", xmltv_body,
                    {{"Content-Type", "application/xml"}});
        INFO(response.body);
        CHECK(response.status == 400);
        CHECK(message_of(response) == "query parameter 'name' is not valid UTF-8");
    }
    {
        const http_response response = server.get("/api/export-schedule-json?id%C3=1");
        INFO(response.body);
        CHECK(response.status == 400);
        CHECK(contains(message_of(response), "not valid UTF-8"));
    }
    {
        const std::string body = "{\"name\":\"Monday\",\n\"channel\":\"caf\xE9\",\"items\":[]}";
        const http_response response = server.post_json("/api/import-schedule", body);
        INFO(response.body);
        CHECK(response.status == 400);
        const json::object answer = json_body(response);
        CHECK(contains(text_of(answer, "message"), "not valid UTF-8"));
        CHECK(contains(text_of(answer, "message"), "byte 32"));
        CHECK(int_of(answer, "line") == 2);
    }
    CHECK(schedule_count(server) == 0);
}

TEST_CASE("import-schedule passes the overlap query parameter to the worker with an XMLTV body",
          "[server]") {
    server_process server(server_config{});
    const http_response response =
        request(server.port(), "POST", "/api/import-schedule?channel=radio-x&overlap=trim",
                xmltv_body, {{"Content-Type", "application/xml"}});
    INFO(response.body);
    CHECK_FALSE(contains(response.body, "unknown query parameter"));
    CHECK(response.status == 200);
}

// ---- Refusals that quote what the client sent --------------------------------------------

TEST_CASE("a refusal quoting a path or header with bytes that are not ASCII is still UTF-8 JSON",
          "[server]") {
    // Found by btq_fuzz_request_path: the 404 quoted a raw path byte, the 415 and 417 a raw
    // Content-Type or Expect, and their JSON bodies were not UTF-8.
    server_process server(server_config{});
    const struct {
        std::string request_line;
        std::string fields;
        std::string status;
        std::string quoted;
    } cases[] = {
        {"GET /api/\xD9schedules HTTP/1.1", "Host: 127.0.0.1\r\n", "400", "/api/%D9schedules"},
        {"POST /api/schedule-playlist HTTP/1.1",
         "Host: 127.0.0.1\r\nContent-Type: applic\x9F\x8Bon\r\nContent-Length: 2\r\n", "415",
         "applic%9F%8Bon"},
        {"GET /healthz HTTP/1.1", "Host: 127.0.0.1\r\nExpect: caf\xE9\r\n", "417", "caf%E9"},
    };
    for (const auto& item : cases) {
        CAPTURE(item.request_line, item.status);
        std::string raw = item.request_line + "\r\n" + item.fields + "Connection: close\r\n\r\n";
        if (item.status == "415") {
            raw += "{}";
        }
        const std::string answer = send_raw(server.port(), raw, 5s).received;
        INFO(answer);
        CHECK(answer.rfind("HTTP/1.1 " + item.status, 0) == 0);
        const std::size_t body_at = answer.find("\r\n\r\n");
        REQUIRE(body_at != std::string::npos);
        const std::string body = answer.substr(body_at + 4);
        const json::object object = json_body(http_response{0, {}, body});
        CHECK(contains(text_of(object, "message"), item.quoted));
        // The quoted bytes percent-encoded: the body is plain ASCII.
        CHECK(std::all_of(body.begin(), body.end(),
                          [](char c) { return static_cast<unsigned char>(c) < 0x80U; }));
    }
}
