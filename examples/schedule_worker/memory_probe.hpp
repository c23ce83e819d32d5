/// @file memory_probe.hpp
/// @brief The `memory_probe` operation: work that touches a known amount of memory, so tests
///        and benchmarks can hold a run to its memory limit (docs/schedule-worker.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace schedule {

/// @brief What a memory probe does; every field as in its request JSON.
struct memory_probe_request {
    std::int64_t megabytes = 0;       ///< MiB to allocate and touch, 0 to max_megabytes
    std::int64_t hold_ms = 0;         ///< how long to hold them once touched, 0 to 60,000
    std::int64_t step_megabytes = 16; ///< MiB per step, 1 to max_megabytes
    std::int64_t step_ms = 0;         ///< pause after each step but the last, 0 to 60,000

    /// The hard cap of `megabytes` (and `step_megabytes`): 2 GiB.
    static constexpr std::int64_t max_megabytes = 2048;
    /// The cap of `hold_ms` and `step_ms`.
    static constexpr std::int64_t max_ms = 60'000;
};

/// @brief Reads `{"megabytes": N, "hold_ms": M, "step_megabytes": S, "step_ms": T}`
///        (megabytes required, the others optional).
/// @throws input_error naming the field at fault
[[nodiscard]] memory_probe_request parse_memory_probe_request(std::string_view json);

/// @brief Runs a probe: allocates `megabytes` MiB in steps of `step_megabytes`, writing every
///        page, pausing `step_ms` after each step, holds them `hold_ms`, frees them, and answers
///        `{"status":"success","touchedBytes":...,"peakResidentBytes":...}` (the process's own
///        VmHWM, the most it ever had resident: in a persistent worker, since it started).
///
/// An allocation that fails (the memory limit the worker runs under refused it) ends the
/// process at once with status 1, a line on stderr and no answer, as a program out of memory
/// does: the caller sees a run stopped at its limit, not an answer.
/// @throws input_error for a bad request
[[nodiscard]] std::string run_memory_probe(std::string_view json);

} // namespace schedule
