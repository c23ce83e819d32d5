// Whether this build runs under ASan or TSan (and so do the example programs the tests start,
// built with the same flags): GCC's macros, or Clang's __has_feature.
#pragma once

namespace btq_test {

inline constexpr bool under_sanitizer() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

} // namespace btq_test
