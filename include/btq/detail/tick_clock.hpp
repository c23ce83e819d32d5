/// @file tick_clock.hpp
/// @brief The clock behind the queue's latency statistics: the CPU's time-stamp counter where the
///        kernel itself trusts it, std::chrono::steady_clock elsewhere.
///
/// A task is stamped when it is submitted, when it starts and when it ends. With steady_clock
/// each stamp is a vDSO call, which in a virtual machine is a large part of a fire-and-forget
/// submission; `rdtsc` is cheaper. The counter is used only when the processor says it is
/// invariant (constant rate, never stops) and, on Linux, the kernel picked it as its clock source
/// (it checks that the counters of all CPUs agree); otherwise the stamps are steady_clock
/// nanoseconds. Deadlines and timeouts never use this clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <x86intrin.h>
#define BTQ_DETAIL_HAS_TSC 1
#else
#define BTQ_DETAIL_HAS_TSC 0
#endif

namespace btq::detail {

class tick_clock {
  public:
    /// A stamp: counter ticks or nanoseconds, depending on the source chosen at first use.
    [[nodiscard]] static std::uint64_t now() noexcept {
#if BTQ_DETAIL_HAS_TSC
        if (source().tsc) {
            return __rdtsc();
        }
#endif
        return steady_ns();
    }

    /// The time between two stamps (`later` before `earlier` reads as zero).
    [[nodiscard]] static std::chrono::nanoseconds between(std::uint64_t earlier,
                                                          std::uint64_t later) noexcept {
        if (later <= earlier) {
            return std::chrono::nanoseconds::zero();
        }
        const std::uint64_t ticks = later - earlier;
        const calibration& c = source();
        if (!c.tsc) {
            return std::chrono::nanoseconds(static_cast<std::int64_t>(ticks));
        }
        return std::chrono::nanoseconds(
            static_cast<std::int64_t>(static_cast<double>(ticks) * c.ns_per_tick));
    }

    /// How many stamp units `span` is (the inverse of between(); at least 0).
    [[nodiscard]] static double ticks_in(std::chrono::nanoseconds span) noexcept {
        const double ns = static_cast<double>(span.count());
        const calibration& c = source();
        return ns <= 0 ? 0.0 : (c.tsc ? ns / c.ns_per_tick : ns);
    }

    /// True when stamps come from the time-stamp counter.
    [[nodiscard]] static bool uses_tsc() noexcept { return source().tsc; }

  private:
    struct calibration {
        bool tsc = false;
        double ns_per_tick = 0;
    };

    static std::uint64_t steady_ns() noexcept {
        return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                              std::chrono::steady_clock::now().time_since_epoch())
                                              .count());
    }

    static const calibration& source() noexcept {
        static const calibration chosen = calibrate();
        return chosen;
    }

    static calibration calibrate() noexcept {
        calibration out;
#if BTQ_DETAIL_HAS_TSC
        if (!invariant_tsc() || !kernel_clock_is_tsc()) {
            return out;
        }
        // Count ticks over about 200 us of steady_clock: the error of the two end reads is a few
        // tens of nanoseconds, so the rate is right to about 0.02%. Done once per process.
        const std::uint64_t start_ns = steady_ns();
        const std::uint64_t start_ticks = __rdtsc();
        std::uint64_t end_ns = start_ns;
        while (end_ns - start_ns < 200'000) {
            end_ns = steady_ns();
        }
        const std::uint64_t end_ticks = __rdtsc();
        if (end_ticks <= start_ticks) {
            return out;
        }
        out.ns_per_tick =
            static_cast<double>(end_ns - start_ns) / static_cast<double>(end_ticks - start_ticks);
        out.tsc = out.ns_per_tick > 0;
#endif
        return out;
    }

#if BTQ_DETAIL_HAS_TSC
    static bool invariant_tsc() noexcept {
        unsigned eax = 0;
        unsigned ebx = 0;
        unsigned ecx = 0;
        unsigned edx = 0;
        if (static_cast<unsigned>(__get_cpuid_max(0x80000000U, nullptr)) < 0x80000007U) {
            return false;
        }
        __get_cpuid(0x80000007U, &eax, &ebx, &ecx, &edx);
        return (edx & (1U << 8U)) != 0; // CPUID.80000007H:EDX[8], invariant TSC
    }

    static bool kernel_clock_is_tsc() noexcept {
#if defined(__linux__)
        try {
            std::ifstream file("/sys/devices/system/clocksource/clocksource0/current_clocksource");
            std::string name;
            return static_cast<bool>(file >> name) && name == "tsc";
        } catch (...) {
            return false;
        }
#else
        return false;
#endif
    }
#endif
};

} // namespace btq::detail
