// The memory limit mechanisms a test runs under: every one this host offers.
#pragma once

#include <btq/process/memory_limit.hpp>

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

namespace btq_test {

/// RLIMIT_DATA always; a memory cgroup one where this process may make memory cgroups.
inline std::vector<btq::memory_limit_mechanism> memory_mechanisms_here() {
    std::vector<btq::memory_limit_mechanism> here{btq::memory_limit_mechanism::rlimit_and_watchdog};
    const btq::memory_limit_mechanism automatic = btq::set_memory_cgroup_parent(std::nullopt);
    if (automatic != btq::memory_limit_mechanism::rlimit_and_watchdog) {
        here.push_back(automatic);
    } else {
        WARN("no memory cgroup can be made here: only rlimit_and_watchdog is tested");
    }
    return here;
}

/// Makes `mechanism` the one of the limited children started from now on.
inline void use_memory_mechanism(btq::memory_limit_mechanism mechanism) {
    const bool rlimit = mechanism == btq::memory_limit_mechanism::rlimit_and_watchdog;
    REQUIRE(btq::set_memory_cgroup_parent(rlimit ? std::optional<std::string>("")
                                                 : std::optional<std::string>()) == mechanism);
}

/// One of memory_mechanisms_here() per run of the test case (Catch2 GENERATE), in use.
#define BTQ_EACH_MEMORY_MECHANISM()                                                                \
    const btq::memory_limit_mechanism mechanism =                                                  \
        GENERATE(from_range(btq_test::memory_mechanisms_here()));                                  \
    btq_test::use_memory_mechanism(mechanism);                                                     \
    INFO("memory limit mechanism " << btq::to_string(mechanism))

} // namespace btq_test
