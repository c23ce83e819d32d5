// Round trips: import JSON -> export XMLTV -> import XMLTV -> export JSON gives the same
// schedule; export-schedule-json's object is itself an import request; the all-schedules
// document has one channel per distinct channel.
#include <catch2/catch.hpp>

#include <pugixml.hpp>

#include <set>
#include <string>

#include "support.hpp"

using namespace sw_test;

namespace {

/// A schedule object without the fields a new import changes (id, created_at).
json::object comparable(json::object schedule) {
    schedule.erase("id");
    schedule.erase("created_at");
    return schedule;
}

std::string id_request(const answer& a) {
    return R"({"id":)" + std::to_string(num(a.obj().at("id"))) + "}";
}

constexpr const char* source = R"({"name":"Round <trip> & \"more\" \u00e9","channel":"rt.1",
  "items":[
    {"title":"Ampersand & <angle> \"quote\" 'apos'","url":"http://example.org/a?x=1&y=2",
     "start":"2026-11-30T08:00:00+01:00","duration":1800},
    {"title":"No url","start":"2026-11-30T08:30:00+01:00","duration":60},
    {"title":"Unicode \u20ac \ud83d\udcfa","url":"http://example.org/u",
     "start":"2026-11-30T23:59:59+01:00","duration":604800}]})";

} // namespace

TEST_CASE("XMLTV round trip: import JSON, export XML, import XML, export JSON gives the same "
          "schedule") {
    const std::string mode = GENERATE("cli", "service");
    INFO("mode: " << mode);
    temp_dir dir;
    schedule::service svc(dir.path());
    const runner run = [&](const std::string& op, std::string_view request) {
        return mode == "cli" ? cli(dir.path(), op, request) : in_process(svc, op, request);
    };

    const answer first = run("import-schedule", source);
    INFO(first.text);
    REQUIRE(first.status() == "success");
    const answer first_json = run("export-schedule-json", id_request(first));
    REQUIRE(first_json.status() == "success");
    const answer xml = run("export-schedule-xml", id_request(first));
    REQUIRE(xml.status() == "success");

    json::object xml_request;
    xml_request["xmltv"] = xml.obj().at("xml");
    const answer second = run("import-schedule", json::serialize(xml_request));
    INFO(second.text);
    REQUIRE(second.status() == "success");
    CHECK(num(second.obj().at("id")) != num(first.obj().at("id")));
    const answer second_json = run("export-schedule-json", id_request(second));
    REQUIRE(second_json.status() == "success");
    CHECK(comparable(second_json.obj().at("schedule").as_object()) ==
          comparable(first_json.obj().at("schedule").as_object()));

    // The XML export of the re-imported schedule is the same document.
    const answer xml2 = run("export-schedule-xml", id_request(second));
    CHECK(str(xml2.obj().at("xml")) == str(xml.obj().at("xml")));
}

TEST_CASE("export-schedule-json's schedule object imports as the same schedule") {
    temp_dir dir;
    schedule::service svc(dir.path());
    const answer first = in_process(svc, "import-schedule", source);
    REQUIRE(first.status() == "success");
    const answer exported = in_process(svc, "export-schedule-json", id_request(first));
    REQUIRE(exported.status() == "success");
    const std::string request = json::serialize(exported.obj().at("schedule"));
    // The parser alone accepts it too.
    const auto parsed = schedule::parse_schedule_request(request);
    CHECK(parsed.items.size() == 3);
    const answer second = cli(dir.path(), "import-schedule", request);
    INFO(second.text);
    REQUIRE(second.status() == "success");
    const answer again = in_process(svc, "export-schedule-json", id_request(second));
    CHECK(comparable(again.obj().at("schedule").as_object()) ==
          comparable(exported.obj().at("schedule").as_object()));
}

