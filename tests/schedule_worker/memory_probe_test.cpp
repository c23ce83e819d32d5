// The memory_probe operation: in once mode it touches and reports what it was asked for, refuses
// requests above its caps, and under a memory limit it ends (status 1, no answer) when an
// allocation is refused, so the caller sees a run stopped at its limit.
#include <catch2/catch.hpp>

#include <btq/btq.hpp>
#include <btq/executors/subprocess_executor.hpp>

#include <optional>
#include <string>

#include "../common/sanitizers.hpp"
#include "memory_probe.hpp"
#include "support.hpp"

using namespace sw_test;

namespace {

constexpr std::int64_t mebibyte = std::int64_t{1} << 20;

} // namespace

TEST_CASE("memory_probe touches the MiB asked for and reports its peak resident size", "[worker]") {
    temp_dir dir;
    const answer probe =
        cli(dir.path(), "memory_probe", R"({"megabytes":8,"step_megabytes":3,"step_ms":1})");
    INFO(probe.text);
    CHECK(probe.exit_code == 0);
    CHECK(probe.status() == "success");
    CHECK(num(probe.obj().at("touchedBytes")) == 8 * mebibyte);
    CHECK(num(probe.obj().at("peakResidentBytes")) >= 8 * mebibyte);
}

TEST_CASE("memory_probe refuses a request above its caps naming the field", "[worker]") {
    temp_dir dir;
    const std::pair<const char*, const char*> cases[] = {
        {R"({"megabytes":2049})", "megabytes"},
        {R"({})", "megabytes"},
        {R"({"megabytes":1,"hold_ms":60001})", "hold_ms"},
        {R"({"megabytes":1,"step_megabytes":0})", "step_megabytes"},
        {R"({"megabytes":1,"step_ms":-1})", "step_ms"},
        {R"({"megabytes":"1"})", "megabytes"},
    };
    for (const auto& [request, field] : cases) {
        CAPTURE(request);
        const answer refused = cli(dir.path(), "memory_probe", request);
        INFO(refused.text);
        CHECK(refused.exit_code == 2);
        CHECK(refused.code() == "invalid_input");
        CHECK(refused.field() == field);
    }
    CHECK_THROWS_AS(schedule::parse_memory_probe_request(R"({"megabytes":4096})"),
                    schedule::input_error);
}

// Under ASan or TSan the worker cannot start at all below an RLIMIT_DATA of 48 MiB: the
// sanitizer's runtime reserves terabytes of shadow memory first ("ReserveShadowMemoryRange
// failed ... Perhaps you're using ulimit -v"). The checks of a data limit set by RLIMIT_DATA are
// left out there; the cgroup's limit is still checked.
using btq_test::under_sanitizer;

TEST_CASE("memory_probe refused memory by RLIMIT_DATA says so and ends with status 1, no answer",
          "[worker]") {
    if (under_sanitizer()) {
        WARN("left out under a sanitizer: its runtime cannot start under RLIMIT_DATA");
        return;
    }
    temp_dir dir;
    btq::bounded_task_queue<btq::command, btq::subprocess_executor> queue({.max_concurrency = 1});
    // The shell sets the limit, so no watchdog of btq's races the refusal.
    btq::command probe{
        .program = "/bin/sh",
        .arguments = {"-c", "ulimit -d 49152 && exec \"$0\" --data-dir \"$1\" memory_probe",
                      worker_binary.string(), dir.path().string()}};
    probe.standard_input = R"({"megabytes":256})";
    const btq::process_result result = queue.submit(std::move(probe)).get();
    INFO(result.standard_error);
    CHECK(result.ending == btq::process_ending::exited);
    CHECK(result.exit_code == 1);
    CHECK(result.standard_output.empty());
    CHECK(result.standard_error.find("memory_probe: allocation refused") != std::string::npos);
}

TEST_CASE("memory_probe past its memory_limit ends memory_limit with no answer under every "
          "mechanism",
          "[worker]") {
    temp_dir dir;
    for (const std::optional<std::string>& parent :
         {std::optional<std::string>(""), std::optional<std::string>()}) {
        const btq::memory_limit_mechanism mechanism = btq::set_memory_cgroup_parent(parent);
        INFO("mechanism " << btq::to_string(mechanism));
        if (under_sanitizer() && mechanism == btq::memory_limit_mechanism::rlimit_and_watchdog) {
            continue; // RLIMIT_DATA: see above
        }
        btq::bounded_task_queue<btq::command, btq::subprocess_executor> queue(
            {.max_concurrency = 1});
        btq::command probe{.program = worker_binary.string(),
                           .arguments = {"--data-dir", dir.path().string(), "memory_probe"}};
        probe.standard_input = R"({"megabytes":256})";
        probe.memory_limit = std::size_t{48} << 20;
        const btq::process_result result = queue.submit(std::move(probe)).get();
        INFO(result.standard_error);
        CHECK(result.ending == btq::process_ending::memory_limit);
        CHECK(result.standard_output.empty());
    }
    (void)btq::set_memory_cgroup_parent(std::nullopt);
}