TEST_CASE("import-schedule reads XMLTV: name from display-name, channel picked, optional url") {
    temp_dir dir;
    schedule::service svc(dir.path());
    const std::string xml = R"(<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE tv SYSTEM "xmltv.dtd">
<tv generator-info-name="test">
  <channel id="one"><display-name>Channel One</display-name></channel>
  <channel id="two"><display-name>Channel Two</display-name></channel>
  <programme start="20261130080000 +0100" stop="20261130083000 +0100" channel="one">
    <title lang="en">Morning</title><url>http://example.org/m</url><desc>ignored</desc>
  </programme>
  <programme start="20261130083000 +0100" stop="20261130090000 +0100" channel="one">
    <title>Later</title>
  </programme>
  <programme start="20261130080000 +0000" stop="20261130090000 +0000" channel="two">
    <title>Other</title>
  </programme>
</tv>)";
    json::object request;
    request["xmltv"] = xml;
    request["channel"] = "one";
    const answer a = in_process(svc, "import-schedule", json::serialize(request));
    INFO(a.text);
    REQUIRE(a.status() == "success");
    const auto& s = a.obj().at("schedule").as_object();
    CHECK(str(s.at("name")) == "Channel One");
    CHECK(str(s.at("channel")) == "one");
    const auto& items = s.at("items").as_array();
    REQUIRE(items.size() == 2);
    CHECK(str(items[0].as_object().at("title")) == "Morning");
    CHECK(str(items[0].as_object().at("url")) == "http://example.org/m");
    CHECK(str(items[0].as_object().at("start")) == "2026-11-30T08:00:00+01:00");
    CHECK(num(items[0].as_object().at("duration")) == 1800);
    CHECK(items[1].as_object().if_contains("url") == nullptr);

    // Without a channel, two channels are an error; with a name, the name wins.
    json::object both;
    both["xmltv"] = xml;
    CHECK(in_process(svc, "import-schedule", json::serialize(both)).code() == "invalid_input");
    request["name"] = "Given";
    request["channel"] = "two";
    const answer b = in_process(svc, "import-schedule", json::serialize(request));
    REQUIRE(b.status() == "success");
    CHECK(str(b.obj().at("schedule").as_object().at("name")) == "Given");

    // No display-name: the name is the channel id.
    json::object bare;
    bare["xmltv"] =
        R"(<tv><programme start="20261130080000 +0000" stop="20261130090000 +0000" channel="solo"><title>x</title></programme></tv>)";
    const answer c = in_process(svc, "import-schedule", json::serialize(bare));
    INFO(c.text);
    REQUIRE(c.status() == "success");
    CHECK(str(c.obj().at("schedule").as_object().at("name")) == "solo");
}

TEST_CASE("export-all-schedules-xml re-imports channel by channel") {
    temp_dir dir;
    schedule::service svc(dir.path());
    REQUIRE(in_process(svc, "import-schedule", import_request("A", 3, "one")).status() ==
            "success");
    REQUIRE(in_process(svc, "import-schedule", import_request("B", 2, "two")).status() ==
            "success");
    const answer all = in_process(svc, "export-all-schedules-xml", "{}");
    REQUIRE(all.status() == "success");
    pugi::xml_document doc;
    REQUIRE(doc.load_string(str(all.obj().at("xml")).c_str()));
    std::set<std::string> ids;
    std::size_t channels = 0;
    for (auto c : doc.child("tv").children("channel")) {
        ids.insert(c.attribute("id").value());
        ++channels;
    }
    CHECK(channels == 2);
    CHECK(ids == std::set<std::string>{"one", "two"});
    for (const char* channel : {"one", "two"}) {
        json::object request;
        request["xmltv"] = all.obj().at("xml");
        request["channel"] = channel;
        const answer a = in_process(svc, "import-schedule", json::serialize(request));
        INFO(a.text);
        REQUIRE(a.status() == "success");
        CHECK(a.obj().at("schedule").as_object().at("items").as_array().size() ==
              (std::string(channel) == "one" ? 3U : 2U));
    }
}
